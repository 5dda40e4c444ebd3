"""Tests for node.ingest: CSV and JSON Lines, rejections by line and column, strict, replace."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from crypto.groups import get_suite
from node.data import audit, ingest
from node.data.identifiers import encode_element
from node.data.ingest import IngestResult, ingest_file
from node.data.sample import write_csv, write_jsonl
from node.data.store import Store
from node.errors import ConfigError, IngestRejected, InvalidInput
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
        [with_label] = {
            label for ref, label in zip(points.refs, points.labels, strict=True) if ref == "A1"
        }
        assert with_label == "case 1"
        # The cached point is the suite's hash of the canonical element.
        element = encode_element("iban", "GB82WEST12345698765432")
        index = points.types.index("iban")
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
        assert [t for r, t in zip(points.refs, points.types, strict=True) if r == "R00000000"] == [
            "imo"
        ]
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
        assert (a.packed, a.refs, a.types) == (b.packed, b.refs, b.types)
    json.dumps(serial.to_json())
