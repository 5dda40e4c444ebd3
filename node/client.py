"""`blindmatch match`: run a mutual or count session as initiator against a peer.

Blinding, streaming and the peer's work overlap: gRPC pulls x_a from
`Conversation.requests()` on its own thread while this thread reads y_b and
tag(x_ab) as they arrive, both feeding the same process pool. The reveal and
the labels wait (on events) only for what they need. Hits are stored after the
responder's summary, in one transaction; a session that fails stores none.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from crypto.errors import CryptoError
from crypto.groups import get_suite
from crypto.psi import Initiator, Mode
from node import audit
from node.config import NodeConfig
from node.context import NodeContext
from node.errors import NotFound, PeerError
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.labels import LabelBook
from node.policy import PROTOCOL_VERSION, check_purpose
from node.server import LABELS_PER_MESSAGE, MODE_TO_WIRE
from node.status import error_from_rpc
from node.store import ListPoints

__all__ = ["Conversation", "MatchResult", "new_hello", "open_channel", "run_match"]

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass
class MatchResult:
    """The outcome of one session, as `match --json` prints it (DESIGN §6)."""

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


def open_channel(config: NodeConfig, peer: str, address: str) -> grpc.Channel:
    """Opens an mTLS channel to `peer`, whose certificate must name that agency."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_cert.read_bytes(),
        private_key=config.tls_key.read_bytes(),
        certificate_chain=config.tls_cert.read_bytes(),
    )
    # The responder's certificate carries its agency id as a DNS name: checking
    # it against the peer we mean stops another federation member answering.
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer)]
    return grpc.secure_channel(address, credentials, options=options)


def run_match(
    node: NodeContext,
    peer: str,
    list_name: str,
    peer_list: str,
    mode: str,
    purpose: str,
    operator: str,
    timeout: float = 600.0,
    progress: bool = False,
) -> MatchResult:
    """Runs one session with `peer` and records it; raises PeerError if it fails."""
    policy = node.config.peers.get(peer)
    if policy is None:
        raise NotFound(
            f"no peer {peer!r} in {node.config.config_path}; add it with "
            f"'blindmatch peer add NODE_DIR --agency {peer} --address HOST:PORT'"
        )
    check_purpose(purpose)
    suite = node.config.suite
    store = node.open_store()
    try:
        points = store.list_points(list_name, suite)
        party = Initiator.with_new_key(
            get_suite(suite), points.packed, Mode(mode), runner=node.runner
        )
        talk = Conversation(party, points, policy.release_labels, progress)
        hello = new_hello(party, list_name, peer_list, purpose)
        session_id = hello.session_id
        fields: dict[str, object] = {
            "operator": operator,
            "peer": peer,
            "session_id": session_id,
            "purpose": purpose,
            "list": list_name,
            "peer_list": peer_list,
            "mode": mode,
            "suite": suite,
            "set_size": party.size,
        }
        with store.transaction():
            store.record_session(
                session_id,
                peer,
                "initiator",
                mode,
                suite,
                list_name,
                purpose,
                peer_list=peer_list,
                local_count=party.size,
            )
        channel = open_channel(node.config, peer, policy.address)
        try:
            talk.run(channel, hello, timeout)
        except grpc.RpcError as exc:
            _record_failure(node, store, session_id, fields, talk, type(exc).__name__)
            raise error_from_rpc(exc, peer) from None
        except (CryptoError, PeerError) as exc:
            _record_failure(node, store, session_id, fields, talk, type(exc).__name__)
            raise PeerError(f"session with {peer} failed: {exc}") from None
        finally:
            channel.close()
        return _record_success(node, store, session_id, peer, fields, talk)
    finally:
        store.close()


def new_hello(party: Initiator, list_name: str, peer_list: str, purpose: str) -> pb.Hello:
    """The hello that opens a session of `party` (our `list_name`) against `peer_list`."""
    return pb.Hello(
        protocol_version=PROTOCOL_VERSION,
        session_id=secrets.token_hex(16),
        suite=party.group.name,
        mode=MODE_TO_WIRE[party.mode],
        list=peer_list,
        purpose=purpose,
        set_size=party.size,
        initiator_list=list_name,
    )


