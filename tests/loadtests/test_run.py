"""The load-test harness end to end: a served node with --workers 2, real sessions, locust."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from loadtests import driver
from loadtests.run import (
    STALLED,
    TARGET,
    Federation,
    add_stalling_peer,
    make_federation,
    run_locust,
    scenarios,
    serve,
    serving_pids,
    stop,
    verdict,
)
from node.data.store import Store
from node.setup.config import NodeConfig

SET_SIZE = 60
IDLE_SECONDS = 2


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    federation = make_federation(tmp_path_factory.mktemp("load"), SET_SIZE, target_records=50)
    return add_stalling_peer(federation, max_concurrent=1, idle_seconds=IDLE_SECONDS)


@pytest.fixture(scope="module")
def two_workers(federation: Federation) -> Iterator[set[int]]:
    log = federation.root / "serve.log"
    process = serve(federation.target, workers=2, log_path=log)
    try:
        yield serving_pids(log)
    finally:
        stop(process)
    assert process.returncode == 0


def _target(timeout: float = 60) -> driver.Target:
    return driver.Target(TARGET, "load", "load", "test of the load generator", timeout)


def test_federation_lists_overlap_by_half(federation: Federation) -> None:
    assert federation.expected_matches == SET_SIZE // 2
    assert NodeConfig.load(federation.target).idle_seconds == IDLE_SECONDS
    assert NodeConfig.load(federation.target).peer("stalling-nl").max_concurrent == 1


def test_serve_workers_runs_two_processes_that_both_answer(
    federation: Federation, two_workers: set[int]
) -> None:
    assert len(two_workers) == 2
    config = NodeConfig.load(federation.generator)
    with Store.open(federation.generator) as store:
        points = store.list_points("load", config.suite).packed
    # Each channel is one TCP connection, which the kernel hands to one of the
    # SO_REUSEPORT listeners: 16 of them miss a worker with probability 2^-15.
    channels = [driver.open_channel(config, TARGET, federation.address) for _ in range(16)]
    try:
        for i, channel in enumerate(channels):
            mode = "count" if i % 4 == 0 else "mutual"
            found = driver.session(channel, _target(), config.suite, points, mode)
            assert found == federation.expected_matches
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


def test_driver_stall_is_refused_beyond_max_concurrent_and_aborted_when_idle(
    federation: Federation, two_workers: set[int]
) -> None:
    assert federation.staller is not None
    config = NodeConfig.load(federation.staller)
    target = _target(timeout=IDLE_SECONDS + 30)
    # One channel is one connection to one worker, whose one slot for stalling-nl the
    # first stream takes until the worker aborts it after IDLE_SECONDS.
    with (
        driver.open_channel(config, TARGET, federation.address) as channel,
        ThreadPoolExecutor(1) as pool,
    ):
        start = time.monotonic()
        first = pool.submit(driver.stall, channel, target, config.suite, SET_SIZE)
        time.sleep(IDLE_SECONDS / 2)
        assert driver.stall(channel, target, config.suite, SET_SIZE) == "refused"
        assert first.result() == "aborted"
        assert time.monotonic() - start >= IDLE_SECONDS


def test_locust_runs_real_sessions_without_failures(
    federation: Federation, two_workers: set[int], tmp_path: Path
) -> None:
    prefix = tmp_path / "report"
    code = run_locust(
        federation, users=2, duration=4, prefix=prefix, extra_env={"LOAD_WEIGHT_STALLED": "0"}
    )
    stats = Path(f"{prefix}.json")
    assert stats.exists()
    ok, summary = verdict(stats, p95_ms=30_000)
    assert ok, summary
    assert code == 0
    rows = scenarios(stats)
    assert rows[f"mutual {SET_SIZE}"].requests > 0
    assert STALLED not in rows


def test_locust_screens_through_the_real_protocol(
    federation: Federation, two_workers: set[int], tmp_path: Path
) -> None:
    prefix = tmp_path / "screen"
    only_screen = {
        "LOAD_WEIGHT_MUTUAL": "0",
        "LOAD_WEIGHT_COUNT": "0",
        "LOAD_WEIGHT_SCREEN": "1",
        "LOAD_WEIGHT_STALLED": "0",
    }
    code = run_locust(federation, users=2, duration=4, prefix=prefix, extra_env=only_screen)
    stats = Path(f"{prefix}.json")
    ok, summary = verdict(stats, p95_ms=30_000)
    assert ok, summary
    assert code == 0
    rows = scenarios(stats)
    assert rows["screen fetch"].requests == 2  # once per user
    assert rows[f"screen {SET_SIZE}"].requests > 0


def test_locust_stalled_peers_alongside_sessions(
    federation: Federation, two_workers: set[int], tmp_path: Path
) -> None:
    # 5 users: 2 of customs-nl (mutual and count), 3 stalling ones on 3 connections to
    # 2 workers with 1 slot each: one worker has two of them, so one stream is refused.
    prefix = tmp_path / "stalled"
    weights = {
        "LOAD_WEIGHT_MUTUAL": "1",
        "LOAD_WEIGHT_COUNT": "1",
        "LOAD_WEIGHT_SCREEN": "0",
        "LOAD_WEIGHT_STALLED": "3",
    }
    duration = 3 * IDLE_SECONDS + 2
    code = run_locust(federation, users=5, duration=duration, prefix=prefix, extra_env=weights)
    stats = Path(f"{prefix}.json")
    ok, summary = verdict(stats, p95_ms=30_000)
    assert ok, summary
    assert code == 0  # no failed request, the stalled streams' included
    rows = scenarios(stats)
    stalled = rows[STALLED]
    assert stalled.failures == 0
    assert stalled.length >= 2, summary
    assert stalled.requests - stalled.length >= 1, summary  # refused at once
    assert rows[f"mutual {SET_SIZE}"].requests + rows[f"count {SET_SIZE}"].requests > 0
