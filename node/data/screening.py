"""The screening tables (DESIGN §4): key epochs, encoded entries and budgets of the responder,
fetched encoded sets of the initiator. The SQL of screening lives here; `node.sessions`
decides when to call it.

Responder: `screen_epochs` (one row per list and epoch; the epoch number is the row id,
never reused), `screen_entries` (tag and sealed label per element and epoch, deleted with
their element), `screen_usage` (items evaluated per peer per UTC day). Initiator:
`screen_cache` and `screen_cache_entries` (a peer's fetched set per (peer, list)).

Functions that take a `conn` run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from crypto import screening
from node.data.store import IN_WINDOW, Store, utc_now

__all__ = [
    "CachedSet",
    "Epoch",
    "cached_chunks",
    "cached_entries",
    "cached_set",
    "charge_usage",
    "delete_other_epochs",
    "entry_chunks",
    "entry_counts",
    "epoch_exists",
    "insert_entries",
    "insert_epoch",
    "latest_epoch",
    "missing_in_window",
    "own_elements",
    "replace_cached_set",
    "set_epoch_version",
    "unencoded",
    "unencoded_count",
    "usage",
]

CHUNK_ENTRIES = 4096
_LOOKUP_PARAMS = 500  # tags per `IN (...)` lookup


@dataclass(frozen=True)
class Epoch:
    """A list's key epoch: its number, seed (secret) and public key."""

    id: int
    list_id: int
    list_name: str
    seed: bytes
    public_key: bytes
    list_version: int
    created_at: str

    def key_pair(self) -> tuple[bytes, bytes]:
        """The epoch's VOPRF key pair (k, K)."""
        return screening.epoch_key_pair(self.seed, self.list_name, self.id)


# -- responder ----------------------------------------------------------------------------------


def latest_epoch(store: Store, list_name: str) -> Epoch | None:
    """The list's newest epoch, or None."""
    row = store.conn.execute(
        """
        SELECT e.id, e.list_id, e.seed, e.public_key, e.list_version, e.created_at
        FROM screen_epochs e JOIN lists l ON e.list_id = l.id
        WHERE l.name = ? ORDER BY e.id DESC LIMIT 1
        """,
        (list_name,),
    ).fetchone()
    return None if row is None else Epoch(row[0], row[1], list_name, *row[2:])


def insert_epoch(
    conn: sqlite3.Connection, list_id: int, list_name: str, seed: bytes, now: str
) -> Epoch:
    """A new epoch for the list, created at `now`, with its public key; not yet built."""
    cursor = conn.execute(
        "INSERT INTO screen_epochs (list_id, seed, public_key, list_version, created_at) "
        "VALUES (?, ?, ?, -1, ?)",
        (list_id, seed, b"", now),
    )
    epoch_id = int(cursor.lastrowid or 0)
    _, public_key = screening.epoch_key_pair(seed, list_name, epoch_id)
    conn.execute("UPDATE screen_epochs SET public_key = ? WHERE id = ?", (public_key, epoch_id))
    return Epoch(epoch_id, list_id, list_name, seed, public_key, -1, now)


def delete_other_epochs(conn: sqlite3.Connection, list_id: int, keep: int) -> int | None:
    """Deletes the list's epochs but `keep` (entries go with them); returns the newest deleted."""
    (previous,) = conn.execute(
        "SELECT max(id) FROM screen_epochs WHERE list_id = ? AND id != ?", (list_id, keep)
    ).fetchone()
    conn.execute("DELETE FROM screen_epochs WHERE list_id = ? AND id != ?", (list_id, keep))
    return previous


def epoch_exists(conn: sqlite3.Connection, epoch_id: int) -> bool:
    """Whether the epoch is still there (another process may have rotated it away)."""
    return (
        conn.execute("SELECT 1 FROM screen_epochs WHERE id = ?", (epoch_id,)).fetchone() is not None
    )


