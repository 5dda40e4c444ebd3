"""Input files: the one place that opens an agency's list and yields its rows (DESIGN §6).

`open_source(path)` reads a CSV, JSON Lines, JSON array or .xlsx file and gives
its header (tabular formats) and an iterator of chunks of ``(line, raw row)``,
``line`` being 1-based: the CSV or JSON line where the row starts, or the
Excel row number. `row_dicts` turns a chunk into mappings; it is cheap to
pickle and runs in the ingest's worker processes. docs/INPUT-FILES.md says
the same for operators.

Rules:

- **Format**: a zip (``PK\\x03\\x04``) is an .xlsx workbook; an OLE2 file
  (``D0 CF 11 E0``: .xls, or a password-protected workbook) is refused: save it
  as .xlsx or CSV. Otherwise the file is text: JSON when named .json, .jsonl or
  .ndjson or when its first non-space character is ``{`` or ``[`` (``[``: one
  JSON array, streamed; else JSON Lines, one object a line); CSV otherwise.
- **Encoding** (text): a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32
  LE/BE), and an ``encoding`` that contradicts it is an error; else
  ``encoding`` (``--encoding cp1252``), else UTF-8. A byte that does not decode
  fails the file with its line; the message suggests an encoding only when
  charset-normalizer finds one plausible that decodes a sample (the first
  MiB and that line), quoting the word as it would read. The guess never
  decides: a wrong one would silently change identifiers. A single-byte
  ``encoding`` given for a file whose first MiB is UTF-8 with non-ASCII text is
  refused for the same reason.
- **CSV**: delimiter ``,`` ``;`` or tab, the one that splits the header into the
  most known columns (`identifiers.known_columns`), else into the most fields;
  ``delimiter`` overrides (also ``|``). Quotes are ``"`` doubled inside a field
  (Excel's); quoted fields may hold delimiters and newlines (the row's line is
  its first). Broken quoting (text after a closing quote, a quote never closed)
  and a field over `FIELD_LIMIT` fail the file, naming the line and the column.
  Blank lines and rows whose cells are all empty are skipped.
- **.xlsx** (openpyxl, read-only streaming): the first sheet or ``sheet``; the
  header is the first non-empty row; empty rows are skipped; cells become text
  (`cell_text`): dates ``YYYY-MM-DD``, integral numbers their digits.
- **JSON**: an object's keys are its columns; a key that is not a known column
  fails the file, every one named with the line. A line of JSON Lines that is
  not JSON, or an array element that is not an object, is a rejected row; JSON
  that breaks an array fails the file (nothing after it can be trusted).
- A header naming unknown or repeated columns, or no ``ref``, fails the file
  with every problem named at once (`identifiers.check_columns`).
- An empty file (no header, no rows) is not an error here: `Source.empty`.

Errors: `NotFound` for a missing file, `InvalidInput` for a file that cannot
be read as a list, `ConfigError` for an option that cannot be used (unknown
encoding or delimiter, an option for another format).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import json
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from xml.etree.ElementTree import ParseError

from node.data.identifiers import check_columns, known_columns
from node.errors import ConfigError, InvalidInput, NotFound

__all__ = [
    "DELIMITERS",
    "FIELD_LIMIT",
    "Chunk",
    "Source",
    "cell_text",
    "open_source",
    "row_dicts",
]

FIELD_LIMIT = 1024 * 1024
"""Characters a CSV field may hold: a safety limit against a quote that is never closed."""

DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "\\t": "\t", "|": "|"}
"""Accepted values of ``delimiter`` and what they mean."""

Chunk = list[tuple[int, Any]]
"""Rows as (line, raw row): a list of str for CSV and .xlsx, the line's text for JSON
Lines, the decoded element for a JSON array."""

_SNIFFED = (",", ";", "\t")
_HEAD_CHARS = 64 * 1024
_BLOCK_CHARS = 256 * 1024
_MAX_JSON_VALUE = 16 * 1024 * 1024
_SAMPLE_BYTES = 1024 * 1024
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0"
_BOMS = (  # UTF-32 LE first: its mark starts with UTF-16 LE's
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 BE"),
)
# Encodings worth suggesting, most likely first for the agencies' desktops (Windows in Europe).
_CODE_PAGES = {
    "cp1252": "Western European",
    "cp1250": "Central European",
    "cp1251": "Cyrillic",
    "cp1253": "Greek",
    "cp1254": "Turkish",
    "cp1257": "Baltic",
    "iso8859_15": "Western European, ISO",
    "latin_1": "Western European, ISO",
    "iso8859_2": "Central European, ISO",
    "iso8859_5": "Cyrillic, ISO",
    "iso8859_7": "Greek, ISO",
    "koi8_r": "Cyrillic, KOI8-R",
    "mac_roman": "Mac Western European",
    "cp850": "DOS Western European",
    "utf_16_le": "UTF-16 LE without a byte-order mark",
    "utf_16_be": "UTF-16 BE without a byte-order mark",
    "utf_8": "UTF-8",
}
_PLAUSIBLE_CHAOS = 0.1  # charset-normalizer's "mess" ratio: above it a reading is not plausible
_NEAR_BEST_CHAOS = 0.03  # readings this close to the best are equally likely
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_WORD_ENDS = frozenset(b' \t\r\n,;|"')


@dataclass
class Source:
    """An open input file: its format, header and chunks of rows."""

    name: str
    """The file as the operator named it, for messages."""
    format: str
    """"csv", "xlsx", "jsonl" or "json"."""
    description: str
    """How the file is read, e.g. "CSV, cp1252, delimiter ';'"."""
    header: tuple[str, ...] | None
    """The columns (CSV, .xlsx); None for JSON, whose objects name their own."""
    chunks: Iterator[Chunk]
    """Chunks of (line, raw row) in file order; `row_dicts` reads them."""
    empty: bool
    """True when the file holds neither header nor rows."""
    size: int
    """The file's size in bytes."""
    _position: Callable[[], int]

    def fraction(self) -> float:
        """How far through the file reading is, from 0 to 1 (for a progress bar)."""
        return min(self._position() / self.size, 1.0) if self.size else 1.0


