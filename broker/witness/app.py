"""The witness's HTTP interface (C2SP tlog-witness), one prefix for submission and monitoring.

- ``POST /add-checkpoint``: the spec's call; 200 with the cosignature line, or the spec's
  status for each refusal (409 for a stale old size carries the latest size as
  ``text/x.tlog.size``).
- ``GET /checkpoints/{origin}``: the latest checkpoint cosigned for an origin, as a note
  with the log's signatures and this witness's cosignature; the origin may be written as
  is or percent-encoded (``sluis.example%2Faudit``).
- ``GET /readyz``: 200 once the state is open.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from broker.core.witness import MAX_BODY_BYTES, Refusal, malformed
from broker.witness.witness import Witness

NOTE_TYPE = "text/plain; charset=utf-8"


async def _body(request: Request) -> bytes:
    """The request body, refused once it passes the bound (without reading the rest)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise malformed("the request is too large")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(witness: Witness) -> Starlette:
    """The witness's ASGI app over one `Witness`."""

    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await _body(request)
            lines = await run_in_threadpool(witness.add_checkpoint, body)
        except Refusal as refusal:
            # Set as a header, so that no charset is appended: the spec names the type exactly.
            return Response(refusal.body(), status_code=refusal.status,
                            headers={"Content-Type": refusal.content_type()})
        return Response(lines, media_type=NOTE_TYPE)

    async def checkpoint(request: Request) -> Response:
        origin = request.path_params["origin"]
        latest = await run_in_threadpool(witness.latest, origin)
        if latest is None:
            return PlainTextResponse(f"nothing cosigned for {origin}\n", status_code=404)
        return Response(latest.note, media_type=NOTE_TYPE)

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[
        Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
        Route("/checkpoints/{origin:path}", checkpoint, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
    ])
