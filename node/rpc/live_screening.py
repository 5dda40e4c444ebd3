"""Real-time screening for the local API: typed identifiers against partners' encoded lists.

`LiveScreening` is what `POST /v1/screen` calls (docs/SCREENING-LIVE.md). It is the
screening initiator of `node.sessions.screen_initiator` (RFC 9497 VOPRF, DESIGN §4)
for a few identifiers at a time, many callers at once, kept warm between calls.

Phases of one `screen(identifiers, targets, purpose, operator)` call
    1. Check: purpose and operator; 1 to `MAX_IDENTIFIERS` identifiers; the targets
       (given, else node.toml's `[[screen.target]]`; neither: ConfigError).
    2. Canonicalise each identifier as ingest does (`identifiers.identifier_elements`;
       InvalidInput naming ``identifiers[i].value`` and why), hash the distinct
       elements x to H(x), and blind them afresh for every target: B = H(x)^r (a
       thread; large requests spread over the node's process pool).
    3. Per target, at once: refuse locally what node.toml does not allow (peer not
       configured, or its modes without "screen"), and a peer whose certificate the
       installed CRL revokes (checked once a minute per peer); record the session
       `running`; queue the query on the target.
    4. The target's batcher merges the queries of concurrent calls that share a
       purpose, arriving within `BATCH_WINDOW_SECONDS` or while its calls are in
       flight, into one Screen call of at most `screening.MAX_BATCH` elements
       (`MAX_IN_FLIGHT` calls per peer at once): I -> R: Bs, under the epoch of the
       target's encoded set; R -> I: Es = Bs^k, pi. The proof is verified and each
       output F(k, x) = H(x)^k finalised off the loop (a thread; a batch of 256
       elements or more over the process pool), its tag looked up in the encoded
       set held in memory, and the answer split back per query.
    5. Each query opens the sealed labels of its hits, records the session with its
       hits and its own `screen.query` audit entry (purpose, operator, epoch, the
       Screen call's `batch_id`), or `session.failed` with the reason; hits and the
       webhook outbox are written with it (`SessionRecord`), with other queries'
       records in one transaction (`GroupWriter`). Never an identifier.

The encoded set of a target (peer, peer list): the packed tags sorted, the sealed
labels packed, ~16 bytes an entry plus its label. It comes from the store's cache
(`screen_cache`, the same one `match --mode screen` uses), else is fetched once
for everyone waiting (one fetch in flight per target) and written to that cache.
A StaleEpoch refusal (the epoch rotated, the list changed) makes the target fetch
again and its queries go again, once.

Errors: `screen` raises InvalidInput (a bad identifier, target, purpose or too
many identifiers), ConfigError (no target given and none configured), and the
store's own errors (a screening that cannot be recorded is not answered). A
target's failure — refused locally or by the peer, down, stalled past
`DEADLINE_SECONDS`, an answer that does not verify — is a `TargetError` with the
kind and message `blindmatch --json` would print; the other targets answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import secrets
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from crypto import screening
from crypto.batch import BatchRunner
from crypto.errors import CryptoError
from crypto.groups import get_suite
from node.data import screening as tables
from node.data.identifiers import CanonContext, identifier_elements
from node.data.screening import CachedSet
from node.data.store import LIVE_LIST, check_list_name
from node.errors import (
    ConfigError,
    Interrupted,
    InvalidInput,
    NodeError,
    PeerError,
    PolicyDenied,
    StaleEpoch,
)
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.policy import PROTOCOL_VERSION, ScreenQuery, check_purpose
from node.rpc.client import GrpcScreening, _refuse_revoked_peer, open_channel
from node.sessions.blocking import GroupWriter, settled
from node.sessions.records import SessionRecord, describe
from node.sessions.screen_initiator import (
    fetch_encoded_set,
    joined_label,
    unopenable,
    unverifiable,
)
from node.sessions.screen_responder import SUITE
from node.setup.config import check_agency
from node.setup.context import NodeContext

__all__ = [
    "BATCH_WINDOW_SECONDS",
    "DEADLINE_SECONDS",
    "LIVE_LIST",
    "MAX_IDENTIFIERS",
    "MAX_IN_FLIGHT",
    "MAX_TARGETS",
    "PREFETCH_PURPOSE",
    "LiveScreening",
    "ScreenHit",
    "ScreenOutcome",
    "TargetError",
]

log = logging.getLogger("blindmatch.screening")
T = TypeVar("T")

MAX_IDENTIFIERS = 1000
"""Identifiers one call may screen (each yields one or two elements)."""
MAX_TARGETS = 32
"""Targets one call may name."""
MAX_REF_CHARS = 200
"""The longest `ref` an identifier may carry (the hit's reference in `hits`)."""
MAX_OPERATOR_CHARS = 100
BATCH_WINDOW_SECONDS = 0.002
"""How long a target's batcher waits for more queries before it sends what it has."""
MAX_IN_FLIGHT = 2
"""Screen calls in flight to one peer at once (the peer's `max_concurrent` defaults to 4)."""
DEADLINE_SECONDS = 5.0
"""How long one call waits for one target (queue, fetch, Screen call, proof) before a
TargetError; the fetch itself goes on for the next calls."""
CALL_SECONDS = 4.0
"""The deadline of one Screen call."""
FETCH_SECONDS = 600.0
"""The deadline of fetching an encoded list (chunks also each within `idle_seconds`)."""
REVOCATION_CHECK_SECONDS = 60.0
"""How often a peer's certificate is checked against the installed CRL (a TLS probe)."""
PROBE_SECONDS = 5.0
PREFETCH_PURPOSE = "real-time screening: encoded list fetched when the node started"
"""The purpose a partner's audit gives the fetches `start` makes."""

_MAX_PROBLEMS = 20  # bad fields named in one InvalidInput


@dataclass(frozen=True)
class ScreenHit:
    """An identifier (`index` into the call's identifiers) that a target holds, on `type`."""

    index: int
    type: str
    peer: str
    list: str
    peer_label: str | None


@dataclass(frozen=True)
class TargetError:
    """Why a target gave no answer: `kind` and `message` as `blindmatch --json` prints them."""

    peer: str
    list: str
    kind: str
    message: str


@dataclass(frozen=True)
class ScreenOutcome:
    """What one call found: hits by identifier, and the targets that did not answer."""

    hits: list[ScreenHit]
    errors: list[TargetError]


# -- a call, canonicalised ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """One call's identifiers as distinct elements, blinded afresh for each target."""

    id: str
    elements: list[bytes]
    types: list[str]
    owners: list[list[int]]  # per element: the identifiers that yield it
    refs: list[str]  # per identifier: the ref its hits are recorded under
    blinds: list[bytes]  # per target: packed rs
    blinded: list[bytes]  # per target: packed Bs


def _prepare(
    identifiers: Sequence[Any], context: CanonContext, targets: int, runner: BatchRunner
) -> _Request:
    """Canonicalises, hashes and blinds a call's identifiers (blocking); InvalidInput if bad."""
    request_id = secrets.token_hex(8)
    index: dict[bytes, int] = {}
    elements: list[bytes] = []
    types: list[str] = []
    owners: list[list[int]] = []
    refs: list[str] = []
    problems: list[str] = []
    for i, identifier in enumerate(identifiers):
        where = f"identifiers[{i}]"
        try:
            found = identifier_elements(identifier, context, where)
            refs.append(_ref(identifier.get("ref"), f"{where}.ref") or f"live-{request_id}-{i}")
        except InvalidInput as exc:
            problems.append(str(exc))
            continue
        for type_, element in found:
            j = index.get(element)
            if j is None:
                j = index[element] = len(elements)
                elements.append(element)
                types.append(type_)
                owners.append([])
            if i not in owners[j]:
                owners[j].append(i)
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        tail = [f"and {more} more identifier(s) with problems"] if more > 0 else []
        raise InvalidInput("; ".join(problems[:_MAX_PROBLEMS] + tail))
    points = get_suite(SUITE).hash_batch(elements) * targets
    # A few elements are blinded here (libsodium releases the GIL): shipping them to a worker
    # process would cost more than the multiplications. Many are spread over the pool.
    small = len(elements) * targets < runner.min_parallel
    blinds, blinded = screening.blind(points, None if small else runner)
    size = len(elements) * 32
    return _Request(
        request_id,
        elements,
        types,
        owners,
        refs,
        [blinds[k * size : (k + 1) * size] for k in range(targets)],
        [blinded[k * size : (k + 1) * size] for k in range(targets)],
    )


def _ref(value: object, where: str) -> str | None:
    """An identifier's optional `ref`, checked."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_REF_CHARS or not value.isprintable():
        raise InvalidInput(
            f"{where}: must be printable text of at most {MAX_REF_CHARS} characters (your "
            "reference for what is screened, e.g. a booking or consignment number)"
        )
    return value.strip()


def _kind(exc: BaseException) -> str:
    """The error's kind as `blindmatch --json` prints it: its class name in snake_case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _target_error(peer: str, list_name: str, exc: BaseException) -> TargetError:
    if not isinstance(exc, NodeError | CryptoError):
        log.error("screening %s's list %s failed unexpectedly", peer, list_name, exc_info=exc)
        return TargetError(peer, list_name, "internal_error", describe(exc))
    return TargetError(peer, list_name, _kind(exc), " ".join(str(exc).split()))


# -- a target: its encoded set and its batcher --------------------------------------------------


@dataclass(frozen=True)
class _EncodedSet:
    """A target's encoded list in memory: tags sorted (packed), sealed labels packed."""

    cached: CachedSet
    packed: bytes  # tags, 16 bytes each, in order
    labels: bytes  # sealed labels, in tag order
    ends: np.ndarray  # int64: label j is labels[ends[j - 1]:ends[j]]

    def find(self, tags: bytes) -> list[list[bytes] | None]:
        """Per packed tag: the sealed labels of its entries (b"" for none), or None if absent."""
        sorted_tags = np.frombuffer(self.packed, dtype="S16")
        wanted = np.frombuffer(tags, dtype="S16")
        lows = np.searchsorted(sorted_tags, wanted, side="left").tolist()
        highs = np.searchsorted(sorted_tags, wanted, side="right").tolist()
        found: list[list[bytes] | None] = []
        for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
            tag = tags[i * 16 : i * 16 + 16]
            entries = [self._label(j) for j in range(low, high) if self._tag(j) == tag]
            found.append(entries or None)
        return found

    def _tag(self, j: int) -> bytes:
        return self.packed[j * 16 : j * 16 + 16]

    def _label(self, j: int) -> bytes:
        start = int(self.ends[j - 1]) if j else 0
        return self.labels[start : int(self.ends[j])]


def _read_encoded_set(node: NodeContext, cached: CachedSet) -> _EncodedSet | None:
    """Reads a cached set from the store (blocking); None if it was replaced meanwhile."""
    tags: list[bytes] = []  # packed, a chunk each
    labels: list[bytes] = []
    lengths: list[int] = []
    for rows in tables.cached_chunks(node.store(), cached.id):
        tags.append(b"".join(tag for tag, _ in rows))
        labels.append(b"".join(sealed for _, sealed in rows))
        lengths.extend(len(sealed) for _, sealed in rows)
    if len(lengths) != cached.entries:  # another process replaced it while we read
        return None
    ends = np.cumsum(np.array(lengths, dtype=np.int64))
    return _EncodedSet(cached, b"".join(tags), b"".join(labels), ends)


@dataclass
class _Query:
    """One call's query of one target, waiting in its batcher."""

    purpose: str
    elements: list[bytes]
    blinds: bytes
    blinded: bytes
    future: asyncio.Future[_Answer]
    retried: bool = False


@dataclass(frozen=True)
class _Answer:
    """A query's answer: per element, its output F(k, x) and its entries if it is a hit."""

    cached: CachedSet
    batch_id: str
    outputs: list[bytes]
    found: list[list[bytes] | None]


@dataclass
class _Peer:
    """One partner as this process reaches it: a channel, its calls, its certificate check."""

    agency: str
    address: str
    channel: Any
    fetching: GrpcScreening
    querying: GrpcScreening
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))
    checked_at: float = -math.inf
    checking: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Target:
    """A partner's list: its encoded set (loaded or fetched once at a time) and its batcher."""

    def __init__(self, live: LiveScreening, peer: str, list_name: str) -> None:
        self.live = live
        self.peer = peer
        self.list = list_name
        self.encoded: _EncodedSet | None = None
        self.stale: CachedSet | None = None  # refused as stale: fetch, do not reload it
        self.loading: asyncio.Task[_EncodedSet] | None = None
        self.loading_since = 0.0
        self.fetches = 0
        self.waiting: collections.deque[_Query] = collections.deque()
        self.batcher: asyncio.Task[None] | None = None

    # -- the encoded set

    async def ready(self, purpose: str) -> _EncodedSet:
        """The encoded set: in memory, else the store's cache, else fetched; one load at once."""
        if self.encoded is not None:
            return self.encoded
        if self.loading is None or self.loading.done():
            self.loading = self.live.spawn(self._load(purpose))
            self.loading_since = time.monotonic()
        return await asyncio.shield(self.loading)

    async def _load(self, purpose: str) -> _EncodedSet:
        node = self.live.node
        for _ in range(3):
            cached = await asyncio.to_thread(
                lambda: tables.cached_set(node.store(), self.peer, self.list)
            )
            if cached is None or (self.stale is not None and cached.id == self.stale.id):
                peer = self.live.peer(self.peer)
                cached = await fetch_encoded_set(node, peer.fetching, self.peer, self.list, purpose)
                self.fetches += 1
                log.info(
                    "fetched %s's list %s for real-time screening: epoch %d, %d entries",
                    self.peer,
                    self.list,
                    cached.epoch,
                    cached.entries,
                )
            encoded = await asyncio.to_thread(_read_encoded_set, node, cached)
            if encoded is not None:
                self.encoded, self.stale = encoded, None
                return encoded
        raise PeerError(
            f"the cached encoded list of {self.peer}'s list {self.list} kept changing while "
            "it was read (another process fetching it?); retry"
        )

    def _refused_as_stale(self, encoded: _EncodedSet) -> None:
        if self.encoded is encoded:
            self.encoded, self.stale = None, encoded.cached

    def waiting_for_fetch(self) -> bool:
        """Whether the encoded set is being loaded or fetched now."""
        return self.encoded is None and self.loading is not None and not self.loading.done()

    # -- the batcher

    def submit(self, query: _Query) -> None:
        """Queues a query for the next Screen call to this target."""
        if self.live.closed:
            query.future.set_exception(_stopping())
            return
        self.waiting.append(query)
        self._wake()

    def fail_waiting(self, exc: Exception) -> None:
        """Fails every query still waiting (the node is stopping)."""
        for query in self.waiting:
            if not query.future.done():
                query.future.set_exception(exc)
        self.waiting.clear()

    def _wake(self) -> None:
        if self.waiting and (self.batcher is None or self.batcher.done()):
            self.batcher = self.live.spawn(self._batch())

    async def _batch(self) -> None:
        """Sends the waiting queries, one batch per free slot, until none waits."""
        while True:
            self.waiting = collections.deque(q for q in self.waiting if not q.future.done())
            if not self.waiting:
                return
            try:
                peer = self.live.peer(self.peer)
            except NodeError as exc:  # the peer was removed from node.toml meanwhile
                self.fail_waiting(exc)
                return
            await peer.slots.acquire()
            try:
                if sum(len(q.elements) for q in self.waiting) < screening.MAX_BATCH:
                    await asyncio.sleep(BATCH_WINDOW_SECONDS)  # let concurrent calls join
                batch = self._take()
            except BaseException:
                peer.slots.release()
                raise
            if batch:
                self.live.spawn(self._call(peer, batch))
            else:
                peer.slots.release()

    def _take(self) -> list[_Query]:
        """The next batch: waiting queries of the first one's purpose, up to MAX_BATCH elements."""
        batch: list[_Query] = []
        rest: collections.deque[_Query] = collections.deque()
        purpose = None
        size = 0
        for query in self.waiting:
            if query.future.done():
                continue
            purpose = purpose or query.purpose
            fits = not batch or size + len(query.elements) <= screening.MAX_BATCH
            if query.purpose == purpose and fits:
                batch.append(query)
                size += len(query.elements)
            else:
                rest.append(query)
        self.waiting = rest
        return batch

    async def _call(self, peer: _Peer, batch: list[_Query]) -> None:
        """One Screen call for `batch` (holding one of the peer's slots), answers split back."""
        encoded: _EncodedSet | None = None
        batch_id = secrets.token_hex(16)
        try:
            encoded = await self.ready(batch[0].purpose)
            cached = encoded.cached
            message = ScreenQuery(
                PROTOCOL_VERSION,
                batch_id,
                self.list,
                cached.epoch,
                cached.list_version,
                batch[0].purpose,
                b"".join(q.blinded for q in batch),
            )
            self.live.calls += 1
            evaluated, proof = await peer.querying.screen(message)
            outputs = await self.live.verify(self.peer, cached, batch, evaluated, proof)
            found = encoded.find(b"".join(screening.tag_of(o) for o in outputs))
        except StaleEpoch as exc:
            if encoded is not None:
                self._refused_as_stale(encoded)
            again = [q for q in batch if not q.retried and not q.future.done()]
            for query in batch:
                if query.retried and not query.future.done():
                    query.future.set_exception(
                        PeerError(f"peer {self.peer} refused the query: {exc}")
                    )
                query.retried = True
            self.waiting.extendleft(reversed(again))
            return
        except asyncio.CancelledError:
            for query in batch:
                if not query.future.done():
                    query.future.set_exception(_stopping())
            raise
        except Exception as exc:
            for query in batch:
                if not query.future.done():
                    query.future.set_exception(exc)
            return
        finally:
            peer.slots.release()
            self._wake()
        start = 0
        for query in batch:
            end = start + len(query.elements)
            if not query.future.done():
                answer = _Answer(cached, batch_id, outputs[start:end], found[start:end])
                query.future.set_result(answer)
            start = end


