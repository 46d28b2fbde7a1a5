FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BROKER_DATABASE_URL=sqlite:////data/broker.db BROKER_KEY_DIR=/data/keys

# /data holds the database and the key-encryption key: the broker's user's only (broker
# init and serve create their files 600, and serve refuses a database others may read).
RUN useradd --system --create-home --uid 10001 sluis && mkdir -p /data && chown sluis /data \
    && chmod 700 /data
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY broker ./broker
COPY clients ./clients
COPY migrations ./migrations
COPY policies ./policies
# The broker's own dependencies at the versions CI tested (the lock as constraints: its
# development tools are not installed).
RUN pip install --no-cache-dir --constraint requirements.lock -e . && chown -R root:root /app

USER sluis
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# Run `broker init` once (same volume) before the first start.
CMD ["broker", "serve", "--host", "0.0.0.0", "--port", "8000"]
