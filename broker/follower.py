"""A daemon thread that keeps one process in step with shared state, once per interval.

Several broker processes share one database and one key directory; a change made through
one of them (a policy reload, a key rotation) reaches the others when their followers next
look. A step that fails is reported and tried again at the next interval: a follower must
never end because the database or a file hiccuped.
"""

from __future__ import annotations

import threading


class Follower:
    """Runs `step` every `interval` seconds until `stop`; `trouble` hears of each failure."""

    name = "follower"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def trouble(self, error: Exception) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.step()
            except Exception as error:  # noqa: BLE001 - reported, then tried again
                self.trouble(error)
