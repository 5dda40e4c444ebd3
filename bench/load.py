"""Sessions per second a served node holds under the load test, with 1 and 2 workers (issue 6).

Runs the `make loadtest` harness briefly (BENCH_LOAD_SECONDS, default 20, and
BENCH_LOAD_USERS, default 8, locust users) with mutual sessions of 1,000 x
1,000 elements only, once per worker count, and compares the sessions/s with
the crypto-bound capacity of this machine: a mutual session costs 4,000
scalar multiplications — 2,000 on the target node (y_b and x_ab) and 2,000 in
the load generator (x_a and y_ba), which runs on the same cores — so the
machine can complete at most 1 / (4,000 x one multiplication, measured with every
core multiplying) sessions/s.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import CORES, multiplication_seconds, print_table
from loadtests.run import aggregated, make_federation, run_locust, serve, stop

__all__ = ["main"]

SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "20"))
USERS = int(os.environ.get("BENCH_LOAD_USERS", "8"))
SET_SIZE = 1000


def main() -> None:
    """Runs the load benchmark and prints its table."""
    capacity = 1 / (4 * SET_SIZE * multiplication_seconds("x25519-blake3"))
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-load-") as tmp:
        root = Path(tmp)
        federation = make_federation(root, SET_SIZE)
        for workers in (1, 2):
            server = serve(federation.target, workers, root / f"serve-{workers}.log")
            try:
                prefix = root / f"load-{workers}"
                weights = {
                    "LOAD_WEIGHT_MUTUAL": "1",
                    "LOAD_WEIGHT_COUNT": "0",
                    "LOAD_WEIGHT_SCREEN": "0",
                }
                run_locust(federation, USERS, SECONDS, prefix, extra_env=weights)
            finally:
                stop(server)
            row = aggregated(Path(f"{prefix}_stats.csv"))
            rate = float(row["Requests/s"])
            rows.append(
                [
                    workers,
                    int(row["Request Count"]),
                    int(row["Failure Count"]),
                    rate,
                    f"{row['50%']} / {row['95%']}",
                    f"{rate / capacity:.0%}",
                ]
            )
    print_table(
        f"Load test: mutual sessions of {SET_SIZE:,} x {SET_SIZE:,}, {USERS} locust users, "
        f"{SECONDS} s, {CORES} cores (crypto-bound capacity {capacity:.1f} sessions/s)",
        ["workers", "sessions", "failed", "sessions/s", "median / p95 ms", "of capacity"],
        rows,
    )
    print(
        f"capacity = 1 / (4,000 X25519 multiplications a session, timed on all {CORES} cores at "
        "once); the target does "
        "2,000 of them, the load generator (one locust process on the same cores) the other "
        "2,000.",
        flush=True,
    )


if __name__ == "__main__":
    main()
