"""The node's SQLite store: lists, records, elements with cached points, sessions, hits, audit.

One file, `NODE_DIR/store.sqlite`, in WAL mode with foreign keys on and a 30 s
busy timeout. Open one `Store` per thread or process (`Store.open`). The
schema is versioned by `PRAGMA user_version`; `_MIGRATIONS[i]` takes version
i to i + 1, and opening a store runs the missing ones in one transaction.

Tables::

    lists     name, kind (watchlist | operations | seizures), version, updated_at, and
              canon_version: the canonical forms its elements were made under
    records   one entity of a list: local ref (never sent) and optional label
    elements  one per identifier of a record: type, element bytes and its
              group point for each suite (hashed once, at ingest)
    sessions  every PSI session, as initiator or responder
    hits      what sessions found: one row per (peer, list, ref, element type, peer label),
              first and last seen, sessions, new until acknowledged
    screen_*  screening: key epochs and encoded entries (responder), daily budget
              usage per peer, and peers' fetched encoded sets (initiator)
    outbox    one row per (new hit, webhook URL) until delivered, cascading from hits
              (node.data.outbox; docs/NOTIFICATIONS.md)
    users     the local API's users: name, role, SHA-256 of the bearer token (node.data.users)
              and `console_logins`, the console's sign-ins (SHA-256 of the cookie, expiry)
    audit     append-only, hash-chained and signed log (written by node.audit)

Writes go through `transaction()` (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any
error), so a failed or killed writer leaves the store as it was; a write lock
held by another process for longer than the busy timeout is `StoreBusy`. The
file holds plaintext identifiers and labels: it is created readable by the
node's user only (SQLite gives its -wal and -shm files the same mode).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto.groups import ELEMENT_SIZE, SUITES
from node.data.identifiers import CANON_VERSION
from node.errors import ConfigError, Conflict, Incompatible, InvalidInput, NotFound, StoreBusy

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BOUNDED_CACHE_KIB",
    "IN_WINDOW",
    "KINDS",
    "LIST_NAME",
    "LIVE_LIST",
    "check_hits_list",
    "check_list_name",
    "SCHEMA_VERSION",
    "ListInfo",
    "ListPoints",
    "Store",
    "stored_time",
    "utc_now",
]

KINDS = ("watchlist", "operations", "seizures")
STORE_FILE = "store.sqlite"
LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
LIVE_LIST = "(live)"
"""What sessions and hits of real-time screening name as our list: no list may be named so,
so no ingest, erasure or retention of a list ever touches them."""
"""A list name: 1-100 letters, digits, dots, dashes and underscores, starting alphanumeric."""
_POINT_COLUMNS = {"ristretto255-sha512": "point_ristretto", "x25519-blake3": "point_x25519"}
_SCAN_ROWS = 2048  # rows fetched at a time when reading a list's points
_IDS_PER_QUERY = 500  # element ids bound in one query (SQLite allows at least 999)
BOUNDED_CACHE_KIB = 1024
"""The page cache of a connection reading or writing a session's bulk (`Store.bounded_cache`)."""

