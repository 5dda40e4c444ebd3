"""Tests for node.data.sources: formats, encodings, CSV dialects, .xlsx, JSON, limits."""

import codecs
import datetime as dt
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from node.data import sources
from node.data.sources import FIELD_LIMIT, cell_text, open_source, row_dicts
from node.errors import ConfigError, InvalidInput, NotFound


def read(path: Path, **options: Any) -> tuple[tuple[str, ...] | None, list[tuple[int, Any]]]:
    """The header and every (line, raw row) of a file."""
    with open_source(path, **options) as source:
        return source.header, [row for chunk in source.chunks for row in chunk]


def dicts(path: Path, **options: Any) -> list[tuple[int, dict[str, object] | None, str]]:
    """Every row of a file as `row_dicts` makes it, in chunks of 2 rows."""
    with open_source(path, chunk_rows=2, **options) as source:
        return [
            row
            for chunk in source.chunks
            for row in row_dicts(source.format, source.header, chunk, source.name)
        ]


def write_xlsx(path: Path, rows: list[list[object]], title: str = "Sheet") -> Path:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


# -- CSV dialect --------------------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "described"), [(",", "','"), (";", "';'"), ("\t", "tab")])
def test_delimiter_is_sniffed_from_the_header(
    tmp_path: Path, delimiter: str, described: str
) -> None:
    path = tmp_path / "in.csv"
    # Every cell holds the other candidates, so only the header tells them apart.
    path.write_text(
        delimiter.join(["ref", "name", "dob"])
        + "\n"
        + delimiter.join(['"A,1;x"', '"Jan\tde Vries"', "1980-01-02"])
        + "\n"
    )
    with open_source(path) as source:
        assert source.header == ("ref", "name", "dob")
        assert source.description.endswith(f"delimiter {described}")
        assert [row for chunk in source.chunks for row in chunk] == [
            (2, ["A,1;x", "Jan\tde Vries", "1980-01-02"])
        ]


def test_sniffed_delimiter_names_the_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("ref;nmae;dob\nA;Jan;1980-01-02\n")  # ";" gives 2 known columns, "," none
    with pytest.raises(InvalidInput, match="unknown column 'nmae': did you mean 'name'") as info:
        read(path)
    assert "'ref;" not in str(info.value)
    path.write_text("reff;nmae\nA;Jan\n")  # no known column: the most fields
    with pytest.raises(InvalidInput, match="unknown column 'reff'.*unknown column 'nmae'"):
        read(path)


@pytest.mark.parametrize("given", ["|", "tab", "\t", "\\t", ";"])
def test_delimiter_option_overrides(tmp_path: Path, given: str) -> None:
    char = sources.DELIMITERS[given]
    path = tmp_path / "in.txt"
    path.write_text(f"ref{char}imo\nA{char}9074729\n")
    assert read(path, delimiter=given) == (("ref", "imo"), [(2, ["A", "9074729"])])


def test_unknown_delimiter_option(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("ref,imo\n")
    with pytest.raises(ConfigError, match="--delimiter ':'.*'tab'"):
        read(path, delimiter=":")


def test_quoted_fields_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        codecs.BOM_UTF8
        + b'ref;label;imo\r\n\r\nA;"a; ""quoted""\r\nlabel";9074729\r\nB;;9074729\r\n;;\r\n'
    )
    header, rows = read(path)
    assert header == ("ref", "label", "imo")
    assert rows == [
        (3, ["A", 'a; "quoted"\r\nlabel', "9074729"]),
        (5, ["B", "", "9074729"]),
        (6, ["", "", ""]),
    ]
    # A row whose cells are all empty is skipped; a short row is rejected by line.
    path.write_text("ref,label,imo\nA,x\n,,\nB,,9074729\n")
    assert [(line, problem) for line, _, problem in dicts(path)] == [
        (2, "row has 2 fields, the header has 3"),
        (4, ""),
    ]


