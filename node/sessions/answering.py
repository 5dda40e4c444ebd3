"""What a serving node shares between the calls it answers: limits, lists, and refusals.

One `Answering` per serving process. Every call a peer makes goes through
`Answering.admit`, which checks the peer's identity and policy and takes one
of the concurrency slots (`SessionSlots`) for the length of the call; every
refusal, whichever RPC and whatever went wrong, is audited with its reason by
`Answering.refused`. The responder's lists are loaded once per list version
and suite (`ListCache`) and shared by every session against them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from crypto.psi import PointSet
from node.data.store import ListPoints
from node.policy import SessionSlots, authorize
from node.sessions.blocking import settled, submit
from node.sessions.records import audit_refusal, describe
from node.setup.config import PeerPolicy
from node.setup.context import NodeContext

__all__ = ["Answering", "ListCache", "SharedList"]


@dataclass(frozen=True)
class SharedList:
    """A list's points for one suite at one version, deduplicated once for every session.

    Packed (the points, their element ids, the deduplicated set: about 40 bytes an
    element, the set sharing the points' buffer unless the list repeats one); each
    session adds only its own key, shuffle and tags.
    """

    version: int
    kind: str
    points: ListPoints
    point_set: PointSet


class ListCache:
    """The responder's lists, loaded at most once per (list, suite, version)."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str], SharedList] = {}
        self._lock = threading.Lock()

    def get_blocking(self, node: NodeContext, name: str, suite: str) -> SharedList:
        """The list's current points (reads the store when its version changed)."""
        store = node.store()
        _, version, kind = store.list_row(name)
        with self._lock:  # one load per version; concurrent sessions wait for it
            shared = self._lists.get((name, suite))
            now = node.now().astimezone(dt.UTC).isoformat(timespec="seconds")
            if (
                shared is None
                or shared.version != version
                or (shared.points.changes_at is not None and now >= shared.points.changes_at)
            ):  # also when a record's validity window opened or closed since the load
                points = store.list_points(name, suite, now)
                shared = SharedList(version, kind, points, PointSet(points.points))
                self._lists[(name, suite)] = shared
            return shared


@dataclass
class Answering:
    """A serving node's shared state: its context, concurrency slots, lists and idle timeout."""

    node: NodeContext
    slots: SessionSlots
    lists: ListCache = field(default_factory=ListCache)

    @classmethod
    def of(cls, node: NodeContext) -> Answering:
        """Shared state for serving `node` with the limits in its node.toml."""
        return cls(node, SessionSlots(node.config.max_sessions))

    @property
    def idle_seconds(self) -> float:
        """How long a stream may go without a message before it is aborted."""
        return float(self.node.config.idle_seconds)

    @contextlib.contextmanager
    def admit(self, peer: str, mode: str, list_name: str) -> Iterator[PeerPolicy]:
        """Authorises a call and holds one of the peer's slots for it, or raises the refusal."""
        policy = authorize(self.node.config, peer, mode, list_name)
        with self.slots.hold(policy):
            yield policy

    async def refused(self, event: str, fields: Mapping[str, Any], exc: BaseException) -> None:
        """Audits a refusal (off the loop; done even if the call is cancelled meanwhile)."""
        entry = {"operator": f"peer:{fields.get('peer')}", **fields}
        await settled(submit(audit_refusal, self.node, event, entry, describe(exc)))
