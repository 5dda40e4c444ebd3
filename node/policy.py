"""Who may ask what of this node, and the bounds on every string that comes from a peer.

Requests are checked once, where a message is decoded (`SessionRequest.checked`,
`FetchRequest.checked`, `ScreenQuery.checked`): session id 32 lower-case hex,
list names as ingest accepts them, purpose printable and at most 300
characters, suite and mode from their sets. Nothing unbounded reaches the
audit log or the logs after that.

Then `authorize` applies the peer's policy in node.toml, in an order that leaks
least: who is asking (UnknownPeer), whether we speak its protocol
(Incompatible), whether it may ask this (PolicyDenied) — a list the peer may
not use is refused the same way whether or not it exists — and only then how
much (`check_set_size`, `SessionSlots`, `check_rate`: LimitExceeded, with
when to retry).

Every refusal carries two texts (STYLE 12): the message for this node's
operator and `peer=`, what the peer may be told.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from crypto.groups import SUITES
from node.data.store import check_list_name
from node.errors import Incompatible, InvalidInput, LimitExceeded, PolicyDenied, UnknownPeer
from node.setup.config import NodeConfig, PeerPolicy

__all__ = [
    "MAX_PURPOSE_CHARS",
    "PROTOCOL_VERSION",
    "SESSION_MODES",
    "FetchRequest",
    "ScreenQuery",
    "SessionRequest",
    "SessionSlots",
    "authorize",
    "check_purpose",
    "check_rate",
    "check_set_size",
]

PROTOCOL_VERSION = 2
"""2: canonical forms v2 (identifiers.CANON_VERSION). A version 1 node makes other elements
for the same names and documents, so the two refuse each other rather than silently miss."""
MAX_PURPOSE_CHARS = 300
SESSION_MODES = ("mutual", "count")
MAX_SET_SIZE = 2**40  # far above any policy; bounds what a hello may declare at all
_SESSION_ID = re.compile(r"[0-9a-f]{32}")


def check_purpose(purpose: str) -> str:
    """Returns `purpose` if it is a usable audit purpose, or raises InvalidInput."""
    if not purpose.strip():
        raise InvalidInput(
            "every session needs a purpose (what the check is for); pass --purpose",
            peer="every request needs a purpose (what the check is for)",
        )
    if len(purpose) > MAX_PURPOSE_CHARS or not purpose.isprintable():
        raise InvalidInput(
            f"the purpose must be printable text of at most {MAX_PURPOSE_CHARS} characters",
            peer=f"the purpose must be printable text of at most {MAX_PURPOSE_CHARS} characters",
        )
    return purpose


def _check_session_id(session_id: str) -> str:
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidInput(
            "session id must be 32 lower-case hex characters",
            peer="the session id must be 32 lower-case hex characters",
        )
    return session_id


def _check_version(version: int) -> None:
    if version != PROTOCOL_VERSION:
        text = (
            f"protocol version {version} is not supported; this node speaks version "
            f"{PROTOCOL_VERSION}: upgrade the older node"
        )
        raise Incompatible(text, peer=text)


@dataclass(frozen=True)
class SessionRequest:
    """A peer's hello, decoded and bounded: what it asks of this node."""

    protocol_version: int
    session_id: str
    suite: str
    mode: str
    list: str
    purpose: str
    set_size: int
    initiator_list: str

    @classmethod
    def checked(cls, **fields: object) -> SessionRequest:
        """Builds a request from a decoded hello, or raises the typed error of its first fault."""
        request = cls(**fields)  # type: ignore[arg-type]
        _check_version(request.protocol_version)
        _check_session_id(request.session_id)
        if request.suite not in SUITES:
            text = f"crypto suite {request.suite[:40]!r} is not supported; use one of " + ", ".join(
                SUITES
            )
            raise Incompatible(text, peer=text)
        if request.mode not in SESSION_MODES:
            raise InvalidInput(
                "hello names no valid mode; use mutual or count",
                peer="the hello names no valid mode; use mutual or count",
            )
        check_list_name(request.list, "list")
        check_list_name(request.initiator_list, "initiator list")
        check_purpose(request.purpose)
        if not 0 <= request.set_size <= MAX_SET_SIZE:
            raise InvalidInput(
                "declared set size out of range", peer="the declared set size is out of range"
            )
        return request

    def audit_fields(self) -> dict[str, object]:
        """The request as the audit log records it (bounded: checked when decoded)."""
        return {
            "session_id": self.session_id,
            "list": self.list,
            "peer_list": self.initiator_list,
            "mode": self.mode,
            "suite": self.suite,
            "purpose": self.purpose,
            "peer_set_size": self.set_size,
        }


@dataclass(frozen=True)
class FetchRequest:
    """A peer's request for an encoded list, decoded and bounded."""

    protocol_version: int
    list: str
    purpose: str

    @classmethod
    def checked(cls, **fields: object) -> FetchRequest:
        """Builds a request from a decoded message, or raises the typed error of its first fault."""
        request = cls(**fields)  # type: ignore[arg-type]
        _check_version(request.protocol_version)
        check_list_name(request.list, "list")
        check_purpose(request.purpose)
        return request

    def audit_fields(self) -> dict[str, object]:
        """The request as the audit log records it."""
        return {"list": self.list, "purpose": self.purpose}


