"""`blindmatch sweep` through the real entry point: what it refuses, its --json shape, its exit
codes, and Ctrl-C mid-sweep (exit 130, the running session recorded failed, nothing left behind).

No peer serves here: the peers are down (a closed port) or silent (a TCP listener that never
answers); sweeps against served nodes are in `tests/node/jobs/test_sweeps.py`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeNode, RunCli, still_running, wait_until, with_descendants
from tests.federation import AS_A_USER, free_port
from tests.node.rpc.peer_wire import audit_entries, session_statuses
from tests.silent_peer import SilentPeer

OPS = "ref,iban,label\nO1,NL91ABNA0417164300,op NIGHTJAR\n"
KEYS = {"list", "peer", "session_id", "match_count", "error"}


@pytest.fixture
def node_dir(make_node: MakeNode, run_cli: RunCli, tmp_path: Path) -> Path:
    """customs-nl with an operations list, a watchlist and two peers that are down."""
    config = make_node()
    (tmp_path / "ops.csv").write_text(OPS)
    for name, kind in (("ops-2026", "operations"), ("watch", "watchlist")):
        run_cli(
            "ingest", config.node_dir, "--list", name, "--kind", kind, tmp_path / "ops.csv",
            check=True,
        )  # fmt: skip
    for peer, options in (("police-nl", ()), ("tax-fr", ("--modes", "count"))):
        address = f"127.0.0.1:{free_port()}"
        run_cli(
            "peer", "add", config.node_dir, "--agency", peer, "--address", address, *options,
            check=True,
        )  # fmt: skip
    return config.node_dir


def _error(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("blindmatch: error: ") and proc.stderr.count("\n") == 1
    error: dict[str, str] = json.loads(proc.stdout)["error"]
    return error


def test_refusals_name_what_to_fix(node_dir: Path, run_cli: RunCli) -> None:
    sweep = ("sweep", node_dir, "--purpose", "test", "--json")
    error = _error(run_cli(*sweep, "--list", "nope"))
    assert error["kind"] == "not_found" and "'nope'" in error["message"]
    assert "ops-2026" in error["message"] and "blindmatch ingest" in error["message"]
    error = _error(run_cli(*sweep, "--list", "watch"))
    assert error["kind"] == "config_error" and "watchlist" in error["message"]
    assert "blindmatch match" in error["message"]
    error = _error(run_cli(*sweep, "--peer", "nobody-xx"))
    assert error["kind"] == "config_error" and "blindmatch peer add" in error["message"]
    error = _error(run_cli(*sweep, "--peer", "tax-fr"))
    assert error["kind"] == "policy_denied" and "mutual" in error["message"]
    # Nothing to sweep: no operations list.
    run_cli("lists", "drop", node_dir, "--list", "ops-2026", check=True)
    error = _error(run_cli(*sweep))
    assert error["kind"] == "not_found" and "no operations list" in error["message"]
    proc = run_cli("sweep", node_dir)
    assert proc.returncode == 2 and "--purpose" in proc.stderr


def test_help_states_the_exit_codes(run_cli: RunCli) -> None:
    text = " ".join(run_cli("sweep", "--help", check=True).stdout.split())
    assert "0 if every session succeeded, 1 if any failed" in text
    assert "130 if interrupted" in text


def test_json_shape_and_exit_1_when_a_peer_is_down(node_dir: Path, run_cli: RunCli) -> None:
    proc = run_cli("sweep", node_dir, "--purpose", "test", "--json", timeout=60)
    assert proc.returncode == 1, proc.stderr
    results = json.loads(proc.stdout)
    assert [set(r) for r in results] == [KEYS]  # tax-fr allows no mutual session: not swept
    (result,) = results
    assert (result["list"], result["peer"]) == ("ops-2026", "police-nl")
    assert result["session_id"] is None and result["match_count"] is None
    assert "police-nl is unreachable" in result["error"]
    assert "1 of 1 session(s) of the sweep failed" in proc.stderr
    failed = audit_entries(node_dir, ("session.failed",))
    assert [(e["peer"], e["purpose"]) for e in failed] == [("police-nl", "test")]
    # Without --json: one line per (list, peer).
    proc = run_cli("sweep", node_dir, "--list", "ops-2026", "--purpose", "test", timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.startswith("ops-2026 with police-nl: failed: peer police-nl is unreachable")
    assert proc.stdout.count("\n") == 1


@pytest.fixture
def silent() -> Iterator[SilentPeer]:
    with SilentPeer() as peer:
        yield peer


def test_ctrl_c_mid_sweep_exits_130_and_records_the_session_failed(
    node_dir: Path, run_cli: RunCli, silent: SilentPeer
) -> None:
    address = silent.address
    run_cli("peer", "set", node_dir, "--agency", "police-nl", "--address", address, check=True)
    proc = subprocess.Popen(
        [*AS_A_USER, "sweep", node_dir, "--purpose", "test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: "running" in session_statuses(node_dir).values(), 30), (
            "the sweep's session never started"
        )
        processes = with_descendants(proc.pid)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(session_statuses(node_dir).values()) == ["failed"]
    (failed,) = audit_entries(node_dir, ("session.failed",))
    assert failed["reason"] == "interrupted" and failed["peer"] == "police-nl"
    assert wait_until(lambda: not still_running(processes), 5), "the sweep left processes"


def test_config_set_sweep_settings(node_dir: Path, run_cli: RunCli) -> None:
    run_cli("config", "set", node_dir, "sweep_minutes", "0", check=True)
    run_cli("config", "set", node_dir, "sweep_poll_seconds", "2", check=True)
    shown = json.loads(run_cli("config", "show", node_dir, "--json", check=True).stdout)
    assert (shown["sweep_minutes"], shown["sweep_poll_seconds"]) == (0, 2)
    proc = run_cli("config", "set", node_dir, "sweep_minutes", "-5")
    assert proc.returncode == 1 and "sweep_minutes must be a whole number from 0" in proc.stderr
