"""Erasure and retention (DESIGN §5): removing a record, dropping a list, expiring records.

The one orchestration every caller uses: the CLI (`records remove`, `lists drop`), the
retention job of `serve` (`node.jobs.retention`) and the local HTTP API. Each erasure is
one transaction in which

1. the rows go (`node.data.erasure`): the record(s), their elements with cached points
   and screening entries, and their hits (or the whole list with its epochs);
2. the list's version is bumped, so a serving node reloads its points before the next
   mutual session and refuses screening queries made against the older version;
3. the list's screening key epoch is rotated and the old epochs deleted with their keys
   (`screen_responder.rotate_in_transaction`). A peer that fetched the encoded set before
   the erasure holds the erased record's tag under the old key: its next query is refused
   as stale and it fetches a set without the record. With the old key gone, no cached
   copy can answer for the record again, even one that claims the current list version.
   A list never screened has no epoch and no copy to invalidate: nothing rotates. A
   dropped list's epochs go with it (epoch numbers are never reused);
4. one audit entry says who, why and how many: `record.removed`, `list.dropped` or
   `records.expired` — never the ref, an identifier or a label.

Retention: a list's own `retain_days` (set by `ingest --retain-days`; 0 keeps forever),
else the node's `retain_days` (node.toml; 0, the default, keeps forever). A record expires
when it has not been stored (ingested or re-ingested) for that many days by the node's
clock. `expire_records` is idempotent: which records expired is decided inside each
list's write transaction, so of several processes serving one store (`serve --workers`)
the first deletes them and the others find nothing, writing nothing and auditing nothing.

Validity windows (operations lists): a record whose `valid_until` has passed is erased by
the same pass, audited as `records.expired` with `valid_until_before` instead of a
retention. Sessions already leave records outside their window out (`Store.list_points`,
the screening build), judged at session time; the pass makes that final, and brings a
screening set up to date when a window has opened: a list whose current encoded set lacks
a record now inside its window gets a new version, so the next fetch encodes it and peers
holding the older set are told to fetch again.
Every function blocks on SQLite: call it off the event loop.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

from node.data import erasure as tables
from node.data.erasure import Erased, ListRow
from node.data.screening import latest_epoch, missing_in_window
from node.data.store import Store, check_list_name, stored_time
from node.errors import ConfigError, NotFound
from node.policy import MAX_PURPOSE_CHARS
from node.sessions.records import append_audit
from node.sessions.screen_responder import rotate_in_transaction
from node.setup.context import NodeContext

__all__ = ["Erased", "Erasure", "check_reason", "drop_list", "expire_records", "remove_record"]


@dataclass(frozen=True)
class Erasure:
    """What one erasure of one list did: what it deleted and the screening epoch it started."""

    list: str
    erased: Erased
    epoch: int | None = None
    """The new screening key epoch, if the list had one (peers' cached copies are now stale)."""
    retain_days: int | None = None
    """The retention a purge applied."""


def check_reason(reason: str | None) -> str | None:
    """Returns the erasure's reason stripped (None if none was given), or raises ConfigError."""
    text = (reason or "").strip()
    if not text:
        return None  # optional (DESIGN §6): the entry still says who and how many
    if len(text) > MAX_PURPOSE_CHARS or not text.isprintable():
        raise ConfigError(
            f"--reason must be printable text of at most {MAX_PURPOSE_CHARS} characters"
        )
    return text


def _list(store: Store, name: str) -> ListRow:
    """The list `name`, read inside the caller's transaction, or NotFound naming the lists."""
    check_list_name(name)
    row = tables.find_list(store.conn, name)
    if row is None:
        names = ", ".join(tables.list_names(store.conn)) or "none"
        raise NotFound(
            f"no list {name!r} in {store.path.parent} (lists: {names}); nothing was changed; "
            "see 'blindmatch lists NODE_DIR'"
        )
    return row


def _changed(
    node: NodeContext, store: Store, conn: sqlite3.Connection, row: ListRow, why: str, who: str
) -> int | None:
    """Bumps the list's version and rotates its screening epoch if it has one; the new epoch."""
    tables.touch_list(conn, row.id, stored_time(node.now()))
    if latest_epoch(store, row.name) is None:
        return None
    return rotate_in_transaction(node, conn, row.id, row.name, who, why).id


def _cutoff(node: NodeContext, days: int) -> str:
    """When a record must have been stored since to be kept `days` days."""
    return stored_time(node.now() - dt.timedelta(days=days))


def remove_record(
    node: NodeContext, store: Store, list_name: str, ref: str, reason: str | None, operator: str
) -> Erasure:
    """Removes one record, its elements and hits, in one audited transaction (`record.removed`).

    Raises NotFound for an unknown list or ref and ConfigError for a reason that is not
    printable text; both change nothing. Without a reason the entry records null. Removing
    a list's last record leaves the list, empty.
    """
    why = check_reason(reason)
    ref = ref.strip()
    with store.transaction() as conn:
        row = _list(store, list_name)
        erased = tables.remove_record(conn, row, ref) if ref else None
        if erased is None:
            raise NotFound(
                f"list {list_name!r} has no record with ref {ref!r}; nothing was changed "
                "(refs are the 'ref' column of the ingested file, matched exactly)"
            )
        append_audit(
            conn,
            node,
            "record.removed",
            {
                "operator": operator,
                "list": row.name,
                "reason": why,
                "records": erased.records,
                "elements": erased.elements,
                "hits": erased.hits,
            },
        )
        epoch = _changed(node, store, conn, row, "record removed", operator)
    return Erasure(row.name, erased, epoch)


def drop_list(
    node: NodeContext, store: Store, list_name: str, reason: str | None, operator: str
) -> Erasure:
    """Removes a whole list with its records, screening epochs and hits (`list.dropped`).

    Raises NotFound for an unknown list (nothing changes).
    """
    why = check_reason(reason)
    with store.transaction() as conn:
        row = _list(store, list_name)
        erased = tables.drop_list(conn, row)
        append_audit(
            conn,
            node,
            "list.dropped",
            {
                "operator": operator,
                "list": row.name,
                "kind": row.kind,
                "reason": why,
                "records": erased.records,
                "elements": erased.elements,
                "hits": erased.hits,
            },
        )
    return Erasure(row.name, erased)


def expire_records(node: NodeContext, store: Store) -> list[Erasure]:
    """Deletes every record kept past its list's retention or its validity window, one
    audited transaction per list and cause; brings screening sets up to opened windows."""
    expired = _expire_retention(node, store)
    expired.extend(_expire_windows(node, store))
    _open_windows(node, store)
    return expired


def _expire_windows(node: NodeContext, store: Store) -> list[Erasure]:
    """Deletes the records whose validity window has ended, one audited transaction per list."""
    now = stored_time(node.now())
    expired = []
    for name in tables.lists_with_windows(store.conn):
        row = tables.find_list(store.conn, name)
        if row is None or not tables.has_window_expired(store.conn, row.id, now):
            continue  # read first: no write lock when nothing ended
        with store.transaction() as conn:
            row = tables.find_list(conn, name)  # read again under the write lock
            if row is None:
                continue
            erased = tables.expire_windows(conn, row, now)
            if not erased.records:  # another serving process was first
                continue
            append_audit(
                conn,
                node,
                "records.expired",
                {
                    "operator": "node",
                    "list": row.name,
                    "valid_until_before": now,
                    "records": erased.records,
                    "elements": erased.elements,
                    "hits": erased.hits,
                },
            )
            epoch = _changed(node, store, conn, row, "records expired", "node")
        expired.append(Erasure(row.name, erased, epoch))
    return expired


def _open_windows(node: NodeContext, store: Store) -> None:
    """Bumps the version of a list whose current screening set lacks a record now in window."""
    now = stored_time(node.now())
    for name in tables.lists_with_windows(store.conn):
        epoch = latest_epoch(store, name)
        if epoch is None or not missing_in_window(store, epoch, now):
            continue
        with store.transaction() as conn:
            row = tables.find_list(conn, name)
            current = latest_epoch(store, name)
            if row is None or current is None or current.id != epoch.id:
                continue
            version = conn.execute("SELECT version FROM lists WHERE id = ?", (row.id,)).fetchone()
            if current.list_version == version[0] and missing_in_window(store, current, now):
                tables.touch_list(conn, row.id, now)


def _expire_retention(node: NodeContext, store: Store) -> list[Erasure]:
    """Deletes every record kept past its list's retention, one audited transaction per list."""
    default = node.config.retain_days
    expired = []
    for name, days in tables.lists_with_retention(store.conn, default):
        row = tables.find_list(store.conn, name)
        if row is None or not tables.has_expired(store.conn, row.id, _cutoff(node, days)):
            continue  # read first: an hourly pass that finds nothing takes no write lock
        with store.transaction() as conn:
            row = tables.find_list(conn, name)  # read again under the write lock
            days = default if row is None or row.retain_days is None else row.retain_days
            if row is None or days <= 0:
                continue
            cutoff = _cutoff(node, days)
            erased = tables.expire_records(conn, row, cutoff)
            if not erased.records:  # nothing, or another serving process was first
                continue
            append_audit(
                conn,
                node,
                "records.expired",
                {
                    "operator": "node",
                    "list": row.name,
                    "retain_days": days,
                    "stored_before": cutoff,
                    "records": erased.records,
                    "elements": erased.elements,
                    "hits": erased.hits,
                },
            )
            epoch = _changed(node, store, conn, row, "records expired", "node")
        expired.append(Erasure(row.name, erased, epoch, days))
    return expired