_MIGRATIONS: list[str] = [
    """
    CREATE TABLE lists (
        id INTEGER PRIMARY KEY,
        name TEXT UNIQUE NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('watchlist', 'operations', 'seizures')),
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
        ref TEXT NOT NULL,
        label TEXT,
        UNIQUE (list_id, ref)
    );
    CREATE TABLE elements (
        id INTEGER PRIMARY KEY,
        record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        element BLOB NOT NULL,
        point_ristretto BLOB NOT NULL,
        point_x25519 BLOB NOT NULL
    );
    CREATE INDEX elements_record ON elements(record_id);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        peer TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('initiator', 'responder')),
        mode TEXT NOT NULL,
        suite TEXT NOT NULL,
        list TEXT NOT NULL,
        peer_list TEXT,
        purpose TEXT NOT NULL,
        local_count INTEGER,
        peer_count INTEGER,
        match_count INTEGER,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX sessions_peer_started ON sessions(peer, started_at);
    CREATE TABLE hits (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        peer TEXT NOT NULL,
        role TEXT NOT NULL,
        ref TEXT NOT NULL,
        type TEXT NOT NULL,
        peer_label TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX hits_session ON hits(session_id);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        signature BLOB NOT NULL
    );
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 1 -> 2: screening (DESIGN §4, node.screening). Responder side: key epochs per list
    # (the epoch number is the row id, never reused, so a cached set is never confused
    # with a later epoch's) and their encoded entries, deleted with their element so a
    # changed list is re-encoded incrementally; per-peer daily budget usage. Initiator
    # side: a peer's fetched encoded set per (peer, list, epoch), looked up by tag.
    """
    CREATE TABLE screen_epochs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
        seed BLOB NOT NULL,
        public_key BLOB NOT NULL,
        list_version INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX screen_epochs_list ON screen_epochs(list_id);
    CREATE TABLE screen_entries (
        epoch_id INTEGER NOT NULL REFERENCES screen_epochs(id) ON DELETE CASCADE,
        tag BLOB NOT NULL,
        element_id INTEGER NOT NULL REFERENCES elements(id) ON DELETE CASCADE,
        sealed_label BLOB NOT NULL,
        PRIMARY KEY (epoch_id, tag, element_id)
    ) WITHOUT ROWID;
    CREATE INDEX screen_entries_element ON screen_entries(element_id, epoch_id);
    CREATE TABLE screen_usage (
        peer TEXT NOT NULL,
        day TEXT NOT NULL,
        items INTEGER NOT NULL,
        PRIMARY KEY (peer, day)
    );
    CREATE TABLE screen_cache (
        id INTEGER PRIMARY KEY,
        peer TEXT NOT NULL,
        list TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        list_version INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        list_kind TEXT NOT NULL,
        entries INTEGER NOT NULL,
        labels_withheld INTEGER NOT NULL,
        fetched_at TEXT NOT NULL,
        UNIQUE (peer, list, epoch)
    );
    CREATE TABLE screen_cache_entries (
        cache_id INTEGER NOT NULL REFERENCES screen_cache(id) ON DELETE CASCADE,
        tag BLOB NOT NULL,
        sealed_label BLOB NOT NULL
    );
    CREATE INDEX screen_cache_entries_tag ON screen_cache_entries(cache_id, tag);
    """,
    # 2 -> 3: encoded entries keyed by (epoch, element) instead of (epoch, tag): a build
    # then appends in element order instead of inserting at random tags (the responder
    # never looks entries up by tag; a fetch sorts them). Epochs are dropped with their
    # entries, so the next fetch builds a fresh epoch and initiators' caches go stale.
    """
    DELETE FROM screen_epochs;
    DROP TABLE screen_entries;
    CREATE TABLE screen_entries (
        epoch_id INTEGER NOT NULL REFERENCES screen_epochs(id) ON DELETE CASCADE,
        element_id INTEGER NOT NULL REFERENCES elements(id) ON DELETE CASCADE,
        tag BLOB NOT NULL,
        sealed_label BLOB NOT NULL,
        PRIMARY KEY (epoch_id, element_id)
    ) WITHOUT ROWID;
    CREATE INDEX screen_entries_element ON screen_entries(element_id);
    """,
    # The canonical forms a list's elements were made under (identifiers.CANON_VERSION):
    # lists stored before the version existed were made under version 1.
    """
    ALTER TABLE lists ADD COLUMN canon_version INTEGER NOT NULL DEFAULT 1;
    """,
    # Hits become records (DESIGN §5): one row per (peer, local list, local ref, element type,
    # peer label) with first and last seen, how many sessions found it, the last session's
    # role and mode, and a status new -> acknowledged. The per-session rows collapse into
    # them ('' stands for "no label", so that the unique key holds). Retention: a list's own
    # retain_days (NULL: the node default), and when each record was last stored.
    """
    CREATE TABLE hit_records (
        id INTEGER PRIMARY KEY,
        peer TEXT NOT NULL,
        list TEXT NOT NULL,
        ref TEXT NOT NULL,
        type TEXT NOT NULL,
        peer_label TEXT NOT NULL,
        role TEXT NOT NULL,
        mode TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'acknowledged')),
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        sessions INTEGER NOT NULL,
        last_session TEXT NOT NULL,
        acknowledged_by TEXT,
        acknowledged_at TEXT,
        note TEXT,
        UNIQUE (peer, list, ref, type, peer_label)
    );
    INSERT INTO hit_records (peer, list, ref, type, peer_label, role, mode, first_seen,
                             last_seen, sessions, last_session)
    SELECT g.peer, g.list, g.ref, g.type, g.peer_label, h.role, s.mode,
           g.first_seen, g.last_seen, g.sessions, h.session_id
    FROM (SELECT h.peer, s.list, h.ref, h.type, coalesce(h.peer_label, '') AS peer_label,
                 min(h.created_at) AS first_seen, max(h.created_at) AS last_seen,
                 count(DISTINCT h.session_id) AS sessions, max(h.id) AS latest
          FROM hits h JOIN sessions s ON s.id = h.session_id
          GROUP BY h.peer, s.list, h.ref, h.type, coalesce(h.peer_label, '')) g
    JOIN hits h ON h.id = g.latest JOIN sessions s ON s.id = h.session_id;
    DROP TABLE hits;
    ALTER TABLE hit_records RENAME TO hits;
    CREATE INDEX hits_list_ref ON hits(list, ref);
    CREATE INDEX hits_last_seen ON hits(last_seen);
    ALTER TABLE lists ADD COLUMN retain_days INTEGER;
    ALTER TABLE records ADD COLUMN stored_at TEXT;
    UPDATE records SET stored_at = (SELECT updated_at FROM lists WHERE lists.id = records.list_id);
    """,
    # Deconfliction (DESIGN §2, §5): an operations record's validity window (ISO 8601 UTC;
    # NULL: open), and the notification outbox: one row per (new hit, webhook URL), written
    # in the transaction that records the hit, delivered by `serve` until a 2xx.
    """
    ALTER TABLE records ADD COLUMN valid_from TEXT;
    ALTER TABLE records ADD COLUMN valid_until TEXT;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        hit_id INTEGER NOT NULL REFERENCES hits(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT,
        UNIQUE (hit_id, url)
    );
    CREATE INDEX outbox_due ON outbox(delivered_at, next_attempt_at);
    """,
    # The local HTTP API's users (node.data.users, DESIGN §7): a name, a role and the SHA-256
    # of the bearer token `user add` printed once; the token itself is never stored.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT UNIQUE NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('analyst', 'admin')),
        token_hash BLOB UNIQUE NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    """,
    # The operator console's sign-ins (node.data.users): the SHA-256 of a session cookie, whose
    # user it is and until when; gone with the user.
    """
    CREATE TABLE console_logins (
        cookie_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX console_logins_user ON console_logins(user_id);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


IN_WINDOW = (
    "(r.valid_from IS NULL OR r.valid_from <= ?) AND (r.valid_until IS NULL OR r.valid_until > ?)"
)
"""SQL: record `r` is inside its validity window at the two `?` (both `now`, ISO UTC text)."""
_NEXT_WINDOW_EDGE = """
    SELECT min(t) FROM (
        SELECT min(valid_from) AS t FROM records WHERE list_id = ? AND valid_from > ?
        UNION ALL
        SELECT min(valid_until) FROM records WHERE list_id = ? AND valid_until > ?)
