"""A synchronous initiator for the load generator: it asks, checks the answers, records nothing.

The node's own initiator (`node.rpc.client.match`) runs on asyncio and records
every session in the store; locust runs its users on gevent, over blocking
gRPC calls. This module is the thin part in between: the pure crypto parties
(`crypto.psi.Initiator`, `crypto.screening`), the node's request types
(`node.policy`) and wire mapping (`node.rpc.wire`), over a sync mTLS channel.
Every call has a deadline; a refusal or a failed call raises the node's
`PeerError` (`StaleEpoch` for a rotated screening epoch) through
`node.rpc.status.error_from_rpc`. Nothing here blocks gevent except the crypto,
which runs in-process.

    open_channel   an mTLS channel to the target, as a given node
    session        a mutual or count session; returns the match count
    fetch          the target's encoded list, held in memory
    query          a screening query against it; returns the number of elements hit
    stall          a session that says hello and then nothing: "refused" or "aborted"
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from crypto import screening
from crypto.groups import get_suite
from crypto.oprf import ELEMENT_SIZE, SCALAR_SIZE
from crypto.psi import Initiator, Mode
from node.errors import PeerError
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.policy import PROTOCOL_VERSION, FetchRequest, ScreenQuery, SessionRequest
from node.rpc.status import error_from_rpc
from node.rpc.wire import decode_responder, encode_fetch, encode_initiator, encode_screen
from node.sessions.messages import Blinded, Evaluated, Hello, HelloReply, Message, Reveal, Summary
from node.sessions.screen_initiator import OwnList
from node.setup.config import NodeConfig

__all__ = ["EncodedList", "Target", "fetch", "open_channel", "query", "session", "stall"]


@dataclass(frozen=True)
class Target:
    """Whom the generator asks, with which lists, why, and how long a call may take."""

    peer: str
    list: str  # the generator's own list, named in the hello
    peer_list: str
    purpose: str
    timeout: float


@dataclass(frozen=True)
class EncodedList:
    """A fetched encoded list: its epoch and key, and the sealed labels by tag."""

    epoch: int
    list_version: int
    public_key: bytes
    sealed: dict[bytes, list[bytes]]
    entries: int


def open_channel(config: NodeConfig, peer: str, address: str) -> grpc.Channel:
    """A sync mTLS channel to `peer` at `address`, with `config`'s certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_cert.read_bytes(),
        private_key=config.tls_key.read_bytes(),
        certificate_chain=config.tls_cert.read_bytes(),
    )
    return grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", peer)]
    )


def _hello(target: Target, suite: str, mode: str, set_size: int) -> Hello:
    return Hello(
        SessionRequest(
            PROTOCOL_VERSION,
            secrets.token_hex(16),
            suite,
            mode,
            target.peer_list,
            target.purpose,
            set_size,
            target.list,
        )  # fmt: skip
    )


def session(channel: grpc.Channel, target: Target, suite: str, points: bytes, mode: str) -> int:
    """Runs one mutual or count session of the packed `points`; returns the match count."""
    party = Initiator.with_new_key(get_suite(suite), points, Mode(mode))
    hello = _hello(target, suite, mode, party.size)
    later: queue.Queue[Message | None] = queue.Queue()  # the reveal, once every y_b is in
    if party.mode is Mode.COUNT:
        later.put(None)

    def requests() -> Iterator[pb.InitiatorMessage]:
        yield encode_initiator(hello)
        for chunk in party.blinded_chunks():
            yield encode_initiator(Blinded(chunk))
        while (message := later.get()) is not None:
            yield encode_initiator(message)

    call = pb_grpc.MatchingStub(channel).Session(requests(), timeout=target.timeout)
    summary: Summary | None = None
    revealed = party.mode is Mode.COUNT
    try:
        for reply in call:
            message = decode_responder(reply, target.peer)
            if isinstance(message, HelloReply):
                party.read_hello_reply(message.set_size)
            elif isinstance(message, Blinded):
                party.read_blinded(message.packed)
            elif isinstance(message, Evaluated):
                party.read_evaluated(message.packed)
            elif isinstance(message, Summary):
                summary = message
            # Labels: the generator keeps none.
            if not revealed and party.has_all_blinded:
                for chunk in party.reveal_chunks():
                    later.put(Reveal(chunk))
                later.put(None)
                revealed = True
    except grpc.RpcError as exc:
        raise error_from_rpc(exc, target.peer) from None
    finally:
        later.put(None)  # ends the request stream if the call ended first
        call.cancel()
    if summary is None:
        raise PeerError(f"peer {target.peer} ended the session without a summary")
    return party.match_count()


