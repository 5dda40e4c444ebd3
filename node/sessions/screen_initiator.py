"""Screening, initiator side: fetching and caching a peer's encoded set, running queries.

`run_screen` is the whole orchestration, over any `ScreeningTransport`: it
records the session, uses the peer's encoded set cached per (epoch, list
version) in `screen_cache` (fetching it when there is none), blinds the cached
VOPRF-mode points of our list, sends batches of at most 4,096 (two in flight),
verifies each batch's proof under the fetched public key, looks up only its own
tags in the cache, opens the labels of hits, and records the session, hits,
`screen.query` and the disclosure in one transaction. A query the responder
refuses as stale (`StaleEpoch`: the epoch rotated or the list changed) makes it
fetch once more and retry. A malformed or unverifiable answer fails the session
with a clear `PeerError`, recorded and audited.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from crypto import screening
from crypto.errors import CryptoError
from node.data.store import utc_now
from node.errors import PeerError, StaleEpoch
from node.policy import PROTOCOL_VERSION, FetchRequest, ScreenQuery, check_purpose
from node.sessions.answering import Answering
from node.sessions.records import SessionRecord, describe
from node.sessions.results import MatchResult
from node.sessions.screen_responder import (
    SUITE,
    EncodedHeader,
    answer_fetch,
    answer_screen,
    list_row,
)
from node.setup.context import NodeContext

__all__ = ["LocalTransport", "OwnList", "ScreeningTransport", "own_list", "run_screen"]

_IN_FLIGHT = 2  # Screen batches outstanding at once
_LOOKUP_PARAMS = 500  # tags per `IN (...)` lookup

EncodedChunks = AsyncIterator[tuple[EncodedHeader, bytes, list[bytes]]]


class ScreeningTransport(Protocol):
    """How an initiator reaches a responder's screening service (gRPC, or in-process)."""

    def fetch(self, request: FetchRequest) -> EncodedChunks:
        """The encoded list, chunk by chunk; raises PeerError on a refusal."""
        ...

    async def screen(self, query: ScreenQuery) -> tuple[bytes, bytes]:
        """One batch: (packed Es, proof); raises StaleEpoch or PeerError on a refusal."""
        ...


@dataclass(frozen=True)
class CachedSet:
    """A peer's encoded list as cached in our store."""

    id: int
    epoch: int
    list_version: int
    public_key: bytes
    entries: int


@dataclass(frozen=True)
class OwnList:
    """Our list as a query: distinct elements, their points, and the rows behind each."""

    elements: list[bytes]
    points: bytes
    rows: list[list[tuple[str, str]]]  # per distinct element: (ref, type) of each record


def own_list(node: NodeContext, list_name: str) -> OwnList:
    """Reads our list `list_name` as distinct elements with their points and rows (blocking)."""
    store = node.store()
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


def _cached(node: NodeContext, peer: str, list_name: str) -> CachedSet | None:
    row = (
        node.store()
        .conn.execute(
            "SELECT id, epoch, list_version, public_key, entries FROM screen_cache "
            "WHERE peer = ? AND list = ? ORDER BY epoch DESC, id DESC LIMIT 1",
            (peer, list_name),
        )
        .fetchone()
    )
    return None if row is None else CachedSet(*row)


async def _fetch(
    transport: ScreeningTransport, peer: str, list_name: str, purpose: str
) -> tuple[EncodedHeader, list[tuple[bytes, list[bytes]]]]:
    """Downloads the encoded list, checking every chunk; raises PeerError on a malformed one."""
    header: EncodedHeader | None = None
    chunks: list[tuple[bytes, list[bytes]]] = []
    entries = 0
    request = FetchRequest(PROTOCOL_VERSION, list_name, purpose)
    async for chunk_header, tags, sealed in transport.fetch(request):
        header = header or chunk_header
        count = len(tags) // 16
        if len(tags) % 16 or (sealed and len(sealed) != count) or len(header.public_key) != 32:
            raise PeerError(f"peer {peer} sent a malformed encoded-list chunk")
        entries += count
        if entries > header.total:
            break
        chunks.append((tags, sealed))
    if header is None or entries != header.total:
        announced = header.total if header else 0
        raise PeerError(f"peer {peer} announced {announced:,} encoded entries but sent {entries:,}")
    return header, chunks


