"""`blindmatch config set|show` through the real entry point: checked, audited, applied."""

import json
import sqlite3
import tomllib
from pathlib import Path

from tests.conftest import RunCli
from tests.node.cli.test_cli import setup_node

SLASHED = "ref,name,dob\nP1,Jan Jansen,03/04/1980\n"


def config_entries(node: Path) -> list[dict[str, object]]:
    with sqlite3.connect(node / "store.sqlite") as conn:
        rows = conn.execute("SELECT body FROM audit WHERE event = 'config.set' ORDER BY seq")
        return [json.loads(body) for (body,) in rows]


def test_config_set_applies_to_ingest_and_is_audited(run_cli: RunCli, tmp_path: Path) -> None:
    node = setup_node(run_cli, tmp_path)
    (tmp_path / "slashed.csv").write_text(SLASHED)
    refused = run_cli("ingest", "node", "--list", "p", "slashed.csv", "--json")
    assert refused.returncode == 1
    assert "ambiguous" in json.loads(refused.stdout)["rejected"][0]["reason"]

    proc = run_cli("config", "set", "node", "date_order", "dmy", "--operator", "anna")
    assert proc.returncode == 0, proc.stderr
    assert "'' -> 'DMY'" in proc.stdout and "applies to ingests from now on" in proc.stdout
    assert tomllib.loads((node / "node.toml").read_text())["date_order"] == "DMY"
    stored = run_cli("ingest", "node", "--list", "p", "slashed.csv", "--json", check=True)
    assert json.loads(stored.stdout)["records"] == 1

    shown = json.loads(run_cli("config", "show", "node", "--json", check=True).stdout)
    assert shown["date_order"] == "DMY" and shown["agency"] == "customs-nl"
    assert "peers" not in shown

    verified = run_cli("audit", "verify", "node", check=True)
    assert "intact" in verified.stdout
    assert config_entries(node) == [
        {"operator": "anna", "key": "date_order", "before": "", "after": "DMY"}
    ]


def test_config_set_refuses_what_cannot_be_used(run_cli: RunCli, tmp_path: Path) -> None:
    node = setup_node(run_cli, tmp_path)
    before = (node / "node.toml").read_bytes()
    cases = [
        (("date_order", "YMD"), "date_order 'YMD' must be"),
        (("agency", "x"), "cannot be set with 'config set'; settable keys: region"),
        (("idle_seconds", "5x"), "idle_seconds must be a whole number"),
        (("max_sessions", "0"), "max_sessions must be a whole number from 1"),
        (("region", "XX"), "not a phone region"),
    ]
    for (key, value), message in cases:
        proc = run_cli("config", "set", "node", key, value)
        assert proc.returncode == 1, (key, proc.stdout)
        assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert (node / "node.toml").read_bytes() == before
    assert config_entries(node) == []
    usage = run_cli("config", "set", "node", "region")
    assert usage.returncode == 2
