"""The one place that writes sessions, hits, disclosures and their audit entries.

Every side of every session goes through `SessionRecord`: `start` records it
`running` (so abandoned sessions count against the rate), then exactly one of
`complete` (session, hits, the side's audit entry and a disclosure, in one
transaction, with one notification outbox row per new hit and configured
webhook) or `fail` (status `failed` and `session.failed` with a human
reason). Refusals before a session exists are `audit_refusal`. A disclosure
has one schema whichever side or mode: who, which peer, session, list,
direction (sent or received) and how many labels. A session's hits are a
`HitTable`: packed, its matched records read from the store a few thousand at a
time (`read_hits`, which also gives the labels we release, so that one read serves
both).

Every function here blocks on SQLite: call it off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

import numpy as np

from crypto.errors import CryptoError
from crypto.psi import Matches
from node.data import audit, outbox
from node.errors import NodeError
from node.sessions import observe
from node.sessions.labels import LABELS_PER_MESSAGE, ROWS_PER_READ, ElementRows
from node.setup.context import NodeContext

__all__ = [
    "SessionRecord",
    "append_audit",
    "append_disclosure",
    "audit_refusal",
    "describe",
    "hit_table",
    "HitTable",
    "read_hits",
]

log = logging.getLogger("blindmatch.sessions")
_REASON_CHARS = 300
BOUNDED_CACHE_HITS = 10_000
"""A session with more hits than this records them with a bounded page cache."""
_COMPLETED_EVENT = {"initiator": "session.initiated", "responder": "session.answered"}


def describe(exc: BaseException) -> str:
    """A one-line reason a person can read, for the audit log and the node's log."""
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, NodeError | CryptoError):
        text = " ".join(str(exc).split())
    else:
        text = f"unexpected error ({type(exc).__name__}); see the node's log"
    return (text or type(exc).__name__)[:_REASON_CHARS]


def append_audit(
    conn: sqlite3.Connection, node: NodeContext, event: str, fields: Mapping[str, Any]
) -> None:
    """Appends one audit entry inside the caller's transaction."""
    audit.append(conn, node.audit_key, event, dict(fields))


def append_disclosure(
    conn: sqlite3.Connection,
    node: NodeContext,
    fields: Mapping[str, Any],
    direction: str,
    labels: int,
) -> None:
    """Audits labels sent to or received from a peer (nothing when there are none)."""
    if labels:
        keep = ("operator", "peer", "session_id", "list", "epoch")
        entry = {k: fields[k] for k in keep if k in fields}
        append_audit(conn, node, "disclosure", {**entry, "direction": direction, "labels": labels})


def audit_refusal(node: NodeContext, event: str, fields: Mapping[str, Any], reason: str) -> None:
    """Audits a refused request (`session.refused` or `screen.refused`) with its reason."""
    store = node.store()
    with store.transaction() as conn:
        append_audit(conn, node, event, {**fields, "reason": reason})


class PeerLabels(Protocol):
    """Where a peer's released labels are found by index (`LabelBook`)."""

    def get_many(self, indices: Sequence[int]) -> list[str | None]: ...


class HitTable(Sequence[dict[str, Any]]):
    """A session's hits, packed: each one's ref and type, and the peer's index for its label.

    A row is a dict {"ref", "type", "peer_label"} made when it is read, its label
    from `peer_labels.get_many` (a step of rows at a time when iterated or sliced);
    the table itself holds no object per hit.
    """

    def __init__(self, peer_labels: PeerLabels) -> None:
        self._refs = bytearray()  # UTF-8, one after another
        self._ref_ends = array("q")
        self._types: list[str] = []  # the few types seen; a hit holds its position here
        self._type_codes = array("H")
        self._indices = array("q")
        self._peer_labels = peer_labels

    def append(self, ref: str, type_: str, index: int) -> None:
        """Adds a hit: our record's ref, the element's type, the peer's index of the element."""
        self._refs += ref.encode()
        self._ref_ends.append(len(self._refs))
        try:
            code = self._types.index(type_)
        except ValueError:
            code = len(self._types)
            self._types.append(type_)
        self._type_codes.append(code)
        self._indices.append(index)

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return self._rows(range(*i.indices(len(self))))
        if not -len(self) <= i < len(self):
            raise IndexError("hit index out of range")
        return self._rows(range(i % len(self), i % len(self) + 1))[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self), ROWS_PER_READ):  # labels looked up a step at a time
            yield from self._rows(range(start, min(start + ROWS_PER_READ, len(self))))

    def _rows(self, positions: range) -> list[dict[str, Any]]:
        labels = self._peer_labels.get_many([self._indices[i] for i in positions])
        rows = []
        for i, label in zip(positions, labels, strict=True):
            start = self._ref_ends[i - 1] if i else 0
            ref = self._refs[start : self._ref_ends[i]].decode()
            rows.append({"ref": ref, "type": self._types[self._type_codes[i]], "peer_label": label})
        return rows


def hit_table(
    matches: Matches, element_ids: np.ndarray, rows: ElementRows, peer_labels: PeerLabels
) -> HitTable:
    """The hits of matched (position, peer index) pairs, in position order (blocking)."""
    table = HitTable(peer_labels)
    for _ in read_hits(matches, element_ids, rows, table):
        pass
    return table


