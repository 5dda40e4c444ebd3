"""Ingest of an agency's list from CSV or JSON Lines into the node store (DESIGN §2, §6).

The file is streamed: the main process reads rows in chunks and sends them to
a process pool, where each worker canonicalises the chunk
(`identifiers.canonical_elements`) and hashes its elements into the group of
*both* suites; the main process writes the results into SQLite while the
workers compute the next chunks. Everything is one transaction (BEGIN
IMMEDIATE ... COMMIT): a failed, interrupted or killed ingest leaves the
previous list exactly as it was.

Rules:

- CSV needs a header; its columns are checked before any row
  (`identifiers.check_columns`). JSON Lines objects are checked one by one:
  an unknown key fails the ingest naming it and its line.
- Rejections carry the file's 1-based line (the CSV header is line 1; for
  JSON Lines, the object's line), the column and the reason. A row without
  a ref, with a ref already used earlier in the file, or without any valid
  identifier is rejected as a whole (column ``ref``, or ``row``).
- ``strict``: any rejection stores nothing (`IngestRejected`).
- ``replace``: the list's content is swapped for the file's. Without it, an
  ingest into an existing list *adds or updates* records by ref: a ref that
  is already in the list gets the file's label and identifiers (its old
  elements are dropped), other records stay. That is what a daily delta
  export expects; a full export should use ``replace``.
- Each ingest bumps the list's version and appends an ``ingest`` audit entry
  (operator, list, kind, counts; never identifiers) in the same transaction.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.batch import new_process_pool
from crypto.groups import get_suite
from node.data import audit
from node.data.identifiers import CanonContext, canonical_elements, check_columns
from node.data.store import KINDS, Store, check_list_name, utc_now
from node.errors import ConfigError, IngestRejected, InvalidInput, NotFound

__all__ = [
    "CHUNK_ROWS",
    "IngestResult",
    "RejectedCell",
    "ingest_file",
]

CHUNK_ROWS = 1000
"""Rows per chunk sent to a worker."""
_MIN_PARALLEL_BYTES = 256 * 1024
"""Files smaller than this are ingested in-process: a pool would cost more than it saves."""
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_SUITES = ("ristretto255-sha512", "x25519-blake3")


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

# A chunk's result: records as (line, ref, label, element count), element types, elements,
# packed ristretto points, packed x25519 points, rejections as (line, column, reason).
_Chunk = tuple[
    list[tuple[int, str, str | None, int]],
    list[str],
    list[bytes],
    bytes,
    bytes,
    list[tuple[int, str, str]],
]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


def _csv_rows(
    header: Sequence[str], rows: list[tuple[int, list[str]]]
) -> Iterator[tuple[int, dict[str, object] | None, str]]:
    width = len(header)
    for line, cells in rows:
        if len(cells) != width:
            yield line, None, f"row has {len(cells)} fields, the header has {width}"
        else:
            yield line, dict(zip(header, cells, strict=True)), ""


def _jsonl_rows(
    rows: list[tuple[int, str]], source: str
) -> Iterator[tuple[int, dict[str, object] | None, str]]:
    for line, text in rows:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(obj, dict):
            yield line, None, f"expected a JSON object, got {type(obj).__name__}"
            continue
        try:
            check_columns([*obj, *(() if "ref" in obj else ("ref",))])
        except InvalidInput as exc:
            raise InvalidInput(f"{source}, line {line}: {exc}") from None
        yield line, obj, ""


def _process_chunk(
    kind: str, header: Sequence[str], rows: list[Any], context: CanonContext, source: str
) -> _Chunk:
    """Canonicalises and hashes one chunk of raw rows (runs in a worker process)."""
    records: list[tuple[int, str, str | None, int]] = []
    types: list[str] = []
    elements: list[bytes] = []
    rejected: list[tuple[int, str, str]] = []
    parsed = _csv_rows(header, rows) if kind == "csv" else _jsonl_rows(rows, source)
    for line, row, problem in parsed:
        if row is None:
            rejected.append((line, "row", problem))
            continue
        ref = _text(row.get("ref"))
        if not ref:
            rejected.append((line, "ref", "missing ref: every record needs a local ref"))
            continue
        label = _text(row.get("label")) or None
        found, rejections = canonical_elements(row, context)
        rejected.extend((line, r.column, r.reason) for r in rejections)
        if not found:
            if not rejections:
                rejected.append(
                    (line, "row", f"record {ref!r} has no identifiers; it cannot match")
                )
            continue
        records.append((line, ref, label, len(found)))
        for element_type, element in found:
            types.append(element_type)
            elements.append(element)
    points = [get_suite(suite).hash_batch(elements) for suite in _SUITES]
    return records, types, elements, points[0], points[1], rejected


# -- main side: read, dispatch, store -------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, name: str, total_bytes: int, enabled: bool | None = None) -> None:
        self.name = name
        self.total = max(total_bytes, 1)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, done_bytes: int, rows: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        fraction = min(done_bytes / self.total, 1.0)
        bar = "#" * int(fraction * 30)
        rate = rows / max(now - self.start, 1e-9)
        sys.stderr.write(
            f"\ringest {self.name}: [{bar:<30}] {fraction:4.0%} {rows:,} rows {rate:,.0f} rows/s"
        )
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _detect_format(path: Path, head: bytes) -> str:
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return "jsonl"
    if path.suffix.lower() == ".csv":
        return "csv"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _chunks(
    fmt: str, text: IO[str], source: str
) -> tuple[list[str], Iterator[list[tuple[int, Any]]]]:
    """Returns the header (CSV) and an iterator of chunks of (line, raw row)."""
    if fmt == "jsonl":

        def jsonl() -> Iterator[tuple[int, Any]]:
            for line, content in enumerate(text, start=1):
                if content.strip():
                    yield line, content

        return [], _batched(jsonl())
    reader = csv.reader(text)
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise InvalidInput(
            f"{source} is empty: a CSV list needs a header line (ref, then identifier columns)"
        ) from None
    except csv.Error as exc:
        raise InvalidInput(f"{source}, line 1: the header is not valid CSV ({exc})") from None
    try:
        check_columns(header)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}, line 1 (header): {exc}") from None

    def rows() -> Iterator[tuple[int, Any]]:
        line = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InvalidInput(
                    f"{source}, line {line}: not valid CSV ({exc}); fix the quoting"
                ) from None
            if cells:
                yield line, cells
            line = reader.line_num + 1

    return header, _batched(rows())


def _batched(rows: Iterator[tuple[int, Any]]) -> Iterator[list[tuple[int, Any]]]:
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        yield chunk


def _default_pool() -> Executor:
    # fork is fastest, and safe while no gRPC object exists in this process (NOTES).
    method = "forkserver" if "grpc" in sys.modules else "fork"
    return new_process_pool(start_method=method)


class _Writer:
    """Writes chunk results into the open transaction."""

    def __init__(self, store: Store, list_id: int, upsert: bool) -> None:
        self.conn = store.conn
        self.list_id = list_id
        self.upsert = upsert
        self.next_record = self._next_id("records")
        self.next_element = self._next_id("elements")
        self.seen: dict[str, int] = {}

    def _next_id(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])

    def write(self, chunk: _Chunk, result: IngestResult, store_rows: bool) -> None:
        records, types, elements, points_r, points_x, rejected = chunk
        result.rejected.extend(RejectedCell(*r) for r in rejected)
        record_rows: list[tuple[int, int, str, str | None]] = []
        element_rows: list[tuple[int, int, str, bytes, bytes, bytes]] = []
        position = 0
        for line, ref, label, count in records:
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
            record_rows.append((record_id, self.list_id, ref, label))
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
            self.conn.executemany(
                "DELETE FROM records WHERE list_id = ? AND ref = ?",
                ((self.list_id, r[2]) for r in record_rows),
            )
        self.conn.executemany(
            "INSERT INTO records (id, list_id, ref, label) VALUES (?, ?, ?, ?)", record_rows
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
            "INSERT INTO lists (name, kind, version, updated_at) VALUES (?, ?, 0, ?)",
            (name, kind, utc_now()),
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
    operator: str = "",
    executor: Executor | None = None,
    progress: bool | None = None,
) -> IngestResult:
    """Reads a CSV or JSON Lines file into list `list_name` in one transaction; returns counts.

    Raises InvalidInput for an unreadable file, bad header or unknown column,
    IngestRejected when `strict` and anything was rejected (nothing is stored),
    ConfigError for an unusable list name or kind.
    """
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    check_list_name(list_name)
    try:
        raw = open(path, "rb")  # noqa: SIM115 -- closed below, wrapped by TextIOWrapper
    except FileNotFoundError:
        raise NotFound(f"input file {path} not found") from None
    except OSError as exc:
        raise InvalidInput(f"input file {path} cannot be read: {exc.strerror}") from None
    started = time.monotonic()
    own_pool: Executor | None = None
    with raw:
        size = os.fstat(raw.fileno()).st_size
        fmt = _detect_format(path, raw.peek(64)[:64] if hasattr(raw, "peek") else b"")
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        source = str(path)
        try:
            header, chunks = _chunks(fmt, text, source)
            if executor is None and size >= _MIN_PARALLEL_BYTES and (os.cpu_count() or 1) > 1:
                executor = own_pool = _default_pool()
            result = IngestResult(name=list_name, kind=kind or "", replaced=replace)
            bar = _Progress(list_name, size, progress)
            with store.transaction() as conn:
                list_id, result.kind, existed, version = _open_list(store, list_name, kind, replace)
                writer = _Writer(store, list_id, upsert=existed and not replace)
                for chunk_rows, chunk in _run(executor, fmt, header, chunks, context, source):
                    result.rows += chunk_rows
                    writer.write(chunk, result, store_rows=not (strict and result.rejected))
                    bar.update(raw.tell(), result.rows)
                bar.update(size, result.rows, final=True)
                result.rejected.sort(key=lambda r: r.line)
                if strict and result.rejected:
                    raise IngestRejected(
                        f"{source}: {len(result.rejected)} value(s) rejected and --strict is set, "
                        "so nothing was stored; fix the lines listed or drop --strict",
                        result,
                    )
                conn.execute(
                    "UPDATE lists SET version = ?, updated_at = ? WHERE id = ?",
                    (version + 1, utc_now(), list_id),
                )
                audit.append(
                    conn,
                    signing_key,
                    "ingest",
                    {
                        "operator": operator,
                        "list": list_name,
                        "kind": result.kind,
                        "rows": result.rows,
                        "records": result.records,
                        "elements": result.elements,
                        "rejected": len(result.rejected),
                        "replace": replace,
                    },
                )
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{source}: not UTF-8 text (byte {exc.start} of a read block); "
                "export the file as UTF-8"
            ) from None
        finally:
            if own_pool is not None:
                own_pool.shutdown(wait=False, cancel_futures=True)
    result.stored = True
    result.seconds = time.monotonic() - started
    return result


def _run(
    executor: Executor | None,
    fmt: str,
    header: list[str],
    chunks: Iterator[list[tuple[int, Any]]],
    context: CanonContext,
    source: str,
) -> Iterator[tuple[int, _Chunk]]:
    """Yields (rows, result) per chunk in file order, keeping a few chunks in flight."""
    if executor is None:
        for rows in chunks:
            yield len(rows), _process_chunk(fmt, header, rows, context, source)
        return
    window = 4 * (os.cpu_count() or 1)
    pending: deque[tuple[int, Future[_Chunk]]] = deque()
    try:
        for rows in chunks:
            pending.append(
                (len(rows), executor.submit(_process_chunk, fmt, header, rows, context, source))
            )
            while len(pending) >= window or (pending and pending[0][1].done()):
                count, future = pending.popleft()
                yield count, future.result()
        while pending:
            count, future = pending.popleft()
            yield count, future.result()
    finally:
        for _, future in pending:
            future.cancel()
