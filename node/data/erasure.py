"""Erasure and retention in the store (DESIGN §5): the SQL of removing a record, dropping a
list and expiring records. `node.sessions.erasure` decides when to call it, rotates the
list's screening epoch and audits, all in one transaction.

A record takes with it its elements and their cached points, and the elements take their
screening entries (`ON DELETE CASCADE`). Its hits are rows of `hits` naming the local list
and ref: they are deleted by (list, ref). A list takes its records, its screening epochs
and their entries, and every hit on it.

Retention: a list's `retain_days` (NULL: the node default; 0: keep forever); a record
expires when it was last stored (`records.stored_at`, set by every ingest that writes it)
before now minus that many days. Validity windows: an operations record whose
`records.valid_until` has passed expires too, whatever the list's retention
(`expire_windows`). Times are ISO 8601 UTC strings of one form (`store.utc_now`), so they
compare as text.

Functions that take a `conn` run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = [
    "MAX_RETAIN_DAYS",
    "Erased",
    "ListRow",
    "drop_list",
    "expire_records",
    "expire_windows",
    "find_list",
    "has_expired",
    "has_window_expired",
    "list_names",
    "lists_with_retention",
    "lists_with_windows",
    "remove_record",
    "retention_days",
    "set_retention",
    "touch_list",
]

MAX_RETAIN_DAYS = 36_500
"""The longest retention a list or node may set: a hundred years."""


@dataclass(frozen=True)
class Erased:
    """What one erasure deleted."""

    records: int
    elements: int
    hits: int


@dataclass(frozen=True)
class ListRow:
    """A stored list as erasure sees it: id, name, kind and own retention (None: the default)."""

    id: int
    name: str
    kind: str
    retain_days: int | None


def find_list(conn: sqlite3.Connection, name: str) -> ListRow | None:
    """The list called `name`, or None."""
    row = conn.execute(
        "SELECT id, name, kind, retain_days FROM lists WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else ListRow(*row)


def list_names(conn: sqlite3.Connection) -> list[str]:
    """Every list's name, in order."""
    return [r[0] for r in conn.execute("SELECT name FROM lists ORDER BY name")]


def touch_list(conn: sqlite3.Connection, list_id: int, now: str) -> None:
    """Bumps the list's version (serving nodes reload its points) and its update time."""
    conn.execute(
        "UPDATE lists SET version = version + 1, updated_at = ? WHERE id = ?", (now, list_id)
    )


def set_retention(conn: sqlite3.Connection, list_id: int, days: int) -> None:
    """Sets the list's own retention in days (0: keep forever)."""
    conn.execute("UPDATE lists SET retain_days = ? WHERE id = ?", (days, list_id))


def remove_record(conn: sqlite3.Connection, list_row: ListRow, ref: str) -> Erased | None:
    """Deletes the record `ref` of the list, its elements and its hits; None if there is none."""
    row = conn.execute(
        "SELECT id FROM records WHERE list_id = ? AND ref = ?", (list_row.id, ref)
    ).fetchone()
    if row is None:
        return None
    elements = conn.execute("DELETE FROM elements WHERE record_id = ?", (row[0],)).rowcount
    conn.execute("DELETE FROM records WHERE id = ?", (row[0],))
    hits = conn.execute(
        "DELETE FROM hits WHERE list = ? AND ref = ?", (list_row.name, ref)
    ).rowcount
    return Erased(1, elements, hits)


def drop_list(conn: sqlite3.Connection, list_row: ListRow) -> Erased:
    """Deletes the list, its records and elements, its screening epochs and its hits."""
    list_id = list_row.id
    # Epochs first: their entries go by epoch (the key's prefix), not element by element.
    conn.execute("DELETE FROM screen_epochs WHERE list_id = ?", (list_id,))
    elements = conn.execute(
        "DELETE FROM elements WHERE record_id IN (SELECT id FROM records WHERE list_id = ?)",
        (list_id,),
    ).rowcount
    records = conn.execute("DELETE FROM records WHERE list_id = ?", (list_id,)).rowcount
    hits = conn.execute("DELETE FROM hits WHERE list = ?", (list_row.name,)).rowcount
    conn.execute("DELETE FROM lists WHERE id = ?", (list_id,))
    return Erased(records, elements, hits)


