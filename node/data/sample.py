"""Realistic, messy sample lists for tests, the demo and benchmarks.

Entity ``i`` of a seed is always the same entity (same passport, IBAN,
container, person...), but how it is *written* — spacing, dashes, case,
national or international phone notation, date format — is drawn from a
separate `style` seed, as two agencies would write the same entity
differently. So two files with the same `seed` and overlapping index ranges
share entities that canonicalise to the same elements. Check digits are valid
(computed with `stdnum`) unless a row is deliberately spoiled (`invalid_rate`).

`write_export` writes the same records as the agencies' tools export them
(`EXPORT_FORMATS`: CSV from a case system, Excel's CSV and Unicode text,
.xlsx, JSON Lines, a JSON array), so tests and benchmarks can check that every
format yields the same elements. Excel's CSV is cp1252: `sample_records(...,
charset="cp1252")` spells the few names cp1252 lacks (Ł, ı, ş) as unidecode
does, so the same content exists in every format.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import openpyxl
from stdnum import iban as stdnum_iban
from stdnum import imo as stdnum_imo
from stdnum import iso6346 as stdnum_iso6346
from unidecode import unidecode

__all__ = [
    "COLUMNS",
    "EXPORT_FORMATS",
    "sample_records",
    "write_csv",
    "write_export",
    "write_jsonl",
]

COLUMNS = (
    "ref",
    "label",
    "name",
    "dob",
    "passport",
    "passport_country",
    "phone",
    "email",
    "iban",
    "container",
    "imo",
    "awb",
    "plate",
)
"""The columns a sample CSV has, in order."""

_FIRST = [
    "José",
    "Anna",
    "Mohammed",
    "Jan",
    "Łukasz",
    "Sørina",
    "Pieter",
    "Chloé",
    "Dmitri",
    "Ayşe",
]
_LAST = ["Álvarez-Núñez", "de Vries", "Kowalski", "O'Brien", "Müller", "Jansen", "Yılmaz", "Petrov"]
_COUNTRIES = ["NLD", "DEU", "FRA", "BEL", "POL", "ESP", "D"]
_IBAN_BANKS = [("NL", "ABNA", 10), ("NL", "INGB", 10), ("NL", "RABO", 10)]
_OWNERS = ["MSCU", "MAEU", "CSQU", "HLXU", "TGHU", "OOLU"]
_PLATE_COUNTRIES = ["NLD", "DEU", "BEL"]
EXPORT_FORMATS = {
    "csv": "CSV, comma, UTF-8 (a case system's export)",
    "excel-csv": "CSV, semicolon, cp1252, CRLF (Excel 'CSV' in the Netherlands, Germany, France)",
    "unicode-text": "tab-separated, UTF-16 LE with byte-order mark, CRLF (Excel 'Unicode Text')",
    "xlsx": "Excel workbook; dob as date cells, whole numbers as number cells",
    "jsonl": "JSON Lines, empty cells left out",
    "json": "one JSON array, indented, empty cells left out",
}
"""What `write_export` can write, by name."""

_KINDS = ("person", "passport", "phone", "email", "iban", "container", "imo", "awb", "plate")


def _phone(rng: random.Random, style: random.Random) -> str:
    if rng.random() < 0.6:  # Dutch mobile
        digits = f"6{rng.randrange(10_000_000, 59_999_999)}"
        notation = style.randrange(4)
        if notation == 0:
            return f"+31 {digits[0]} {digits[1:5]} {digits[5:]}"
        if notation == 1:
            return f"0{digits[:1]}-{digits[1:]}"
        if notation == 2:
            return f"0031{digits}"
        return f"+31{digits}"
    digits = f"151{rng.randrange(10_000_000, 99_999_999)}"  # German mobile
    return f"+49 {digits[:3]} {digits[3:]}" if style.random() < 0.5 else f"+49-{digits}"


def _iban(rng: random.Random, style: random.Random) -> str:
    country, bank, length = rng.choice(_IBAN_BANKS)
    account = "".join(str(rng.randrange(10)) for _ in range(length))
    bban = bank + account
    number = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
    if style.random() < 0.5:
        number = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number.lower() if style.random() < 0.1 else number


def _container(rng: random.Random, style: random.Random) -> str:
    body = rng.choice(_OWNERS) + f"{rng.randrange(1_000_000):06d}"
    digit = stdnum_iso6346.calc_check_digit(body)
    notation = style.randrange(3)
    if notation == 0:
        return body + digit
    if notation == 1:
        return f"{body[:4]} {body[4:]} {digit}"
    return f"{body[:4]}-{body[4:]}-{digit}"


def _imo(rng: random.Random, style: random.Random) -> str:
    body = f"{rng.randrange(100_000, 999_999)}"
    number = body + stdnum_imo.calc_check_digit(body)
    return f"IMO {number}" if style.random() < 0.5 else number


def _awb(rng: random.Random, style: random.Random) -> str:
    serial = rng.randrange(10_000_000)
    number = f"{rng.choice(['074', '176', '020', '057'])}{serial:07d}{serial % 7}"
    return f"{number[:3]}-{number[3:]}" if style.random() < 0.5 else number


def _dob(rng: random.Random, style: random.Random) -> str:
    year, month, day = rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29)
    notation = style.randrange(3)
    if notation == 0:
        return f"{year:04d}-{month:02d}-{day:02d}"
    if notation == 1:
        return f"{year:04d}{month:02d}{day:02d}"
    return f"{day:02d}.{month:02d}.{year:04d}"


def _name(rng: random.Random, style: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    # A random middle initial keeps persons with the same dob apart.
    middle = chr(ord("A") + rng.randrange(26))
    if style.random() < 0.5:
        return f"{last.upper()}, {first} {middle}."
    return f"{first} {middle} {last}"


def _spoil(value: str) -> str:
    """Changes the last digit of a value, which breaks its check digit."""
    for i in range(len(value) - 1, -1, -1):
        if value[i].isdigit():
            return value[:i] + str((int(value[i]) + 1) % 10) + value[i + 1 :]
    return value + "!"


def sample_records(
    count: int,
    seed: int = 0,
    start: int = 0,
    style_seed: int | None = None,
    invalid_rate: float = 0.0,
    ref_prefix: str = "R",
    charset: str | None = None,
) -> Iterator[dict[str, str]]:
    """Yields `count` sample rows (entities `start` .. `start + count - 1` of `seed`).

    With `charset`, characters it cannot encode are transliterated (unidecode).
    """
    style = random.Random(seed if style_seed is None else style_seed)
    for i in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + i)
        row = dict.fromkeys(COLUMNS, "")
        row["ref"] = f"{ref_prefix}{i:08d}"
        if rng.random() < 0.3:
            row["label"] = f"case {rng.randrange(100_000):05d}, desk +31 70 000 0000"
        kind = rng.choice(_KINDS)
        kinds = {kind}
        if rng.random() < 0.3:
            kinds.add(rng.choice(_KINDS))
        for k in sorted(kinds):
            if k == "person":
                row["name"], row["dob"] = _name(rng, style), _dob(rng, style)
            elif k == "passport":
                number = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(9))
                row["passport"] = number if style.random() < 0.5 else f"{number[:3]} {number[3:]}"
                row["passport_country"] = rng.choice(_COUNTRIES)
            elif k == "phone":
                row["phone"] = _phone(rng, style)
            elif k == "email":
                row["email"] = f"user{rng.randrange(10**9)}@Example.org"
            elif k == "iban":
                row["iban"] = _iban(rng, style)
            elif k == "container":
                row["container"] = _container(rng, style)
            elif k == "imo":
                row["imo"] = _imo(rng, style)
            elif k == "awb":
                row["awb"] = _awb(rng, style)
            elif k == "plate":
                row["plate"] = f"{rng.choice(_PLATE_COUNTRIES)}:{rng.choice('ABGHKLNPRSTVXZ')}-"
                row["plate"] += f"{rng.randrange(100, 999)}-{rng.choice('BDFGHJKLNPRSTXZ')}"
                row["plate"] += rng.choice("BDFGHJKLNPRSTXZ")
        if invalid_rate and style.random() < invalid_rate:
            for column in ("iban", "container", "imo", "awb"):
                if row[column]:
                    row[column] = _spoil(row[column])
                    break
            else:
                row["container"] = _spoil(_container(rng, style))
        if charset is not None:
            row["name"] = _encodable(row["name"], charset)
        yield row


def _encodable(text: str, charset: str) -> str:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return "".join(c if c.encode(charset, "ignore") else unidecode(c) for c in text)
    return text


def write_csv(path: str | os.PathLike[str], count: int, **options: object) -> Path:
    """Writes `count` sample rows to a CSV file with a header; returns its path."""
    return write_export(path, sample_records(count, **options), "csv")  # type: ignore[arg-type]


def write_jsonl(path: str | os.PathLike[str], count: int, **options: object) -> Path:
    """Writes `count` sample rows to a JSON Lines file, empty cells left out; returns its path."""
    return write_export(path, sample_records(count, **options), "jsonl")  # type: ignore[arg-type]


def write_export(
    path: str | os.PathLike[str],
    records: Iterable[Mapping[str, str]],
    fmt: str,
    columns: Sequence[str] = COLUMNS,
) -> Path:
    """Writes `records` to `path` as format `fmt` of `EXPORT_FORMATS`; returns the path."""
    path = Path(path)
    if fmt == "xlsx":
        _write_xlsx(path, records, columns)
    elif fmt in ("jsonl", "json"):
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            separator = "[\n" if fmt == "json" else ""
            for record in records:
                obj = {k: record[k] for k in columns if record.get(k)}
                if fmt == "jsonl":
                    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
                else:
                    f.write(separator + json.dumps(obj, ensure_ascii=False, indent=2))
                    separator = ",\n"
            if fmt == "json":
                f.write("[]\n" if separator == "[\n" else "\n]\n")
    else:
        delimiter, encoding = {
            "csv": (",", "utf-8"),
            "excel-csv": (";", "cp1252"),
            "unicode-text": ("\t", "utf-16"),  # Python writes the byte-order mark, then LE
        }[fmt]
        with open(path, "w", encoding=encoding, newline="") as f:
            writer = csv.writer(f, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow(columns)
            writer.writerows([record.get(k, "") for k in columns] for record in records)
    return path


_SAMPLE_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})|(\d{2})\.(\d{2})\.(\d{4})")


def _excel_value(column: str, text: str) -> object:
    """A cell as Excel holds it once typed in: dates and whole numbers are not text."""
    if not text:
        return None
    if column == "dob" and (m := _SAMPLE_DATE.fullmatch(text)):
        year, month, day = (m[1], m[2], m[3]) if m[1] else (m[6], m[5], m[4])
        return dt.date(int(year), int(month), int(day))
    if text.isdigit() and text[0] != "0" and len(text) <= 15:  # Excel keeps 15 digits
        return int(text)
    return text


def _write_xlsx(path: Path, records: Iterable[Mapping[str, str]], columns: Sequence[str]) -> None:
    # Not write-only mode: like Excel, the normal mode stores text in a shared-strings table
    # and the sheet's dimension, which readers rely on (write-only files have inline text
    # and no dimension, so openpyxl reads them twice as slowly as a real export).
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "List"
    sheet.append(list(columns))
    for record in records:
        sheet.append([_excel_value(k, record.get(k, "")) for k in columns])
    workbook.save(path)