@contextmanager
def open_source(
    path: str | os.PathLike[str],
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    chunk_rows: int = 1000,
) -> Iterator[Source]:
    """Opens an input file and yields it as a `Source`; closes it on exit.

    Raises NotFound for a missing file, InvalidInput for one that cannot be
    read as a list, ConfigError for an option that cannot be used.
    """
    path = Path(path)
    name = str(path)
    if delimiter is not None and delimiter not in DELIMITERS:
        raise ConfigError(
            f"--delimiter {delimiter!r} is not one the CSV reader accepts: use ',', ';', "
            "'tab' or '|'"
        )
    codec = _codec(encoding) if encoding is not None else None
    with ExitStack() as stack:
        try:
            raw = stack.enter_context(open(path, "rb"))
        except FileNotFoundError:
            raise NotFound(f"input file {name} not found") from None
        except IsADirectoryError:
            raise InvalidInput(f"{name} is a directory, not a list file") from None
        except OSError as exc:
            raise InvalidInput(f"{name} cannot be read: {exc.strerror}") from None
        size = os.fstat(raw.fileno()).st_size
        magic = raw.read(8)
        raw.seek(0)
        if magic.startswith(_OLE2_MAGIC):
            raise InvalidInput(
                f"{name} is an old Excel .xls workbook (or a password-protected one), which "
                "cannot be read: open it in Excel and save it as .xlsx (without a password) or "
                "as CSV UTF-8"
            )
        if magic.startswith(_ZIP_MAGIC) or path.suffix.lower() == ".xlsx":
            for option, value in (("--encoding", encoding), ("--delimiter", delimiter)):
                if value is not None:
                    raise ConfigError(f"{option} applies to text files; {name} is a workbook")
            rows: Iterator[tuple[int, Any]]
            header, rows, description = _xlsx(stack, raw, name, sheet)
            fmt = "xlsx"
        else:
            if sheet is not None:
                raise ConfigError(f"--sheet applies to .xlsx workbooks; {name} is a text file")
            reader = _TextReader(raw, name, magic, codec, encoding)
            stack.enter_context(reader.text)
            head = reader.head()
            start = head.lstrip()[:1]
            if path.suffix.lower() in _JSON_SUFFIXES or start in ("{", "["):
                if delimiter is not None:
                    raise ConfigError(f"--delimiter applies to CSV files; {name} is JSON")
                fmt = "json" if start == "[" else "jsonl"
                header = None
                rows = reader.json_array() if fmt == "json" else reader.json_lines()
                description = f"{'JSON array' if fmt == 'json' else 'JSON Lines'}, {reader.label}"
            else:
                fmt = "csv"
                header, rows, description = reader.csv_rows(DELIMITERS.get(delimiter or ""))
        chunks = _in_chunks(rows, chunk_rows)
        first = next(chunks, None)
        empty = first is None and not header
        yield Source(
            name=name,
            format=fmt,
            description=description,
            header=header,
            chunks=chunks if first is None else itertools.chain([first], chunks),
            empty=empty,
            size=size,
            _position=raw.tell,
        )


