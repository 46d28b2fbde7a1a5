"""An entry waiting to be appended, and how its caller learns that it is settled.

A caller of the appender hands over a `Pending`: the entry's draft, the work and rows to
write with it, and a one-shot signal the appender gives once the entry is durable or has
failed. The caller then reads its `Recorded` (or its error) from it.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Connection, Table

if TYPE_CHECKING:
    from broker.audit.encoding import Encoded

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Recorded(Generic[T]):
    """A durable entry: its position in the log, its id, and what the entry's work returned."""

    seq: int
    entry_id: str
    result: T


class Pending:
    """One caller's entry, work and rows, and how its caller learns it is settled.

    A thread caller blocks on `done`, a bare lock held until then (the cheapest one-shot
    event). An asyncio caller awaits `future`, which the appender resolves through its
    loop: one `call_soon_threadsafe` per loop and batch, so no request thread is woken.
    """

    __slots__ = ("done", "draft", "entry_id", "error", "future", "loop", "pre", "result",
                 "rows", "seq", "subjects", "work")

    def __init__(
        self,
        draft: Mapping[str, Any],
        work: Callable[[Connection], Any] | None,
        subjects: Sequence[bytes],
        rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.draft = draft
        self.work = work
        self.subjects = subjects
        self.rows = rows
        self.pre: Encoded | None = None
        self.seq = -1
        self.entry_id = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.loop = loop
        self.future: asyncio.Future[None] | None = None
        self.done: _thread.LockType | None = None
        if loop is None:
            self.done = _thread.allocate_lock()
            self.done.acquire()
        else:
            self.future = loop.create_future()

    def tokens(self) -> list[bytes]:
        """Every subject token the entry names (checked in the caller's thread by
        `broker.audit.encoding.check_tokens`)."""
        tokens = list(self.subjects)
        for item in self.draft.get("items") or ():
            tokens.extend(item.get("subjects") or ())
        return tokens

    def recorded(self) -> Recorded[Any]:
        """The durable entry; the entry's error if it failed."""
        if self.error is not None:
            raise self.error
        return Recorded(self.seq, self.entry_id, self.result)


def _wake(entries: list[Pending]) -> None:
    """In a caller's event loop: resolve the futures of its settled entries."""
    for pending in entries:
        if pending.future is not None and not pending.future.done():
            pending.future.set_result(None)


def settle(entries: Iterable[Pending]) -> None:
    """Tell the caller of each entry that it is settled (durable, or failed)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
    for pending in entries:
        if pending.loop is None:
            if pending.done is not None:
                pending.done.release()
        else:
            by_loop.setdefault(pending.loop, []).append(pending)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to tell
            loop.call_soon_threadsafe(_wake, group)
