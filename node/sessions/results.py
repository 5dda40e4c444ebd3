"""What an initiator reports of a session: as it runs (`Progress`), at its end (`match --json`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MatchResult", "Progress"]

Progress = Callable[[str, int, int], None]
"""Told (stage, done, total) as a session advances, e.g. ("sent", 20_000, 50_000)."""


@dataclass
class MatchResult:
    """The outcome of one session, as `match --json` prints it."""

    session_id: str
    peer: str
    mode: str
    suite: str
    local_count: int
    peer_count: int
    match_count: int
    matches: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Returns the result as a JSON-ready dict."""
        return dict(self.__dict__)