def row_dicts(
    fmt: str, header: Sequence[str] | None, rows: Chunk, name: str
) -> Iterator[tuple[int, dict[str, object] | None, str]]:
    """Yields (line, row as a mapping or None, why not) for a chunk of a `fmt` source's rows.

    Tabular rows whose cells are all empty are skipped. Raises InvalidInput,
    naming the file and line, for a JSON object with a key that is not a column.
    """
    if header is not None:  # CSV, .xlsx
        width = len(header)
        for line, cells in rows:
            if len(cells) != width:
                if any(cells):
                    yield line, None, f"row has {len(cells)} fields, the header has {width}"
            elif any(cells):
                yield line, dict(zip(header, cells, strict=True)), ""
        return
    for line, raw in rows:
        value = raw
        if fmt == "jsonl":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield line, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
                continue
        if not isinstance(value, dict):
            yield line, None, f"expected a JSON object, got {_json_type(value)}"
            continue
        if not value.keys() <= known_columns():
            try:
                check_columns([*value, *(() if "ref" in value else ("ref",))])
            except InvalidInput as exc:
                raise InvalidInput(f"{name}, line {line}: {exc}") from None
        yield line, value, ""


def cell_text(value: object) -> str:
    """Returns a spreadsheet cell as text: dates ISO, integral numbers as digits, None empty."""
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if type(value) is float:
        return str(int(value)) if value.is_integer() else repr(value)
    if type(value) is dt.datetime:
        midnight = value.time() == dt.time() and value.tzinfo is None
        return value.date().isoformat() if midnight else value.isoformat()
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is dt.date or type(value) is dt.time:
        return value.isoformat()
    return str(value)


# -- text: encoding, CSV, JSON -------------------------------------------------------------------


def _codec(encoding: str) -> codecs.CodecInfo:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise ConfigError(
            f"--encoding {encoding!r} is not a text encoding Python knows: use e.g. utf-8, "
            "cp1252 (Excel on Western European Windows), latin-1 or utf-16"
        )
    return info


def _is_utf8(codec: str) -> bool:
    return codecs.lookup(codec).name in ("utf-8", "utf-8-sig")


