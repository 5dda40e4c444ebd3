"""`blindmatch columns`, `ingest --help` and the README list every column a file may have."""

import json
from pathlib import Path

from node.data.identifiers import COLUMN_GUIDE, known_columns
from tests.conftest import RunCli

README = Path(__file__).resolve().parents[3] / "README.md"


def test_columns_command_lists_every_known_column(run_cli: RunCli) -> None:
    listed = json.loads(run_cli("columns", "--json", check=True).stdout)
    assert [c["column"] for c in listed] == [c.column for c in COLUMN_GUIDE]
    assert {c["column"] for c in listed} == set(known_columns())
    assert all(c["format"] and c["example"] for c in listed)
    text = run_cli("columns", check=True).stdout
    assert all(f"  {c.column} " in text and f"e.g. {c.example}" in text for c in COLUMN_GUIDE)


def test_ingest_help_lists_the_columns(run_cli: RunCli) -> None:
    text = run_cli("ingest", "--help", check=True).stdout
    for option in ("--delimiter", "--encoding", "--sheet", "--allow-empty"):
        assert option in text
    assert all(f"  {c.column} " in text for c in COLUMN_GUIDE)


def test_readme_has_the_same_column_table() -> None:
    readme = README.read_text()
    for c in COLUMN_GUIDE:
        format_, example = (text.replace("|", "\\|") for text in (c.format, c.example))
        row = f"| `{c.column}` | {format_} | `{example}` |"
        assert row in readme, f"README's column table is out of date for {c.column}: {row}"
    assert "../shared" not in readme and "DESIGN.md" not in readme
