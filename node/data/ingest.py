"""Ingest of an agency's list into the node store (DESIGN §2, §6).

The file is opened and read by `node.data.sources` (CSV, JSON Lines, JSON
array or .xlsx; encoding, delimiter and sheet). The main process reads rows in
chunks and sends them to a process pool, where each worker canonicalises the
chunk (`identifiers.canonical_elements`) and hashes its elements into the
group of *both* suites; the main process writes the results into SQLite while
the workers compute the next chunks. Everything is one transaction (BEGIN
IMMEDIATE ... COMMIT): a failed, interrupted or killed ingest leaves the
previous list exactly as it was.

Rules:

- A file that cannot be read as a list (unknown column, broken quoting or
  JSON array, undecodable byte...) fails as a whole: `InvalidInput`, naming
  the file, the line and what to do (`sources`).
- Rejections carry the file's 1-based line (the CSV header is line 1; for
  JSON, the line where the object starts; for .xlsx, the Excel row), the
  column and the reason. A row without a ref, with a ref already used earlier
  in the file, without any valid identifier, or whose label cannot be sent
  (`identifiers.label_problem`: too long, control characters) is rejected as
  a whole (column ``ref``, ``row`` or ``label``): a record is stored with the
  label it has or not at all, never with a label cut short.
- ``strict``: any rejection stores nothing (`IngestRejected`).
- An ingest that would store no record (an empty file, a header without rows,
  every row rejected) stores nothing and raises `IngestRejected`, unless
  ``allow_empty``; so an empty or failed export never empties a list by
  ``replace``.
- ``replace``: the list's content is swapped for the file's. Without it, an
  ingest into an existing list *adds or updates* records by ref: a ref that
  is already in the list gets the file's label and identifiers (its old
  elements are dropped), other records stay. That is what a daily delta
  export expects; a full export should use ``replace``.
- Each ingest bumps the list's version and appends an ``ingest`` audit entry
  (operator, list, kind, counts; never identifiers) in the same transaction.
- Every record it writes is stamped ``stored_at`` (now, one time for the whole
  ingest): retention counts from it (`node.sessions.erasure`). ``retain_days``
  sets the list's own retention (0: keep forever); an ingest without it keeps
  the list's.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.batch import new_process_pool
from crypto.groups import get_suite
from node.data import audit, events
from node.data.erasure import MAX_RETAIN_DAYS, set_retention
from node.data.identifiers import (
    CANON_VERSION,
    CanonContext,
    canonical_elements,
    check_columns,
    check_kind_columns,
    label_problem,
)
from node.data.sources import Chunk, Source, open_source, row_dicts
from node.data.store import KINDS, Store, check_list_name, utc_now
from node.errors import ConfigError, Conflict, IngestRejected, InvalidInput, NotFound

__all__ = [
    "CHUNK_ROWS",
    "IngestResult",
    "RejectedCell",
    "ingest_file",
    "ingest_record",
]

CHUNK_ROWS = 1000
"""Rows per chunk sent to a worker."""
_MIN_PARALLEL_BYTES = 256 * 1024
"""Files smaller than this are ingested in-process: a pool would cost more than it saves."""
_PROGRESS_SECONDS = 0.2
"""Least time between two calls of `on_progress`."""
_SUITES = ("ristretto255-sha512", "x25519-blake3")
_GC_GEN0 = 50_000
"""Allocations between two young-generation collections while ingesting (Python's is 700)."""


@dataclass(frozen=True)
class RejectedCell:
    """A cell or row of the input that was not stored, and why."""

    line: int
    column: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Returns the rejection as `ingest --json` prints it."""
        return {"line": self.line, "column": self.column, "reason": self.reason}


@dataclass
class IngestResult:
    """What an ingest read and stored (`ingest --json`, DESIGN §6)."""

    name: str
    kind: str
    rows: int = 0
    records: int = 0
    elements: int = 0
    rejected: list[RejectedCell] = field(default_factory=list)
    replaced: bool = False
    stored: bool = False
    seconds: float = 0.0
    read_as: str = ""
    """How the file was read (format, encoding, delimiter or sheet), for the operator."""

    def to_json(self) -> dict[str, Any]:
        """Returns the result as `ingest --json` prints it."""
        return {
            "list": self.name,
            "rows": self.rows,
            "records": self.records,
            "elements": self.elements,
            "rejected": [r.to_json() for r in self.rejected],
        }


# -- worker side: canonicalise and hash one chunk -------------------------------------------------

# A chunk's result: rows read, records as (line, ref, label, element count, valid_from,
# valid_until), element types, elements, packed ristretto points, packed x25519 points,
# rejections as (line, column, reason).
_Record = tuple[int, str, str | None, int, str | None, str | None]
_Result = tuple[
    int,
    list[_Record],
    list[str],
    list[bytes],
    bytes,
    bytes,
    list[tuple[int, str, str]],
]


def _text(value: object) -> str | None:
    """A ref or label as text; None for a JSON value that is not text or a whole number."""
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _process_chunk(
    fmt: str,
    header: Sequence[str] | None,
    rows: Chunk,
    context: CanonContext,
    name: str,
    kind: str = "watchlist",
) -> _Result:
    """Canonicalises and hashes one chunk of a source's rows (runs in a worker process)."""
    records: list[_Record] = []
    types: list[str] = []
    elements: list[bytes] = []
    rejected: list[tuple[int, str, str]] = []
    count = 0
    for line, row, problem in row_dicts(fmt, header, rows, name):
        count += 1
        if row is None:
            rejected.append((line, "row", problem))
            continue
        ref, label = _text(row.get("ref")), _text(row.get("label"))
        if not ref:
            why = (
                "missing ref: every record needs a local ref"
                if ref == ""
                else "ref must be text or a whole number"
            )
            rejected.append((line, "ref", why))
            continue
        if label is None:
            rejected.append((line, "label", "label must be text"))
            continue
        if label and (unfit := label_problem(label)):
            rejected.append((line, "label", unfit))
            continue
        if header is None:  # JSON: each object names its own columns
            try:
                check_kind_columns(row, kind)
            except InvalidInput as exc:
                raise InvalidInput(f"{name}, line {line}: {exc}") from None
        window, bad_window = events.read_window(row)
        if bad_window:  # a record must never match outside the window its agency gave
            rejected.extend((line, r.column, r.reason) for r in bad_window)
            continue
        found, rejections = canonical_elements(row, context)
        event, bad_event = events.read_event(row)
        if event is not None:
            found.extend(events.event_elements(event))
        rejections.extend(bad_event)
        rejected.extend((line, r.column, r.reason) for r in rejections)
        if not found:
            if not rejections:
                rejected.append(
                    (line, "row", f"record {ref!r} has no identifiers; it cannot match")
                )
            continue
        records.append(
            (line, ref, label or None, len(found), window.valid_from, window.valid_until)
        )
        for element_type, element in found:
            types.append(element_type)
            elements.append(element)
    points = [get_suite(suite).hash_batch(elements) for suite in _SUITES]
    return count, records, types, elements, points[0], points[1], rejected


# -- main side: read, dispatch, store -------------------------------------------------------------


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Runs the cyclic garbage collector less often, for the ingest's duration.

    Parsers (openpyxl's most of all) allocate many short-lived containers, and
    each collection of the older generations scans every live object, which
    grows with the list: about a fifth of reading an .xlsx went to it. Rows make
    no reference cycles, so little is left for the collector to find.
    """
    before = gc.get_threshold()
    if before[0] >= _GC_GEN0:  # already raised (another ingest in this process)
        yield
        return
    gc.set_threshold(_GC_GEN0, *before[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == _GC_GEN0:
            gc.set_threshold(*before)


def _default_pool() -> Executor:
    # fork is fastest, and safe while no gRPC object exists in this process (NOTES).
    method = "forkserver" if "grpc" in sys.modules else "fork"
    return new_process_pool(start_method=method)


class _Writer:
    """Writes chunk results into the open transaction."""

    def __init__(self, store: Store, list_id: int, upsert: bool, stored_at: str) -> None:
        self.conn = store.conn
        self.list_id = list_id
        self.upsert = upsert
        self.stored_at = stored_at
        self.next_record = self._next_id("records")
        self.next_element = self._next_id("elements")
        self.seen: dict[str, int] = {}
        self.updated = 0  # records of the list this ingest replaced by ref

    def _next_id(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])

    def write(self, chunk: _Result, result: IngestResult, store_rows: bool) -> None:
        rows, records, types, elements, points_r, points_x, rejected = chunk
        result.rows += rows
        result.rejected.extend(RejectedCell(*r) for r in rejected)
        record_rows: list[tuple[int, int, str, str | None, str | None, str | None]] = []
        element_rows: list[tuple[int, int, str, bytes, bytes, bytes]] = []
        position = 0
        for line, ref, label, count, valid_from, valid_until in records:
            first = self.seen.get(ref)
            if first is not None:
                result.rejected.append(
                    RejectedCell(line, "ref", f"duplicate ref {ref!r}: first used on line {first}")
                )
                position += count
                continue
            self.seen[ref] = line
            record_id = self.next_record
            self.next_record += 1
            record_rows.append((record_id, self.list_id, ref, label, valid_from, valid_until))
            for i in range(position, position + count):
                offset = i * 32
                element_rows.append(
                    (
                        self.next_element,
                        record_id,
                        types[i],
                        elements[i],
                        points_r[offset : offset + 32],
                        points_x[offset : offset + 32],
                    )
                )
                self.next_element += 1
            position += count
        result.records += len(record_rows)
        result.elements += len(element_rows)
        if not store_rows:
            return
        if self.upsert:
            self.updated += self.conn.executemany(
                "DELETE FROM records WHERE list_id = ? AND ref = ?",
                ((self.list_id, r[2]) for r in record_rows),
            ).rowcount
        self.conn.executemany(
            "INSERT INTO records (id, list_id, ref, label, valid_from, valid_until, stored_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((*r, self.stored_at) for r in record_rows),
        )
        self.conn.executemany(
            "INSERT INTO elements (id, record_id, type, element, point_ristretto, point_x25519) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            element_rows,
        )


def _open_list(
    store: Store, name: str, kind: str | None, replace: bool
) -> tuple[int, str, bool, int]:
    """Creates or empties list `name` in the transaction; returns id, kind, existed, version."""
    conn = store.conn
    row = conn.execute("SELECT id, kind, version FROM lists WHERE name = ?", (name,)).fetchone()
    if row is None:
        kind = kind or "watchlist"
        cursor = conn.execute(
            "INSERT INTO lists (name, kind, version, updated_at, canon_version) "
            "VALUES (?, ?, 0, ?, ?)",
            (name, kind, utc_now(), CANON_VERSION),
        )
        return int(cursor.lastrowid or 0), kind, False, 0
    list_id, old_kind, version = row
    if kind and kind != old_kind:
        if not replace:
            raise ConfigError(
                f"list {name!r} is a {old_kind} list, not {kind}; use --replace to change its "
                f"kind, or --kind {old_kind}"
            )
        conn.execute("UPDATE lists SET kind = ? WHERE id = ?", (kind, list_id))
    if replace:
        conn.execute(
            "DELETE FROM elements WHERE record_id IN (SELECT id FROM records WHERE list_id = ?)",
            (list_id,),
        )
        conn.execute("DELETE FROM records WHERE list_id = ?", (list_id,))
        # Only a full reload makes a list current; an update keeps an older list's mark.
        conn.execute("UPDATE lists SET canon_version = ? WHERE id = ?", (CANON_VERSION, list_id))
    return int(list_id), kind or old_kind, True, int(version)


def ingest_file(
    store: Store,
    path: str | os.PathLike[str],
    list_name: str,
    context: CanonContext,
    signing_key: Ed25519PrivateKey,
    *,
    kind: str | None = None,
    replace: bool = False,
    strict: bool = False,
    allow_empty: bool = False,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    retain_days: int | None = None,
    operator: str = "",
    executor: Executor | None = None,
    on_progress: Callable[[float, int], None] | None = None,
    now: str | None = None,
) -> IngestResult:
    """Reads an input file into list `list_name` in one transaction; returns counts.

    `on_progress(fraction of the file read, rows read)` is called at most every
    0.2 s and once at the end. Raises NotFound for a missing file, InvalidInput
    for a file that cannot be read as a list, IngestRejected (nothing stored)
    when `strict` and anything was rejected or when no record would be stored
    and not `allow_empty`, ConfigError for an unusable option, list name or kind.
    `retain_days` sets the list's retention (None keeps the list's); `now` (ISO UTC, as
    `utc_now` gives it) stamps the records' `stored_at`.
    """
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    if retain_days is not None and not 0 <= retain_days <= MAX_RETAIN_DAYS:
        raise ConfigError(
            f"--retain-days {retain_days} is out of range: give a whole number of days from 0 "
            f"(keep the list's records forever) to {MAX_RETAIN_DAYS}; nothing was stored"
        )
    check_list_name(list_name)
    started = time.monotonic()
    own_pool: Executor | None = None
    try:
        with (
            _fewer_collections(),
            open_source(
                path, delimiter=delimiter, encoding=encoding, sheet=sheet, chunk_rows=CHUNK_ROWS
            ) as source,
        ):
            if (
                executor is None
                and source.size >= _MIN_PARALLEL_BYTES
                and (os.cpu_count() or 1) > 1
            ):
                executor = own_pool = _default_pool()
            result = IngestResult(
                name=list_name, kind=kind or "", replaced=replace, read_as=source.description
            )
            _ingest(
                store,
                source,
                result,
                context,
                signing_key,
                executor,
                on_progress,
                strict=strict,
                allow_empty=allow_empty,
                retain_days=retain_days,
                operator=operator,
                now=now or utc_now(),
            )
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=False, cancel_futures=True)
    result.stored = True
    result.seconds = time.monotonic() - started
    return result


def _ingest(
    store: Store,
    source: Source,
    result: IngestResult,
    context: CanonContext,
    signing_key: Ed25519PrivateKey,
    executor: Executor | None,
    on_progress: Callable[[float, int], None] | None,
    *,
    strict: bool,
    allow_empty: bool,
    retain_days: int | None,
    operator: str,
    now: str,
) -> None:
    """Reads `source` into the list in one transaction, filling `result`."""
    name, replace = result.name, result.replaced
    shown = 0.0
    with store.transaction() as conn:
        list_id, result.kind, existed, version = _open_list(
            store, name, result.kind or None, replace
        )
        if source.header is not None:
            try:
                check_kind_columns(source.header, result.kind)
            except InvalidInput as exc:
                raise InvalidInput(f"{source.name}: {exc}; nothing was stored") from None
        writer = _Writer(store, list_id, upsert=existed and not replace, stored_at=now)
        for chunk in _run(executor, source, context, result.kind):
            writer.write(chunk, result, store_rows=not (strict and result.rejected))
            if on_progress is not None and time.monotonic() - shown >= _PROGRESS_SECONDS:
                on_progress(source.fraction(), result.rows)
                shown = time.monotonic()
        if on_progress is not None:
            on_progress(1.0, result.rows)
        result.rejected.sort(key=lambda r: r.line)
        if strict and result.rejected:
            raise IngestRejected(
                f"{source.name}: {len(result.rejected)} value(s) rejected and --strict is set, "
                "so nothing was stored; fix the lines listed or drop --strict",
                result,
            )
        if result.records == 0 and not allow_empty:
            raise IngestRejected(_nothing_stored(source, result, existed), result)
        conn.execute(
            "UPDATE lists SET version = ?, updated_at = ? WHERE id = ?",
            (version + 1, now, list_id),
        )
        if retain_days is not None:
            set_retention(conn, list_id, retain_days)
        erased = {}
        if (replace and existed) or writer.updated:
            erased = _erase_what_is_gone(conn, name, list_id)
        audit.append(
            conn,
            signing_key,
            "ingest",
            {
                "operator": operator,
                "list": name,
                "kind": result.kind,
                "rows": result.rows,
                "records": result.records,
                "elements": result.elements,
                "rejected": len(result.rejected),
                "replace": replace,
                **({} if retain_days is None else {"retain_days": retain_days}),
                **erased,
            },
        )


def ingest_record(
    store: Store,
    list_name: str,
    row: Mapping[str, object],
    context: CanonContext,
    signing_key: Ed25519PrivateKey,
    *,
    replace: bool = False,
    operator: str = "",
    now: str | None = None,
) -> IngestResult:
    """Adds one record to an existing list, or replaces one by ref, in one audited transaction.

    `row` is one input row, keyed by column as a JSON Lines object is (`ref`,
    identifier columns, `label`, and for an operations list its window and event
    columns), canonicalised and checked as an ingest checks each row, but strictly:
    any rejected cell stores nothing (`IngestRejected`, its result naming each
    column and why). A new ref that exists already is a Conflict; a replaced one
    that does not exist is NotFound, as is the list. A replacement erases the
    record's hits that its new identifiers no longer support and retires the list's
    screening epochs, as an update by ref in `ingest_file` does. The list's version
    is bumped (a serving node sweeps a changed operations list), and one audit
    entry, `record.added` or `record.replaced`, names who, the list and the counts.
    Blocks on SQLite and hashes the record's elements: call it off the event loop.
    """
    check_list_name(list_name, "list")
    check_columns(row)
    found = store.conn.execute("SELECT kind FROM lists WHERE name = ?", (list_name,)).fetchone()
    if found is None:
        raise NotFound(
            f"no list {list_name!r} on this node; a list is created by 'blindmatch ingest' "
            "(an empty one with --allow-empty)"
        )
    kind = str(found[0])
    check_kind_columns(row, kind)
    rows, records, *_, rejected = chunk = _process_chunk(
        "json", None, [(1, dict(row))], context, list_name, kind
    )
    result = IngestResult(name=list_name, kind=kind, rows=rows, replaced=replace)
    result.rejected.extend(RejectedCell(*r) for r in rejected)
    if rejected or not records:
        problems = "; ".join(f"{r.column}: {r.reason}" for r in result.rejected)
        raise IngestRejected(f"the record was not stored: {problems}", result)
    ref = records[0][1]
    now = now or utc_now()
    with store.transaction() as conn:
        current = conn.execute(
            "SELECT id, kind, version FROM lists WHERE name = ?", (list_name,)
        ).fetchone()
        if current is None or current[1] != kind:  # dropped or reloaded meanwhile
            raise Conflict(f"list {list_name!r} was dropped or changed kind meanwhile; retry")
        list_id, version = int(current[0]), int(current[2])
        exists = conn.execute(
            "SELECT 1 FROM records WHERE list_id = ? AND ref = ?", (list_id, ref)
        ).fetchone()
        if exists and not replace:
            raise Conflict(
                f"list {list_name!r} has a record with ref {ref!r} already; replace it instead"
            )
        if replace and not exists:
            raise NotFound(f"list {list_name!r} has no record with ref {ref!r}")
        writer = _Writer(store, list_id, upsert=replace, stored_at=now)
        writer.write(chunk, result, store_rows=True)
        conn.execute(
            "UPDATE lists SET version = ?, updated_at = ? WHERE id = ?",
            (version + 1, now, list_id),
        )
        erased = _erase_what_is_gone(conn, list_name, list_id) if replace else {}
        audit.append(
            conn,
            signing_key,
            "record.replaced" if replace else "record.added",
            {
                "operator": operator,
                "list": list_name,
                "kind": kind,
                "records": result.records,
                "elements": result.elements,
                **erased,
            },
        )
    result.stored = True
    return result


def _erase_what_is_gone(conn: sqlite3.Connection, name: str, list_id: int) -> dict[str, int]:
    """After a replace or an update by ref: what the list no longer holds is erased.

    Hits of a ref, or of an identifier type, that the list no longer has go, and
    the list's screening epochs are retired: a peer's cached encoded set must not
    keep answering for a removed record, identifier or label (a new epoch, with
    new keys, starts on the next fetch). Returns counts for the ingest's audit entry.
    """
    hits = conn.execute(
        """
        DELETE FROM hits WHERE list = ? AND NOT EXISTS (
            SELECT 1 FROM records r JOIN elements e ON e.record_id = r.id
            WHERE r.list_id = ? AND r.ref = hits.ref AND e.type = hits.type)
        """,
        (name, list_id),
    ).rowcount
    epochs = conn.execute("DELETE FROM screen_epochs WHERE list_id = ?", (list_id,)).rowcount
    return {"hits_erased": hits, "screening_epochs_retired": epochs}


def _nothing_stored(source: Source, result: IngestResult, existed: bool) -> str:
    """Why an ingest that would store no record stored nothing, and how to store it anyway."""
    if source.empty:
        what = f"{source.name} is empty"
    elif result.rows == 0:
        what = f"{source.name} has a header but no rows"
    else:
        what = (
            f"{source.name}: none of its {result.rows:,} rows can be stored "
            f"({len(result.rejected):,} rejected)"
        )
    if existed and result.replaced:
        keep = f"list {result.name!r} is unchanged; to empty it, pass --allow-empty"
    elif existed:
        keep = f"list {result.name!r} is unchanged"
    else:
        keep = f"to create list {result.name!r} empty, pass --allow-empty"
    fix = "" if result.rows == 0 else "fix the lines listed; "
    return f"{what}, so nothing was stored: {fix}{keep}"


def _run(
    executor: Executor | None, source: Source, context: CanonContext, kind: str
) -> Iterator[_Result]:
    """Yields each chunk's result in file order, keeping a few chunks in flight."""
    fmt, header, name = source.format, source.header, source.name
    if executor is None:
        for rows in source.chunks:
            yield _process_chunk(fmt, header, rows, context, name, kind)
        return
    window = 4 * (os.cpu_count() or 1)
    pending: deque[Future[_Result]] = deque()
    try:
        for rows in source.chunks:
            pending.append(executor.submit(_process_chunk, fmt, header, rows, context, name, kind))
            while len(pending) >= window or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
