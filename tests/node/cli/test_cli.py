"""End-to-end tests of the `blindmatch` command line through its real entry point."""

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from node.data.sample import write_csv
from tests.conftest import BLINDMATCH, RunCli

BAD = """ref,iban,container
A1,GB82 WEST 1234 5698 7654 32,CSQU3054383
A2,GB82WEST12345698765433,CSQU 305438 3
A3,,CSQU3054384
"""


def setup_node(run_cli: RunCli, tmp_path: Path) -> Path:
    run_cli("ca", "init", "ca", "--name", "test CA", check=True)
    run_cli(
        "init", "node", "--agency", "customs-nl", "--listen", "127.0.0.1:50051", "--ca", "ca",
        "--region", "NL", check=True,
    )  # fmt: skip
    return tmp_path / "node"


def lists(run_cli: RunCli) -> list[dict[str, object]]:
    proc = run_cli("lists", "node", "--json", check=True)
    result: list[dict[str, object]] = json.loads(proc.stdout)
    return result


def test_init_peer_ingest_lists(run_cli: RunCli, tmp_path: Path) -> None:
    node = setup_node(run_cli, tmp_path)
    assert (node / "tls" / "node.crt").exists() and (node / "audit.key").stat().st_mode & 0o077 == 0
    again = run_cli("init", "node", "--agency", "customs-nl", "--listen", "h:1", "--ca", "ca")
    assert again.returncode == 1 and "already holds a node" in again.stderr
    assert run_cli("ca", "init", "ca").returncode == 1

    proc = run_cli("peer", "add", "node", "--agency", "police-nl", "--address", "127.0.0.1:50052")
    assert proc.returncode == 0, proc.stderr
    bad_mode = run_cli("peer", "add", "node", "--agency", "x-y", "--address", "h:1", "--modes", "z")
    assert bad_mode.returncode == 1 and bad_mode.stderr.count("\n") == 1
    assert "unknown mode" in bad_mode.stderr

    (tmp_path / "bad.csv").write_text(BAD)
    proc = run_cli("ingest", "node", "--list", "wl", "bad.csv", "--json", "--kind", "seizures")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {
        "list": "wl",
        "rows": 3,
        "records": 2,
        "elements": 3,
        "rejected": [
            {"line": 3, "column": "iban", "reason": result["rejected"][0]["reason"]},
            {"line": 4, "column": "container", "reason": result["rejected"][1]["reason"]},
        ],
    }
    assert "IBAN check digits" in result["rejected"][0]["reason"]
    assert "expected 3" in result["rejected"][1]["reason"]
    (stored,) = lists(run_cli)
    assert stored.pop("updated")  # an ISO time: DESIGN §6's lists --json
    assert stored == {"list": "wl", "kind": "seizures", "records": 2, "elements": 3, "version": 1}

    text = run_cli("ingest", "node", "--list", "wl", "bad.csv", check=True).stdout
    assert "line 3, iban:" in text and "2 rejected" in text
    table = run_cli("lists", "node", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["list", "kind", "records", "elements"]
    assert table[2].split()[:4] == ["wl", "seizures", "2", "3"]
    assert json.loads(run_cli("hits", "node", "--json", check=True).stdout) == []


def test_strict_and_unknown_column_store_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    setup_node(run_cli, tmp_path)
    (tmp_path / "bad.csv").write_text(BAD)
    (tmp_path / "unknown.csv").write_text("ref,iban,colour\nA,GB82WEST12345698765432,red\n")
    strict = run_cli("ingest", "node", "--list", "wl", "bad.csv", "--strict", "--json")
    assert strict.returncode == 1
    assert strict.stderr.startswith("blindmatch: error: ") and strict.stderr.count("\n") == 1
    assert len(json.loads(strict.stdout)["rejected"]) == 2
    unknown = run_cli("ingest", "node", "--list", "wl", "unknown.csv")
    assert unknown.returncode == 1 and "unknown column 'colour'" in unknown.stderr
    assert lists(run_cli) == []
    usage = run_cli("ingest", "node", "bad.csv")
    assert usage.returncode == 2 and "--list" in usage.stderr
    missing = run_cli("lists", "nowhere")
    assert missing.returncode == 1 and "blindmatch init" in missing.stderr


def test_kill_during_ingest_leaves_list_intact(run_cli: RunCli, tmp_path: Path) -> None:
    node = setup_node(run_cli, tmp_path)
    write_csv(tmp_path / "small.csv", 500, seed=1)
    run_cli("ingest", "node", "--list", "wl", "small.csv", check=True)
    before = lists(run_cli)
    write_csv(tmp_path / "big.csv", 200_000, seed=2)
    proc = subprocess.Popen(
        [*BLINDMATCH, "ingest", "node", "--list", "wl", "big.csv", "--replace"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the kill takes the worker processes too
    )
    try:
        # Wait until the ingest has written into the WAL (inside its transaction), then kill it.
        wal = node / "store.sqlite-wal"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if wal.exists() and wal.stat().st_size > 1_000_000:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "ingest finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert lists(run_cli) == before
    with sqlite3.connect(node / "store.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT version FROM lists").fetchone()[0] == 1