@dataclass(frozen=True)
class ScreenQuery:
    """One batch of a peer's screening query, decoded and bounded (the batch size is checked
    with the work, in `node.sessions.screen_responder`)."""

    protocol_version: int
    session_id: str
    list: str
    epoch: int
    list_version: int
    purpose: str
    blinded: bytes

    @classmethod
    def checked(cls, **fields: object) -> ScreenQuery:
        """Builds a query from a decoded message, or raises the typed error of its first fault."""
        query = cls(**fields)  # type: ignore[arg-type]
        _check_version(query.protocol_version)
        _check_session_id(query.session_id)
        check_list_name(query.list, "list")
        check_purpose(query.purpose)
        return query

    def audit_fields(self) -> dict[str, object]:
        """The query as the audit log records it."""
        return {
            "session_id": self.session_id,
            "list": self.list,
            "epoch": self.epoch,
            "batch_size": len(self.blinded) // 32,
            "purpose": self.purpose,
        }


def peer_policy(config: NodeConfig, peer: str) -> PeerPolicy:
    """Returns the policy for `peer`, or raises UnknownPeer."""
    policy = config.peers.get(peer)
    if policy is None:
        raise UnknownPeer(
            f"agency {peer!r} is not a peer of {config.agency}; its operator must first run "
            f"'blindmatch peer add NODE_DIR --agency {peer} --address HOST:PORT'",
            peer="your agency is not a peer of this node",
        )
    return policy


def authorize(config: NodeConfig, peer: str, mode: str, list_name: str) -> PeerPolicy:
    """Returns the peer's policy if it may run `mode` against `list_name`, or raises the refusal."""
    policy = peer_policy(config, peer)
    if not policy.allows_mode(mode):
        raise PolicyDenied(
            f"{config.agency} does not allow {peer} {mode!r} requests "
            f"(allowed: {', '.join(sorted(policy.modes)) or 'none'})",
            peer=f"mode {mode!r} is not allowed for your agency",
        )
    if not policy.allows_list(list_name):
        raise PolicyDenied(
            f"{config.agency} does not allow {peer} to use list {list_name!r}",
            peer=f"list {list_name!r} is not available to your agency",
        )
    return policy


def check_set_size(config: NodeConfig, policy: PeerPolicy, size: int) -> None:
    """Raises LimitExceeded if a declared set is larger than the peer may send."""
    if size > policy.max_set_size:
        raise LimitExceeded(
            f"{policy.agency} declared a set of {size:,} elements, over the limit of "
            f"{policy.max_set_size:,} {config.agency} set for it",
            peer=f"the declared set is larger than this node accepts ({policy.max_set_size:,}); "
            "split the list",
        )


def check_rate(
    config: NodeConfig, policy: PeerPolicy, recent: int, earliest: str | None, now: dt.datetime
) -> None:
    """Raises LimitExceeded if `recent` sessions in the last hour (this direction) use up the rate.

    The retry time is when the earliest of them leaves the one-hour window.
    """
    if recent < policy.sessions_per_hour:
        return
    start = dt.datetime.fromisoformat(earliest) if earliest else now
    retry = max(start + dt.timedelta(hours=1), now + dt.timedelta(seconds=1))
    at = retry.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise LimitExceeded(
        f"{policy.agency} has used its {policy.sessions_per_hour} sessions per hour with "
        f"{config.agency}; it may retry at {at}",
        peer=f"your agency has used its {policy.sessions_per_hour} sessions per hour with this "
        f"node; retry at {at}",
        retry_after=(retry - now).total_seconds(),
    )


class SessionSlots:
    """Calls served at once: at most `max_concurrent` per peer and `total` overall.

    A call beyond either limit is refused at once (LimitExceeded) rather than
    queued: a stalled partner must not hold up anyone, itself included.
    """

    RETRY_SECONDS = 5.0

    def __init__(self, total: int) -> None:
        self.total = total
        self.by_peer: Counter[str] = Counter()

    @property
    def in_use(self) -> int:
        """Calls holding a slot now."""
        return sum(self.by_peer.values())

    @contextlib.contextmanager
    def hold(self, policy: PeerPolicy) -> Iterator[None]:
        """Holds one slot for `policy.agency` for the block, or raises LimitExceeded."""
        peer = policy.agency
        if self.by_peer[peer] >= policy.max_concurrent:
            raise LimitExceeded(
                f"{peer} already has {policy.max_concurrent} calls in progress (its "
                "max_concurrent); refused another",
                peer=f"your agency already has {policy.max_concurrent} calls in progress with "
                f"this node; retry in {self.RETRY_SECONDS:.0f} s",
                retry_after=self.RETRY_SECONDS,
            )
        if self.in_use >= self.total:
            raise LimitExceeded(
                f"the node serves {self.total} calls at once (max_sessions); refused one from "
                f"{peer}",
                peer=f"this node is at capacity; retry in {self.RETRY_SECONDS:.0f} s",
                retry_after=self.RETRY_SECONDS,
            )
        self.by_peer[peer] += 1
        try:
            yield
        finally:
            self.by_peer[peer] -= 1
            if not self.by_peer[peer]:
                del self.by_peer[peer]
