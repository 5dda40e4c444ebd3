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

Real-time screening (`node.rpc.live_screening`) shares the fetch
(`fetch_encoded_set`), the peer-facing errors (`unverifiable`, `unopenable`) and
how a hit's labels are joined (`joined_label`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from crypto import screening
from crypto.errors import CryptoError
from node.data import screening as tables
from node.data.screening import CachedSet
from node.errors import PeerError, StaleEpoch
from node.policy import PROTOCOL_VERSION, FetchRequest, ScreenQuery, check_purpose
from node.sessions.answering import Answering
from node.sessions.blocking import settled, submit
from node.sessions.records import SessionRecord, describe
from node.sessions.results import MatchResult, Progress
from node.sessions.screen_responder import SUITE, EncodedHeader, answer_fetch, answer_screen
from node.setup.context import NodeContext

__all__ = [
    "LocalTransport",
    "OwnList",
    "ScreeningTransport",
    "fetch_encoded_set",
    "joined_label",
    "own_list",
    "run_screen",
    "unopenable",
    "unverifiable",
]

_IN_FLIGHT = 2  # Screen batches outstanding at once

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
class OwnList:
    """Our list as a query: distinct elements, their points, and the rows behind each."""

    elements: list[bytes]
    points: bytes
    rows: list[list[tuple[str, str]]]  # per distinct element: (ref, type) of each record


def own_list(node: NodeContext, list_name: str) -> OwnList:
    """Reads our list `list_name` as distinct elements with their points and rows (blocking)."""
    store = node.store()
    list_id, _, _ = store.list_row(list_name)
    index: dict[bytes, int] = {}
    elements: list[bytes] = []
    points: list[bytes] = []
    rows: list[list[tuple[str, str]]] = []
    for element, point, ref, type_ in tables.own_elements(store, list_id):
        i = index.get(element)
        if i is None:
            i = index[element] = len(elements)
            elements.append(element)
            points.append(point)
            rows.append([])
        rows[i].append((ref, type_))
    return OwnList(elements, b"".join(points), rows)


async def _fetch(
    transport: ScreeningTransport,
    peer: str,
    list_name: str,
    purpose: str,
    progress: Progress | None = None,
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
        if progress:
            progress("fetched", entries, header.total)
    if header is None or entries != header.total:
        announced = header.total if header else 0
        raise PeerError(f"peer {peer} announced {announced:,} encoded entries but sent {entries:,}")
    return header, chunks


async def fetch_encoded_set(
    node: NodeContext,
    transport: ScreeningTransport,
    peer: str,
    peer_list: str,
    purpose: str,
    progress: Progress | None = None,
) -> CachedSet:
    """Downloads the peer's encoded list and replaces our cached copy of it in the store."""
    h, chunks = await _fetch(transport, peer, peer_list, purpose, progress)
    kind = h.list_kind or "watchlist"
    return await asyncio.to_thread(
        lambda: tables.replace_cached_set(
            node.store(), peer, peer_list, h.epoch, h.list_version, h.public_key, kind, chunks
        )
    )


def unverifiable(peer: str, epoch: int, exc: CryptoError) -> PeerError:
    """The error of an answer whose proof does not verify under the epoch's published key."""
    return PeerError(
        f"proof does not verify: peer {peer} evaluated under a different key than the one "
        f"it published for epoch {epoch}, or the answer was altered ({exc})"
    )


def unopenable(peer: str) -> PeerError:
    """The error of a hit whose sealed label does not open under its entry's key."""
    return PeerError(
        f"a sealed label from peer {peer} does not open under its entry's key; "
        "fetch the encoded list again"
    )


def joined_label(labels: list[str]) -> str | None:
    """The peer labels of one hit as one text: distinct ones, in order, "; "-joined."""
    return "; ".join(dict.fromkeys(labels)) or None


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
        raise unverifiable(peer, cached.epoch, exc) from None
    tags = [screening.tag_of(o) for o in outputs]
    found = tables.cached_entries(node.store(), cached.id, tags)
    hits: dict[int, list[str]] = {}
    for i, (output, tag) in enumerate(zip(outputs, tags, strict=True)):
        entries = found.get(tag)
        if entries is None:
            continue
        try:
            hits[a + i] = [screening.open_label(output, s) for s in entries if s]
        except CryptoError:
            raise unopenable(peer) from None
    return hits


async def run_screen(
    node: NodeContext,
    transport: ScreeningTransport,
    peer: str,
    list_name: str,
    peer_list: str,
    purpose: str,
    operator: str,
    progress: Progress | None = None,
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
    await settled(submit(record.start, len(own.elements)))
    fetches = 0

    async def fetch() -> CachedSet:
        nonlocal fetches
        fetches += 1
        return await fetch_encoded_set(node, transport, peer, peer_list, purpose, progress)

    try:
        cached = await asyncio.to_thread(lambda: tables.cached_set(node.store(), peer, peer_list))
        cached = cached or await fetch()
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
        await settled(submit(record.fail, describe(exc)))
        if isinstance(exc, StaleEpoch):
            raise PeerError(f"peer {peer} refused the query: {exc}") from None
        if isinstance(exc, CryptoError):
            raise PeerError(f"screening with {peer} failed: {exc}") from None
        raise
    matches = [
        {"ref": ref, "type": type_, "peer_label": joined_label(labels)}
        for i, labels in sorted(hits.items())
        for ref, type_ in own.rows[i]
    ]
    await settled(
        submit(
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
