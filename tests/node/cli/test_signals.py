"""Signals to real `blindmatch` processes mid-work (STYLE 14, issue 10).

Ctrl-C (and SIGTERM, as a supervisor sends it) ends `match` and `ingest`
within 5 s with exit code 130, records the interrupted session, and leaves no
process behind; SIGKILL of `serve` (with or without `--workers`) or `ingest`
takes their pool workers with them; SIGTERM stops `serve` within its grace
period with a session in flight, records the session cancelled, and frees the
port.

Both nodes hold the same 200,000-record list (one element each, written into
their stores by `bench.scale.fill_list`: the ingests took 35 s, and ingest is
not what these tests are about), so a session runs for over ten seconds and
every signal lands mid-session; the ingest tests read the same rows as a CSV. The
processes of each command are collected from /proc before the signal, so
what must be gone afterwards is known exactly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.scale import fill_list
from node.data.sample import write_csv
from tests.conftest import (
    descendants,
    kill_processes,
    still_running,
    wait_until,
    with_descendants,
)
from tests.federation import Federation, port_is_free

ROWS = 200_000
GONE_SECONDS = 5.0  # for a command's processes to go after a signal
INTERRUPT_SECONDS = 5.0  # for Ctrl-C to end a command
GRACE_SECONDS = 3  # serve's grace_seconds in the SIGTERM test
SESSION_START_SECONDS = 120.0  # the responder loads the list before it records the session
WORK_CPU_SECONDS = 1.0  # pool CPU time that shows a command is well into its work
CLK_TCK = os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("signals"))
    try:
        for agency in ("customs-nl", "police-nl"):
            fed.add_node(agency)
        fed.add_peer("customs-nl", "police-nl")
        fed.add_peer("police-nl", "customs-nl")
        write_csv(fed.root / "large.csv", ROWS, seed=7)
        for agency in ("customs-nl", "police-nl"):
            fill_list(fed.node(agency), "large", 0, ROWS)
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def start_match(fed: Federation, purpose: str) -> subprocess.Popen[str]:
    return fed.spawn(
        "match", fed.node("customs-nl"), "--peer", "police-nl", "--list", "large",
        "--purpose", purpose, "--json",
    )  # fmt: skip


def query(node: Path, sql: str, *params: object) -> list[Any]:
    with sqlite3.connect(node / "store.sqlite", timeout=30) as db:
        return db.execute(sql, params).fetchall()


def session_status(node: Path, purpose: str) -> str | None:
    rows = query(node, "SELECT status FROM sessions WHERE purpose = ? ORDER BY rowid", purpose)
    return rows[-1][0] if rows else None


def wait_for_status(node: Path, purpose: str, status: str, seconds: float) -> None:
    if not wait_until(lambda: session_status(node, purpose) == status, seconds, interval=0.05):
        pytest.fail(
            f"{node.name}'s session {purpose!r} is {session_status(node, purpose)!r}, "
            f"not {status!r}, after {seconds} s"
        )


def failures(node: Path, purpose: str) -> list[dict[str, Any]]:
    """Bodies of the node's `session.failed` audit entries for sessions of `purpose`."""
    rows = query(node, "SELECT body FROM audit WHERE event = 'session.failed' ORDER BY seq")
    bodies = [json.loads(body) for (body,) in rows]
    return [body for body in bodies if body.get("purpose") == purpose]


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time used so far by the given processes (those still there)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def wait_for_pool_work(pid: int, seconds: float = 60) -> dict[int, int]:
    """Waits until `pid`'s pool workers are busy; returns `pid` and its processes."""
    busy = wait_until(lambda: cpu_seconds(descendants(pid)) >= WORK_CPU_SECONDS, seconds, 0.05)
    assert busy, f"pid {pid}'s workers did no work in {seconds} s"
    processes = with_descendants(pid)
    assert len(processes) >= 3, f"expected the command and its pool workers: {processes}"
    return processes


def assert_all_gone(processes: dict[int, int], what: str) -> None:
    gone = wait_until(lambda: not still_running(processes), GONE_SECONDS)
    assert gone, f"{what}: still running {GONE_SECONDS} s on: {still_running(processes)}"


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blindmatch: error: "), stderr
    return lines[0]


def ensure_serving(fed: Federation, agency: str) -> None:
    if agency not in fed.servers:
        fed.start(agency)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_ends_match_within_5_s_and_records_it(
    fed: Federation, sig: signal.Signals
) -> None:
    purpose = f"{sig.name} test"
    customs, police = fed.node("customs-nl"), fed.node("police-nl")
    match = start_match(fed, purpose)
    wait_for_status(police, purpose, "running", SESSION_START_SECONDS)
    processes = wait_for_pool_work(match.pid)  # blinding: chunks are on their way
    assert session_status(customs, purpose) == "running"

    os.kill(match.pid, sig)  # SIGTERM (a supervisor, `timeout`) interrupts as Ctrl-C does
    signalled = time.monotonic()
    try:
        out, err = match.communicate(timeout=INTERRUPT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"match still ran {INTERRUPT_SECONDS} s after {sig.name}")
    took = time.monotonic() - signalled
    assert match.returncode == 130, err
    assert out == "" and "interrupted" in one_line_error(err)
    assert_all_gone(processes, f"match after {sig.name}")

    assert session_status(customs, purpose) == "failed", f"exit after {took:.1f} s"
    assert [f["reason"] for f in failures(customs, purpose)] == ["interrupted"]
    wait_for_status(police, purpose, "failed", 30)  # the responder saw the call cancelled
    assert len(failures(police, purpose)) == 1
    assert not query(customs, "SELECT 1 FROM hits") and not query(police, "SELECT 1 FROM hits")
    assert "intact" in fed.cli("audit", "verify", customs).stdout


