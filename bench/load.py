"""Sessions per second a served node holds under load, with 1 and 2 workers (issue 6).

A throw-away federation from the load test's harness (`loadtests.run`): the target
police-nl serves with `blindmatch serve --workers W`; the load generator is the
customs-nl node in this process, which runs BENCH_LOAD_USERS (default 8)
concurrent mutual sessions of 1,000 x 1,000 elements for BENCH_LOAD_SECONDS
(default 20) with the node's own asyncio initiator `node.rpc.client.match`, on
one event loop and the benchmarks' process pool — each a whole session as
`blindmatch match` runs it (mTLS channel, store read, records, hits, audit). The
target's per-peer `max_concurrent` is raised to the number of users, so the
figure is the server's capacity, not the per-peer cap.

Compared with the crypto-bound capacity of this machine: a mutual session costs
4,000 X25519 multiplications — 2,000 on the target (y_b and x_ab) and 2,000 in
the load generator (x_a and y_ba), which runs on the same cores — so the
machine completes at most 1 / (4,000 x one multiplication with every core
busy, `bench.common.x25519_floor`) sessions/s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import CORES, Floor, cpu_census, print_table, shared_runner, x25519_floor
from loadtests.run import GENERATOR, TARGET, Federation, make_federation, serve, stop
from node.rpc.client import match
from node.setup.config import NodeConfig, with_peer, write_config
from node.setup.context import NodeContext

__all__ = ["main"]

SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "20"))
USERS = int(os.environ.get("BENCH_LOAD_USERS", "8"))
SET_SIZE = int(os.environ.get("BENCH_LOAD_SET_SIZE", "1000"))
_TIMEOUT = 120.0


@dataclasses.dataclass
class _Run:
    """What the users of one run did."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    failures: Counter[str] = dataclasses.field(default_factory=Counter)
    seconds: float = 0.0


async def _drive(node: NodeContext, users: int, seconds: float, expected: int | None) -> _Run:
    """`users` tasks each running sessions back to back until `seconds` have passed."""
    run = _Run()

    async def user() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                result = await match(
                    node, TARGET, "load", "load", "mutual", "load benchmark", "bench",
                    timeout=_TIMEOUT,
                )  # fmt: skip
            except Exception as exc:  # counted and named in the report, never hidden
                run.failures[f"{type(exc).__name__}: {exc}"[:160]] += 1
                continue
            if expected is not None and result.match_count != expected:
                run.failures[f"{result.match_count} matches, expected {expected}"] += 1
                continue
            run.latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(*(user() for _ in range(users)))
    run.seconds = time.perf_counter() - began  # the last sessions' tail included
    return run


def _allow_users(federation: Federation, users: int) -> None:
    """Raises the target's per-peer concurrency cap for the generator to `users`."""
    config = NodeConfig.load(federation.target)
    if config.peer(GENERATOR).max_concurrent < users:
        write_config(with_peer(config, GENERATOR, {"max_concurrent": users}, new=False))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def main() -> None:
    """Runs the load benchmark and prints its table."""
    runner = shared_runner()  # before any gRPC object exists in this process
    floors: list[Floor] = []
    rows: list[list[object]] = []
    failures: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-load-") as tmp:
        root = Path(tmp)
        federation = make_federation(root, SET_SIZE)
        _allow_users(federation, USERS)
        node = NodeContext.load(federation.generator, runner)
        for workers in (1, 2):
            server = serve(federation.target, workers, root / f"serve-{workers}.log")
            try:
                asyncio.run(_drive(node, USERS, 1.0, None))  # warm: lists loaded, pools busy
                before = x25519_floor(runner)  # the machine drifts: sampled around each run
                with cpu_census() as census:
                    run = asyncio.run(_drive(node, USERS, SECONDS, federation.expected_matches))
                floor = before.averaged(x25519_floor(runner))
            finally:
                stop(server)
            floors.append(floor)
            capacity = 1 / (4 * SET_SIZE * floor.seconds)
            failures.update(run.failures)
            done = len(run.latencies)
            rate = done / run.seconds
            p95 = statistics.quantiles(run.latencies, n=20)[-1] if done >= 2 else float("nan")
            median = statistics.median(run.latencies) if done else float("nan")
            rows.append(
                [
                    workers,
                    done,
                    sum(run.failures.values()),
                    rate,
                    f"{_ms(median)} / {_ms(p95)}",
                    capacity,
                    f"{rate / capacity:.0%}",
                    census.describe(),
                ]
            )
    print_table(
        f"Load: mutual sessions of {SET_SIZE:,} x {SET_SIZE:,}, {USERS} concurrent initiators, "
        f"{SECONDS} s, {CORES} cores",
        [
            "workers",
            "sessions",
            "failed",
            "sessions/s",
            "median / p95 ms",
            "capacity /s",
            "of capacity",
            "others' CPU s",
        ],
        rows,
    )
    print(
        "capacity = 1 / (4,000 X25519 multiplications a session, at the rate sampled just before "
        "and after each run: "
        + "; ".join(f"{w} worker(s): {f.describe()}" for w, f in zip((1, 2), floors, strict=True))
        + "); the target does 2,000 of them, the load generator (this process, "
        f"`node.rpc.client.match` from {USERS} asyncio tasks, on the same cores) the other 2,000. "
        "Sessions/s = sessions completed / time from the first start to the last finish. "
        "Others' CPU s: core-seconds spent meanwhile on processes not of this benchmark.",
        flush=True,
    )
    for reason, count in failures.most_common(5):
        print(f"failed x{count}: {reason}", flush=True)


if __name__ == "__main__":
    main()