def _stopping() -> Interrupted:
    return Interrupted("real-time screening stopped: the node is shutting down; retry shortly")


# -- the service --------------------------------------------------------------------------------


class LiveScreening:
    """Real-time screening of typed identifiers against partners' lists; one per process.

    See the module docstring for the phases. `start` prefetches the configured
    targets' encoded sets (in the background); `close` ends every call, fetch and
    channel. `calls` counts the Screen calls made (batches, not queries). Session
    records are written by `writer` (the serving process's, else its own, which
    `close` closes).
    """

    def __init__(self, node: NodeContext, writer: GroupWriter | None = None) -> None:
        self.node = node
        # One thread for all writes: writers on several connections wait on each other's locks.
        self.writer = writer or GroupWriter(node)
        self._owns_writer = writer is None
        self.calls = 0
        self._targets: dict[tuple[str, str], _Target] = {}
        self._peers: dict[str, _Peer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._active = 0  # calls of `screen` running
        self._idle = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        """Loads or fetches the encoded set of every `[[screen.target]]`, in the background."""
        for target in self.node.config.screen_targets:
            if self._refusal(target.peer) is None:
                self.spawn(self._prefetch(target.peer, target.list))

    async def close(self) -> None:
        """Ends calls in flight (their targets answer Interrupted), fetches and channels."""
        self.closed = True
        for target in self._targets.values():
            target.fail_waiting(_stopping())
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._active:  # calls answered Interrupted record that before the writer goes
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), DEADLINE_SECONDS)
        for peer in self._peers.values():
            await peer.channel.close()
        self._peers.clear()
        if self._owns_writer:
            await asyncio.to_thread(self.writer.close)

    async def screen(
        self,
        identifiers: list[dict[str, Any]],
        targets: list[tuple[str, str]] | None,
        purpose: str,
        operator: str,
    ) -> ScreenOutcome:
        """Screens `identifiers` against `targets` (default: node.toml's), recorded and audited."""
        if self.closed:
            raise _stopping()
        self._active += 1
        try:
            return await self._screen_all(identifiers, targets, purpose, operator)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _screen_all(
        self,
        identifiers: list[dict[str, Any]],
        targets: list[tuple[str, str]] | None,
        purpose: str,
        operator: str,
    ) -> ScreenOutcome:
        _check_purpose(purpose)
        _check_operator(operator)
        if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= MAX_IDENTIFIERS:
            count = f"{len(identifiers):,} given" if isinstance(identifiers, list) else "not a list"
            raise InvalidInput(
                f"identifiers: give 1 to {MAX_IDENTIFIERS:,} identifiers per call ({count}); "
                "split a larger batch"
            )
        chosen = self._chosen(targets)
        context = self.node.config.canon_context()
        request = await asyncio.to_thread(
            _prepare, identifiers, context, len(chosen), self.node.runner
        )
        answers = await asyncio.gather(
            *(
                self._screen(k, peer, name, request, purpose, operator)
                for k, (peer, name) in enumerate(chosen)
            )
        )
        found = sorted(
            (key, hit) for hits, _ in answers for key, hit in hits
        )  # by identifier, then target and element order
        errors = [error for _, error in answers if error is not None]
        return ScreenOutcome([hit for _, hit in found], errors)

    # -- one target of one call

    async def _screen(
        self, k: int, peer: str, name: str, request: _Request, purpose: str, operator: str
    ) -> tuple[list[tuple[tuple[int, int, int], ScreenHit]], TargetError | None]:
        """Screens one call against one target; a failure is its TargetError, recorded."""
        try:
            refusal = self._refusal(peer)
            if refusal is not None:
                raise refusal
            await self._checked(peer, name, purpose, operator)
        except NodeError as exc:
            return [], _target_error(peer, name, exc)
        target = self._target(peer, name)
        record = SessionRecord(
            self.node,
            session_id=secrets.token_hex(16),
            peer=peer,
            role="initiator",
            mode="screen",
            suite=SUITE,
            list=LIVE_LIST,
            peer_list=name,
            purpose=purpose,
            operator=operator,
        )
        started = self.writer.submit(record.start, len(request.elements))
        loop = asyncio.get_running_loop()
        query = _Query(
            purpose, request.elements, request.blinds[k], request.blinded[k], loop.create_future()
        )
        fetches = target.fetches
        target.submit(query)
        try:
            try:
                answer = await asyncio.wait_for(asyncio.shield(query.future), DEADLINE_SECONDS)
            except TimeoutError:
                raise PeerError(_late(target)) from None
            labels = _opened(peer, answer)
        except BaseException as exc:
            query.future.cancel()
            await settled(started)
            await settled(self.writer.submit(record.fail, describe(exc)))
            if not isinstance(exc, Exception):
                raise
            return [], _target_error(peer, name, exc)
        await settled(started)
        hits: list[tuple[tuple[int, int, int], ScreenHit]] = []
        rows: list[dict[str, Any]] = []
        for e, opened in enumerate(labels):
            if opened is None:
                continue
            label = joined_label(opened)
            type_ = request.types[e]
            for i in request.owners[e]:
                hits.append(((i, k, e), ScreenHit(i, type_, peer, name, label)))
                rows.append({"ref": request.refs[i], "type": type_, "peer_label": label})
        await settled(
            self.writer.submit(
                record.complete,
                sum(opened is not None for opened in labels),
                answer.cached.entries,
                rows,
                labels_received=sum(len(opened or ()) for opened in labels),
                event="screen.query",
                epoch=answer.cached.epoch,
                batch_size=len(request.elements),
                fetches=target.fetches - fetches,
                batch_id=answer.batch_id,
                identifiers=len(request.refs),
            )
        )
        return hits, None

    def _chosen(self, targets: Sequence[Any] | None) -> list[tuple[str, str]]:
        """The call's targets, checked and without repeats; node.toml's when none are given."""
        if not targets:
            configured = [(t.peer, t.list) for t in self.node.config.screen_targets]
            if not configured:
                raise ConfigError(
                    "no screening target: name one in the request (targets: peer and list), "
                    f"or configure defaults in {self.node.config.config_path} as "
                    '[[screen.target]] tables, e.g. peer = "police-nl" and list = "watchlist" '
                    "(a peer whose modes include screen)"
                )
            return list(dict.fromkeys(configured))
        if not isinstance(targets, Sequence) or len(targets) > MAX_TARGETS:
            raise InvalidInput(f"targets: give at most {MAX_TARGETS} targets (peer and list)")
        chosen = []
        for i, target in enumerate(targets):
            peer, name = target if isinstance(target, Sequence) and len(target) == 2 else ("", "")
            try:
                check_agency(peer, f"targets[{i}].peer")
            except ConfigError as exc:
                raise InvalidInput(str(exc)) from None
            check_list_name(name, f"targets[{i}].list")
            chosen.append((peer, name))
        return list(dict.fromkeys(chosen))

    def _refusal(self, peer: str) -> NodeError | None:
        """Why node.toml does not let us screen against `peer`, or None."""
        config = self.node.config
        try:
            policy = config.peer(peer)
        except ConfigError as exc:
            return exc
        if not policy.allows_mode("screen"):
            modes = ",".join(sorted({*policy.modes, "screen"}))
            return PolicyDenied(
                f"the policy for peer {peer} in {config.config_path} does not allow screening "
                f"(modes: {', '.join(sorted(policy.modes)) or 'none'}); allow it with "
                f"'blindmatch peer set {config.node_dir} --agency {peer} --modes {modes}'"
            )
        return None

    async def _checked(self, peer: str, name: str, purpose: str, operator: str) -> None:
        """Refuses, audited, a peer whose certificate the installed CRL revokes (cached a while)."""
        state = self.peer(peer)
        async with state.checking:
            if time.monotonic() - state.checked_at < REVOCATION_CHECK_SECONDS:
                return
            fields = {
                "operator": operator,
                "peer": peer,
                "role": "initiator",
                "purpose": purpose,
                "list": LIVE_LIST,
                "peer_list": name,
                "mode": "screen",
            }
            await _refuse_revoked_peer(
                self.node, peer, state.address, PROBE_SECONDS, "screen.refused", fields
            )
            state.checked_at = time.monotonic()

    async def _prefetch(self, peer: str, name: str) -> None:
        try:
            await self._checked(peer, name, PREFETCH_PURPOSE, "node")
            await self._target(peer, name).ready(PREFETCH_PURPOSE)
        except (NodeError, CryptoError) as exc:
            log.warning("could not prefetch %s's list %s for screening: %s", peer, name, exc)

    # -- shared by the targets

    def peer(self, agency: str) -> _Peer:
        """The peer's channel (opened again when its address in node.toml changed)."""
        address = self.node.config.peer(agency).address
        state = self._peers.get(agency)
        if state is None or state.address != address:
            if state is not None:  # calls in flight on the old address finish or fail
                self.spawn(state.channel.close(CALL_SECONDS))
            channel = open_channel(self.node.config, agency, address)
            stub = pb_grpc.MatchingStub(channel)
            idle = float(self.node.config.idle_seconds)
            state = _Peer(
                agency,
                address,
                channel,
                GrpcScreening(stub, agency, FETCH_SECONDS, idle),
                GrpcScreening(stub, agency, CALL_SECONDS, idle),
            )
            self._peers[agency] = state
        return state

    def _target(self, peer: str, name: str) -> _Target:
        target = self._targets.get((peer, name))
        if target is None:
            target = self._targets[(peer, name)] = _Target(self, peer, name)
        return target

    async def verify(
        self,
        peer: str,
        cached: CachedSet,
        batch: list[_Query],
        evaluated: bytes,
        proof: bytes,
    ) -> list[bytes]:
        """Verifies a Screen call's proof and finalises its outputs, off the event loop.

        A batch below the runner's `min_parallel` runs in a thread: libsodium releases the
        GIL, and shipping it to a worker process cost more than it saved (measured: 581 vs
        431 queries/s, docs/SCREENING-LIVE.md).
        """
        runner = self.node.runner
        args = (
            cached.public_key,
            [e for q in batch for e in q.elements],
            b"".join(q.blinds for q in batch),
            b"".join(q.blinded for q in batch),
            evaluated,
            proof,
        )
        # As for blinding: a small batch in a thread, a large one spread over the pool.
        spread = runner if len(args[1]) >= runner.min_parallel else None
        try:
            return await asyncio.to_thread(screening.verify_and_finalize, *args, spread)
        except CryptoError as exc:
            raise unverifiable(peer, cached.epoch, exc) from None

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Runs `work` as a task that `close` cancels."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("real-time screening task ended: %s", describe(exc))


