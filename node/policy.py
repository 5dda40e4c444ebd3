"""Whether this node answers a peer's request: the peer's policy in node.toml, applied.

Checks run in an order that leaks least: who is asking (UnknownPeer), whether
we speak its protocol (Incompatible), whether it may ask this (PolicyDenied),
and only then how much (LimitExceeded). A list the peer may not use is refused
the same way whether or not it exists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from crypto.groups import SUITES
from node.config import NodeConfig, PeerPolicy
from node.errors import Incompatible, InvalidInput, LimitExceeded, PolicyDenied, UnknownPeer
from node.store import Store

__all__ = [
    "PROTOCOL_VERSION",
    "SessionRequest",
    "authorize_session",
    "check_purpose",
    "peer_policy",
]

PROTOCOL_VERSION = 1
MAX_PURPOSE_CHARS = 300


@dataclass(frozen=True)
class SessionRequest:
    """A peer's hello, decoded from the wire: what it asks of this node."""

    protocol_version: int
    session_id: str
    suite: str
    mode: str
    list: str
    purpose: str
    set_size: int
    initiator_list: str


def check_purpose(purpose: str) -> str:
    """Returns `purpose` if it is a usable audit purpose, or raises InvalidInput."""
    if not purpose.strip():
        raise InvalidInput("every session needs a purpose (what the check is for); pass --purpose")
    if len(purpose) > MAX_PURPOSE_CHARS:
        raise InvalidInput(f"the purpose is longer than {MAX_PURPOSE_CHARS} characters; shorten it")
    return purpose


def peer_policy(config: NodeConfig, peer: str) -> PeerPolicy:
    """Returns the policy for `peer`, or raises UnknownPeer."""
    policy = config.peers.get(peer)
    if policy is None:
        raise UnknownPeer(
            f"agency {peer!r} is not a peer of {config.agency}; its operator must first run "
            f"'blindmatch peer add NODE_DIR --agency {peer} --address HOST:PORT'"
        )
    return policy


def authorize_session(
    config: NodeConfig, store: Store, peer: str, request: SessionRequest, now: dt.datetime
) -> PeerPolicy:
    """Returns the peer's policy if it allows `request`, or raises the refusal."""
    policy = peer_policy(config, peer)
    if request.protocol_version != PROTOCOL_VERSION:
        raise Incompatible(
            f"protocol version {request.protocol_version} is not supported; "
            f"{config.agency} speaks version {PROTOCOL_VERSION}: upgrade the older node"
        )
    if request.suite not in SUITES:
        raise Incompatible(
            f"crypto suite {request.suite!r} is not supported; use one of {', '.join(SUITES)}"
        )
    if len(request.session_id) != 32 or not all(
        c in "0123456789abcdef" for c in request.session_id
    ):
        raise Incompatible("session id must be 32 lower-case hex characters")
    check_purpose(request.purpose)
    if not policy.allows_mode(request.mode):
        raise PolicyDenied(
            f"{config.agency} does not allow {peer} {request.mode!r} sessions "
            f"(allowed: {', '.join(sorted(policy.modes)) or 'none'})"
        )
    if not policy.allows_list(request.list):
        raise PolicyDenied(f"{config.agency} does not allow {peer} to match list {request.list!r}")
    if request.set_size > policy.max_set_size:
        raise LimitExceeded(
            f"declared set of {request.set_size:,} elements exceeds the limit of "
            f"{policy.max_set_size:,} {config.agency} set for {peer}; split the list"
        )
    hour_ago = (now - dt.timedelta(hours=1)).isoformat(timespec="seconds")
    recent = len(store.sessions(peer=peer, since=hour_ago))
    if recent >= policy.sessions_per_hour:
        raise LimitExceeded(
            f"{peer} has used its {policy.sessions_per_hour} sessions per hour with "
            f"{config.agency}; retry after {hour_ago[11:16]} UTC plus one hour"
        )
    return policy