def test_ctrl_c_ends_ingest_within_5_s_and_stores_nothing(fed: Federation) -> None:
    node = fed.add_node("ingest-nl")
    ingest = fed.spawn("ingest", node, "--list", "large", fed.root / "large.csv")
    processes = wait_for_pool_work(ingest.pid)
    os.kill(ingest.pid, signal.SIGINT)
    try:
        out, err = ingest.communicate(timeout=INTERRUPT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ingest still ran {INTERRUPT_SECONDS} s after Ctrl-C")
    assert ingest.returncode == 130, err
    assert "interrupted" in one_line_error(err)
    assert_all_gone(processes, "ingest after Ctrl-C")
    assert query(node, "SELECT count(*) FROM records") == [(0,)]
    assert fed.cli("audit", "verify", node).returncode == 0


def test_sigkill_of_ingest_takes_its_workers(fed: Federation) -> None:
    node = fed.add_node("killed-nl")
    ingest = fed.spawn("ingest", node, "--list", "large", fed.root / "large.csv")
    processes = wait_for_pool_work(ingest.pid)
    os.kill(ingest.pid, signal.SIGKILL)
    assert ingest.wait(GONE_SECONDS) == -signal.SIGKILL
    assert_all_gone(processes, "ingest's workers after SIGKILL")
    assert query(node, "SELECT count(*) FROM records") == [(0,)]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_serve_mid_session_takes_its_processes(fed: Federation, workers: int) -> None:
    purpose = f"kill serve, {workers} worker(s)"
    if workers > 1:
        assert fed.stop("police-nl") == 0
        fed.start("police-nl", "--workers", workers)
    serve = fed.servers["police-nl"]
    match = start_match(fed, purpose)
    processes: dict[int, int] = {}
    try:
        wait_for_status(fed.node("police-nl"), purpose, "running", SESSION_START_SECONDS)
        processes = wait_for_pool_work(serve.pid)
        # serve and its pool's 2 workers; with --workers, each forked server has its own pool
        expected = 3 if workers == 1 else 1 + workers * 3
        assert len(processes) >= expected, processes
        assert fed.stop("police-nl", signal.SIGKILL) == -signal.SIGKILL
        assert_all_gone(processes, "serve after SIGKILL")
        _, err = match.communicate(timeout=60)
        assert match.returncode == 1
        assert "peer police-nl" in one_line_error(err)
        assert session_status(fed.node("customs-nl"), purpose) == "failed"
    finally:
        kill_processes(processes)  # whatever outlived the test's deadline
        wait_until(lambda: not still_running(processes), GONE_SECONDS)
        ensure_serving(fed, "police-nl")


def sigterm_mid_session(fed: Federation, purpose: str) -> subprocess.Popen[str]:
    """SIGTERM to police-nl's serve (grace_seconds 3) during a far longer session.

    Asserts that serve exits 0 within the grace period (plus a little), frees
    its port and leaves no process; returns the `match` that ran the session.
    """
    fed.configure("police-nl", grace_seconds=GRACE_SECONDS)
    assert fed.stop("police-nl") == 0
    serve = fed.start("police-nl")
    match = start_match(fed, purpose)
    wait_for_status(fed.node("police-nl"), purpose, "running", SESSION_START_SECONDS)
    processes = wait_for_pool_work(serve.pid)
    signalled = time.monotonic()
    code = fed.stop("police-nl", signal.SIGTERM, timeout=GRACE_SECONDS + 10)
    took = time.monotonic() - signalled
    assert code == 0
    assert took < GRACE_SECONDS + 3, f"serve exited {took:.1f} s after SIGTERM"
    assert port_is_free(fed.addresses["police-nl"])
    assert_all_gone(processes, "serve after SIGTERM")
    return match


def test_sigterm_stops_serve_within_grace_with_a_session_in_flight(fed: Federation) -> None:
    purpose = "sigterm test"
    police = fed.node("police-nl")
    try:
        match = sigterm_mid_session(fed, purpose)
        # The session could not finish within the grace period: cancelled and recorded so.
        assert session_status(police, purpose) == "failed"
        assert len(failures(police, purpose)) == 1
        _, err = match.communicate(timeout=60)
        assert match.returncode == 1
        assert "peer police-nl" in one_line_error(err)
        assert session_status(fed.node("customs-nl"), purpose) == "failed"
    finally:
        fed.configure("police-nl", grace_seconds=30)
        ensure_serving(fed, "police-nl")
