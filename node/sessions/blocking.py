"""Blocking work (SQLite, waits on the process pool) from the event loop, seen to its end.

`submit` queues the work on the loop's thread pool at once — not from a task a
stopping loop could cancel before it starts — and `settled` awaits it to its
end even if the caller is cancelled meanwhile (the peer gone, Ctrl-C, the node
stopping), re-raising the cancellation only then: what a record write did is
always known, so a session is never left `running` nor recorded twice.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["settled", "submit", "succeeded"]

T = TypeVar("T")


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
