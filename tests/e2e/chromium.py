"""A small driver for headless Chromium over the Chrome DevTools Protocol (CDP).

Only what the page tests need: open a page, type into a field as a person would
(`Input.insertText`), press a button, read the text, the cookies and the document's
status, and take a full-page screenshot. It speaks CDP over the websocket of the page
target with the `websockets` package (already installed with uvicorn[standard]), so no
WebDriver is needed. The pages themselves run no script: the driver's own expressions
only find elements, the way a person's eyes and hands would.

Debian's `chromium` is started as root needs it (`--no-sandbox`), with every background
connection off (the machine has no network but loopback) and a fresh profile.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    "--window-size=1280,900", "--lang=nl-NL",
)


def chromium_binary() -> str | None:
    """Debian's Chromium, or `BROKER_CHROMIUM`."""
    return os.environ.get("BROKER_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")


class CDPError(RuntimeError):
    pass


class Chromium:
    """One headless browser with one page, driven over CDP."""

    def __init__(self, binary: str, *, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="officer-chromium-"))
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._id = 0
        self._events: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        try:
            self.ws = self._connect()
            for domain in ("Page", "Network", "Runtime"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def _connect(self) -> ClientConnection:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise CDPError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.loads(answer.read())
        page = next(t for t in targets if t["type"] == "page")
        return self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout))

    # --- protocol ---

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The first buffered or coming event of this name (taken out of the buffer)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for index, message in enumerate(self._events):
                if message["method"] == event:
                    return self._events.pop(index)
            if time.monotonic() > deadline:
                raise CDPError(f"no {event} within {self.timeout} s")
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if "method" in message:
                self._events.append(message)

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise CDPError(f"evaluation failed: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    # --- what a person does ---

    def _loaded(self) -> int:
        """Wait for the next page load; the status of the document that loaded."""
        self.wait_for("Page.loadEventFired")
        status = 0
        for message in self._events:
            if (message["method"] == "Network.responseReceived"
                    and message["params"].get("type") == "Document"):
                status = int(message["params"]["response"]["status"])
        self._events.clear()
        return status

    def goto(self, url: str) -> int:
        """Open a URL; the HTTP status of the page that finally loaded."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        return self._loaded()

    def type_into(self, selector: str, text: str) -> None:
        """Focus a field, clear it, and type `text` into it."""
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                      " e.focus(); e.value = ''; })()")
        self.call("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a select list."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).value = "
                      f"{json.dumps(value)}")

    def press(self, selector: str) -> int:
        """Press a button or follow a link and wait for the page it leads to."""
        self._events.clear()
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        return self._loaded()

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def html(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def cookies(self) -> list[dict[str, Any]]:
        cookies: list[dict[str, Any]] = self.call("Network.getCookies")["cookies"]
        return cookies

    def screenshot(self, path: Path, *, width: int = 1280) -> None:
        """A PNG of the whole page at `width` CSS pixels."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900,
                  deviceScaleFactor=1, mobile=False)
        height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=int(height),
                  deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        self.call("Emulation.clearDeviceMetricsOverride")

    def close(self) -> None:
        self._stack.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.contextmanager
def started_chromium(what: str) -> Iterator[Chromium]:
    """A headless Chromium until the block ends; without one the test fails (saying `what`
    needs it), or is skipped where `BROKER_SKIP_BROWSER=1` says there is no browser."""
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("BROKER_SKIP_BROWSER") == "1":
            pytest.skip("no Chromium here and BROKER_SKIP_BROWSER=1")
        pytest.fail(f"Chromium is not installed (Debian package `chromium`); {what} "
                    "tested in a real browser. Set BROKER_SKIP_BROWSER=1 to skip.")
    chromium = Chromium(binary)
    try:
        yield chromium
    finally:
        chromium.close()