def set_epoch_version(conn: sqlite3.Connection, epoch_id: int, version: int) -> None:
    """Records that the epoch's encoded set is up to date with list `version`."""
    conn.execute("UPDATE screen_epochs SET list_version = ? WHERE id = ?", (version, epoch_id))


def unencoded(store: Store, epoch: Epoch, now: str | None = None) -> sqlite3.Cursor:
    """(element id, element, ristretto point, label) of every element without an entry, in order.

    Only records inside their validity window at `now` (ISO UTC; default the current time)
    are encoded. `+r.list_id` makes SQLite scan records by id instead of sorting the whole
    list first, so rows stream at once and entries are appended in element order.
    """
    now = now or utc_now()
    return store.conn.execute(
        f"""
        SELECT e.id, e.element, e.point_ristretto, r.label
        FROM records r JOIN elements e ON e.record_id = r.id
        LEFT JOIN screen_entries s ON s.element_id = e.id AND s.epoch_id = ?
        WHERE +r.list_id = ? AND s.element_id IS NULL AND {IN_WINDOW}
        ORDER BY r.id, e.id
        """,
        (epoch.id, epoch.list_id, now, now),
    )


def _has_windows(store: Store, list_id: int) -> bool:
    return (
        store.conn.execute(
            "SELECT 1 FROM records WHERE list_id = ? AND "
            "(valid_from IS NOT NULL OR valid_until IS NOT NULL) LIMIT 1",
            (list_id,),
        ).fetchone()
        is not None
    )


def unencoded_count(store: Store, epoch: Epoch, now: str | None = None) -> int:
    """How many of the list's elements inside their window at `now` have no entry yet."""
    if _has_windows(store, epoch.list_id):
        now = now or utc_now()
        (missing,) = store.conn.execute(
            f"""
            SELECT count(*) FROM records r JOIN elements e ON e.record_id = r.id
            LEFT JOIN screen_entries s ON s.element_id = e.id AND s.epoch_id = ?
            WHERE r.list_id = ? AND s.element_id IS NULL AND {IN_WINDOW}
            """,
            (epoch.id, epoch.list_id, now, now),
        ).fetchone()
        return int(missing)
    (elements,) = store.conn.execute(
        "SELECT count(*) FROM records r JOIN elements e ON e.record_id = r.id WHERE r.list_id = ?",
        (epoch.list_id,),
    ).fetchone()
    (entries,) = store.conn.execute(
        "SELECT count(*) FROM screen_entries WHERE epoch_id = ?", (epoch.id,)
    ).fetchone()
    return max(0, int(elements) - int(entries))


def missing_in_window(store: Store, epoch: Epoch, now: str) -> bool:
    """Whether a record whose window has opened by `now` has an element the epoch lacks."""
    return (
        _has_windows(store, epoch.list_id)
        and store.conn.execute(
            f"""
            SELECT 1 FROM records r JOIN elements e ON e.record_id = r.id
            LEFT JOIN screen_entries s ON s.element_id = e.id AND s.epoch_id = ?
            WHERE r.list_id = ? AND s.element_id IS NULL AND {IN_WINDOW} LIMIT 1
            """,
            (epoch.id, epoch.list_id, now, now),
        ).fetchone()
        is not None
    )


def insert_entries(
    conn: sqlite3.Connection,
    epoch_id: int,
    ids: Sequence[int],
    tags: bytes,
    sealed: Sequence[bytes],
) -> None:
    """Stores encoded entries: element ids, their packed 16-byte tags and sealed labels."""
    conn.executemany(
        "INSERT OR IGNORE INTO screen_entries (epoch_id, tag, element_id, sealed_label) "
        "VALUES (?, ?, ?, ?)",
        (
            (epoch_id, tags[i * 16 : i * 16 + 16], element_id, sealed[i])
            for i, element_id in enumerate(ids)
        ),
    )