"""
"""SQL: when a record of list `?` next enters or leaves its window after `?` (twice), or NULL."""
_NEXT_WINDOW_START = "SELECT min(valid_from) FROM records WHERE list_id = ? AND valid_from > ?"
"""SQL: when a record of list `?` next enters its window after `?`, or NULL."""


def check_hits_list(name: str, where: str = "--list") -> str:
    """Returns `name` if hits can be of it (a list, or `LIVE_LIST`), else raises InvalidInput."""
    return name if name == LIVE_LIST else check_list_name(name, where)


def check_list_name(name: str, where: str = "--list") -> str:
    """Returns `name` if it is a valid list name, or raises InvalidInput saying how to fix it."""
    if not isinstance(name, str) or not LIST_NAME.fullmatch(name):
        raise InvalidInput(
            f"{where}: {name[:100]!r} is not a list name: use 1-100 letters, digits, '.', '-' "
            "and '_', starting with a letter or digit (e.g. watchlist-2026)",
            peer="the list name is not valid: use 1-100 letters, digits, '.', '-' and '_'",
        )
    return name


def utc_now() -> str:
    """Returns the current UTC time as an ISO 8601 string with seconds."""
    return stored_time(dt.datetime.now(dt.UTC))


def stored_time(when: dt.datetime) -> str:
    """A time as the store keeps it: ISO 8601 UTC to the second, so text order is time order."""
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ListInfo:
    """A stored list and its size."""

    name: str
    kind: str
    records: int
    elements: int
    version: int
    updated_at: str
    canon_version: int

    @property
    def stale(self) -> bool:
        """Whether its elements were made under older canonical forms (re-ingest to match)."""
        return self.canon_version != CANON_VERSION

    def to_json(self) -> dict[str, Any]:
        """Returns the list as `lists --json` prints it (DESIGN §6)."""
        return {
            "list": self.name,
            "kind": self.kind,
            "records": self.records,
            "elements": self.elements,
            "version": self.version,
            "updated": self.updated_at,
        }


@dataclass(frozen=True, eq=False)
class ListPoints:
    """Every element point of a list for one suite, packed, with each one's element id.

    `points` is a read-only (n, 32) uint8 array of the points in element-id
    order, `element_ids` a read-only int64 array of the element of each: a
    session keeps only these, and asks `Store.element_rows` for the ref, type
    and label of the positions it matched.
    """

    name: str
    suite: str
    points: np.ndarray
    element_ids: np.ndarray
    changes_at: str | None = None
    """When a record's validity window next opens or closes (None: never): reload by then."""

    def __len__(self) -> int:
        return len(self.element_ids)

    @property
    def packed(self) -> bytes:
        """The points concatenated (a copy, for tools and tests; sessions use `points`)."""
        return self.points.tobytes()


