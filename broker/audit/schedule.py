"""When the audit log is signed: a checkpoint every N entries or T seconds, made in a
thread beside the appender.

The appender tells its `CheckpointSchedule` the size it just made durable; when a
signature is due, the schedule hands that size to its checkpoint thread, and the appender
goes on appending. Checkpoints of other processes sharing the log count (N is counted
from the database's latest checkpoint), so the deployment signs every N entries, and
only the process that holds the signer's role signs at all (`broker.audit.leadership`).
The settings are described in docs/audit.md.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from broker.audit.signer import CheckpointRefused, CheckpointSigner, latest_checkpoint
from broker.settings import Settings

_log = logging.getLogger("broker.audit")


class CheckpointSchedule:
    """The checkpoint thread of one appender, and when to ask it for a signature.

    `problem` says why the last signature was refused (None once one succeeds).
    """

    def __init__(self, signer: CheckpointSigner, settings: Settings) -> None:
        self.signer = signer
        self._settings = settings
        self._signatures: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._signed_size: int | None = None
        self._last_signed_at = time.monotonic()
        self.problem: str | None = None

    def start(self) -> None:
        """Read the last signed size from the signer's state and start the thread."""
        try:
            remembered = self.signer.remembered()
        except CheckpointRefused as exc:
            # Appends go on; checkpoints wait until the state is repaired.
            remembered, self.problem = None, exc.detail
            _log.error("checkpoint signer state unreadable")
        self._signed_size = remembered.size if remembered else None
        thread = threading.Thread(target=self._sign_forever, name="audit-checkpoints",
                                  daemon=True)
        thread.start()
        self._thread = thread

    def stop(self) -> None:
        """Tell the thread to end once it has signed what was asked."""
        self._signatures.put(None)

    def join(self) -> None:
        """Wait for the thread to end (once told to stop)."""
        if self._thread is not None:
            self._thread.join()

    @property
    def died(self) -> bool:
        """Whether the thread was started and is no longer running."""
        return self._thread is not None and not self._thread.is_alive()

    def wait(self) -> float:
        """Seconds until a signature is due by time."""
        elapsed = time.monotonic() - self._last_signed_at
        return max(0.05, self._settings.checkpoint_every_seconds - elapsed)

    def sign_if_due(self, size: int | None) -> None:
        """Ask for a signature of `size` entries when N entries or T seconds have passed
        since the last one (this process's, or another's it reads from the signer's state)."""
        signed = self._signed_size or 0
        if size is None or size <= signed:
            self._last_signed_at = time.monotonic()
            return
        every = self._settings.checkpoint_every_entries
        due_by_count = size - signed >= every
        due_by_time = (
            time.monotonic() - self._last_signed_at >= self._settings.checkpoint_every_seconds
        )
        if not (due_by_count or due_by_time):
            return
        if not due_by_time:
            signed = self._signed_elsewhere(signed)
            if size - signed < every:
                return
        self._last_signed_at = time.monotonic()
        # From here on this size counts as signed: a refused signature waits a full period
        # before the next try rather than being asked for after every batch.
        self._signed_size = size
        self._signatures.put(size)

    def _signed_elsewhere(self, signed: int) -> int:
        """The last signed size, counted from the database's latest checkpoint (whichever
        process of the deployment signed it: each would otherwise sign every N entries of
        the shared log on its own)."""
        try:
            with self.signer.engine.connect() as conn:
                latest = latest_checkpoint(conn)
        except Exception:  # noqa: BLE001 - the signature asked for reports the problem
            return signed
        if latest is not None and latest.size > signed:
            self._signed_size = latest.size
            return latest.size
        return signed

    def _sign_forever(self) -> None:
        """The checkpoint thread: sign the sizes asked for until told to stop.

        Signing reads back and hashes every entry since the last signature and writes a
        checkpoint of its own; done in the appender thread, it held every request of the
        process for that long (tens of milliseconds under load, the tail of the answer
        times). Here the appender goes on meanwhile. Sizes asked for while a signature was
        being made (or waited for another process's) are signed as one: the largest."""
        stop = False
        while not stop:
            size = self._signatures.get()
            while True:
                try:
                    more = self._signatures.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                elif size is None or more > size:
                    size = more
            if size is None:
                return
            try:
                self.signer.sign_at(size)
            except Exception as exc:  # noqa: BLE001 - a refused signature must not stop the thread
                self.problem = str(exc)
                _log.error("checkpoint not signed", extra={"error_type": type(exc).__name__})
                continue
            self.problem = None
