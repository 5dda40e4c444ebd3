"""Tests for node.ingest: every export format, rejections by line and column, strict,
replace, empty ingests, and whole-file errors that store nothing."""

import gc
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest

from crypto.groups import get_suite
from node.data import audit, ingest
from node.data.identifiers import MAX_LABEL_CHARS, encode_element
from node.data.ingest import IngestResult, ingest_file
from node.data.sample import EXPORT_FORMATS, sample_records, write_csv, write_export, write_jsonl
from node.data.sources import FIELD_LIMIT
from node.data.store import Store
from node.errors import ConfigError, IngestRejected, InvalidInput, NotFound
from node.setup.config import NodeConfig

CSV = """ref,label,iban,container,phone,name,dob
A1,case 1,GB82 WEST 1234 5698 7654 32,CSQU3054383,+31 6 1234 5678,,
A2,,GB82WEST12345698765433,CSQU3054383,,José Álvarez,1980-04-03
,,GB82WEST12345698765432,,,,
A1,,,CSQU3054383,,,
A5,,,,,,
"""


def run(node: NodeConfig, path: Path, name: str = "w", **options: object) -> IngestResult:
    with Store.open(node.store_path) as store:
        return ingest_file(
            store,
            path,
            name,
            node.canon_context(),
            audit.load_signing_key(node.audit_key),
            operator="test",
            **options,  # type: ignore[arg-type]
        )


def counts(node: NodeConfig) -> dict[str, tuple[str, int, int, int]]:
    with Store.open(node.store_path) as store:
        return {i.name: (i.kind, i.records, i.elements, i.version) for i in store.lists()}


def stored(node: NodeConfig, name: str) -> list[tuple[str, str | None, str, bytes]]:
    """Every (ref, label, element type, element) of list `name`, sorted."""
    with Store.open(node.store_path) as store:
        rows = store.conn.execute(
            "SELECT r.ref, r.label, e.type, e.element FROM elements e "
            "JOIN records r ON e.record_id = r.id JOIN lists l ON r.list_id = l.id "
            "WHERE l.name = ?",
            (name,),
        ).fetchall()
    return sorted(rows)


def test_csv_rejections_by_line_and_column(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(CSV)
    result = run(node, path)
    assert (result.rows, result.records, result.elements) == (5, 2, 6)
    assert [(r.line, r.column) for r in result.rejected] == [
        (3, "iban"),
        (4, "ref"),
        (5, "ref"),
        (6, "row"),
    ]
    assert "check digits" in result.rejected[0].reason
    assert "duplicate ref 'A1': first used on line 2" in result.rejected[2].reason
    assert counts(node) == {"w": ("watchlist", 2, 6, 1)}
    with Store.open(node.store_path) as store:
        points = store.list_points("w", "x25519-blake3")
        rows = store.element_rows(points.element_ids.tolist())
        [with_label] = {label for ref, _, label in rows if ref == "A1"}
        assert with_label == "case 1"
        # The cached point is the suite's hash of the canonical element.
        element = encode_element("iban", "GB82WEST12345698765432")
        index = [type_ for _, type_, _ in rows].index("iban")
        assert points.packed[index * 32 : index * 32 + 32] == get_suite(
            "x25519-blake3"
        ).hash_to_group(element)
    entries = list(audit.entries(Store.open(node.store_path).conn))
    assert entries[-1].event == "ingest"
    assert entries[-1].fields["rejected"] == 4 and entries[-1].fields["operator"] == "test"


def test_jsonl(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"ref": "J1", "imo": "IMO 9074729", "label": "x"}\n'
        "\n"
        '{"ref": "J2", "imo": "9074728"}\n'
        "not json\n"
        '{"ref": 7, "awb": "176-12345675"}\n'
    )
    result = run(node, path, kind="seizures")
    assert (result.rows, result.records, result.elements) == (4, 2, 2)
    assert [(r.line, r.column) for r in result.rejected] == [(3, "imo"), (4, "row")]
    assert counts(node)["w"][:3] == ("seizures", 2, 2)


def test_unknown_column_stores_nothing(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("ref,ibna\nA,GB82WEST12345698765432\n")
    with pytest.raises(InvalidInput, match=r"line 1 \(header\): unknown column 'ibna'.*'iban'"):
        run(node, path)
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"ref": "A", "iban": "GB82WEST12345698765432"}\n{"ref": "B", "fone": "1"}\n')
    with pytest.raises(InvalidInput, match="line 2: unknown column 'fone'"):
        run(node, jsonl)
    assert counts(node) == {}


