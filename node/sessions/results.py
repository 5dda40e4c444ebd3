"""What an initiator reports of a session: as it runs (`Progress`), at its end (`match --json`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["MatchResult", "Progress"]

Progress = Callable[[str, int, int], None]
"""Told (stage, done, total) as a session advances, e.g. ("sent", 20_000, 50_000)."""

_MATCHES_PER_WRITE = 1000


@dataclass
class MatchResult:
    """The outcome of one session, as `match --json` prints it.

    `matches` may be a packed `HitTable` (a mutual session's): each match
    becomes a dict only as it is read.
    """

    session_id: str
    peer: str
    mode: str
    suite: str
    local_count: int
    peer_count: int
    match_count: int
    matches: Sequence[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Returns the result as a JSON-ready dict."""
        return {**self.__dict__, "matches": list(self.matches)}

    def write_json(self, out: TextIO) -> None:
        """Writes `to_json()` as one line of JSON (non-ASCII kept), a thousand matches at a time."""
        head = {k: v for k, v in self.__dict__.items() if k != "matches"}
        out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "matches": [')
        step = _MATCHES_PER_WRITE
        for start in range(0, len(self.matches), step):
            rows = (json.dumps(m, ensure_ascii=False) for m in self.matches[start : start + step])
            out.write((", " if start else "") + ", ".join(rows))
        out.write("]}\n")