class Conversation:
    """Both directions of one session's stream, meeting through two events.

    `run` needs only a channel: the store stays with the caller (`run_match`
    records the session; the load tests keep none).
    """

    def __init__(
        self, party: Initiator, points: ListPoints, release_labels: bool, progress: bool
    ) -> None:
        self.party = party
        self.points = points
        self.release_labels = release_labels
        self.peer_labels = LabelBook()
        self.labels_sent = 0
        self.summary: pb.Summary | None = None
        self._all_blinded = threading.Event()  # every y_b read: the reveal can go
        self._all_matched = threading.Event()  # matches known: the labels can go
        self._stopped = threading.Event()
        self._progress = _Progress(party) if progress else None

    def run(self, channel: grpc.Channel, hello: pb.Hello, timeout: float) -> None:
        """Runs the session on `channel` until the summary; on failure, stops `requests` too."""
        responses = pb_grpc.MatchingStub(channel).Session(self.requests(hello), timeout=timeout)
        try:
            self.read_all(responses)
        except BaseException:
            self.stop()
            raise

    def requests(self, hello: pb.Hello) -> Iterator[pb.InitiatorMessage]:
        """The initiator's side of the stream (pulled by gRPC on its own thread)."""
        yield pb.InitiatorMessage(hello=hello)
        for chunk in self.party.blinded_chunks():
            if self._stopped.is_set():
                return
            yield pb.InitiatorMessage(blinded=pb.Elements(packed=chunk))
            if self._progress:
                self._progress.sent(len(chunk) // 32)
        if self.party.mode is not Mode.MUTUAL:
            return
        if not self._wait(self._all_blinded):
            return
        for chunk in self.party.reveal_chunks():
            yield pb.InitiatorMessage(reveal=pb.Tags(packed=chunk))
        if not self._wait(self._all_matched) or not self.release_labels:
            return
        indices, labels = LabelBook.of_matches(self.party.matches(), self.points.labels)
        for start in range(0, len(indices), LABELS_PER_MESSAGE):
            end = start + LABELS_PER_MESSAGE
            self.labels_sent += len(indices[start:end])
            yield pb.InitiatorMessage(
                labels=pb.Labels(index=indices[start:end], label=labels[start:end])
            )

    def read_all(self, responses: Iterator[pb.ResponderMessage]) -> None:
        """Reads the responder's side of the stream until its summary."""
        party = self.party
        for message in responses:
            kind = message.WhichOneof("body")
            if kind == "hello_reply":
                party.read_hello_reply(message.hello_reply.set_size)
            elif kind == "blinded":
                party.read_blinded(message.blinded.packed)
                if self._progress:
                    self._progress.received(len(message.blinded.packed) // 32)
            elif kind == "evaluated":
                party.read_evaluated(message.evaluated.packed)
            elif kind == "labels":
                self.peer_labels.add(
                    list(message.labels.index), list(message.labels.label), party.peer_size or 0
                )
            elif kind == "summary":
                self.summary = message.summary
            if party.has_all_blinded:
                if not self._all_blinded.is_set():
                    party.collect_blinded()  # a bad y_b fails here, on this thread
                self._all_blinded.set()
                if party.has_all_evaluated:
                    self._all_matched.set()
        if self._progress:
            self._progress.done()
        if self.summary is None:
            raise PeerError("the responder ended the session without a summary")

    def stop(self) -> None:
        """Makes `requests` return at its next step (the call failed)."""
        self._stopped.set()
        self._all_blinded.set()
        self._all_matched.set()

    def _wait(self, event: threading.Event) -> bool:
        event.wait()
        return not self._stopped.is_set()


class _Progress:
    """A one-line progress report on a terminal's stderr."""

    def __init__(self, party: Initiator) -> None:
        self.party = party
        self._sent = 0
        self._received = 0

    def sent(self, count: int) -> None:
        self._sent += count
        self._show()

    def received(self, count: int) -> None:
        self._received += count
        self._show()

    def _show(self) -> None:
        sys.stderr.write(
            f"\rsent {self._sent:,}/{self.party.size:,}  "
            f"received {self._received:,}/{self.party.peer_size or 0:,}"
        )
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


def _record_success(
    node: NodeContext,
    store: Any,
    session_id: str,
    peer: str,
    fields: dict[str, object],
    talk: Conversation,
) -> MatchResult:
    party = talk.party
    points = talk.points
    matches = party.matches() if party.mode is Mode.MUTUAL else []
    hits = [
        {"ref": points.refs[pos], "type": points.types[pos], "peer_label": talk.peer_labels.get(j)}
        for pos, j in matches
    ]
    match_count = party.match_count()
    with store.transaction() as conn:
        store.finish_session(session_id, "completed", match_count, peer_count=party.peer_size)
        store.add_hits(session_id, peer, "initiator", hits)
        audit.append(
            conn,
            node.audit_key,
            "session.initiated",
            {
                **fields,
                "peer_set_size": party.peer_size,
                "match_count": match_count,
                "hits": len(hits),
            },
        )
        _audit_disclosure(node, conn, fields, talk)
    return MatchResult(
        session_id=session_id,
        peer=peer,
        mode=str(party.mode),
        suite=party.group.name,
        local_count=party.size,
        peer_count=party.peer_size or 0,
        match_count=match_count,
        matches=hits,
    )


def _record_failure(
    node: NodeContext,
    store: Any,
    session_id: str,
    fields: dict[str, object],
    talk: Conversation,
    reason: str,
) -> None:
    with store.transaction() as conn:
        store.finish_session(session_id, "failed")
        audit.append(conn, node.audit_key, "session.failed", {**fields, "reason": reason})
        _audit_disclosure(node, conn, fields, talk)


def _audit_disclosure(
    node: NodeContext, conn: Any, fields: dict[str, object], talk: Conversation
) -> None:
    if talk.labels_sent:
        audit.append(
            conn,
            node.audit_key,
            "disclosure",
            {
                "operator": fields["operator"],
                "peer": fields["peer"],
                "session_id": fields["session_id"],
                "list": fields["list"],
                "labels": talk.labels_sent,
            },
        )
