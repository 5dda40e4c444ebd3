"""Screening, initiator side: fetching and caching a peer's encoded set, running queries.

`run_screen` downloads a peer's encoded set once per (epoch, list version) into
`screen_cache`, looks up only the tags of its own queries there (SQL, by index),
blinds the cached VOPRF-mode points of its list, sends batches of <= 4,096 (two in
flight), verifies each batch's proof under the fetched public key, opens the labels
of hits, and records the session, hits and "screen.query" (plus "disclosure") in one
transaction. A query against a rotated epoch is refused with FAILED_PRECONDITION
(`StaleEpoch`); the initiator fetches again once and retries. `screen_query` is the
query alone, on any `Transport` and `EncodedSet`, without the store: `run_screen` gives
it the cached set, the load tests one from `fetch_encoded_set` (in memory).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from crypto import screening
from crypto.batch import BatchRunner
from crypto.errors import CryptoError
from node import audit
from node.context import NodeContext
from node.errors import (
    NodeError,
    NotFound,
    PeerError,
    StaleEpoch,
)
from node.policy import PROTOCOL_VERSION, check_purpose
from node.screening._responder import (
    SUITE,
    EncodedList,
    FetchRequest,
    ScreenQuery,
    answer_fetch,
    answer_screen,
    list_row,
)
from node.store import Store, utc_now

__all__ = [
    "EncodedSet",
    "GrpcTransport",
    "LocalTransport",
    "OwnList",
    "fetch_encoded_set",
    "own_list",
    "run_screen",
    "screen_query",
]

_IN_FLIGHT = 2  # Screen batches outstanding at once
_LOOKUP_PARAMS = 500  # tags per `IN (...)` lookup


# -- initiator ----------------------------------------------------------------------------------


class Transport(Protocol):
    """How an initiator reaches a responder's screening service (gRPC, or in-process)."""

    def fetch(self, request: FetchRequest) -> EncodedList:
        """Fetches the encoded list; raises PeerError (or StaleEpoch) on refusal."""
        ...

    def screen(self, query: ScreenQuery) -> Callable[[], tuple[bytes, bytes]]:
        """Starts one batch; the returned callable waits for (packed Es, proof)."""
        ...


@dataclass(frozen=True)
class EncodedSet:
    """A peer's fetched encoded list as the initiator holds it: the epoch header and a lookup."""

    epoch: int
    list_version: int
    public_key: bytes
    entries: int
    lookup: Callable[[Sequence[bytes]], dict[bytes, list[bytes]]]


def _checked_chunks(peer: str, encoded: EncodedList) -> Iterator[tuple[bytes, list[bytes]]]:
    """The chunks of a fetched encoded list, each checked; raises PeerError on a malformed one."""
    if len(encoded.public_key) != 32:
        raise PeerError(f"peer {peer} sent an encoded list without a valid public key")
    entries = 0
    for tags, sealed in encoded.chunks:
        count = len(tags) // 16
        if len(tags) % 16 or (sealed and len(sealed) != count):
            raise PeerError(f"peer {peer} sent a malformed encoded-list chunk")
        entries += count
        yield tags, sealed
    if entries != encoded.total:
        raise PeerError(
            f"peer {peer} announced {encoded.total:,} encoded entries but sent {entries:,}"
        )