def test_header_names_every_unknown_column(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("\nref;ibna;fone;iban\nA;x;y;z\n")
    with pytest.raises(InvalidInput, match=r"line 2 \(header\): unknown column 'ibna'") as info:
        read(path)
    assert "'fone'" in str(info.value) and str(path) in str(info.value)


def test_broken_quoting_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('ref,label,imo\nA,x,9074729\nB,"never closed,9074729\nC,y,9074729\n')
    with pytest.raises(InvalidInput, match="line 3: not valid CSV: a quote opened"):
        read(path)
    path.write_text('ref,label,imo\nA,"x" y,9074729\n')
    with pytest.raises(InvalidInput, match="line 2: .*a quote inside a field is written as two"):
        read(path)


def test_field_limit_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    long = "x" * (FIELD_LIMIT + 10)
    path.write_text(f'ref,label,imo\nA,short,9074729\nB,"{long}\nmore",9074729\n')
    with pytest.raises(InvalidInput) as info:
        read(path)
    message = str(info.value)
    assert f"{path}, line 3, column 'label'" in message and "safety limit" in message
    # A field just under the limit is read.
    path.write_text(f"ref,label\nA,{'y' * (FIELD_LIMIT - 1)}\n")
    assert len(read(path)[1][0][1][1]) == FIELD_LIMIT - 1


# -- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_byte_order_mark_decides(tmp_path: Path, codec: str) -> None:
    bom = {
        "utf-8-sig": b"",
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[codec]
    path = tmp_path / "in.txt"
    path.write_bytes(bom + "ref\tname\tdob\r\nA\tJosé Müller\t1980-01-02\r\n".encode(codec))
    assert read(path) == (("ref", "name", "dob"), [(2, ["A", "José Müller", "1980-01-02"])])


def test_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("ref;name;dob\r\nA;Jürgen Ørsted;1980-01-02\r\n".encode("cp1252"))
    assert read(path, encoding="cp1252")[1] == [(2, ["A", "Jürgen Ørsted", "1980-01-02"])]
    with pytest.raises(ConfigError, match="--encoding 'klingon' is not a text encoding"):
        read(path, encoding="klingon")
    with pytest.raises(ConfigError, match="--encoding 'base64'"):
        read(path, encoding="base64")


def test_undecodable_byte_names_line_and_suggests_an_encoding(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    rows = "".join(f"A{i};Jan Jansen;1980-01-02\r\n" for i in range(5))
    path.write_bytes(f"ref;name;dob\r\n{rows}B;Hans Müller;1980-01-02\r\n".encode("cp1252"))
    with pytest.raises(InvalidInput) as info:
        read(path)
    assert str(info.value).startswith(
        f"{path}, line 7: not UTF-8 (byte 0xFC); it reads as cp1252 (Western European), "
        "where that line has 'Müller': re-run with --encoding cp1252"
    )


def test_suggestion_prefers_a_reading_as_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    # Byte 0xA3 is "£" in cp1252 and "Ł" in cp1250: the reading as letters comes first,
    # and another reading as letters is named too.
    sample = "ref;name\nA;Łukasz Kowalski\n".encode("cp1250")
    at = sample.index(b"\xa3")
    monkeypatch.setattr(sources, "_plausible_encodings", lambda *_: ["cp1252", "cp1250"])
    assert sources._suggestion(sample, "utf-8", at) == (
        "; it reads as cp1250 (Central European), where that line has 'Łukasz': "
        "re-run with --encoding cp1250"
    )
    sample = "ref;name\nA;Jürgen\n".encode("cp1252")
    at = sample.index(b"\xfc")
    monkeypatch.setattr(sources, "_plausible_encodings", lambda *_: ["cp1252", "cp1251"])
    assert sources._suggestion(sample, "utf-8", at).endswith(
        "--encoding cp1252 (or, if that looks wrong, cp1251: 'Jьrgen')"
    )


def test_no_plausible_encoding_says_how_to_export(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"ref;name\nA;\x81\x8d\x8f\x90\x9d\xff\xfe\x00\x01\n")
    with pytest.raises(InvalidInput, match=r"line 2: not UTF-8 \(byte 0x81\): export it as UTF-8"):
        read(path)


def test_utf16_without_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes("ref\tname\r\nA\tJan\r\n".encode("utf-16-le"))
    with pytest.raises(InvalidInput, match="line 1: contains NUL.*--encoding utf-16-le"):
        read(path)
    assert read(path, encoding="utf-16-le")[1] == [(2, ["A", "Jan"])]


def test_byte_order_mark_contradicting_the_option(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"ref,imo\nA,9074729\n")
    with pytest.raises(InvalidInput, match="UTF-8 byte-order mark.*not cp1252: drop --encoding"):
        read(path, encoding="cp1252")
    assert read(path, encoding="utf8")[0] == ("ref", "imo")


def test_single_byte_encoding_for_a_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("ref;name;dob\nA;Hans Müller;1980-01-02\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="UTF-8 text.*'Müller'.*'MÃ¼ller'.*drop --encoding"):
        read(path, encoding="latin-1")
    ascii_only = tmp_path / "ascii.csv"
    ascii_only.write_text("ref;imo\nA;9074729\n")
    assert read(ascii_only, encoding="cp1252")[1] == [(2, ["A", "9074729"])]


# -- JSON ---------------------------------------------------------------------------------------


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"ref": "A", "imo": "9074729"}\n\n  \n[1]\nnot json\n{"ref": "B"}\n')
    assert [(line, row, problem[:22]) for line, row, problem in dicts(path)] == [
        (1, {"ref": "A", "imo": "9074729"}, ""),
        (4, None, "expected a JSON object"),
        (5, None, "not valid JSON: Expect"),
        (6, {"ref": "B"}, ""),
    ]


def test_json_array_streamed_with_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_HEAD_CHARS", 5)
    monkeypatch.setattr(sources, "_BLOCK_CHARS", 7)  # every value crosses a block's end
    path = tmp_path / "in.json"
    path.write_text(
        ' [\n  {"ref": "A",\n   "label": "x]y,{"},\n  12345678,\n  "text", null,\n'
        '  {"ref": "B", "imo": 9074729}\n]\n\n'
    )
    assert [(line, row, problem) for line, row, problem in dicts(path)] == [
        (2, {"ref": "A", "label": "x]y,{"}, ""),
        (4, None, "expected a JSON object, got a number"),
        (5, None, "expected a JSON object, got a string"),
        (5, None, "expected a JSON object, got null"),
        (6, {"ref": "B", "imo": 9074729}, ""),
    ]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('[\n{"ref": "A"},\n{"ref": "B" "imo": "1"},\n{"ref": "C"}\n]', 3, "Expecting ','"),
        ('[\n{"ref": "A"}\n{"ref": "B"}\n]', 3, "expected , or ]"),
        ('[\n{"ref": "A"},\n]', 3, "Expecting value"),
        ('[\n{"ref": "A"}\n', 3, "expected , or ] after a value, found the end of the file"),
        ('[{"ref": "A"}]\n{"ref": "B"}', 2, "text after the end of the array"),
    ],
)
def test_broken_json_array_fails_the_file(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "in.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=f"line {line}: not valid JSON \\({problem}"):
        dicts(path)


def test_json_unknown_keys_are_all_named_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"ref": "A", "imo": "9074729"},\n {"ref": "B", "fone": "1", "ibna": "2"}]')
    with pytest.raises(InvalidInput, match="line 2: unknown column 'fone'.*unknown column 'ibna'"):
        dicts(path)


def test_json_by_content_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text('\n  [{"ref": "A"}]')
    with open_source(path) as source:
        assert (source.format, source.header, source.empty) == ("json", None, False)
    for name, text in [("a.json", "[ ]"), ("b.jsonl", "\n\n"), ("c.csv", ""), ("d.csv", "\n\n")]:
        (tmp_path / name).write_text(text)
        with open_source(tmp_path / name) as source:
            assert source.empty and list(source.chunks) == []
            assert source.fraction() == 1.0 or source.size == 0
    (tmp_path / "header.csv").write_text("ref,imo\n")
    with open_source(tmp_path / "header.csv") as source:
        assert not source.empty and list(source.chunks) == []


# -- .xlsx --------------------------------------------------------------------------------------


def test_cell_text() -> None:
    assert [
        cell_text(value)
        for value in (
            None,
            "  x ",
            12345678,
            12345678.0,
            0.5,
            True,
            False,
            dt.datetime(1980, 4, 3),
            dt.datetime(1980, 4, 3, 12, 30),
            dt.date(1980, 4, 3),
            dt.time(8, 15),
        )
    ] == [
        "",
        "x",
        "12345678",
        "12345678",
        "0.5",
        "true",
        "false",
        "1980-04-03",
        "1980-04-03T12:30:00",
        "1980-04-03",
        "08:15:00",
    ]


def test_xlsx(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "list.xlsx",
        [
            [],
            [None, None],
            [" ref", "dob", "imo", "name", None],
            ["A", dt.date(1980, 4, 3), 9074729, "  Jan Jansen "],
            [],
            ["B", dt.datetime(1981, 5, 6), 9074729.0, None, None, None],
            [None, None, None],
            ["C", "03.04.1980", None, "x", None, "beyond the header"],
        ],
    )
    with open_source(path) as source:
        assert source.format == "xlsx" and source.description == "Excel workbook, sheet 'Sheet'"
        assert source.header == ("ref", "dob", "imo", "name")
        rows = [row for chunk in source.chunks for row in chunk]
    assert rows == [
        (4, ["A", "1980-04-03", "9074729", "Jan Jansen"]),
        (6, ["B", "1981-05-06", "9074729", ""]),
        (8, ["C", "03.04.1980", "", "x", "", "beyond the header"]),
    ]


def test_xlsx_sheets(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook(write_only=True)
    for title, ref in [("Notes", "N"), ("Lijst", "L")]:
        sheet = workbook.create_sheet(title)
        sheet.append(["ref", "imo"])
        sheet.append([ref, "9074729"])
    path = tmp_path / "two.xlsx"
    workbook.save(path)
    assert read(path)[1] == [(2, ["N", "9074729"])]
    assert read(path, sheet="Lijst")[1] == [(2, ["L", "9074729"])]
    with pytest.raises(InvalidInput, match="no sheet 'List'; its sheets are 'Notes', 'Lijst'"):
        read(path, sheet="List")
    with pytest.raises(ConfigError, match="--delimiter applies to text files"):
        read(path, delimiter=";")
    with pytest.raises(ConfigError, match="--sheet applies to .xlsx"):
        (tmp_path / "in.csv").write_text("ref\n")
        read(tmp_path / "in.csv", sheet="Lijst")


def test_xlsx_header_names_every_unknown_column(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "list.xlsx", [["ref", "ibna", "fone"], ["A", "x", "y"]], "Blad1")
    with pytest.raises(InvalidInput) as info:
        read(path)
    assert "sheet 'Blad1', row 1 (header): unknown column 'ibna'" in str(info.value)
    assert "unknown column 'fone'" in str(info.value)


def test_not_a_workbook(tmp_path: Path) -> None:
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500))
    with pytest.raises(InvalidInput, match=r"old Excel \.xls workbook.*save it as \.xlsx"):
        read(xls)
    other = tmp_path / "other.xlsx"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with pytest.raises(InvalidInput, match=r"not an \.xlsx workbook that can be read"):
        read(other)
    renamed = tmp_path / "renamed.xlsx"
    renamed.write_text("ref,imo\n")
    with pytest.raises(InvalidInput, match=r"not an \.xlsx workbook"):
        read(renamed)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="missing.csv not found"):
        read(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match="is a directory"):
        read(tmp_path)


def test_chunks_pickle_for_the_workers(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"ref": "A", "imo": 9074729}, [1]]))
    with open_source(path) as source:
        [chunk] = list(source.chunks)
    assert (
        pickle.loads(pickle.dumps(chunk)) == chunk == [(1, {"ref": "A", "imo": 9074729}), (1, [1])]
    )


def test_damaged_sheet_fails_with_the_last_row_read(tmp_path: Path) -> None:
    rows: list[list[object]] = [["ref", "imo"], *[[f"A{i}", 9074729] for i in range(3000)]]
    good = write_xlsx(tmp_path / "good.xlsx", rows)
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/"):  # has a dimension, breaks at row 2500
                data = data[: data.index(b'<row r="2500"')] + b"<row r="
                data = data.replace(b"<sheetData>", b'<dimension ref="A1:B3001"/><sheetData>')
            target.writestr(item, data)
    with pytest.raises(InvalidInput, match=r"sheet 'Sheet': the workbook is damaged after row"):
        read(damaged)
