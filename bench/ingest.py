"""Ingest throughput through the real CLI: a generated CSV, then the same content as exports.

Generates BENCH_INGEST_ROWS (default 1,000,000) rows with `node.data.sample`, times
`blindmatch ingest` on them in a throwaway node, and compares against the
floor: hashing every stored element into the group of both suites, at the
rate measured on a sample of the same elements with every core hashing
(`bench.common`). Everything above the floor is canonicalisation, CSV, pickling and
SQLite.

Then the same records written as agencies export them (`sample.write_export`):
BENCH_INGEST_ROWS as a cp1252 semicolon CSV and BENCH_XLSX_ROWS (default 200,000)
as .xlsx, each timed right after the same content as UTF-8 CSV, into a fresh list,
so each ratio compares two runs a minute apart.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import CORES, on_all_cores, print_table, stopwatch
from node.data.identifiers import CanonContext, canonical_elements
from node.data.sample import sample_records, write_csv, write_export

__all__ = ["main"]

ROWS = int(os.environ.get("BENCH_INGEST_ROWS", "1000000"))
XLSX_ROWS = int(os.environ.get("BENCH_XLSX_ROWS", "200000"))
_SAMPLE_ROWS = 5000
_SUITES = ("ristretto255-sha512", "x25519-blake3")
_CLI = [sys.executable, "-m", "node.cli"]


def _hash_seconds_per_element(path: Path) -> float:
    """Seconds to hash one element of the file into both suites' groups, all cores hashing."""
    context = CanonContext(region="NL")
    with open(path, newline="", encoding="utf-8") as f:
        elements = [
            element
            for row in itertools.islice(csv.DictReader(f), _SAMPLE_ROWS)
            for _, element in canonical_elements(row, context)[0]
        ]
    seconds = on_all_cores(lambda runner: [runner.hash(suite, elements) for suite in _SUITES])
    return seconds / len(elements)


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_CLI, *map(str, args)], capture_output=True, text=True, check=True)


def main() -> None:
    """Runs the ingest benchmark and prints its table."""
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-ingest-") as tmp:
        root = Path(tmp)
        path = write_csv(root / "list.csv", ROWS, seed=42)
        _cli("ca", "init", root / "ca")
        _cli(
            "init", root / "node", "--agency", "bench-nl", "--listen", "127.0.0.1:50099",
            "--ca", root / "ca", "--region", "NL",
        )  # fmt: skip
        with stopwatch() as watch:
            proc = _cli("ingest", root / "node", "--list", "bench", path, "--json")
        result = json.loads(proc.stdout)
        per_element = _hash_seconds_per_element(path)
    elements = result["elements"]
    floor = per_element * elements
    print_table(
        f"Ingest of a generated CSV, mixed identifier types, {CORES} cores",
        ["rows", "elements", "seconds", "rows/s", "floor seconds", "ratio to floor"],
        [
            [
                result["rows"],
                elements,
                watch.seconds,
                int(result["rows"] / watch.seconds),
                floor,
                f"{watch.seconds / floor:.2f}x",
            ]
        ],
    )
    print(
        "floor = hashing every element into both suites' groups "
        f"({per_element * 1e6:.1f} µs an element with all {CORES} cores hashing); "
        "the time includes process start-up, canonicalisation, CSV and SQLite.",
        flush=True,
    )
    _exports()


def _timed_ingest(node: Path, list_name: str, path: Path, *options: str) -> tuple[float, int]:
    with stopwatch() as watch:
        proc = _cli("ingest", node, "--list", list_name, path, "--json", *options)
    return watch.seconds, int(json.loads(proc.stdout)["elements"])


def _exports() -> None:
    """Times each export format against the same records as a UTF-8 CSV, side by side."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-exports-") as tmp:
        root = Path(tmp)
        _cli("ca", "init", root / "ca")
        _cli(
            "init", root / "node", "--agency", "bench-nl", "--listen", "127.0.0.1:50099",
            "--ca", root / "ca", "--region", "NL",
        )  # fmt: skip
        for fmt, count, options in (
            ("excel-csv", ROWS, ("--encoding", "cp1252")),
            ("xlsx", XLSX_ROWS, ()),
        ):
            records = list(sample_records(count, seed=7, charset="cp1252"))
            plain = write_export(root / f"{fmt}-same.csv", records, "csv")
            export = write_export(
                root / f"{fmt}.{'xlsx' if fmt == 'xlsx' else 'csv'}", records, fmt
            )
            del records
            csv_seconds, csv_elements = _timed_ingest(root / "node", f"{fmt}-csv", plain)
            seconds, elements = _timed_ingest(root / "node", fmt, export, *options)
            assert elements == csv_elements, (fmt, elements, csv_elements)
            rows.append(
                [fmt, count, elements, csv_seconds, seconds, f"{seconds / csv_seconds:.2f}x"]
            )
    print_table(
        "Ingest of the same records as exports, against the same content as UTF-8 CSV",
        ["format", "rows", "elements", "UTF-8 CSV s", "export s", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
