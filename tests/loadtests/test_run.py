"""The load-test harness end to end: a served node with --workers 2, real sessions, locust."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from node.client import Conversation, new_hello, open_channel

from crypto.groups import get_suite
from crypto.psi import Initiator, Mode
from loadtests.run import (
    TARGET,
    Federation,
    aggregated,
    make_federation,
    run_locust,
    serve,
    serving_pids,
    stop,
    verdict,
)
from node.data.store import Store
from node.setup.config import NodeConfig

SET_SIZE = 60


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("load"), SET_SIZE, target_records=50)


@pytest.fixture(scope="module")
def two_workers(federation: Federation) -> Iterator[set[int]]:
    log = federation.root / "serve.log"
    process = serve(federation.target, workers=2, log_path=log)
    try:
        yield serving_pids(log)
    finally:
        stop(process)
    assert process.returncode == 0


def test_federation_lists_overlap_by_half(federation: Federation) -> None:
    assert federation.expected_matches == SET_SIZE // 2


def test_serve_workers_runs_two_processes_that_both_answer(
    federation: Federation, two_workers: set[int]
) -> None:
    assert len(two_workers) == 2
    config = NodeConfig.load(federation.generator)
    with Store.open(federation.generator) as store:
        points = store.list_points("load", config.suite)
    # Each channel is one TCP connection, which the kernel hands to one of the
    # SO_REUSEPORT listeners: 16 of them miss a worker with probability 2^-15.
    channels = [open_channel(config, TARGET, federation.address) for _ in range(16)]
    try:
        for channel in channels:
            party = Initiator.with_new_key(get_suite(config.suite), points.packed, Mode.MUTUAL)
            Conversation(party, points, release_labels=False, progress=False).run(
                channel, new_hello(party, "load", "load", "test of --workers"), timeout=60
            )
            assert party.match_count() == federation.expected_matches
        port = int(federation.address.rsplit(":", 1)[1])
        answered = {
            pid
            for pid in two_workers
            if any(
                c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                for c in psutil.Process(pid).net_connections("tcp")
            )
        }
        assert answered == two_workers
    finally:
        for channel in channels:
            channel.close()


def test_locust_runs_real_sessions_without_failures(
    federation: Federation, two_workers: set[int], tmp_path: Path
) -> None:
    prefix = tmp_path / "report"
    code = run_locust(federation, users=2, duration=4, prefix=prefix)
    stats = Path(f"{prefix}_stats.csv")
    assert stats.exists()
    ok, summary = verdict(stats, p95_ms=30_000)
    assert ok, summary
    assert code == 0
    assert int(aggregated(stats)["Request Count"]) > 0


def test_locust_screens_through_the_real_protocol(
    federation: Federation, two_workers: set[int], tmp_path: Path
) -> None:
    prefix = tmp_path / "screen"
    only_screen = {"LOAD_WEIGHT_MUTUAL": "0", "LOAD_WEIGHT_COUNT": "0", "LOAD_WEIGHT_SCREEN": "1"}
    code = run_locust(federation, users=2, duration=4, prefix=prefix, extra_env=only_screen)
    stats = Path(f"{prefix}_stats.csv")
    ok, summary = verdict(stats, p95_ms=30_000)
    assert ok, summary
    assert code == 0
    with open(stats, newline="") as f:
        counts = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(f)}
    assert counts["screen fetch"] == 2  # once per user
    assert counts[f"screen {SET_SIZE}"] > 0