def fetch(channel: grpc.Channel, target: Target) -> EncodedList:
    """Downloads the target's encoded list `target.peer_list`."""
    request = FetchRequest(PROTOCOL_VERSION, target.peer_list, target.purpose)
    stub = pb_grpc.MatchingStub(channel)
    first: pb.EncodedListChunk | None = None
    sealed: dict[bytes, list[bytes]] = {}
    entries = 0
    try:
        for chunk in stub.FetchEncodedList(encode_fetch(request), timeout=target.timeout):
            first = first or chunk
            count = len(chunk.tags) // screening.TAG_SIZE
            labels = list(chunk.sealed_labels) or [b""] * count
            if len(chunk.tags) % screening.TAG_SIZE or len(labels) != count:
                raise PeerError(f"peer {target.peer} sent a malformed encoded-list chunk")
            for i, label in enumerate(labels):
                tag = chunk.tags[i * screening.TAG_SIZE : (i + 1) * screening.TAG_SIZE]
                sealed.setdefault(tag, []).append(label)
            entries += count
    except grpc.RpcError as exc:
        raise error_from_rpc(exc, target.peer) from None
    if first is None or entries != first.total:
        raise PeerError(f"peer {target.peer} sent {entries:,} encoded entries, not as announced")
    return EncodedList(first.epoch, first.list_version, first.public_key, sealed, entries)


def query(channel: grpc.Channel, target: Target, encoded: EncodedList, own: OwnList) -> int:
    """Screens `own` against `encoded`, proofs checked and hits' labels opened; returns the
    number of elements hit. Raises StaleEpoch if the target's epoch or list moved on."""
    blinds, blinded = screening.blind(own.points)
    session_id = secrets.token_hex(16)
    stub = pb_grpc.MatchingStub(channel)
    hits = 0
    for a in range(0, len(own.elements), screening.MAX_BATCH):
        b = min(a + screening.MAX_BATCH, len(own.elements))
        batch = blinded[a * ELEMENT_SIZE : b * ELEMENT_SIZE]
        request = ScreenQuery(
            PROTOCOL_VERSION, session_id, target.peer_list, encoded.epoch, encoded.list_version,
            target.purpose, batch,
        )  # fmt: skip
        try:
            response = stub.Screen(encode_screen(request), timeout=target.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, target.peer) from None
        outputs = screening.verify_and_finalize(
            encoded.public_key,
            own.elements[a:b],
            blinds[a * SCALAR_SIZE : b * SCALAR_SIZE],
            batch,
            response.evaluated,
            response.proof,
        )
        for output in outputs:
            sealed = encoded.sealed.get(screening.tag_of(output))
            if sealed is not None:
                hits += 1
                for label in filter(None, sealed):
                    screening.open_label(output, label)
    return hits


def stall(channel: grpc.Channel, target: Target, suite: str, set_size: int) -> str:
    """Opens a session with a valid hello, then sends nothing until the target ends it.

    Returns "refused" (RESOURCE_EXHAUSTED: over the peer's concurrent sessions) or
    "aborted" (ABORTED: admitted, then idle for the target's idle_seconds); raises
    PeerError for any other status, an answer beyond the hello reply, or the deadline.
    """
    ended = threading.Event()

    def requests() -> Iterator[pb.InitiatorMessage]:
        yield encode_initiator(_hello(target, suite, "mutual", set_size))
        ended.wait()

    call = pb_grpc.MatchingStub(channel).Session(requests(), timeout=target.timeout)
    try:
        for reply in call:
            message = decode_responder(reply, target.peer)
            if not isinstance(message, HelloReply):
                raise PeerError(
                    f"peer {target.peer} answered a stalled session with {type(message).__name__}"
                )
    except grpc.RpcError as exc:
        code = exc.code()
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return "refused"
        if code is grpc.StatusCode.ABORTED:
            return "aborted"
        raise error_from_rpc(exc, target.peer) from None
    finally:
        ended.set()
        call.cancel()
    raise PeerError(f"peer {target.peer} ended a stalled session as if it had finished")
