"""Screening, responder side: key epochs, encoded sets, answering fetches and queries.

Each list has one current key epoch (`screen_epochs`): a 32-byte random seed from
which RFC 9497 DeriveKeyPair (VOPRF mode) gives (k, K), info = "blindmatch/v1
screening " || list || 0x00 || u64(epoch). The epoch number is the row id, never
reused. `current_epoch` rotates lazily when the epoch is older than the node's
`screen_epoch_hours`, and brings the encoded set up to date with the list: only
elements without an entry for the epoch are encoded (entries die with their element,
`ON DELETE CASCADE`), over all cores. Several processes may serve one store
(`serve --workers`): whether a rotation is due is decided again inside its write
transaction, so only one of them rotates, and a build whose epoch another process
rotated away starts again on the new one. `rotate_epoch` (also `blindmatch epoch rotate`)
makes a new epoch and deletes the old ones and their entries; an erasure
(`node.sessions.erasure`) does the same in its own transaction, so that no peer's cached
copy of the set can answer for an erased record. Labels are sealed for
every labelled element; a peer whose policy withholds labels gets the tags only.
`answer_screen` charges the peer's budget of items per UTC day (`screen_usage`) and
audits "screen.answered" in one transaction; it records no session and no hits.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from crypto import screening
from crypto.batch import BatchRunner
from node.data import screening as tables
from node.data.screening import Epoch
from node.data.store import Store
from node.errors import InvalidInput, LimitExceeded, StaleEpoch
from node.policy import FetchRequest, ScreenQuery
from node.sessions import observe
from node.sessions.answering import Answering
from node.sessions.records import append_audit, append_disclosure
from node.setup.config import PeerPolicy
from node.setup.context import NodeContext

__all__ = [
    "SUITE",
    "EncodedHeader",
    "Epoch",
    "answer_fetch",
    "answer_screen",
    "build_encoded_list",
    "current_epoch",
    "rotate_epoch",
    "rotate_in_transaction",
]

SUITE = "ristretto255-sha512"
_BUILD_ROWS = 20_000  # elements per worker task when encoding
_BUILD_ATTEMPTS = 3  # builds restarted because another process rotated the epoch
_build_locks: dict[tuple[str, str], threading.Lock] = collections.defaultdict(threading.Lock)
_build_locks_guard = threading.Lock()


# -- responder: epochs and the encoded set ------------------------------------------------------


def rotate_epoch(
    node: NodeContext, store: Store, list_name: str, operator: str, reason: str = "manual"
) -> Epoch:
    """Starts a new key epoch for a list, deleting the old ones; audits "epoch.rotated"."""
    list_id, _, _ = store.list_row(list_name)
    with store.transaction() as conn:
        return rotate_in_transaction(node, conn, list_id, list_name, operator, reason)


def rotate_in_transaction(
    node: NodeContext,
    conn: sqlite3.Connection,
    list_id: int,
    list_name: str,
    operator: str,
    reason: str,
) -> Epoch:
    """Starts a new key epoch inside the caller's transaction, deleting the old ones; audited."""
    now = node.now().isoformat(timespec="seconds")
    epoch = tables.insert_epoch(conn, list_id, list_name, secrets.token_bytes(32), now)
    previous = tables.delete_other_epochs(conn, list_id, keep=epoch.id)
    fields = {"operator": operator, "list": list_name, "epoch": epoch.id, "previous": previous}
    append_audit(conn, node, "epoch.rotated", {**fields, "reason": reason})
    return epoch


def _due(node: NodeContext, epoch: Epoch) -> bool:
    age = node.now() - dt.datetime.fromisoformat(epoch.created_at)
    return age >= dt.timedelta(hours=node.config.screen_epoch_hours)


def _epoch_when_due_rotated(node: NodeContext, store: Store, list_id: int, list_name: str) -> Epoch:
    """The current epoch, rotated first if due: decided again inside the write transaction,
    so of several processes serving one store (`serve --workers`) only one rotates."""
    epoch = tables.latest_epoch(store, list_name)  # read first: usually no write lock needed
    if epoch is not None and not _due(node, epoch):
        return epoch
    with store.transaction() as conn:
        epoch = tables.latest_epoch(store, list_name)
        if epoch is not None and not _due(node, epoch):
            return epoch
        reason = "first use" if epoch is None else "schedule"
        return rotate_in_transaction(node, conn, list_id, list_name, "node", reason)


