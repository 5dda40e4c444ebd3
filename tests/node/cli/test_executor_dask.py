"""`--executor dask://HOST:PORT` through the real CLI between real nodes, against a real
`distributed.LocalCluster` (two worker processes) that this module starts and closes.

customs-nl serves with its batches on the cluster, police-nl with its process pool. Each
session customs-nl initiates on the cluster gives what the same session gives on the process
pool (mutual, count, screening); police-nl's sessions answered on the cluster find what the
two stores share; an ingest on the cluster stores the same points, byte for byte, as one on
the process pool; a worker killed mid-session changes nothing; a scheduler that is not there
is one line on stderr, exit 1, and a session recorded failed and audited.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.data.sample import write_csv
from tests.conftest import wait_until
from tests.federation import Federation, free_port
from tests.node.dask_cluster import BusyWorkerKiller, running_cluster

CUSTOMS, POLICE = "customs-nl", "police-nl"
WL_ROWS = 600  # about 900 elements a list: every batch is shipped (256 or more)
BIG_ROWS = 10_000  # about 16,000 elements, a file of over 256 KiB (so a local pool hashes it)
INTERRUPT_SECONDS = 5.0  # for Ctrl-C to end a command (STYLE 14)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def dask_url(cluster: Any) -> str:
    return "dask://" + cluster.scheduler_address.partition("://")[2]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, dask_url: str) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("executor"))
    try:
        for agency in (CUSTOMS, POLICE):
            fed.add_node(agency)
        for agency, peer in ((CUSTOMS, POLICE), (POLICE, CUSTOMS)):
            fed.add_peer(agency, peer, "--modes", "mutual,count,screen", "--release-labels")
        ingests = []
        for agency, name, start, count in (
            (CUSTOMS, "wl", 0, WL_ROWS),
            (POLICE, "wl", WL_ROWS // 2, WL_ROWS),
            (POLICE, "big", BIG_ROWS - 1_000, 2_000),
            (CUSTOMS, "big", 0, BIG_ROWS),  # the ingest test's file
        ):
            path = write_csv(fed.root / f"{agency}-{name}.csv", count, seed=5, start=start)
            if (agency, name) != (CUSTOMS, "big"):
                ingests.append(fed.spawn("ingest", fed.node(agency), "--list", name, path))
        for ingest in ingests:
            _, err = ingest.communicate(timeout=120)
            assert ingest.returncode == 0, err
        fed.start(CUSTOMS, "--executor", dask_url)
        fed.start(POLICE)
        yield fed
    finally:
        fed.close()


def _match(fed: Federation, agency: str, peer: str, list_name: str, *options: str) -> Any:
    proc = fed.cli(
        "match", fed.node(agency), "--peer", peer, "--list", list_name,
        "--purpose", "executor test", "--json", *options, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no log line of Dask's
    return _comparable(json.loads(proc.stdout))


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    result.pop("session_id")
    result["matches"] = sorted(result["matches"], key=lambda m: (m["ref"], m["type"]))
    return result


def _query(node: Path, sql: str, *params: object) -> list[Any]:
    with sqlite3.connect(node / "store.sqlite", timeout=30) as db:
        return db.execute(sql, params).fetchall()


def _stored(node: Path, list_name: str) -> list[Any]:
    return _query(
        node,
        "SELECT r.ref, r.label, e.type, e.element, e.point_ristretto, e.point_x25519 "
        "FROM elements e JOIN records r ON r.id = e.record_id JOIN lists l ON l.id = r.list_id "
        "WHERE l.name = ? ORDER BY r.ref, e.type, e.element",
        list_name,
    )


@pytest.mark.parametrize("mode", ["mutual", "count", "screen"])
def test_sessions_on_the_cluster_equal_the_process_pools(
    fed: Federation, dask_url: str, mode: str
) -> None:
    on_cluster = _match(fed, CUSTOMS, POLICE, "wl", "--mode", mode, "--executor", dask_url)
    on_pool = _match(fed, CUSTOMS, POLICE, "wl", "--mode", mode, "--executor", "local")
    assert on_cluster == on_pool
    assert on_cluster["match_count"] > 0 and on_cluster["local_count"] > 256


def test_serve_answers_on_the_cluster(fed: Federation) -> None:
    """police-nl asks customs-nl, which serves on the cluster: it learns what both hold."""
    result = _match(fed, POLICE, CUSTOMS, "wl")
    customs = {row[3] for row in _stored(fed.node(CUSTOMS), "wl")}
    shared = {(ref, kind) for ref, _, kind, element, *_ in _stored(fed.node(POLICE), "wl")
              if element in customs}  # fmt: skip
    assert {(m["ref"], m["type"]) for m in result["matches"]} == shared
    assert len(shared) > 100
    log = fed.log(CUSTOMS).read_text()
    assert "batches run on the Dask cluster at dask://127.0.0.1:" in log


def test_ingest_on_the_cluster_stores_the_pools_points(fed: Federation, dask_url: str) -> None:
    path = fed.root / f"{CUSTOMS}-big.csv"
    assert path.stat().st_size > 256 * 1024  # so `--executor local` ingests on a process pool
    for name, executor in (("big", dask_url), ("big_local", "local")):
        proc = fed.cli(
            "ingest", fed.node(CUSTOMS), "--list", name, path, "--json", "--executor", executor
        )
        assert proc.stderr == "", proc.stderr
        assert json.loads(proc.stdout)["elements"] > 15_000
    stored = _stored(fed.node(CUSTOMS), "big")
    assert stored == _stored(fed.node(CUSTOMS), "big_local") and len(stored) > 15_000


def test_a_worker_killed_mid_session_changes_nothing(
    fed: Federation, cluster: Any, dask_url: str
) -> None:
    if not _stored(fed.node(CUSTOMS), "big"):  # run alone: the ingest test did not run
        fed.cli("ingest", fed.node(CUSTOMS), "--list", "big", fed.root / f"{CUSTOMS}-big.csv")
    with BusyWorkerKiller(cluster.scheduler_address, "_multiply") as killer:
        on_cluster = _match(fed, CUSTOMS, POLICE, "big", "--executor", dask_url)
        killer.thread.join(30)
        assert killer.killed is not None, "no worker was seen multiplying"
    assert on_cluster == _match(fed, CUSTOMS, POLICE, "big", "--executor", "local")
    assert on_cluster["match_count"] > 1_000


def test_ctrl_c_ends_a_match_on_the_cluster_and_closes_its_client(
    fed: Federation, cluster: Any, dask_url: str
) -> None:
    purpose = "executor test, interrupted"
    if not _stored(fed.node(CUSTOMS), "big"):  # run alone: the ingest test did not run
        fed.cli("ingest", fed.node(CUSTOMS), "--list", "big", fed.root / f"{CUSTOMS}-big.csv")
    before = set(_clients(cluster))  # customs-nl's serve has one
    match = fed.spawn(
        "match", fed.node(CUSTOMS), "--peer", POLICE, "--list", "big", "--purpose", purpose,
        "--executor", dask_url,
    )  # fmt: skip
    working = wait_until(lambda: _running(cluster) or match.poll() is not None, 60, 0.005)
    assert working and match.poll() is None, "the match never ran a batch on the cluster"
    match.send_signal(signal.SIGINT)
    _, err = match.communicate(timeout=INTERRUPT_SECONDS)
    assert match.returncode == 130, err
    assert _one_line(err).startswith("blindmatch: error: interrupted")
    rows = _query(fed.node(CUSTOMS), "SELECT status FROM sessions WHERE purpose = ?", purpose)
    assert rows == [("failed",)]
    gone = wait_until(lambda: set(_clients(cluster)) <= before, 10)
    assert gone, f"its Dask client stayed connected: {set(_clients(cluster)) - before}"


def _running(cluster: Any) -> bool:
    tasks = list(cluster.scheduler.tasks.values())
    return any(ts.state == "processing" and ts.key.startswith("_multiply") for ts in tasks)


def _clients(cluster: Any) -> list[str]:
    return [c for c in list(cluster.scheduler.clients) if "blindmatch" in str(c)]


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blindmatch: error: "), stderr
    return lines[0]


def test_a_stopped_scheduler_is_one_clear_line_and_a_recorded_failure(fed: Federation) -> None:
    dead = f"dask://127.0.0.1:{free_port()}"  # no scheduler listens there
    purpose = "executor test, scheduler down"
    proc = fed.cli(
        "match", fed.node(CUSTOMS), "--peer", POLICE, "--list", "wl", "--purpose", purpose,
        "--executor", dead, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert f"cannot reach the Dask scheduler at {dead} (Connection refused)" in line
    assert "--executor local" in line
    node = fed.node(CUSTOMS)
    rows = _query(node, "SELECT status FROM sessions WHERE purpose = ?", purpose)
    assert rows == [("failed",)]
    audited = [json.loads(body) for (body,) in _query(
        node, "SELECT body FROM audit WHERE event = 'session.failed' ORDER BY seq"
    )]  # fmt: skip
    reasons = [body["reason"] for body in audited if body.get("purpose") == purpose]
    assert len(reasons) == 1 and f"Dask scheduler at {dead}" in reasons[0]
    # ingest stores nothing; serve does not start; the option is checked
    before = _query(node, "SELECT COUNT(*) FROM lists")
    wl = fed.root / f"{CUSTOMS}-wl.csv"
    proc = fed.cli("ingest", node, "--list", "other", wl, "--executor", dead, check=False)
    assert proc.returncode == 1 and "--executor local" in _one_line(proc.stderr)
    assert _query(node, "SELECT COUNT(*) FROM lists") == before
    proc = fed.cli("serve", fed.node(POLICE), "--executor", dead, check=False, timeout=60)
    assert proc.returncode == 1
    assert f"cannot reach the Dask scheduler at {dead}" in _one_line(proc.stderr)
    proc = fed.cli("sweep", node, "--purpose", purpose, "--executor", "dask://x", check=False)
    assert proc.returncode == 1
    assert _one_line(proc.stderr) == (
        "blindmatch: error: --executor: 'dask://x' is not an executor; use local, "
        "dask://HOST:PORT or dask+tls://HOST:PORT (a Dask scheduler, e.g. dask://10.0.0.5:8786; "
        "see docs/DASK.md)"
    )