def entry_counts(store: Store, epoch_id: int) -> tuple[int, int]:
    """(entries, entries with a sealed label) of an epoch."""
    total, labelled = store.conn.execute(
        "SELECT count(*), coalesce(sum(length(sealed_label) > 0), 0) FROM screen_entries "
        "WHERE epoch_id = ?",
        (epoch_id,),
    ).fetchone()
    return int(total), int(labelled)


def entry_chunks(store: Store, epoch_id: int, labels: bool) -> Iterator[tuple[bytes, list[bytes]]]:
    """An epoch's entries in tag order, chunked: (packed tags, sealed labels or [])."""
    cursor = store.conn.execute(
        "SELECT tag, sealed_label FROM screen_entries WHERE epoch_id = ? ORDER BY tag, element_id",
        (epoch_id,),
    )
    while rows := cursor.fetchmany(CHUNK_ENTRIES):
        yield b"".join(r[0] for r in rows), [r[1] for r in rows] if labels else []


def usage(store: Store, peer: str, day: str) -> int:
    """Items evaluated for `peer` on the UTC `day`."""
    row = store.conn.execute(
        "SELECT items FROM screen_usage WHERE peer = ? AND day = ?", (peer, day)
    ).fetchone()
    return int(row[0]) if row else 0


def charge_usage(conn: sqlite3.Connection, peer: str, day: str, items: int) -> None:
    """Adds `items` to the peer's usage of the UTC `day`."""
    conn.execute(
        "INSERT INTO screen_usage (peer, day, items) VALUES (?, ?, ?) "
        "ON CONFLICT (peer, day) DO UPDATE SET items = items + excluded.items",
        (peer, day, items),
    )


# -- initiator ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedSet:
    """A peer's encoded list as cached in our store."""

    id: int
    epoch: int
    list_version: int
    public_key: bytes
    entries: int


def own_elements(store: Store, list_id: int) -> sqlite3.Cursor:
    """(element, ristretto point, ref, type) of every element of our list, in element order."""
    return store.conn.execute(
        "SELECT e.element, e.point_ristretto, r.ref, e.type FROM elements e "
        "JOIN records r ON e.record_id = r.id WHERE r.list_id = ? ORDER BY e.id",
        (list_id,),
    )


def cached_set(store: Store, peer: str, list_name: str) -> CachedSet | None:
    """Our cached copy of the peer's encoded list, or None."""
    row = store.conn.execute(
        "SELECT id, epoch, list_version, public_key, entries FROM screen_cache "
        "WHERE peer = ? AND list = ? ORDER BY epoch DESC, id DESC LIMIT 1",
        (peer, list_name),
    ).fetchone()
    return None if row is None else CachedSet(*row)


def replace_cached_set(
    store: Store,
    peer: str,
    list_name: str,
    epoch: int,
    list_version: int,
    public_key: bytes,
    list_kind: str,
    chunks: Iterable[tuple[bytes, list[bytes]]],
) -> CachedSet:
    """Replaces our cached copy of the peer's encoded list in one transaction."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM screen_cache WHERE peer = ? AND list = ?", (peer, list_name))
        cursor = conn.execute(
            "INSERT INTO screen_cache (peer, list, epoch, list_version, public_key, list_kind, "
            "entries, labels_withheld, fetched_at) VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?)",
            (peer, list_name, epoch, list_version, public_key, list_kind, utc_now()),
        )
        cache_id = int(cursor.lastrowid or 0)
        entries = 0
        labelled = False
        for tags, sealed in chunks:
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
    return CachedSet(cache_id, epoch, list_version, public_key, entries)


def cached_chunks(store: Store, cache_id: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """A cached set's (tag, sealed label) entries, chunked, in tag order then fetch order."""
    cursor = store.conn.execute(
        "SELECT tag, sealed_label FROM screen_cache_entries WHERE cache_id = ? ORDER BY tag, rowid",
        (cache_id,),
    )
    while rows := cursor.fetchmany(CHUNK_ENTRIES):
        yield rows


def cached_entries(store: Store, cache_id: int, tags: Sequence[bytes]) -> dict[bytes, list[bytes]]:
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
