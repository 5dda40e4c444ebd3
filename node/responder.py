"""One PSI session this node answers: policy, the crypto responder, hits and audit.

The gRPC servicer (`node.server`) only translates messages; this class decides
whether to answer, owns the `crypto.psi.Responder`, and records the outcome.
Nothing is stored until the session completes: a session that fails midway
leaves one `session.refused` or `session.failed` audit entry and no hits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from crypto.groups import get_suite
from crypto.psi import Mode, Responder
from node import audit
from node.context import NodeContext
from node.labels import LabelBook
from node.policy import SessionRequest, authorize_session
from node.store import ListPoints, Store

__all__ = ["AnsweredSession"]

log = logging.getLogger("blindmatch.session")


class AnsweredSession:
    """A session answered for `peer`, from its hello to its summary."""

    def __init__(self, node: NodeContext, store: Store, peer: str, request: SessionRequest) -> None:
        self.node = node
        self.store = store
        self.peer = peer
        self.request = request
        now = node.now()
        try:
            self.policy = authorize_session(node.config, store, peer, request, now)
            self.list = store.list_info(request.list)
            self.points: ListPoints = store.list_points(request.list, request.suite)
        except Exception as exc:
            log.info("refused %s from %s: %s", request.mode, peer, exc)
            self._audit_end("session.refused", reason=type(exc).__name__)
            raise
        self.party = Responder.with_new_key(
            get_suite(request.suite),
            self.points.packed,
            Mode(request.mode),
            runner=node.runner,
        )
        self.party.read_hello(request.set_size)
        self._peer_labels = LabelBook()
        # Recorded at once, so refused-later and abandoned sessions count against the rate.
        with store.transaction():
            store.record_session(
                request.session_id,
                peer,
                "responder",
                request.mode,
                request.suite,
                request.list,
                request.purpose,
                peer_list=request.initiator_list,
                local_count=self.party.size,
                peer_count=request.set_size,
                started_at=now.isoformat(timespec="seconds"),
            )

    @property
    def size(self) -> int:
        """Distinct elements this node will send (the hello reply)."""
        return self.party.size

    def blinded_chunks(self) -> Iterator[bytes]:
        """y_b for the initiator."""
        return self.party.blinded_chunks()

    def evaluate(self, chunk: bytes) -> bytes:
        """tag(x_ab) for a chunk of x_a (empty in count mode until the end)."""
        return self.party.evaluate(chunk)

    def evaluated_rest(self) -> bytes:
        """The tags held back until every x_a arrived (count mode)."""
        return self.party.evaluated_rest()

    def read_reveal(self, chunk: bytes) -> None:
        """Reads tag(y_ba) in our order (mutual mode)."""
        self.party.read_reveal(chunk)

    def read_labels(self, indices: list[int], labels: list[str]) -> None:
        """Reads the initiator's released labels, keyed by our sent index."""
        self._peer_labels.add(indices, labels, limit=self.party.size)

    def released_labels(self) -> tuple[list[int], list[str]]:
        """Our labels for the matched records, if our policy releases them to this peer."""
        if not self.policy.release_labels:
            return [], []
        return LabelBook.of_matches(self.party.matches(), self.points.labels)

    def finish(self) -> int:
        """Records the session, its hits and disclosures in one transaction; returns the count."""
        mutual = self.party.mode is Mode.MUTUAL
        matches = self.party.matches() if mutual else []
        hits = [
            {
                "ref": self.points.refs[pos],
                "type": self.points.types[pos],
                "peer_label": self._peer_labels.get(j),
            }
            for pos, j in matches
        ]
        match_count = len({j for _, j in matches})
        released = 0
        if self.policy.release_labels:  # what released_labels() sent, without a second match
            released = len(LabelBook.of_matches(matches, self.points.labels)[0])
        with self.store.transaction() as conn:
            self.store.finish_session(self.request.session_id, "completed", match_count)
            self.store.add_hits(self.request.session_id, self.peer, "responder", hits)
            fields = self._fields(match_count=match_count, hits=len(hits))
            audit.append(conn, self.node.audit_key, "session.answered", fields)
            if released:
                audit.append(
                    conn,
                    self.node.audit_key,
                    "disclosure",
                    {
                        "peer": self.peer,
                        "session_id": self.request.session_id,
                        "list": self.request.list,
                        "labels": released,
                    },
                )
        log.info(
            "answered %s session %s from %s on %s: %d x %d elements, %d shared",
            self.request.mode,
            self.request.session_id,
            self.peer,
            self.request.list,
            self.request.set_size,
            self.party.size,
            match_count,
        )
        return match_count

    def fail(self, exc: BaseException) -> None:
        """Records a session that ended without completing (peer gone, bad message)."""
        log.info("session %s from %s failed: %s", self.request.session_id, self.peer, exc)
        with self.store.transaction():
            self.store.finish_session(self.request.session_id, "failed")
        self._audit_end("session.failed", reason=type(exc).__name__)

    def _fields(self, **extra: object) -> dict[str, object]:
        request = self.request
        return {
            "operator": f"peer:{self.peer}",
            "peer": self.peer,
            "session_id": request.session_id,
            "purpose": request.purpose,
            "list": request.list,
            "mode": request.mode,
            "suite": request.suite,
            "peer_set_size": request.set_size,
            **extra,
        }

    def _audit_end(self, event: str, reason: str) -> None:
        with self.store.transaction() as conn:
            audit.append(conn, self.node.audit_key, event, self._fields(reason=reason))