def retention_days(conn: sqlite3.Connection) -> dict[str, int | None]:
    """Each list's own retention in days (None: the node default; 0: keep forever)."""
    return dict(conn.execute("SELECT name, retain_days FROM lists").fetchall())


def lists_with_retention(conn: sqlite3.Connection, default_days: int) -> list[tuple[str, int]]:
    """(name, retain_days) of every list whose retention (own, else `default_days`) is set."""
    rows = conn.execute(
        "SELECT name, coalesce(retain_days, ?) FROM lists ORDER BY name", (default_days,)
    ).fetchall()
    return [(name, int(days)) for name, days in rows if days and days > 0]


# Records last stored before the cutoff. A record stored before `stored_at` existed counts
# from its list's last change, as the migration that added the column does.
_EXPIRED = """
    FROM records
    WHERE list_id = :list_id
      AND coalesce(stored_at, (SELECT updated_at FROM lists WHERE id = :list_id)) < :cutoff
"""


def has_expired(conn: sqlite3.Connection, list_id: int, cutoff: str) -> bool:
    """Whether the list has a record last stored before `cutoff` (a read: no write lock)."""
    args = {"list_id": list_id, "cutoff": cutoff}
    return conn.execute(f"SELECT 1 {_EXPIRED} LIMIT 1", args).fetchone() is not None


def expire_records(conn: sqlite3.Connection, list_row: ListRow, cutoff: str) -> Erased:
    """Deletes the list's records last stored before `cutoff`, their elements and their hits."""
    return _delete_selected(
        conn, _EXPIRED, {"list_id": list_row.id, "name": list_row.name, "cutoff": cutoff}
    )


def _delete_selected(conn: sqlite3.Connection, selection: str, args: dict[str, object]) -> Erased:
    """Deletes the records `selection` ("FROM records WHERE ...") picks, with elements and hits."""
    hits = conn.execute(
        f"DELETE FROM hits WHERE list = :name AND ref IN (SELECT ref {selection})", args
    ).rowcount
    elements = conn.execute(
        f"DELETE FROM elements WHERE record_id IN (SELECT id {selection})", args
    ).rowcount
    records = conn.execute(f"DELETE {selection}", args).rowcount
    return Erased(records, elements, hits)


def lists_with_windows(conn: sqlite3.Connection) -> list[str]:
    """The names of the lists with a record that has a validity window."""
    rows = conn.execute(
        "SELECT name FROM lists l WHERE EXISTS (SELECT 1 FROM records r WHERE r.list_id = l.id "
        "AND (r.valid_from IS NOT NULL OR r.valid_until IS NOT NULL)) ORDER BY name"
    ).fetchall()
    return [name for (name,) in rows]


_WINDOW_ENDED = """
    FROM records
    WHERE list_id = :list_id AND valid_until IS NOT NULL AND valid_until <= :now
"""


def has_window_expired(conn: sqlite3.Connection, list_id: int, now: str) -> bool:
    """Whether the list has a record whose validity window ended by `now` (a read)."""
    args = {"list_id": list_id, "now": now}
    return conn.execute(f"SELECT 1 {_WINDOW_ENDED} LIMIT 1", args).fetchone() is not None


def expire_windows(conn: sqlite3.Connection, list_row: ListRow, now: str) -> Erased:
    """Deletes the list's records whose window ended by `now`, their elements and hits."""
    return _delete_selected(
        conn, _WINDOW_ENDED, {"list_id": list_row.id, "name": list_row.name, "now": now}
    )