class Store:
    """A connection to a node's store; one per thread or process."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(
        cls, location: str | os.PathLike[str], create: bool = False, any_thread: bool = False
    ) -> Store:
        """Opens the store of a node directory (or a .sqlite path), migrating its schema.

        `any_thread` lets one connection be used from several threads in turn (never at once).
        """
        path = Path(location)
        if path.is_dir() or not path.suffix:
            path = path / STORE_FILE
        if not create and not path.exists():
            raise NotFound(
                f"store {path} not found: is {path.parent} a node directory? "
                "Create one with 'blindmatch init'"
            )
        if create and not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=not any_thread
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB page cache (allocated only as used): large ingests and encoded-set
            # builds insert into indexes in random order.
            conn.execute("PRAGMA cache_size=-65536")
            store = cls(conn, path)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(f"store {path} cannot be opened: {exc}") from None
        return store

    def close(self) -> None:
        """Closes the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open store."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"store {self.path} has schema version {version}, newer than this blindmatch "
                f"({SCHEMA_VERSION}); upgrade blindmatch"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            version = self.schema_version  # another process may have migrated meanwhile
            for script in _MIGRATIONS[version:]:
                for statement in _statements(script):
                    self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Runs the block in one write transaction: committed on success, rolled back on error.

        Inside a transaction of this connection already, the block runs in a savepoint
        instead: on error only the block is rolled back (and the error re-raised), and its
        writes commit with the enclosing transaction. Raises StoreBusy when another writer
        holds the store past the busy timeout.
        """
        if self.conn.in_transaction:
            with self._savepoint():
                yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._busy(exc) from None
        try:
            yield self.conn
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise self._busy(exc) from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self.conn.execute("ROLLBACK")
            raise self._busy(exc) from None

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self.conn.execute("SAVEPOINT nested")
        try:
            yield
        except BaseException as exc:
            if self.conn.in_transaction:  # else SQLite rolled the whole transaction back
                self.conn.execute("ROLLBACK TO nested")
                self.conn.execute("RELEASE nested")
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise self._busy(exc) from None
            raise
        self.conn.execute("RELEASE nested")

    def _busy(self, exc: sqlite3.OperationalError) -> Exception:
        if not _is_busy(exc):
            return exc
        return StoreBusy(
            f"store {self.path} is locked by another writer ({exc}); retry, and check that no "
            "other blindmatch command is holding it",
            peer="the node is busy; retry in a few seconds",
            retry_after=5.0,
        )

    # -- lists ---------------------------------------------------------------------------------

    def lists(self) -> list[ListInfo]:
        """Returns every list with its number of records and elements, by name."""
        rows = self.conn.execute(
            """
            SELECT l.name, l.kind,
                   (SELECT count(*) FROM records r WHERE r.list_id = l.id),
                   (SELECT count(*) FROM elements e JOIN records r ON e.record_id = r.id
                     WHERE r.list_id = l.id),
                   l.version, l.updated_at, l.canon_version
            FROM lists l ORDER BY l.name
            """
        ).fetchall()
        return [ListInfo(*row) for row in rows]

    def list_versions(self) -> dict[str, tuple[str, int]]:
        """Every list's kind and version, by name: what `lists` says without counting records
        and elements (a scan of millions of rows), for what asks every few seconds."""
        rows = self.conn.execute("SELECT name, kind, version FROM lists ORDER BY name")
        return {name: (kind, version) for name, kind, version in rows}

    def window_edges(
        self, now: str, names: Iterable[str] | None = None, closing: bool = True
    ) -> dict[str, str]:
        """When a record's validity window next opens (or closes, if `closing`) after `now`
        (ISO UTC), per operations list (only they have windows) of `names` (default all) that
        has one. Reads each list's records: for when a list changed, not for every poll."""
        wanted = None if names is None else set(names)
        lists = self.conn.execute("SELECT id, name FROM lists WHERE kind = 'operations'")
        edges = {}
        for list_id, name in lists.fetchall():
            if wanted is None or name in wanted:
                query, args = (
                    (_NEXT_WINDOW_EDGE, (list_id, now, list_id, now))
                    if closing
                    else (_NEXT_WINDOW_START, (list_id, now))
                )
                (edge,) = self.conn.execute(query, args).fetchone()
                if edge is not None:
                    edges[name] = str(edge)
        return edges

    def list_row(self, name: str) -> tuple[int, int, str]:
        """Returns (id, version, kind) of list `name` for matching (a peer may see why not).

        Raises NotFound for a missing list and Incompatible for a list whose
        elements were made under older canonical forms: they would silently miss.
        """
        row = self.conn.execute(
            "SELECT id, version, kind, canon_version FROM lists WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            names = ", ".join(i.name for i in self.lists()) or "none yet"
            raise NotFound(
                f"no list {name!r} in {self.path} (lists: {names}); load it with "
                "'blindmatch ingest NODE_DIR --list NAME FILE'",
                peer=f"list {name!r} does not exist on this node",
            )
        if row[3] != CANON_VERSION:
            raise Incompatible(
                f"list {name!r} was stored by an older blindmatch (canonical forms "
                f"v{row[3]}; this one makes v{CANON_VERSION}: names fold transliterations, "
                "countries and passports changed), so its elements would miss a partner's; "
                f"load it again with 'blindmatch ingest NODE_DIR --list {name} --replace FILE'",
                peer=f"list {name!r} must be reloaded by its agency before it can be matched",
            )
        return int(row[0]), int(row[1]), str(row[2])

    def list_points(self, name: str, suite: str, now: str | None = None) -> ListPoints:
        """Returns the packed points of list `name` for `suite`, by element id.

        Records outside their validity window at `now` (ISO UTC, as `utc_now` gives it;
        default the current time) are left out: not yet valid, or expired. Rows are
        read in chunks: beside the result, memory holds a chunk and the page cache's
        `BOUNDED_CACHE_KIB`.
        """
        column = _POINT_COLUMNS.get(suite)
        if column is None:
            raise ConfigError(f"unknown suite {suite!r}; use {', '.join(sorted(SUITES))}")
        list_id, _, _ = self.list_row(name)
        now = now or utc_now()
        import numpy as np  # here: most commands never read a list's points

        packed = bytearray()  # grown in place (realloc): never two copies of the points
        ids = array("q")
        with self.bounded_cache():  # the list's pages stay out of memory
            # Elements in id order without a sort (in memory, or spilled): the list's range of
            # element ids, then a scan of that range (a list's elements are mostly contiguous).
            first, last = self.conn.execute(
                "SELECT min(e.id), max(e.id) FROM records r JOIN elements e "
                "ON e.record_id = r.id WHERE r.list_id = ?",
                (list_id,),
            ).fetchone()
            cursor = self.conn.execute(
                f"""
                SELECT e.{column}, e.id
                FROM elements e CROSS JOIN records r ON r.id = e.record_id
                WHERE e.id BETWEEN ? AND ? AND r.list_id = ? AND {IN_WINDOW} ORDER BY e.id
                """,
                (first or 0, last or -1, list_id, now, now),
            )
            while rows := cursor.fetchmany(_SCAN_ROWS):
                packed += b"".join(row[0] for row in rows)
                ids.extend(row[1] for row in rows)
            (changes_at,) = self.conn.execute(
                _NEXT_WINDOW_EDGE, (list_id, now, list_id, now)
            ).fetchone()
        points = np.frombuffer(packed, dtype=np.uint8).reshape(len(ids), ELEMENT_SIZE)
        element_ids = np.frombuffer(ids, dtype=np.int64) if ids else np.empty(0, np.int64)
        points.flags.writeable = element_ids.flags.writeable = False  # shared by sessions
        return ListPoints(name, suite, points, element_ids, changes_at)

    def element_rows(self, element_ids: Sequence[int]) -> list[tuple[str, str, str | None] | None]:
        """(ref, type, label) of each element, in order; None for an element removed since.

        For the positions a session matched: one query per few hundred ids.
        """
        found: dict[int, tuple[str, str, str | None]] = {}
        with self.bounded_cache():
            for start in range(0, len(element_ids), _IDS_PER_QUERY):
                part = element_ids[start : start + _IDS_PER_QUERY]
                marks = ", ".join("?" * len(part))
                for element_id, ref, type_, label in self.conn.execute(
                    "SELECT e.id, r.ref, e.type, r.label FROM elements e "
                    f"JOIN records r ON r.id = e.record_id WHERE e.id IN ({marks})",
                    list(part),
                ):
                    found[element_id] = (ref, type_, label)
        return [found.get(element_id) for element_id in element_ids]

    @contextmanager
    def bounded_cache(self, kib: int = BOUNDED_CACHE_KIB) -> Iterator[None]:
        """Runs the block with this connection's page cache, and so its sorts, within `kib`.

        For reading or writing a whole list, or a session's hits: their pages would
        otherwise stay cached (up to 64 MiB a connection), and a sort stay in memory.
        """
        sizes = {
            schema: int(self.conn.execute(f"PRAGMA {schema}.cache_size").fetchone()[0])
            for schema in ("main", "temp")  # temp: temporary tables (add_hits) and sorts
        }
        for schema in sizes:
            self.conn.execute(f"PRAGMA {schema}.cache_size = {-int(kib)}")
        try:
            yield
        finally:
            for schema, size in sizes.items():
                self.conn.execute(f"PRAGMA {schema}.cache_size = {size}")

    def screening_epochs(self) -> dict[str, dict[str, Any]]:
        """Each list's current screening key epoch: its number, start and the list version."""
        rows = self.conn.execute(
            """
            SELECT l.name, e.id, e.created_at, e.list_version
            FROM screen_epochs e JOIN lists l ON l.id = e.list_id
            WHERE e.id = (SELECT max(id) FROM screen_epochs WHERE list_id = e.list_id)
            """
        ).fetchall()
        return {
            name: {"epoch": epoch, "since": created, "list_version": version}
            for name, epoch, created, version in rows
        }

    # -- sessions and hits ---------------------------------------------------------------------

    def record_session(
        self,
        session_id: str,
        peer: str,
        role: str,
        mode: str,
        suite: str,
        list: str,
        purpose: str,
        peer_list: str | None = None,
        local_count: int | None = None,
        peer_count: int | None = None,
        status: str = "running",
        started_at: str | None = None,
    ) -> None:
        """Records the start of a session (commits unless inside a transaction).

        Raises InvalidInput (a peer may see it) if the session id is already recorded.
        """
        try:
            self.conn.execute(
                """
                INSERT INTO sessions (id, peer, role, mode, suite, list, peer_list, purpose,
                                      local_count, peer_count, status, started_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    session_id,
                    peer,
                    role,
                    mode,
                    suite,
                    list,
                    peer_list,
                    purpose,
                    local_count,
                    peer_count,
                    status,
                    started_at or utc_now(),
                ),
            )
        except sqlite3.IntegrityError:  # the one unique key a peer chooses: the session id
            text = f"session id {session_id} is already recorded on this node; use a new id"
            raise InvalidInput(text, peer=text) from None

    def finish_session(
        self,
        session_id: str,
        status: str,
        match_count: int | None = None,
        local_count: int | None = None,
        peer_count: int | None = None,
        finished_at: str | None = None,
    ) -> None:
        """Records the end of a session: its status, counts and finishing time."""
        cursor = self.conn.execute(
            """
            UPDATE sessions SET status = ?, match_count = coalesce(?, match_count),
                   local_count = coalesce(?, local_count), peer_count = coalesce(?, peer_count),
                   finished_at = ?
            WHERE id = ?
            """,
            (status, match_count, local_count, peer_count, finished_at or utc_now(), session_id),
        )
        if cursor.rowcount != 1:
            raise NotFound(f"no session {session_id!r} in {self.path}")

    def sessions(self, peer: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        """Returns recorded sessions, optionally of one peer and started at or after `since`."""
        query = "SELECT * FROM sessions WHERE 1 = 1"
        args: list[str] = []
        if peer is not None:
            query += " AND peer = ?"
            args.append(peer)
        if since is not None:
            query += " AND started_at >= ?"
            args.append(since)
        # Times are to the second: rowid (insertion order) orders the sessions of one second.
        cursor = self.conn.execute(query + " ORDER BY started_at, rowid", args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    SESSION_STATUSES = ("running", "completed", "failed")

    def recent_sessions(
        self, limit: int, peer: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The `limit` most recently started sessions, newest first, of `peer` and `status`."""
        query = "SELECT * FROM sessions WHERE 1 = 1"
        args: list[object] = []
        if peer is not None:
            query += " AND peer = ?"
            args.append(peer)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        query += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        cursor = self.conn.execute(query, [*args, limit])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def last_initiated(self, peer: str, mode: str, since: str = "") -> dict[str, str]:
        """When we last started a `mode` session with `peer` of each list against the peer's
        list of the same name (running or completed, at or after `since`): the last sweeps."""
        rows = self.conn.execute(
            "SELECT list, max(started_at) FROM sessions WHERE peer = ? AND started_at >= ? "
            "AND role = 'initiator' AND mode = ? AND peer_list = list AND status != 'failed' "
            "GROUP BY list",
            (peer, since, mode),
        )
        return {str(name): str(started) for name, started in rows}

    def sessions_since(self, peer: str, role: str, since: str) -> tuple[int, str | None]:
        """Sessions with `peer` in `role` started at or after `since`: (count, earliest start)."""
        count, earliest = self.conn.execute(
            "SELECT count(*), min(started_at) FROM sessions "
            "WHERE peer = ? AND role = ? AND started_at >= ?",
            (peer, role, since),
        ).fetchone()
        return int(count), earliest

    def add_hits(
        self,
        session_id: str,
        peer: str,
        role: str,
        list: str,
        mode: str,
        hits: Iterable[Mapping[str, Any]],
        seen_at: dt.datetime | None = None,
    ) -> array[int]:
        """Records what a session found; returns the ids of the hits recorded for the first time.

        Each hit has ref, type and an optional peer_label. A hit already recorded
        (same peer, list, ref, type and peer label) is seen again: its last_seen,
        role, mode and last session are updated, its session count goes up once
        per session, its status is kept. Runs in the caller's transaction (else in
        its own), so that whatever is done with the new ids commits with them.
        """
        if not self.conn.in_transaction:
            with self.transaction():
                return self.add_hits(session_id, peer, role, list, mode, hits, seen_at)
        conn = self.conn
        # One merge through a temporary table, in key order: a large session finds hundreds
        # of thousands of hits, and one upsert per hit in the session's order is far slower.
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hits_found (ref TEXT, type TEXT, peer_label TEXT)"
        )
        conn.executemany(
            "INSERT INTO temp.hits_found VALUES (?, ?, ?)",
            ((h["ref"], h["type"], h.get("peer_label") or "") for h in hits),
        )
        # A new row's id is above every id before it (SQLite's rowid rule) and the write lock
        # is held until the commit: the ids above `before` are the hits inserted now.
        (before,) = conn.execute("SELECT coalesce(max(id), 0) FROM hits").fetchone()
        conn.execute(
            """
            INSERT INTO hits (peer, list, ref, type, peer_label, role, mode, first_seen,
                              last_seen, sessions, last_session)
            SELECT :peer, :list, ref, type, peer_label, :role, :mode, :now, :now, 1, :session
            FROM temp.hits_found WHERE true ORDER BY ref, type, peer_label
            ON CONFLICT (peer, list, ref, type, peer_label) DO UPDATE SET
                last_seen = excluded.last_seen, role = excluded.role, mode = excluded.mode,
                last_session = excluded.last_session,
                sessions = sessions + (last_session != excluded.last_session)
            """,
            {
                "peer": peer,
                "list": list,
                "role": role,
                "mode": mode,
                "now": self._time_text(seen_at),
                "session": session_id,
            },
        )
        conn.execute("DELETE FROM temp.hits_found")
        # Packed: a first session of a large list finds hundreds of thousands of new hits.
        return array(
            "q", (row[0] for row in conn.execute("SELECT id FROM hits WHERE id > ?", (before,)))
        )

    _HIT_COLUMNS = (
        "id, peer, list, ref, type, nullif(peer_label, '') AS peer_label, role, mode, status, "
        "first_seen, last_seen, sessions"
    )
    """The columns of a hit as `hits --json` prints it (DESIGN §6); '' is stored for no label."""
    MAX_ACKNOWLEDGER_CHARS = 100
    MAX_NOTE_CHARS = 1_000

    def hits(
        self,
        *,
        new_only: bool = False,
        since: dt.datetime | None = None,
        peer: str | None = None,
        list_name: str | None = None,
        limit: int | None = None,
        with_acknowledgement: bool = False,
    ) -> list[dict[str, Any]]:
        """Returns hits as `hits --json` prints them (DESIGN §6), new first, then latest seen first.

        Each filter given narrows them: status new, last seen at or after `since`,
        found with `peer`, of our list `list_name`. At most `limit` of them; with
        `with_acknowledgement`, also who acknowledged each, when, and the note.
        """
        conditions: list[str] = ["1 = 1"]
        args: list[object] = []
        if new_only:
            conditions.append("status = 'new'")
        if since is not None:
            conditions.append("last_seen >= ?")
            args.append(self._time_text(since))
        if peer is not None:
            conditions.append("peer = ?")
            args.append(peer)
        if list_name is not None:
            conditions.append("list = ?")
            args.append(list_name)
        columns = self._HIT_COLUMNS
        if with_acknowledgement:
            columns += ", acknowledged_by, acknowledged_at, note"
        query = (
            f"SELECT {columns} FROM hits WHERE {' AND '.join(conditions)} "
            "ORDER BY status != 'new', last_seen DESC, id"
        )
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        cursor = self.conn.execute(query, args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def hit(self, hit_id: int) -> dict[str, Any] | None:
        """Returns one hit as `hits --json` shows it, plus who acknowledged it, when, and why."""
        cursor = self.conn.execute(
            f"SELECT {self._HIT_COLUMNS}, acknowledged_by, acknowledged_at, note "
            "FROM hits WHERE id = ?",
            (hit_id,),
        )
        row = cursor.fetchone()
        names = [d[0] for d in cursor.description]
        return None if row is None else dict(zip(names, row, strict=True))

    def activity(self, since_day: str) -> dict[str, dict[str, int]]:
        """Per UTC day from `since_day` (YYYY-MM-DD): sessions completed and failed, and hits
        first seen; days without any are left out."""
        days: dict[str, dict[str, int]] = {}
        sessions = self.conn.execute(
            "SELECT substr(started_at, 1, 10) AS day, status, count(*) FROM sessions "
            "WHERE started_at >= ? AND status IN ('completed', 'failed') GROUP BY day, status",
            (since_day,),
        )
        for day, status, count in sessions:
            days.setdefault(day, {"completed": 0, "failed": 0, "hits": 0})[status] = count
        hits = self.conn.execute(
            "SELECT substr(first_seen, 1, 10) AS day, count(*) FROM hits "
            "WHERE first_seen >= ? GROUP BY day",
            (since_day,),
        )
        for day, count in hits:
            days.setdefault(day, {"completed": 0, "failed": 0, "hits": 0})["hits"] = count
        return days

    def new_hit_count(self) -> int:
        """The number of hits not yet acknowledged."""
        (count,) = self.conn.execute("SELECT count(*) FROM hits WHERE status = 'new'").fetchone()
        return int(count)

    def acknowledge_hit(
        self, hit_id: int, by: str, note: str | None = None, at: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Marks a new hit acknowledged by the person `by`, with an optional note; returns it.

        Raises NotFound for an unknown id, Conflict for a hit acknowledged already,
        ConfigError for an unusable name or note; nothing changes then.
        """
        by, note = self.check_acknowledgement(by, note)
        cursor = self.conn.execute(
            """
            UPDATE hits SET status = 'acknowledged', acknowledged_by = ?, acknowledged_at = ?,
                   note = ?
            WHERE id = ? AND status = 'new'
            """,
            (by, self._time_text(at), note, hit_id),
        )
        hit = self.hit(hit_id)
        if hit is None:
            raise NotFound(
                f"no hit {hit_id} in {self.path}; see the hit ids with "
                "'blindmatch hits NODE_DIR --new'"
            )
        if cursor.rowcount != 1:
            raise Conflict(
                f"hit {hit_id} was already acknowledged by {hit['acknowledged_by']} at "
                f"{hit['acknowledged_at']}; nothing changed (new hits: 'blindmatch hits "
                "NODE_DIR --new')"
            )
        return hit

    @classmethod
    def check_acknowledgement(cls, by: str, note: str | None) -> tuple[str, str | None]:
        """Returns the acknowledger's name and the note, trimmed, or raises ConfigError."""
        name = by.strip()
        if not name or len(name) > cls.MAX_ACKNOWLEDGER_CHARS or not name.isprintable():
            raise ConfigError(
                "--by must name the person who acknowledges the hit: printable text of "
                f"1-{cls.MAX_ACKNOWLEDGER_CHARS} characters, e.g. --by 'J. de Vries'"
            )
        text = (note or "").replace("\r\n", "\n").strip()
        if len(text) > cls.MAX_NOTE_CHARS or not text.replace("\n", "").isprintable():
            raise ConfigError(
                f"--note must be printable text of at most {cls.MAX_NOTE_CHARS:,} characters "
                "(line breaks allowed, no other control characters)"
            )
        return name, text or None

    @staticmethod
    def _time_text(when: dt.datetime | None) -> str:
        """A time as hits store it: UTC ISO 8601, so that stored times sort as text."""
        if when is None:
            return utc_now()
        aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat(timespec="seconds")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _statements(script: str) -> Iterator[str]:
    """Splits a migration script into statements, keeping trigger bodies whole."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
