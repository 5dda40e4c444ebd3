"""Where a serving process's metrics hear about sessions, calls and screening (hooks, no I/O).

The layers below the API know nothing of Prometheus: they call the functions
here at the moments worth counting, and `node.api.metrics` registers one
`Observer` per serving process (`set_observer`). Without one (the CLI's `match`,
tests) every call is a no-op. An observer must be cheap, thread-safe and never
raise: it is called from the event loop and from the blocking threads, after the
work it counts is recorded.
"""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = [
    "Observer",
    "call_failed",
    "screen_answered",
    "session_ended",
    "set_observer",
]

log = logging.getLogger(__name__)


class Observer(Protocol):
    """What a serving process counts."""

    def session_ended(self, role: str, mode: str, peer: str, outcome: str, seconds: float) -> None:
        """A mutual or count session, either side, `completed` or `failed` after `seconds`."""

    def call_failed(self, status: str) -> None:
        """A peer's call refused or failed with gRPC `status` (ABORTED: a stalled stream)."""

    def screen_answered(self, peer: str, items: int) -> None:
        """A screening query of `items` elements answered for `peer` (charged to its budget)."""


_observer: Observer | None = None


def set_observer(observer: Observer | None) -> None:
    """Makes `observer` hear every event from now on (None: nobody)."""
    global _observer
    _observer = observer


def session_ended(role: str, mode: str, peer: str, outcome: str, seconds: float) -> None:
    """Tells the observer a session ended."""
    if _observer is not None:
        try:
            _observer.session_ended(role, mode, peer, outcome, seconds)
        except Exception:  # a metric must never fail what it counts
            log.exception("observer failed")


def call_failed(status: str) -> None:
    """Tells the observer a peer's call ended with an error status."""
    if _observer is not None:
        try:
            _observer.call_failed(status)
        except Exception:
            log.exception("observer failed")


def screen_answered(peer: str, items: int) -> None:
    """Tells the observer a screening query was answered."""
    if _observer is not None:
        try:
            _observer.screen_answered(peer, items)
        except Exception:
            log.exception("observer failed")
