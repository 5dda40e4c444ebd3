"""The messages of a mutual or count session (DESIGN §4), and the stream they travel on.

`node.rpc.wire` maps them to and from protobuf; the orchestrations in
`mutual_initiator` and `mutual_responder` see only these types, so they run
over any `PeerStream` (gRPC, or in-process in tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from node.policy import SessionRequest

__all__ = [
    "Blinded",
    "Evaluated",
    "Hello",
    "HelloReply",
    "Labels",
    "Message",
    "PeerStream",
    "Reveal",
    "Summary",
]


@dataclass(frozen=True)
class Hello:
    """I -> R: opens a session."""

    request: SessionRequest


@dataclass(frozen=True)
class HelloReply:
    """R -> I: accepts it, with R's set size and list kind."""

    set_size: int
    list_kind: str


@dataclass(frozen=True)
class Blinded:
    """Either way: packed blinded points (x_a from I, y_b from R)."""

    packed: bytes


@dataclass(frozen=True)
class Evaluated:
    """R -> I: packed tag(x_ab)."""

    packed: bytes


@dataclass(frozen=True)
class Reveal:
    """I -> R (mutual): packed tag(y_ba) in R's order."""

    packed: bytes


@dataclass(frozen=True)
class Labels:
    """Either way (mutual): released labels keyed by the matched y_b's index."""

    indices: Sequence[int]
    labels: Sequence[str]


@dataclass(frozen=True)
class Summary:
    """R -> I, last: R has recorded the session."""

    match_count: int


Message = Hello | HelloReply | Blinded | Evaluated | Reveal | Labels | Summary


class PeerStream(Protocol):
    """One session's stream to the other side; every wait is bounded by an idle timeout."""

    async def receive(self) -> Message | None:
        """The next message, or None once the other side has finished sending.

        Raises Stalled after the idle timeout, PeerError (initiator) or the decode
        error (responder) for a message that cannot be used.
        """
        ...

    async def send(self, message: Message) -> None:
        """Sends one message; raises Stalled if the other side stops reading."""
        ...

    async def done_sending(self) -> None:
        """Tells the other side nothing more will be sent."""
        ...

    def allow_quiet(self, seconds: float) -> None:
        """From now on, lets the other side send nothing for `seconds` beyond the idle timeout:
        it is busy for us (loading its list before its hello reply, recording a large
        session before its summary); 0 ends the allowance."""
        ...