def test_strict_stores_nothing(node: NodeConfig, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", 100, seed=1)
    run(node, good)
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV)
    before = counts(node)
    with pytest.raises(IngestRejected, match="--strict") as info:
        run(node, bad, strict=True, replace=True)
    assert isinstance(info.value.result, IngestResult) and len(info.value.result.rejected) == 4
    assert counts(node) == before


def test_replace_and_upsert(node: NodeConfig, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "a.csv", 300, seed=1)
    result = run(node, first)
    assert counts(node)["w"][1:] == (300, result.elements, 1)
    # Without --replace: records are added or updated by ref.
    delta = tmp_path / "delta.csv"
    delta.write_text("ref,imo\nR00000000,9074729\nNEW,IMO 9074729\n")
    run(node, delta)
    kind, records, elements, version = counts(node)["w"]
    assert (records, version) == (301, 2)
    with Store.open(node.store_path) as store:
        points = store.list_points("w", "ristretto255-sha512")
        rows = store.element_rows(points.element_ids.tolist())
        assert [t for r, t, _ in rows if r == "R00000000"] == ["imo"]
    # With --replace: exactly the file's content.
    run(node, delta, replace=True)
    assert counts(node)["w"] == ("watchlist", 2, 2, 3)
    with pytest.raises(ConfigError, match="use --replace to change its kind"):
        run(node, delta, kind="seizures")


def test_parallel_matches_in_process(
    node: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", 2500, seed=3, invalid_rate=0.05)
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 300)
    serial = run(node, path, name="serial")
    with ThreadPoolExecutor(2) as pool:
        parallel = run(node, path, name="parallel", executor=pool)
    assert parallel.to_json() | {"list": "serial"} == serial.to_json()
    assert serial.rejected and serial.records > 2000
    with Store.open(node.store_path) as store:
        a = store.list_points("serial", "x25519-blake3")
        b = store.list_points("parallel", "x25519-blake3")
        assert a.packed == b.packed
        rows = [store.element_rows(p.element_ids.tolist()) for p in (a, b)]
        assert [r[:2] for r in rows[0]] == [r[:2] for r in rows[1]]
    json.dumps(serial.to_json())


# -- every format an agency exports -------------------------------------------------------------

_SUFFIXES = {"csv": ".csv", "excel-csv": ".csv", "unicode-text": ".txt", "xlsx": ".xlsx"}


def test_every_export_format_stores_the_same_elements(node: NodeConfig, tmp_path: Path) -> None:
    records = list(sample_records(200, seed=5, charset="cp1252", invalid_rate=0.05))
    records[0]["label"] = 'Op "Nightjar"; desk 4,\nsecond line'  # quotes, delimiters, newline
    records[1]["name"], records[1]["dob"] = "Jürgen Ørsted-Núñez", "1980-04-03"
    results = {}
    for fmt in EXPORT_FORMATS:
        path = write_export(tmp_path / f"list-{fmt}{_SUFFIXES.get(fmt, '.' + fmt)}", records, fmt)
        encoding = "cp1252" if fmt == "excel-csv" else None
        results[fmt] = run(node, path, name=fmt, encoding=encoding)
    first = stored(node, "csv")
    labels = {ref: label for ref, label, *_ in first}
    assert len(labels) > 150 and labels["R00000000"] == records[0]["label"]
    assert ("R00000001", "person") in {(ref, type) for ref, _, type, _ in first}
    for fmt, result in results.items():
        assert stored(node, fmt) == first, fmt
        assert (result.rows, result.records, result.elements) == (
            results["csv"].rows,
            results["csv"].records,
            results["csv"].elements,
        )
        # The same rejections, though lines differ in a JSON array (one object, many lines).
        assert sorted((r.column, r.reason) for r in result.rejected) == sorted(
            (r.column, r.reason) for r in results["csv"].rejected
        )
    assert results["xlsx"].read_as == "Excel workbook, sheet 'List'"
    assert results["excel-csv"].read_as == "CSV, cp1252, delimiter ';'"
    assert results["unicode-text"].read_as == "CSV, UTF-16 LE, delimiter tab"