def _store_fetched(
    node: NodeContext,
    peer: str,
    list_name: str,
    header: EncodedHeader,
    chunks: list[tuple[bytes, list[bytes]]],
) -> CachedSet:
    """Replaces our cached copy of the peer's encoded list (blocking)."""
    store = node.store()
    labelled = any(sealed for _, sealed in chunks)
    with store.transaction() as conn:
        conn.execute("DELETE FROM screen_cache WHERE peer = ? AND list = ?", (peer, list_name))
        cursor = conn.execute(
            "INSERT INTO screen_cache (peer, list, epoch, list_version, public_key, list_kind, "
            "entries, labels_withheld, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                peer,
                list_name,
                header.epoch,
                header.list_version,
                header.public_key,
                header.list_kind or "watchlist",
                header.total,
                int(not labelled),
                utc_now(),
            ),
        )
        cache_id = int(cursor.lastrowid or 0)
        for tags, sealed in chunks:
            conn.executemany(
                "INSERT INTO screen_cache_entries (cache_id, tag, sealed_label) VALUES (?, ?, ?)",
                (
                    (cache_id, tags[i * 16 : i * 16 + 16], sealed[i] if sealed else b"")
                    for i in range(len(tags) // 16)
                ),
            )
    return CachedSet(cache_id, header.epoch, header.list_version, header.public_key, header.total)


def _lookup(node: NodeContext, cache_id: int, tags: Sequence[bytes]) -> dict[bytes, list[bytes]]:
    """The cached entries (sealed labels, in fetch order) of the given tags (blocking)."""
    found: dict[bytes, list[bytes]] = {}
    unique = list(dict.fromkeys(tags))
    for start in range(0, len(unique), _LOOKUP_PARAMS):
        part = unique[start : start + _LOOKUP_PARAMS]
        rows = (
            node.store()
            .conn.execute(
                "SELECT tag, sealed_label FROM screen_cache_entries "
                f"WHERE cache_id = ? AND tag IN ({','.join('?' * len(part))}) ORDER BY rowid",
                (cache_id, *part),
            )
            .fetchall()
        )
        for tag, sealed in rows:
            found.setdefault(tag, []).append(sealed)
    return found


async def _query(
    node: NodeContext,
    transport: ScreeningTransport,
    peer: str,
    peer_list: str,
    purpose: str,
    session_id: str,
    cached: CachedSet,
    own: OwnList,
) -> dict[int, list[str]]:
    """Blinds `own`, runs every batch against `cached`'s epoch; returns hits' labels by index."""
    runner = node.runner
    blinds, blinded = await asyncio.to_thread(screening.blind, own.points, runner)
    count = len(own.elements)
    step = screening.MAX_BATCH
    batches = [(a, min(a + step, count)) for a in range(0, count, step)]

    def query(a: int, b: int) -> ScreenQuery:
        return ScreenQuery(
            PROTOCOL_VERSION,
            session_id,
            peer_list,
            cached.epoch,
            cached.list_version,
            purpose,
            blinded[a * 32 : b * 32],
        )

    hits: dict[int, list[str]] = {}
    in_flight: list[asyncio.Task[tuple[bytes, bytes]]] = []

    def start_next() -> None:
        if len(in_flight) < len(batches):
            a, b = batches[len(in_flight)]
            in_flight.append(asyncio.create_task(transport.screen(query(a, b))))

    try:
        for _ in range(_IN_FLIGHT):
            start_next()
        for i, (a, b) in enumerate(batches):
            evaluated, proof = await in_flight[i]
            start_next()
            hits.update(
                await asyncio.to_thread(
                    _finalize, node, peer, cached, own, blinds, blinded, a, b, evaluated, proof
                )
            )
    finally:
        for task in in_flight:
            task.cancel()
    return hits


def _finalize(
    node: NodeContext,
    peer: str,
    cached: CachedSet,
    own: OwnList,
    blinds: bytes,
    blinded: bytes,
    a: int,
    b: int,
    evaluated: bytes,
    proof: bytes,
) -> dict[int, list[str]]:
    """Verifies one batch, finalises it, looks its tags up and opens the labels (blocking)."""
    try:
        outputs = screening.verify_and_finalize(
            cached.public_key,
            own.elements[a:b],
            blinds[a * 32 : b * 32],
            blinded[a * 32 : b * 32],
            evaluated,
            proof,
            node.runner,
        )
    except CryptoError as exc:
        raise PeerError(
            f"proof does not verify: peer {peer} evaluated under a different key than the one "
            f"it published for epoch {cached.epoch}, or the answer was altered ({exc})"
        ) from None
    tags = [screening.tag_of(o) for o in outputs]
    found = _lookup(node, cached.id, tags)
    hits: dict[int, list[str]] = {}
    for i, (output, tag) in enumerate(zip(outputs, tags, strict=True)):
        entries = found.get(tag)
        if entries is None:
            continue
        try:
            hits[a + i] = [screening.open_label(output, s) for s in entries if s]
        except CryptoError:
            raise PeerError(
                f"a sealed label from peer {peer} does not open under its entry's key; "
                "fetch the encoded list again"
            ) from None
    return hits


async def run_screen(
    node: NodeContext,
    transport: ScreeningTransport,
    peer: str,
    list_name: str,
    peer_list: str,
    purpose: str,
    operator: str,
) -> MatchResult:
    """Screens our list against a peer's encoded list; records and returns a MatchResult."""
    node.config.peer(peer)  # a configured peer, or ConfigError saying how to add it
    check_purpose(purpose)
    own = await asyncio.to_thread(own_list, node, list_name)
    record = SessionRecord(
        node,
        session_id=secrets.token_hex(16),
        peer=peer,
        role="initiator",
        mode="screen",
        suite=SUITE,
        list=list_name,
        peer_list=peer_list,
        purpose=purpose,
        operator=operator,
    )
    await asyncio.to_thread(record.start, len(own.elements))
    fetches = 0

    async def fetch() -> CachedSet:
        nonlocal fetches
        fetches += 1
        header, chunks = await _fetch(transport, peer, peer_list, purpose)
        return await asyncio.to_thread(_store_fetched, node, peer, peer_list, header, chunks)

    try:
        cached = await asyncio.to_thread(_cached, node, peer, peer_list) or await fetch()
        hits: dict[int, list[str]] = {}
        while own.elements:
            try:
                args = (node, transport, peer, peer_list, purpose, record.session_id)
                hits = await _query(*args, cached, own)
                break
            except StaleEpoch:
                if fetches:  # fetched during this query already: the refusal is not staleness
                    raise
                cached = await fetch()
    except BaseException as exc:
        await asyncio.shield(asyncio.to_thread(record.fail, describe(exc)))
        if isinstance(exc, StaleEpoch):
            raise PeerError(f"peer {peer} refused the query: {exc}") from None
        if isinstance(exc, CryptoError):
            raise PeerError(f"screening with {peer} failed: {exc}") from None
        raise
    matches = [
        {"ref": ref, "type": type_, "peer_label": "; ".join(dict.fromkeys(labels)) or None}
        for i, labels in sorted(hits.items())
        for ref, type_ in own.rows[i]
    ]
    await asyncio.to_thread(
        record.complete,
        len(hits),
        cached.entries,
        matches,
        labels_received=sum(len(labels) for labels in hits.values()),
        event="screen.query",
        epoch=cached.epoch,
        batch_size=len(own.elements),
        fetches=fetches,
    )
    return MatchResult(
        session_id=record.session_id,
        peer=peer,
        mode="screen",
        suite=SUITE,
        local_count=len(own.elements),
        peer_count=cached.entries,
        match_count=len(hits),
        matches=matches,
    )


class LocalTransport:
    """Calls a responder node's screening service in-process (benchmarks and tests)."""

    def __init__(self, responder: Answering, as_peer: str) -> None:
        self.responder = responder
        self.as_peer = as_peer

    def fetch(self, request: FetchRequest) -> EncodedChunks:
        return answer_fetch(self.responder, self.as_peer, request)

    async def screen(self, query: ScreenQuery) -> tuple[bytes, bytes]:
        return await answer_screen(self.responder, self.as_peer, query)