def current_epoch(node: NodeContext, store: Store, list_name: str) -> Epoch:
    """The list's current epoch, rotated if due and with its encoded set up to date."""
    list_id, version, _ = store.list_row(list_name)
    key = (str(node.config.node_dir), list_name)
    with _build_locks_guard:
        lock = _build_locks[key]
    with lock:  # one builder per list in this process; others wait for its result
        for _ in range(_BUILD_ATTEMPTS):
            epoch = _epoch_when_due_rotated(node, store, list_id, list_name)
            if epoch.list_version == version:
                return epoch
            try:
                build_encoded_list(node, store, epoch)
            except _EpochGone:  # rotated by another process meanwhile: build the new one
                continue
            with store.transaction() as conn:
                tables.set_epoch_version(conn, epoch.id, version)
            return tables.latest_epoch(store, list_name) or epoch
    text = f"list {list_name!r} changed key epoch while its encoded set was built; try again"
    raise StaleEpoch(text, peer=text, retry_after=1.0)


class _EpochGone(Exception):
    """The epoch being built was deleted by a rotation in another process."""


def build_encoded_list(node: NodeContext, store: Store, epoch: Epoch) -> int:
    """Encodes every element of the list without an entry for `epoch`; returns how many."""
    sk, _ = epoch.key_pair()
    runner = node.runner
    cursor = tables.unencoded(store, epoch)
    pending: collections.deque[tuple[list[int], Future[tuple[bytes, list[bytes]]]]] = (
        collections.deque()
    )

    def write(ids: list[int], result: tuple[bytes, list[bytes]]) -> None:
        tags, sealed = result
        with store.transaction() as conn:
            if not tables.epoch_exists(conn, epoch.id):
                raise _EpochGone
            tables.insert_entries(conn, epoch.id, ids, tags, sealed)

    encoded = 0
    for part in _tasks(cursor, tables.unencoded_count(store, epoch), runner):
        future = runner.submit(
            screening.encode_entries,
            sk,
            [r[1] for r in part],
            b"".join(r[2] for r in part),
            [r[3] for r in part],
        )
        pending.append(([r[0] for r in part], future))
        encoded += len(part)
        while len(pending) > 2 * runner.workers:
            write(*_popped(pending))
    while pending:
        write(*_popped(pending))
    return encoded


def _tasks(cursor: sqlite3.Cursor, remaining: int, runner: BatchRunner) -> Iterator[list[Any]]:
    """The rows to encode, split into worker tasks that shrink towards the end of the list.

    The first tasks are read at once, so the workers start; the rest in one read while they
    work, so no read is open on the connection while entries are written (reading and
    writing interleaved cost the main process a third more time at 1,000,000 entries).
    """
    for _ in range(runner.workers):
        part = cursor.fetchmany(_task_size(remaining, runner))
        if not part:
            return
        remaining -= len(part)
        yield part
    rows = cursor.fetchall()
    start = 0
    while start < len(rows):
        size = _task_size(len(rows) - start, runner)
        yield rows[start : start + size]
        start += size


