"""The notification outbox (DESIGN §5): the SQL of queueing new hits for webhooks and of
delivering them. `node.sessions.records` enqueues, `node.jobs.notify` delivers.

One row per (hit, webhook URL), written in the transaction that records the hit, so a
new hit is queued exactly when it is committed and a session that fails queues nothing.
A row is pending until a delivery is answered 2xx (`delivered_at`); each failed attempt
counts in `attempts`, keeps its `last_error` and sets `next_attempt_at`. A row goes with
its hit (`ON DELETE CASCADE`): an erased hit is never notified afterwards.

Claiming due rows moves their `next_attempt_at` forward by a lease inside one write
transaction, so that of several serving processes only one sends a row at a time; a
process that dies while sending leaves the row due again when the lease ends (delivery
is at least once). Times are ISO 8601 UTC with milliseconds (`stamp`), so they compare
as text.

Functions that take a `conn` run inside the caller's transaction (or on their own in
autocommit); `claim` opens its own. All of them block on SQLite.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from node.data.store import Store

__all__ = [
    "Delivery",
    "claim",
    "enqueue",
    "has_due",
    "mark_delivered",
    "record_failure",
    "release",
    "stamp",
    "summary",
]

_ERROR_CHARS = 300


def stamp(when: dt.datetime) -> str:
    """A time as the outbox stores it: UTC ISO 8601 with milliseconds."""
    aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Delivery:
    """One claimed outbox row and the hit it notifies, as it is when claimed."""

    outbox_id: int
    url: str
    attempts: int
    hit: dict[str, Any]

    @property
    def hit_id(self) -> int:
        """The hit's id: the delivery's idempotency key."""
        return int(self.hit["id"])


def enqueue(
    conn: sqlite3.Connection, hit_ids: Sequence[int], urls: Iterable[str], now: dt.datetime
) -> int:
    """Queues each new hit for each webhook URL (due now); returns how many rows were added.

    A (hit, URL) already queued is left as it is.
    """
    at = stamp(now)
    rows = [(hit_id, url, at, at) for url in urls for hit_id in hit_ids]
    if not rows:
        return 0
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO outbox (hit_id, url, created_at, next_attempt_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (hit_id, url) DO NOTHING",
        rows,
    )
    return conn.total_changes - before


def has_due(conn: sqlite3.Connection, url: str, now: dt.datetime) -> bool:
    """Whether a row for `url` is pending and due at `now` (a read: takes no write lock)."""
    row = conn.execute(
        "SELECT 1 FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? AND url = ? "
        "LIMIT 1",
        (stamp(now), url),
    ).fetchone()
    return row is not None


_HIT = (
    "h.id, h.peer, h.list, h.ref, h.type, nullif(h.peer_label, '') AS peer_label, h.role, "
    "h.mode, h.status, h.first_seen, h.last_seen"
)


def claim(
    store: Store, url: str, now: dt.datetime, lease_seconds: float, limit: int
) -> list[Delivery]:
    """Takes up to `limit` due rows for `url`, oldest due first, leased for `lease_seconds`.

    One write transaction: another process claiming at the same time gets other rows.
    Raises StoreBusy when the store stays locked past its busy timeout.
    """
    at = stamp(now)
    until = stamp(now + dt.timedelta(seconds=lease_seconds))
    with store.transaction() as conn:
        cursor = conn.execute(
            f"""
            SELECT o.id, o.url, o.attempts, {_HIT}
            FROM outbox o JOIN hits h ON h.id = o.hit_id
            WHERE o.delivered_at IS NULL AND o.next_attempt_at <= ? AND o.url = ?
            ORDER BY o.next_attempt_at, o.id LIMIT ?
            """,
            (at, url, limit),
        )
        names = [d[0] for d in cursor.description][3:]
        rows = cursor.fetchall()
        conn.executemany(
            "UPDATE outbox SET next_attempt_at = ? WHERE id = ?", ((until, r[0]) for r in rows)
        )
    return [
        Delivery(int(r[0]), str(r[1]), int(r[2]), dict(zip(names, r[3:], strict=True)))
        for r in rows
    ]


def mark_delivered(conn: sqlite3.Connection, outbox_id: int, now: dt.datetime) -> bool:
    """Records a 2xx answer; False if the row is gone (its hit erased) or was delivered."""
    cursor = conn.execute(
        "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL "
        "WHERE id = ? AND delivered_at IS NULL",
        (stamp(now), outbox_id),
    )
    return cursor.rowcount == 1


def record_failure(
    conn: sqlite3.Connection, outbox_id: int, error: str, next_attempt: dt.datetime
) -> bool:
    """Records a failed attempt, why, and when to try again; False if the row is gone."""
    text = " ".join(error.split())[:_ERROR_CHARS] or "failed"
    cursor = conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
        "WHERE id = ? AND delivered_at IS NULL",
        (text, stamp(next_attempt), outbox_id),
    )
    return cursor.rowcount == 1


def release(conn: sqlite3.Connection, outbox_ids: Collection[int], now: dt.datetime) -> None:
    """Makes claimed rows that were not sent due again at `now` (a serving process stops)."""
    at = stamp(now)
    conn.executemany(
        "UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND delivered_at IS NULL",
        ((at, i) for i in outbox_ids),
    )


def summary(conn: sqlite3.Connection, urls: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Per webhook URL (those with rows, and `urls`): pending, delivered and failing counts,
    and the oldest pending row (hit id, queued at, attempts, last error, next attempt).

    `failing` counts pending rows whose last attempt failed. Never a secret: only URLs.
    """
    counts = {
        url: (pending, delivered, failing)
        for url, pending, delivered, failing in conn.execute(
            """
            SELECT url, sum(delivered_at IS NULL), count(delivered_at),
                   sum(delivered_at IS NULL AND attempts > 0)
            FROM outbox GROUP BY url
            """
        )
    }
    report = []
    for url in sorted({*counts, *urls}):
        pending, delivered, failing = counts.get(url, (0, 0, 0))
        oldest = conn.execute(
            """
            SELECT hit_id, created_at, attempts, last_error, next_attempt_at FROM outbox
            WHERE delivered_at IS NULL AND url = ? ORDER BY id LIMIT 1
            """,
            (url,),
        ).fetchone()
        report.append(
            {
                "url": url,
                "pending": int(pending),
                "delivered": int(delivered),
                "failing": int(failing),
                "oldest_pending": None
                if oldest is None
                else dict(
                    zip(
                        ("hit_id", "queued_at", "attempts", "last_error", "next_attempt_at"),
                        oldest,
                        strict=True,
                    )
                ),
            }
        )
    return report