def test_cp1252_without_encoding_stores_nothing(node: NodeConfig, tmp_path: Path) -> None:
    records = list(sample_records(30, seed=5, charset="cp1252"))
    records[20]["name"], records[20]["dob"] = "Hans Müller", "1980-04-03"
    path = write_export(tmp_path / "excel.csv", records, "excel-csv")
    first_non_ascii = next(
        i for i, line in enumerate(path.read_bytes().splitlines(), 1) if not line.isascii()
    )
    with pytest.raises(InvalidInput) as info:
        run(node, path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {first_non_ascii}: not UTF-8 (byte 0x")
    assert "re-run with --encoding cp1252" in message
    assert counts(node) == {}
    with pytest.raises(ConfigError, match="--encoding 'cp-1252x'"):
        run(node, path, encoding="cp-1252x")
    assert run(node, path, encoding="cp1252").records == 30


def test_delimiter_option(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "pipes.txt"
    path.write_text("ref|imo|label\nA|9074729|a, b; c\n")
    with pytest.raises(InvalidInput, match="unknown column 'ref|imo|label'"):
        run(node, path)
    result = run(node, path, delimiter="|")
    assert (result.records, result.read_as) == (1, "CSV, UTF-8, delimiter '|'")
    assert stored(node, "w")[0][:2] == ("A", "a, b; c")


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_every_unknown_column_named_at_once(node: NodeConfig, tmp_path: Path, fmt: str) -> None:
    records = [{"ref": "A", "imo": "9074729", "ibna": "x", "fone": "y"}]
    path = write_export(
        tmp_path / f"in.{fmt}", records, fmt, columns=["ref", "imo", "ibna", "fone"]
    )
    with pytest.raises(InvalidInput) as info:
        run(node, path)
    message = str(info.value)
    where = {"csv": "line 1 (header)", "xlsx": "sheet 'List', row 1 (header)", "json": "line 2"}
    assert f"{path}, {where[fmt]}: unknown column 'ibna'" in message
    assert "unknown column 'fone'" in message
    assert counts(node) == {}


def test_broken_json_array_stores_nothing(node: NodeConfig, tmp_path: Path) -> None:
    run(node, write_csv(tmp_path / "good.csv", 50, seed=1))
    before = (counts(node), stored(node, "w"))
    path = tmp_path / "in.json"
    path.write_text('[\n{"ref": "A", "imo": "9074729"},\n{"ref": "B", "imo": "9074729"\n')
    with pytest.raises(InvalidInput, match="line 4: not valid JSON"):
        run(node, path, replace=True)
    assert (counts(node), stored(node, "w")) == before


# -- empty ingests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "is empty"),
        ("ref,imo\n", "has a header but no rows"),
        ("ref,imo\nA,9074720\n,9074729\n", "none of its 2 rows can be stored (2 rejected)"),
    ],
)
def test_nothing_to_store_is_refused_unless_allowed(
    node: NodeConfig, tmp_path: Path, content: str, why: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(content)
    with pytest.raises(IngestRejected, match=re.escape(f"{why}, so nothing was stored")) as info:
        run(node, path)
    assert "to create list 'w' empty, pass --allow-empty" in str(info.value)
    assert isinstance(info.value.result, IngestResult)
    assert counts(node) == {}
    result = run(node, path, allow_empty=True)
    assert (result.records, result.stored) == (0, True)
    assert counts(node) == {"w": ("watchlist", 0, 0, 1)}


def test_replace_with_an_empty_file_keeps_the_list(node: NodeConfig, tmp_path: Path) -> None:
    run(node, write_csv(tmp_path / "good.csv", 50, seed=1))
    before = (counts(node), stored(node, "w"))
    empty = tmp_path / "empty.csv"
    empty.write_text("ref,imo\n")
    with pytest.raises(IngestRejected, match="list 'w' is unchanged; to empty it, pass --allow"):
        run(node, empty, replace=True)
    assert (counts(node), stored(node, "w")) == before
    run(node, empty, replace=True, allow_empty=True)
    assert counts(node)["w"][1:] == (0, 0, 2)


# -- labels and limits --------------------------------------------------------------------------


def test_overlong_label_rejects_its_row(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    long = "x" * 200_000
    path.write_text(
        f'ref,label,imo\nA,"{long}",9074729\nB,"ok, fine",9074729\nC,"bell\x07",9074729\n'
        f"D,{'y' * MAX_LABEL_CHARS},9074729\n"
    )
    result = run(node, path)
    assert [(r.line, r.column) for r in result.rejected] == [(2, "label"), (4, "label")]
    assert "200,000 characters" in result.rejected[0].reason
    assert "control character" in result.rejected[1].reason
    assert [(ref, label) for ref, label, *_ in stored(node, "w")] == [
        ("B", "ok, fine"),
        ("D", "y" * MAX_LABEL_CHARS),
    ]


def test_oversized_field_fails_the_file(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(f'ref,imo,label\nA,9074729,ok\nB,9074729,"{"z" * (2 * FIELD_LIMIT)}"\n')
    with pytest.raises(InvalidInput, match=f"{path}, line 3, column 'label': .*safety limit"):
        run(node, path)
    assert counts(node) == {}


# -- .xlsx and other files ----------------------------------------------------------------------


def test_xlsx_sheet(node: NodeConfig, tmp_path: Path) -> None:
    workbook = openpyxl.Workbook(write_only=True)
    workbook.create_sheet("Notes").append(["read me"])
    sheet = workbook.create_sheet("Lijst")
    sheet.append(["ref", "imo", "awb"])
    sheet.append(["X1", 9074729, None])
    sheet.append(["X2", "IMO 9074729", 17612345675])
    path = tmp_path / "lists.xlsx"
    workbook.save(path)
    with pytest.raises(InvalidInput, match="row 1 \\(header\\): unknown column 'read me'"):
        run(node, path)
    with pytest.raises(InvalidInput, match="no sheet 'lijst'; its sheets are 'Notes', 'Lijst'"):
        run(node, path, sheet="lijst")
    result = run(node, path, sheet="Lijst")
    assert (result.rows, result.records, result.elements, result.rejected) == (2, 2, 3, [])


def test_old_xls_and_missing_file(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "list.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000))
    with pytest.raises(InvalidInput, match="save it as .xlsx .* or as CSV"):
        run(node, path)
    with pytest.raises(NotFound, match="not found"):
        run(node, tmp_path / "missing.csv")
    assert counts(node) == {}


def test_progress_is_reported_to_the_end(node: NodeConfig, tmp_path: Path) -> None:
    calls: list[tuple[float, int]] = []
    path = write_export(tmp_path / "l.json", sample_records(120, seed=2), "json")
    result = run(node, path, on_progress=lambda done, rows: calls.append((done, rows)))
    assert calls[-1] == (1.0, 120) == (1.0, result.rows)
    assert all(0.0 <= done <= 1.0 for done, _ in calls)


def test_collector_settings_are_restored(node: NodeConfig, tmp_path: Path) -> None:
    before = gc.get_threshold()
    run(node, write_csv(tmp_path / "a.csv", 20, seed=1))
    broken = tmp_path / "b.json"
    broken.write_text("[{")
    with pytest.raises(InvalidInput):
        run(node, broken)
    assert gc.get_threshold() == before


def test_replace_and_update_erase_what_the_list_no_longer_holds(
    node: NodeConfig, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_text("ref,iban,imo\nA,NL91ABNA0417164300,9074729\nB,GB82WEST12345698765432,\n")
    run(node, first)
    with Store.open(node.store_path) as store, store.transaction() as conn:
        found = [
            {"ref": "A", "type": "iban"},
            {"ref": "A", "type": "imo"},
            {"ref": "B", "type": "iban"},
        ]
        store.add_hits("s1", "police-nl", "initiator", "w", "mutual", found)
        conn.execute(
            "INSERT INTO screen_epochs (list_id, seed, public_key, list_version, created_at) "
            "SELECT id, x'00', x'00', version, '2026-01-01' FROM lists WHERE name = 'w'"
        )

    def left() -> tuple[list[tuple[str, str]], int]:
        with Store.open(node.store_path) as store:
            hits = sorted((h["ref"], h["type"]) for h in store.hits())
            epochs = store.conn.execute("SELECT count(*) FROM screen_epochs").fetchone()[0]
        return hits, epochs

    # An update by ref that drops A's IMO: that hit goes, and no cached set answers for it.
    update = tmp_path / "update.csv"
    update.write_text("ref,iban\nA,NL91ABNA0417164300\n")
    run(node, update)
    assert left() == ([("A", "iban"), ("B", "iban")], 0)
    # A replace without B: B's hit goes too.
    run(node, update, replace=True)
    assert left() == ([("A", "iban")], 0)
    with Store.open(node.store_path) as store:
        bodies = [e.fields for e in audit.entries(store.conn) if e.event == "ingest"]
    assert [(b.get("hits_erased"), b.get("screening_epochs_retired")) for b in bodies] == [
        (None, None),
        (1, 1),
        (1, 0),
    ]
    # Adding records only erases nothing.
    added = tmp_path / "added.csv"
    added.write_text("ref,iban\nC,GB82WEST12345698765432\n")
    run(node, added)
    assert left() == ([("A", "iban")], 0)