def _task_size(remaining: int, runner: BatchRunner) -> int:
    """Elements for the next worker task: a share of what is left, between 256 and 20,000."""
    if runner.executor is None:
        return _BUILD_ROWS
    return max(256, min(_BUILD_ROWS, -(-remaining // (2 * runner.workers))))


def _popped(
    pending: collections.deque[tuple[list[int], Future[tuple[bytes, list[bytes]]]]],
) -> tuple[list[int], tuple[bytes, list[bytes]]]:
    ids, future = pending.popleft()
    return ids, future.result()


# -- responder: answering peers -----------------------------------------------------------------


@dataclass(frozen=True)
class EncodedHeader:
    """What every chunk of a fetched encoded list repeats."""

    epoch: int
    public_key: bytes
    list_version: int
    list_kind: str
    total: int


async def answer_fetch(
    answering: Answering, peer: str, request: FetchRequest
) -> AsyncIterator[tuple[EncodedHeader, bytes, list[bytes]]]:
    """The encoded list for `peer`: (header, packed tags, sealed labels) per chunk, at least one."""
    fields: dict[str, object] = {"peer": peer, **request.audit_fields()}
    node = answering.node
    header = None
    try:
        with answering.admit(peer, "screen", request.list) as policy:
            header = await asyncio.to_thread(_fetched, node, policy, request, fields)
            # A connection of its own: the rows are read in steps, from whichever thread.
            with Store.open(node.config.node_dir, any_thread=True) as store:
                chunks = tables.entry_chunks(store, header.epoch, policy.release_labels)
                first = True
                while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                    yield header, *chunk
                    first = False
                if first:  # an empty list still tells its epoch and key
                    yield header, b"", []
    except Exception as exc:
        if header is None:
            await answering.refused("screen.refused", fields, exc)
        raise


def _fetched(
    node: NodeContext, policy: PeerPolicy, request: FetchRequest, fields: dict[str, object]
) -> EncodedHeader:
    """Brings the epoch up to date and audits the fetch and its disclosure (blocking)."""
    store = node.store()
    epoch = current_epoch(node, store, request.list)
    _, _, kind = store.list_row(request.list)
    total, labelled = tables.entry_counts(store, epoch.id)
    released = labelled if policy.release_labels else 0
    entry = {"operator": f"peer:{policy.agency}", **fields, "epoch": epoch.id}
    with store.transaction() as conn:
        append_audit(
            conn,
            node,
            "screen.fetched",
            {**entry, "entries": total, "labels_withheld": not released},
        )
        append_disclosure(conn, node, entry, "sent", released)
    return EncodedHeader(epoch.id, epoch.public_key, epoch.list_version, kind, total)


def next_utc_midnight(now: dt.datetime) -> dt.datetime:
    """When a daily budget resets: the next 00:00 UTC after `now`."""
    day = now.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _over_budget(
    node: NodeContext, peer: str, budget: int, used: int, asked: int, now: dt.datetime
) -> LimitExceeded:
    reset = next_utc_midnight(now)
    at = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    return LimitExceeded(
        f"{peer}'s screening budget with {node.config.agency} is {budget:,} items per UTC day; "
        f"{used:,} used today and this batch asks for {asked:,}; it resets at {at} "
        "(next midnight UTC)",
        peer=f"your screening budget with this node is used up for today; it resets at {at}",
        retry_after=(reset - now).total_seconds(),
    )


async def answer_screen(answering: Answering, peer: str, query: ScreenQuery) -> tuple[bytes, bytes]:
    """Evaluates one batch for `peer` under the current epoch: (packed Es, proof)."""
    fields: dict[str, object] = {"peer": peer, **query.audit_fields()}
    try:
        with answering.admit(peer, "screen", query.list) as policy:
            return await asyncio.to_thread(_evaluate, answering.node, policy, query, fields)
    except Exception as exc:
        await answering.refused("screen.refused", fields, exc)
        raise


def _evaluate(
    node: NodeContext, policy: PeerPolicy, query: ScreenQuery, fields: dict[str, object]
) -> tuple[bytes, bytes]:
    """Checks the batch, epoch and budget, evaluates, charges and audits (blocking)."""
    count = len(query.blinded) // 32
    if len(query.blinded) % 32 or not 0 < count <= screening.MAX_BATCH:
        text = f"a screening batch holds 1 to {screening.MAX_BATCH:,} packed 32-byte elements"
        raise InvalidInput(text, peer=text)
    store = node.store()
    epoch = current_epoch(node, store, query.list)
    if query.epoch != epoch.id or query.list_version != epoch.list_version:
        text = (
            f"the encoded list of {query.list!r} changed since it was fetched (epoch "
            f"{query.epoch}, version {query.list_version}); fetch the encoded list again"
        )
        raise StaleEpoch(text, peer=text)
    now = node.now()
    day = now.astimezone(dt.UTC).date().isoformat()
    budget = policy.screen_budget_per_day
    used = tables.usage(store, policy.agency, day)
    if used + count > budget:  # checked before the work, and again when charging
        raise _over_budget(node, policy.agency, budget, used, count, now)
    sk, pk = epoch.key_pair()
    evaluated, proof = screening.blind_evaluate(sk, pk, query.blinded, node.runner)
    with store.transaction() as conn:
        used = tables.usage(store, policy.agency, day)
        if used + count > budget:
            raise _over_budget(node, policy.agency, budget, used, count, now)
        tables.charge_usage(conn, policy.agency, day, count)
        append_audit(conn, node, "screen.answered", {"operator": f"peer:{policy.agency}", **fields})
    observe.screen_answered(policy.agency, count)
    return evaluated, proof