def fetch_encoded_set(transport: Transport, peer: str, list_name: str, purpose: str) -> EncodedSet:
    """Fetches a peer's encoded list into memory (the load tests); `run_screen` uses the store."""
    encoded = transport.fetch(FetchRequest(PROTOCOL_VERSION, list_name, purpose))
    found: dict[bytes, list[bytes]] = {}
    entries = 0
    for tags, sealed in _checked_chunks(peer, encoded):
        for i in range(len(tags) // 16):
            found.setdefault(tags[i * 16 : i * 16 + 16], []).append(sealed[i] if sealed else b"")
            entries += 1

    def lookup(wanted: Sequence[bytes]) -> dict[bytes, list[bytes]]:
        return {tag: found[tag] for tag in wanted if tag in found}

    return EncodedSet(encoded.epoch, encoded.list_version, encoded.public_key, entries, lookup)


def _cached(store: Store, peer: str, list_name: str) -> EncodedSet | None:
    row = store.conn.execute(
        "SELECT id, epoch, list_version, public_key, entries FROM screen_cache "
        "WHERE peer = ? AND list = ? ORDER BY epoch DESC, id DESC LIMIT 1",
        (peer, list_name),
    ).fetchone()
    return None if row is None else _in_store(store, *row)


def _in_store(
    store: Store, cache_id: int, epoch: int, list_version: int, public_key: bytes, entries: int
) -> EncodedSet:
    return EncodedSet(
        epoch, list_version, public_key, entries, functools.partial(_lookup, store, cache_id)
    )


def _fetch_into_cache(
    store: Store, transport: Transport, peer: str, list_name: str, purpose: str
) -> EncodedSet:
    encoded = transport.fetch(FetchRequest(PROTOCOL_VERSION, list_name, purpose))
    with store.transaction() as conn:
        conn.execute("DELETE FROM screen_cache WHERE peer = ? AND list = ?", (peer, list_name))
        cursor = conn.execute(
            "INSERT INTO screen_cache (peer, list, epoch, list_version, public_key, list_kind, "
            "entries, labels_withheld, fetched_at) VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?)",
            (
                peer,
                list_name,
                encoded.epoch,
                encoded.list_version,
                encoded.public_key,
                encoded.list_kind,
                utc_now(),
            ),
        )
        cache_id = int(cursor.lastrowid or 0)
        entries = 0
        labelled = False
        for tags, sealed in _checked_chunks(peer, encoded):
            count = len(tags) // 16
            labelled = labelled or bool(sealed)
            conn.executemany(
                "INSERT INTO screen_cache_entries (cache_id, tag, sealed_label) VALUES (?, ?, ?)",
                (
                    (cache_id, tags[i * 16 : i * 16 + 16], sealed[i] if sealed else b"")
                    for i in range(count)
                ),
            )
            entries += count
        conn.execute(
            "UPDATE screen_cache SET entries = ?, labels_withheld = ? WHERE id = ?",
            (entries, int(not labelled), cache_id),
        )
    return _in_store(
        store, cache_id, encoded.epoch, encoded.list_version, encoded.public_key, entries
    )


def _lookup(store: Store, cache_id: int, tags: Sequence[bytes]) -> dict[bytes, list[bytes]]:
    """The cached entries (sealed labels, in fetch order) of the given tags."""
    found: dict[bytes, list[bytes]] = {}
    unique = list(dict.fromkeys(tags))
    for start in range(0, len(unique), _LOOKUP_PARAMS):
        part = unique[start : start + _LOOKUP_PARAMS]
        rows = store.conn.execute(
            "SELECT tag, sealed_label FROM screen_cache_entries "
            f"WHERE cache_id = ? AND tag IN ({','.join('?' * len(part))}) ORDER BY rowid",
            (cache_id, *part),
        ).fetchall()
        for tag, sealed in rows:
            found.setdefault(tag, []).append(sealed)
    return found


@dataclass(frozen=True)
class OwnList:
    """The initiator's list: distinct elements to query, and the rows behind each."""

    elements: list[bytes]
    points: bytes
    rows: list[list[tuple[str, str]]]  # per distinct element: (ref, type) of each record


def own_list(store: Store, list_name: str) -> OwnList:
    """Reads this node's list `list_name` as distinct elements with their points and rows."""
    list_id, _, _ = list_row(store, list_name)
    index: dict[bytes, int] = {}
    elements: list[bytes] = []
    points: list[bytes] = []
    rows: list[list[tuple[str, str]]] = []
    for element, point, ref, type_ in store.conn.execute(
        "SELECT e.element, e.point_ristretto, r.ref, e.type FROM elements e "
        "JOIN records r ON e.record_id = r.id WHERE r.list_id = ? ORDER BY e.id",
        (list_id,),
    ):
        i = index.get(element)
        if i is None:
            i = index[element] = len(elements)
            elements.append(element)
            points.append(point)
            rows.append([])
        rows[i].append((ref, type_))
    return OwnList(elements, b"".join(points), rows)


def screen_query(
    runner: BatchRunner,
    transport: Transport,
    peer: str,
    peer_list: str,
    purpose: str,
    session_id: str,
    fetched: EncodedSet,
    own: OwnList,
) -> dict[int, list[str]]:
    """Blinds `own`, runs every batch against `fetched`'s epoch; returns hits' labels by index.

    Needs no store: `run_screen` records the query; the load tests keep none.
    """
    blinds, blinded = screening.blind(own.points, runner)
    hits: dict[int, list[str]] = {}
    count = len(own.elements)
    step = screening.MAX_BATCH
    batches = [(a, min(a + step, count)) for a in range(0, count, step)]
    in_flight: collections.deque[tuple[int, int, Callable[[], tuple[bytes, bytes]]]] = (
        collections.deque()
    )

    def start(a: int, b: int) -> None:
        query = ScreenQuery(
            PROTOCOL_VERSION,
            session_id,
            peer_list,
            fetched.epoch,
            fetched.list_version,
            purpose,
            blinded[a * 32 : b * 32],
        )
        in_flight.append((a, b, transport.screen(query)))

    pending = collections.deque(batches)
    while pending or in_flight:
        while pending and len(in_flight) < _IN_FLIGHT:
            start(*pending.popleft())
        a, b, wait = in_flight.popleft()
        evaluated, proof = wait()
        try:
            outputs = screening.verify_and_finalize(
                fetched.public_key,
                own.elements[a:b],
                blinds[a * 32 : b * 32],
                blinded[a * 32 : b * 32],
                evaluated,
                proof,
                runner,
            )
        except CryptoError as exc:
            raise PeerError(
                f"proof does not verify: peer {peer} evaluated under a different key than "
                f"the one it published for epoch {fetched.epoch}, or the answer was altered "
                f"({exc})"
            ) from None
        tags = [screening.tag_of(o) for o in outputs]
        found = fetched.lookup(tags)
        for i, (output, tag) in enumerate(zip(outputs, tags, strict=True)):
            entries = found.get(tag)
            if entries is None:
                continue
            try:
                labels = [screening.open_label(output, s) for s in entries if s]
            except CryptoError:
                raise PeerError(
                    f"a sealed label from peer {peer} does not open under its entry's key; "
                    "fetch the encoded list again"
                ) from None
            hits[a + i] = labels
    return hits


def run_screen(
    node: NodeContext,
    peer: str,
    list_name: str,
    peer_list: str,
    purpose: str,
    operator: str,
    transport: Transport,
) -> Any:
    """Screens this node's list against a peer's encoded list; records and returns a MatchResult."""
    from node.client import MatchResult

    if peer not in node.config.peers:
        raise NotFound(
            f"no peer {peer!r} in {node.config.config_path}; add it with "
            f"'blindmatch peer add NODE_DIR --agency {peer} --address HOST:PORT'"
        )
    check_purpose(purpose)
    store = node.open_store()
    try:
        own = own_list(store, list_name)
        session_id = secrets.token_hex(16)
        fields: dict[str, object] = {
            "operator": operator,
            "peer": peer,
            "session_id": session_id,
            "purpose": purpose,
            "list": list_name,
            "peer_list": peer_list,
            "mode": "screen",
            "suite": SUITE,
            "set_size": len(own.elements),
        }
        with store.transaction():
            store.record_session(
                session_id, peer, "initiator", "screen", SUITE, list_name, purpose,
                peer_list=peer_list, local_count=len(own.elements),
            )  # fmt: skip
        try:
            cached = _cached(store, peer, peer_list)
            fetches = 0
            if cached is None:
                cached = _fetch_into_cache(store, transport, peer, peer_list, purpose)
                fetches += 1
            hits: dict[int, list[str]] = {}
            if own.elements:
                while True:
                    try:
                        hits = screen_query(
                            node.runner, transport, peer, peer_list, purpose, session_id,
                            cached, own,
                        )  # fmt: skip
                        break
                    except StaleEpoch:
                        if fetches:
                            raise
                        cached = _fetch_into_cache(store, transport, peer, peer_list, purpose)
                        fetches += 1
        except (NodeError, CryptoError) as exc:
            with store.transaction() as conn:
                store.finish_session(session_id, "failed")
                audit.append(
                    conn, node.audit_key, "session.failed", {**fields, "reason": type(exc).__name__}
                )
            if isinstance(exc, StaleEpoch):
                raise PeerError(f"peer {peer} refused the query: {exc}") from None
            raise
        matches = [
            {"ref": ref, "type": type_, "peer_label": "; ".join(dict.fromkeys(labels)) or None}
            for i, labels in sorted(hits.items())
            for ref, type_ in own.rows[i]
        ]
        labels_opened = sum(len(labels) for labels in hits.values())
        with store.transaction() as conn:
            store.finish_session(session_id, "completed", len(hits), peer_count=cached.entries)
            store.add_hits(session_id, peer, "initiator", matches)
            audit.append(
                conn,
                node.audit_key,
                "screen.query",
                {
                    **fields,
                    "epoch": cached.epoch,
                    "batch_size": len(own.elements),
                    "fetches": fetches,
                    "peer_set_size": cached.entries,
                    "match_count": len(hits),
                    "hits": len(matches),
                },
            )
            if labels_opened:
                audit.append(
                    conn,
                    node.audit_key,
                    "disclosure",
                    {
                        "operator": operator,
                        "peer": peer,
                        "session_id": session_id,
                        "list": list_name,
                        "direction": "received",
                        "labels": labels_opened,
                    },
                )
        return MatchResult(
            session_id=session_id,
            peer=peer,
            mode="screen",
            suite=SUITE,
            local_count=len(own.elements),
            peer_count=cached.entries,
            match_count=len(hits),
            matches=matches,
        )
    finally:
        store.close()


class GrpcTransport:
    """The screening calls to `peer` over a channel from `node.client.open_channel`.

    The channel stays the caller's: it closes it (the load tests share it between sessions).
    """

    def __init__(self, channel: Any, peer: str, timeout: float = 600.0) -> None:
        from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc

        self.peer = peer
        self.timeout = timeout
        self.stub = pb_grpc.MatchingStub(channel)

    def _error(self, exc: Exception) -> Exception:
        import grpc

        from node.status import error_from_rpc

        if not isinstance(exc, grpc.RpcError):
            return exc
        if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
            detail = exc.details() or ""
            if "fetch the encoded list again" in detail:
                return StaleEpoch(detail)
        return error_from_rpc(exc, self.peer)

    def fetch(self, request: FetchRequest) -> EncodedList:
        from node.generated.blindmatch.v1 import matching_pb2 as pb

        message = pb.FetchEncodedListRequest(
            protocol_version=request.protocol_version, list=request.list, purpose=request.purpose
        )
        stream = self.stub.FetchEncodedList(message, timeout=self.timeout)
        try:
            first = next(stream)
        except Exception as exc:
            raise self._error(exc) from None

        def chunks() -> Iterator[tuple[bytes, list[bytes]]]:
            chunk = first
            try:
                while True:
                    yield chunk.tags, list(chunk.sealed_labels)
                    chunk = next(stream)
            except StopIteration:
                return
            except Exception as exc:
                raise self._error(exc) from None

        return EncodedList(
            epoch=first.epoch,
            public_key=first.public_key,
            list_version=first.list_version,
            list_kind=first.list_kind or "watchlist",
            total=first.total,
            chunks=chunks(),
        )

    def screen(self, query: ScreenQuery) -> Callable[[], tuple[bytes, bytes]]:
        from node.generated.blindmatch.v1 import matching_pb2 as pb

        message = pb.ScreenRequest(
            protocol_version=query.protocol_version,
            session_id=query.session_id,
            list=query.list,
            epoch=query.epoch,
            list_version=query.list_version,
            purpose=query.purpose,
            blinded=query.blinded,
        )
        future = self.stub.Screen.future(message, timeout=self.timeout)

        def wait() -> tuple[bytes, bytes]:
            try:
                response = future.result()
            except Exception as exc:
                raise self._error(exc) from None
            return response.evaluated, response.proof

        return wait


class LocalTransport:
    """Calls a responder node's screening service in-process (benchmarks and tests)."""

    def __init__(self, responder: NodeContext, as_peer: str) -> None:
        self.responder = responder
        self.as_peer = as_peer

    def fetch(self, request: FetchRequest) -> EncodedList:
        store = self.responder.open_store()
        encoded = answer_fetch(self.responder, store, self.as_peer, request)
        chunks = list(encoded.chunks)
        store.close()
        return dataclasses.replace(encoded, chunks=iter(chunks))

    def screen(self, query: ScreenQuery) -> Callable[[], tuple[bytes, bytes]]:
        store = self.responder.open_store()
        try:
            result = answer_screen(self.responder, store, self.as_peer, query)
        finally:
            store.close()
        return lambda: result