class _TextReader:
    """A text file decoded once, read as CSV lines, JSON Lines or a JSON array."""

    def __init__(
        self,
        raw: IO[bytes],
        name: str,
        magic: bytes,
        given: codecs.CodecInfo | None,
        encoding: str | None,
    ) -> None:
        self.raw = raw
        self.name = name
        bom = next(((codec, label) for mark, codec, label in _BOMS if magic.startswith(mark)), None)
        if bom is not None:
            codec, self.label = bom
            if given is not None and not given.name.startswith(codec.removesuffix("-sig")):
                raise InvalidInput(
                    f"{name} starts with a {self.label} byte-order mark, so it is {self.label} "
                    f"text, not {encoding}: drop --encoding"
                )
        elif given is not None:
            codec, self.label = given.name, str(encoding)
        else:
            codec, self.label = "utf-8", "UTF-8"
        self.codec = codec
        self.text = io.TextIOWrapper(raw, encoding=codec, newline="")
        self._head = ""
        if given is not None and bom is None and not _is_utf8(codec):
            self._refuse_utf8()

    def head(self) -> str:
        """Reads (once) the first whole lines of the file, at least 64 KiB of text if it has it."""
        if not self._head:
            try:
                self._head = self.text.read(_HEAD_CHARS) + self.text.readline()
            except UnicodeDecodeError:
                raise self._undecodable() from None
            if "\x00" in self._head.partition("\n")[0]:
                sample = self._sample()
                hint = _suggestion(sample, self.codec, sample.find(b"\x00"))
                raise InvalidInput(
                    f"{self.name}, line 1: contains NUL characters, so it is not {self.label} "
                    f"text{hint}"
                )
        return self._head

    def _lines(self) -> Iterator[str]:
        return itertools.chain(io.StringIO(self._head, newline=""), self.text)

    def json_lines(self) -> Iterator[tuple[int, str]]:
        """(line, text) of the non-blank lines (JSON Lines)."""
        try:
            for line, text in enumerate(self._lines(), start=1):
                if not text.isspace():
                    yield line, text
        except UnicodeDecodeError:
            raise self._undecodable() from None

    def csv_rows(
        self, delimiter: str | None
    ) -> tuple[tuple[str, ...] | None, Iterator[tuple[int, list[str]]], str]:
        """The header, the rows as (line, cells) and a description of a CSV file."""
        chosen = delimiter or _sniff_delimiter(self._head)
        csv.field_size_limit(FIELD_LIMIT)  # the module's limit is process-wide
        reader = csv.reader(self._lines(), delimiter=chosen, quotechar='"', strict=True)
        shown = "tab" if chosen == "\t" else repr(chosen)
        description = f"CSV, {self.label}, delimiter {shown}"
        header: list[str] = []
        line = 1
        try:
            while not header:
                line = reader.line_num + 1
                header = [cell.strip() for cell in next(reader)]
        except StopIteration:
            return None, iter(()), description
        except csv.Error as exc:
            raise self._csv_error(exc, line, chosen, ()) from None
        except UnicodeDecodeError:
            raise self._undecodable() from None
        try:
            check_columns(header)
        except InvalidInput as exc:
            raise InvalidInput(f"{self.name}, line {line} (header): {exc}") from None
        return tuple(header), self._csv_cells(reader, chosen, header), description

    def _csv_cells(
        self, reader: Any, delimiter: str, header: list[str]
    ) -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        try:
            for cells in reader:
                if cells:
                    yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise self._csv_error(exc, start, delimiter, header) from None
        except UnicodeDecodeError:
            raise self._undecodable() from None

    def json_array(self) -> Iterator[tuple[int, Any]]:
        """(line, element) of a file holding one JSON array, decoded as it streams."""
        try:
            yield from _JsonArray(self.text, self._head).elements()
        except UnicodeDecodeError:
            raise self._undecodable() from None
        except _BrokenJson as exc:
            raise InvalidInput(
                f"{self.name}, line {exc.line}: not valid JSON ({exc.problem}); in a JSON array "
                "one broken value spoils the rest of the file: fix it, or export JSON Lines"
            ) from None

    def _csv_error(
        self, exc: csv.Error, line: int, delimiter: str, header: Sequence[str]
    ) -> InvalidInput:
        message = str(exc)
        if message.startswith("field larger than field limit"):
            column = self._oversized_column(line, delimiter, header)
            return InvalidInput(
                f"{self.name}, line {line}{column}: a field longer than {FIELD_LIMIT:,} "
                "characters; that is a safety limit against broken quoting (a quote that is "
                "never closed swallows the lines after it): check the quotes on that line"
            )
        if message == "unexpected end of data":
            why = "a quote opened in this row is never closed"
        elif "expected after" in message:
            why = (
                "text follows a closing quote: a quoted field ends at its closing quote, and a "
                'quote inside a field is written as two ("")'
            )
        else:
            why = message
        return InvalidInput(f"{self.name}, line {line}: not valid CSV: {why}; fix the quoting")

    def _oversized_column(self, line: int, delimiter: str, header: Sequence[str]) -> str:
        """Finds which column of the row starting on `line` is over the limit (error path)."""
        budget = (len(header) + 2) * FIELD_LIMIT

        def capped(lines: Iterable[str]) -> Iterator[str]:
            used = 0
            for text in lines:
                used += len(text)
                if used > budget:
                    return
                yield text

        limit = csv.field_size_limit(budget)
        try:
            with open(self.raw.name, encoding=self.codec, newline="", errors="replace") as f:
                lines = capped(itertools.islice(f, line - 1, None))
                cells = next(csv.reader(lines, delimiter=delimiter, quotechar='"'), [])
        finally:
            csv.field_size_limit(limit)
        for index, cell in enumerate(cells):
            if len(cell) > FIELD_LIMIT:
                return f", column {header[index]!r}" if index < len(header) else ""
        return ""

    def _refuse_utf8(self) -> None:
        """Refuses another encoding for a file plainly UTF-8 (non-ASCII in its first MiB)."""
        sample = self._sample()
        if sample.isascii():
            return
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError:
            return
        at = next(i for i, byte in enumerate(sample) if byte >= 0x80)
        word = _word(sample, at)
        raise InvalidInput(
            f"{self.name} is UTF-8 text (it has {word.decode('utf-8', errors='replace')!r}, which "
            f"{self.label} would "
            f"read as {word.decode(self.codec, errors='replace')!r}): drop --encoding"
        )

    def _sample(self, extra: bytes = b"") -> bytes:
        """The file's first MiB, cut at a line end, and `extra`: what encodings are judged on."""
        with open(self.raw.name, "rb") as f:
            head = f.read(_SAMPLE_BYTES)
        if len(head) == _SAMPLE_BYTES and b"\n" in head:
            head = head[: head.rindex(b"\n") + 1]
        return head if extra in head else head + extra

    def _undecodable(self) -> InvalidInput:
        """Finds the line of the first byte that does not decode, says what to do (error path)."""
        decoder = codecs.getincrementaldecoder(self.codec)()
        line = 1
        with open(self.raw.name, "rb") as f:
            while block := f.read(_SAMPLE_BYTES):
                try:
                    line += decoder.decode(block).count("\n")
                except UnicodeDecodeError as exc:
                    data = exc.object
                    line += data[: exc.start].decode(self.codec, errors="ignore").count("\n")
                    if not codecs.lookup(self.codec).name.startswith(("utf-16", "utf-32")):
                        first = data.rfind(b"\n", 0, exc.start) + 1
                        last = data.find(b"\n", exc.start)
                        bad_line = data[first : last if last >= 0 else len(data)]
                        at = exc.start - first
                    else:
                        bad_line, at = data[exc.start : exc.start + 200], 0
                    sample = self._sample(bad_line)
                    return InvalidInput(
                        f"{self.name}, line {line}: not {self.label} (byte "
                        f"0x{data[exc.start]:02X})"
                        + _suggestion(sample, self.codec, sample.rfind(bad_line) + at)
                    )
        return InvalidInput(f"{self.name}: not {self.label} text")