def _late(target: _Target) -> str:
    if target.waiting_for_fetch():
        since = time.monotonic() - target.loading_since
        return (
            f"the encoded list of {target.peer}'s list {target.list} is still being fetched "
            f"(asked {since:.0f} s ago; a first use, a new key epoch or a changed list); retry "
            "shortly, and if it persists check that the peer is serving"
        )
    return (
        f"peer {target.peer} did not answer a screening query within {DEADLINE_SECONDS:.0f} s; "
        "retry later"
    )


def _opened(peer: str, answer: _Answer) -> list[list[str] | None]:
    """Per element: the opened labels of a hit ([] when none was released), or None."""
    opened: list[list[str] | None] = []
    for output, entries in zip(answer.outputs, answer.found, strict=True):
        if entries is None:
            opened.append(None)
            continue
        try:
            opened.append([screening.open_label(output, s) for s in entries if s])
        except CryptoError:
            raise unopenable(peer) from None
    return opened


def _check_purpose(purpose: str) -> None:
    try:
        check_purpose(purpose if isinstance(purpose, str) else "")
    except InvalidInput as exc:
        raise InvalidInput(f"purpose: {exc.peer}") from None


def _check_operator(operator: str) -> None:
    if (
        not isinstance(operator, str)
        or not operator.strip()
        or len(operator) > MAX_OPERATOR_CHARS
        or not operator.isprintable()
    ):
        raise InvalidInput(
            f"operator: the person screening must be named (printable, at most "
            f"{MAX_OPERATOR_CHARS} characters)"
        )
