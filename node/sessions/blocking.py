"""Blocking work (SQLite, waits on the process pool) from the event loop, seen to its end.

`submit` queues the work on the loop's thread pool at once — not from a task a
stopping loop could cancel before it starts — and `settled` awaits it to its
end even if the caller is cancelled meanwhile (the peer gone, Ctrl-C, the node
stopping), re-raising the cancellation only then: what a record write did is
always known, so a session is never left `running` nor recorded twice.

`GroupWriter` is `submit` for the frequent small writes of a serving process
(session records, `api.request` entries): one thread writes them all, those
queued meanwhile in one transaction, each in its own savepoint. Several threads
writing with their own connections would wait on each other's write lock (SQLite's
busy handler sleeps up to 100 ms at a time); one transaction and one thread
hand-off per group, not per write, is what lets the API keep up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from node.setup.context import NodeContext

__all__ = ["MAX_GROUP", "GroupWriter", "settled", "submit", "succeeded"]

T = TypeVar("T")

MAX_GROUP = 500
"""Most writes one `GroupWriter` transaction holds."""


def submit(blocking: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """Queues `blocking(*args, **kwargs)` on the loop's thread pool now; returns its future."""
    call = functools.partial(blocking, *args, **kwargs)
    return asyncio.get_running_loop().run_in_executor(None, call)


async def settled(work: asyncio.Future[T]) -> T:
    """The result of `work`, awaited to its end even through cancellations (re-raised after)."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not work.cancelled():
            work.exception()  # retrieved: the cancellation is what the caller sees
        raise asyncio.CancelledError
    return work.result()


def succeeded(work: asyncio.Future[Any] | None) -> bool:
    """Whether `work` has finished without an error."""
    return work is not None and work.done() and not work.cancelled() and work.exception() is None


@dataclass(frozen=True)
class _Write:
    call: Callable[[], Any]
    future: asyncio.Future[Any]


_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]  # future, result, error


class GroupWriter:
    """Writes to the node's store from one thread, the writes queued meanwhile in one transaction.

    `submit(blocking, ...)` queues the call at once (thread-safe: no task a stopping
    loop could cancel) and returns its future, to await with `settled`. The thread
    (a daemon, started by the first `submit`) takes what is queued, at most
    `max_group` calls, runs each in a savepoint of one `node.store()` transaction
    and commits it: a call that raises is rolled back alone and fails its own future;
    a commit that fails fails the group's every future. The calls write through
    `node.store()`, so that their own `transaction()` is that savepoint (another
    connection would wait on the group's write lock). `close` (blocking) lets the
    queued writes finish, then stops the thread; `submit` raises RuntimeError after it.
    """

    def __init__(self, node: NodeContext, max_group: int = MAX_GROUP) -> None:
        self.node = node
        self.max_group = max_group
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()  # None: stop
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, blocking: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queues `blocking(*args, **kwargs)` on the writer thread now; returns its future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        write = _Write(functools.partial(blocking, *args, **kwargs), future)
        with self._lock:  # nothing is queued after close's stop
            if self._closed:
                raise RuntimeError("the store writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
                self._thread.start()
            self._queue.put(write)
        return future

    def close(self) -> None:
        """Lets the queued writes finish, then stops the thread (blocking)."""
        with self._lock:
            if not self._closed and self._thread is not None:
                self._queue.put(None)
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self.max_group and not self._queue.empty():
                group.append(self._queue.get())
            writes = [write for write in group if write is not None]
            if writes:
                _settle(self._write_group(writes))
            if len(writes) < len(group):
                return

    def _write_group(self, writes: list[_Write]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            store = self.node.store()
            with store.transaction():
                for write in writes:
                    try:
                        with store.transaction():
                            result = write.call()
                    except Exception as exc:
                        if not store.conn.in_transaction:  # SQLite rolled the group back
                            raise
                        outcomes.append((write.future, None, exc))
                    else:
                        outcomes.append((write.future, result, None))
        except Exception as exc:  # not committed: no write of the group was made
            return [(write.future, None, exc) for write in writes]
        return outcomes


def _settle(outcomes: list[_Outcome]) -> None:
    """Settles the futures, with one hand-off to each loop (normally one) that awaits them."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, settling in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits them
            loop.call_soon_threadsafe(_set_outcomes, settling)


def _set_outcomes(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # cancelled by its caller
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