class _BrokenJson(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(line, problem)
        self.line, self.problem = line, problem


class _JsonArray:
    """Streams the elements of one JSON array from a text stream, with the line each starts on."""

    def __init__(self, text: IO[str], head: str) -> None:
        self.text, self.buf, self.pos, self.line, self.eof = text, head, 0, 1, False
        self.decoder = json.JSONDecoder()

    def elements(self) -> Iterator[tuple[int, Any]]:
        if self._next_char() != "[":
            raise _BrokenJson(self.line, "a JSON array starts with [")
        self._advance(self.pos + 1)
        if self._next_char() == "]":
            self._advance(self.pos + 1)
        else:
            while True:
                yield self._value()
                char = self._next_char()
                self._advance(self.pos + 1)
                if char == "]":
                    break
                if char != ",":
                    found = repr(char) if char else "the end of the file"
                    raise _BrokenJson(self.line, f"expected , or ] after a value, found {found}")
                self._next_char()
        if self._next_char():
            raise _BrokenJson(self.line, "text after the end of the array")

    def _advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def _refill(self) -> None:
        more = self.text.read(_BLOCK_CHARS)
        self.buf, self.pos, self.eof = self.buf[self.pos :] + more, 0, not more

    def _next_char(self) -> str:
        """Skips whitespace; returns the next character, "" at the end of the file."""
        while True:
            self._advance(_WHITESPACE.match(self.buf, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self._refill()

    def _value(self) -> tuple[int, Any]:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - self.pos > _MAX_JSON_VALUE:
                    line = self.line + self.buf.count("\n", self.pos, exc.pos)
                    raise _BrokenJson(line, exc.msg) from None
            else:  # a value that ends with the text read so far may go on (a number)
                if end < len(self.buf) or self.eof:
                    line = self.line
                    self._advance(end)
                    return line, value
            self._refill()


def _sniff_delimiter(head: str) -> str:
    """The delimiter that splits the header into the most known columns, else the most fields."""
    known = known_columns()

    def score(delimiter: str) -> tuple[int, int]:
        rows = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter, quotechar='"')
        try:
            header = next((row for row in rows if row), [])
        except csv.Error:
            return (0, 0)
        return sum(cell.strip() in known for cell in header), len(header)

    return max(_SNIFFED, key=score)  # max keeps the first of equals: "," before ";" and tab


def _word(data: bytes, at: int) -> bytes:
    """The word of `data` around byte `at`, at most 60 bytes (to show how a byte reads)."""
    start, end = at, at + 1
    while start > 0 and at - start < 30 and data[start - 1] not in _WORD_ENDS:
        start -= 1
    while end < len(data) and end - at < 30 and data[end] not in _WORD_ENDS:
        end += 1
    return data[start:end]


def _suggestion(sample: bytes, failed: str, at: int) -> str:
    """The end of an encoding error: which encoding reads `sample`, if one plausibly does.

    Of the plausible encodings, one that reads the word around byte `at` as
    letters comes first (cp1250 reads Polish "Łukasz" where cp1252 has "£ukasz");
    another that reads it differently, as letters too, is named as well.
    """
    readings = _plausible_encodings(sample, failed)
    if not readings:
        return (
            ": export it as UTF-8 (Excel: Save As 'CSV UTF-8'), or name its encoding with "
            "--encoding (e.g. cp1252)"
        )
    if readings[0].startswith("utf"):
        name = readings[0].replace("_", "-")
        return f"; it reads as {name} ({_CODE_PAGES[readings[0]]}): re-run with --encoding {name}"
    word = _word(sample, max(at, 0))
    shown = {encoding: word.decode(encoding, errors="replace") for encoding in readings}
    readings.sort(key=lambda encoding: not _wordlike(shown[encoding]))  # stable: keeps preference
    best, name = readings[0], readings[0].replace("_", "-")
    hint = (
        f"; it reads as {name} ({_CODE_PAGES[best]}), where that line has {shown[best]!r}: "
        f"re-run with --encoding {name}"
    )
    other = next((e for e in readings if _wordlike(shown[e]) and shown[e] != shown[best]), None)
    if other is not None:
        hint += f" (or, if that looks wrong, {other.replace('_', '-')}: {shown[other]!r})"
    return hint


def _wordlike(text: str) -> bool:
    return all(c.isalnum() or c in " -'./:()+@&" for c in text)


def _plausible_encodings(sample: bytes, failed: str) -> list[str]:
    """Encodings in `_CODE_PAGES` that decode `sample` and that charset-normalizer finds
    plausible (as little "mess" as its best reading), most likely first."""
    if sample.count(b"\x00") > len(sample) // 4:  # UTF-16 without a byte-order mark
        odd = sample[1::2].count(b"\x00") > sample[0::2].count(b"\x00")
        found = ["utf_16_le" if odd else "utf_16_be"]
    else:
        import charset_normalizer  # only to explain a file that is not in its encoding

        matches = [m for m in charset_normalizer.from_bytes(sample) if m.chaos <= _PLAUSIBLE_CHAOS]
        best = min((m.chaos for m in matches), default=0.0)
        found = [
            encoding
            for m in matches
            if m.chaos <= best + _NEAR_BEST_CHAOS
            for encoding in (m.encoding, *m.could_be_from_charset)
        ]
    failed_name = codecs.lookup(failed).name
    readable = []
    for encoding in _CODE_PAGES:
        if encoding not in found or codecs.lookup(encoding).name == failed_name:
            continue
        try:
            sample.decode(encoding)
        except UnicodeDecodeError:
            continue
        readable.append(encoding)
    return readable


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return "a number"


# -- .xlsx --------------------------------------------------------------------------------------


def _broken_workbook() -> tuple[type[Exception], ...]:
    """What reading a damaged or foreign workbook raises (imports openpyxl: only for .xlsx)."""
    from openpyxl.utils.exceptions import InvalidFileException

    return (InvalidFileException, zipfile.BadZipFile, zlib.error, ParseError, EOFError)


def _xlsx(
    stack: ExitStack, raw: IO[bytes], name: str, sheet: str | None
) -> tuple[tuple[str, ...] | None, Iterator[tuple[int, list[str]]], str]:
    """The header, the rows as (Excel row, cells) and a description of a workbook's sheet."""
    import openpyxl  # slow to import (with numpy): only when a workbook is read

    try:
        workbook = openpyxl.load_workbook(raw, read_only=True, data_only=True)
    except _broken_workbook() + (KeyError, ValueError) as exc:
        raise InvalidInput(
            f"{name} is not an .xlsx workbook that can be read ({type(exc).__name__}: {exc}): "
            "save it again as .xlsx or as CSV UTF-8"
        ) from None
    stack.callback(workbook.close)
    names = workbook.sheetnames
    if sheet is None:
        worksheet = workbook.worksheets[0]
    elif sheet in names:
        worksheet = workbook[sheet]
    else:
        raise InvalidInput(
            f"{name} has no sheet {sheet!r}; its sheets are {', '.join(map(repr, names))}"
        )
    if not hasattr(worksheet, "reset_dimensions"):
        raise InvalidInput(f"{name}: sheet {sheet!r} is a chart, not a table of rows")
    # The stored dimension is ignored: some writers store a wrong one, and openpyxl would
    # stop at it.
    worksheet.reset_dimensions()
    title = worksheet.title
    rows = _xlsx_rows(worksheet.iter_rows(values_only=True), name, title)
    header: list[str] = []
    header_line = 0
    for line, values in rows:
        header = [cell_text(value) for value in values]
        while header and not header[-1]:
            header.pop()
        if header:
            header_line = line
            break
    description = f"Excel workbook, sheet {title!r}"
    if not header:
        return None, iter(()), description
    try:
        check_columns(header)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}, sheet {title!r}, row {header_line} (header): {exc}") from None
    return tuple(header), _xlsx_cells(rows, len(header)), description


def _xlsx_rows(
    values: Iterator[tuple[object, ...]], name: str, title: str
) -> Iterator[tuple[int, tuple[object, ...]]]:
    """(Excel row number, cell values); a sheet that breaks off fails with the last row read."""
    line = 0
    try:
        for line, row in enumerate(values, start=1):
            yield line, row
    except _broken_workbook() as exc:
        raise InvalidInput(
            f"{name}, sheet {title!r}: the workbook is damaged after row {line} "
            f"({type(exc).__name__}: {exc}): save it again as .xlsx or as CSV UTF-8"
        ) from None


def _xlsx_cells(
    rows: Iterator[tuple[int, tuple[object, ...]]], width: int
) -> Iterator[tuple[int, list[str]]]:
    """(Excel row, cells as text, padded to the header's width) of the non-empty rows."""
    for line, values in rows:
        cells = [value.strip() if type(value) is str else cell_text(value) for value in values]
        if not any(cells):
            continue
        if len(cells) < width:
            cells += [""] * (width - len(cells))
        elif len(cells) > width and not any(cells[width:]):
            del cells[width:]
        yield line, cells


def _in_chunks(rows: Iterator[tuple[int, Any]], size: int) -> Iterator[Chunk]:
    """The rows in lists of `size` (the last may be shorter): what one worker task handles."""
    while chunk := list(itertools.islice(rows, size)):
        yield chunk