def read_hits(
    matches: Matches, element_ids: np.ndarray, rows: ElementRows, hits: HitTable
) -> Iterator[tuple[list[int], list[str]]]:
    """Adds the hits of matched (position, peer index) pairs to `hits`, in position order,
    and yields on the way the labels of those matched records that have one: labels messages
    (indices, labels) of at most LABELS_PER_MESSAGE each, for a session that releases them.

    Blocking: `rows` reads our records from the store, a few thousand at a time. A
    record removed since the session read its list is left out.
    """
    indices: list[int] = []
    labels: list[str] = []
    for start in range(0, len(matches), ROWS_PER_READ):
        stop = start + ROWS_PER_READ
        records = rows(element_ids[matches.positions[start:stop]].tolist())
        for j, record in zip(matches.indices[start:stop].tolist(), records, strict=True):
            if record is None:
                continue
            hits.append(record[0], record[1], j)
            if record[2]:
                indices.append(j)
                labels.append(record[2])
                if len(indices) == LABELS_PER_MESSAGE:
                    yield indices, labels
                    indices, labels = [], []
    if indices:
        yield indices, labels


@dataclass
class SessionRecord:
    """One session as this node records it, from start to completion or failure."""

    node: NodeContext
    session_id: str
    peer: str
    role: str
    mode: str
    suite: str
    list: str
    peer_list: str | None
    purpose: str
    operator: str
    closed: bool = False
    begun: float = field(default_factory=time.monotonic, repr=False)
    """When this object was made (monotonic seconds), for the session's duration metric."""

    def fields(self, **extra: object) -> dict[str, object]:
        """The audit fields every entry of this session carries, plus `extra`."""
        return {
            "operator": self.operator,
            "peer": self.peer,
            "session_id": self.session_id,
            "purpose": self.purpose,
            "list": self.list,
            "peer_list": self.peer_list,
            "mode": self.mode,
            "suite": self.suite,
            **extra,
        }

    def start(self, local_count: int, peer_count: int | None = None) -> None:
        """Records the session as running."""
        store = self.node.store()
        with store.transaction():
            store.record_session(
                self.session_id,
                self.peer,
                self.role,
                self.mode,
                self.suite,
                self.list,
                self.purpose,
                peer_list=self.peer_list,
                local_count=local_count,
                peer_count=peer_count,
                started_at=self.node.now().isoformat(timespec="seconds"),
            )

    def complete(
        self,
        match_count: int,
        peer_count: int | None,
        hits: Sequence[Mapping[str, Any]],
        labels_sent: int = 0,
        labels_received: int = 0,
        event: str | None = None,
        **audit_extra: object,
    ) -> None:
        """Records the completed session, its hits, audit entry and disclosures at once.

        Hits seen before are updated, not added (`Store.add_hits`); the entry
        counts the hits this session found and how many of them are new. Each new hit
        is queued for every webhook configured now (`node.data.outbox`), in the same
        transaction, so that it is notified if and only if it is recorded.
        """
        store = self.node.store()
        now = self.node.now()  # the node's clock, so that tests can pin first and last seen
        fields = self.fields(peer_set_size=peer_count, match_count=match_count, hits=len(hits))
        # A large session's hits: their pages, and sorting them, stay out of memory. Not for a
        # few hits (a screening query): its 4 PRAGMAs and 2 reads would cost more than they save.
        bounded = store.bounded_cache() if len(hits) > BOUNDED_CACHE_HITS else nullcontext()
        with bounded, store.transaction() as conn:
            store.finish_session(
                self.session_id,
                "completed",
                match_count,
                peer_count=peer_count,
                finished_at=now.isoformat(timespec="seconds"),
            )
            new_hits = store.add_hits(
                self.session_id, self.peer, self.role, self.list, self.mode, hits, seen_at=now
            )
            urls = [webhook.url for webhook in self.node.config.webhooks]
            outbox.enqueue(conn, new_hits, urls, now)
            append_audit(
                conn,
                self.node,
                event or _COMPLETED_EVENT[self.role],
                fields | audit_extra | {"new_hits": len(new_hits)},
            )
            append_disclosure(conn, self.node, fields, "sent", labels_sent)
            append_disclosure(conn, self.node, fields, "received", labels_received)
        self.closed = True  # a failure after this (the summary not delivered) changes nothing
        self._observe("completed")
        log.info(
            "%s %s session %s with %s on %s completed: %s",
            self.role,
            self.mode,
            self.session_id,
            self.peer,
            self.list,
            # A count session's responder never learns the count.
            "count kept by the initiator"
            if self.mode == "count" and self.role == "responder"
            else f"{match_count} shared",
        )

    def fail(self, reason: str, labels_sent: int = 0) -> None:
        """Records the session as failed, with a human reason (once; not after `complete`)."""
        if self.closed:
            return
        self.closed = True
        store = self.node.store()
        fields = self.fields(reason=reason)
        with store.transaction() as conn:
            store.finish_session(
                self.session_id, "failed", finished_at=self.node.now().isoformat(timespec="seconds")
            )
            append_audit(conn, self.node, "session.failed", fields)
            append_disclosure(conn, self.node, fields, "sent", labels_sent)
        self._observe("failed")
        log.info(
            "%s %s session %s with %s failed: %s",
            self.role,
            self.mode,
            self.session_id,
            self.peer,
            reason,
        )

    def _observe(self, outcome: str) -> None:
        observe.session_ended(
            self.role, self.mode, self.peer, outcome, time.monotonic() - self.begun
        )
