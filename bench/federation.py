"""Mutual PSI between two real nodes over mTLS on loopback, 50,000 x 50,000, half overlap (issue 6).

Two nodes are created with the real CLI in a throwaway directory, each
ingesting BENCH_E2E_N (default 50,000) passport numbers — the very elements
of `bench.psi`, so OpenMined PSI runs on the same sets. The responder,
police-nl, runs as `blindmatch serve` (its own process and process pool); the
initiator, customs-nl, runs `node.client.run_match` in this process with its
own process pool, exactly what `blindmatch match` does minus interpreter
start-up and imports: the time is net of CLI start-up because it is measured
around `run_match` (store read, session recorded, 25,000 hits and the audit
entry written on both sides included). Both nodes share this machine's cores.

Side by side in one run: OpenMined PSI (P-256, one core), the first session
(the responder reads its list from SQLite) and a repeat, and the crypto floor:
4n scalar multiplications at the rate measured here with every core
multiplying (`bench.common`).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from bench.common import CORES, print_table, stopwatch
from bench.psi import _floor, _openmined, _sets
from crypto.batch import BatchRunner, new_process_pool
from loadtests.run import serve, stop
from node.client import run_match
from node.setup.context import NodeContext
from node.cli.demo import blindmatch, free_port

__all__ = ["main"]

N = int(os.environ.get("BENCH_E2E_N", "50000"))
_SUITE = "x25519-blake3"


def _write_passports(path: Path, start: int, count: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ref", "passport", "passport_country"])
        writer.writerows([f"P{i}", f"X{i:09d}", "NLD"] for i in range(start, start + count))
    return path


def _federation(root: Path, n: int) -> tuple[Path, Path]:
    """Creates the CA, the initiator and the responder nodes with half-overlapping lists."""
    blindmatch("ca", "init", str(root / "ca"))
    address = {"customs-nl": f"127.0.0.1:{free_port()}", "police-nl": f"127.0.0.1:{free_port()}"}
    start = {"customs-nl": 0, "police-nl": n // 2}
    for agency in address:
        node = str(root / agency)
        peer = "police-nl" if agency == "customs-nl" else "customs-nl"
        blindmatch(
            "init", node, "--agency", agency, "--listen", address[agency],
            "--ca", str(root / "ca"), "--region", "NL", "--suite", _SUITE,
        )  # fmt: skip
        blindmatch("peer", "add", node, "--agency", peer, "--address", address[peer])
        path = _write_passports(root / f"{agency}.csv", start[agency], n)
        blindmatch("ingest", node, "--list", "passports", str(path))
    return root / "customs-nl", root / "police-nl"


def main() -> None:
    """Runs the end-to-end benchmark and prints its table."""
    xs, ys = _sets(N)
    openmined_s, openmined_matches = _openmined(xs, ys)
    floor = _floor(_SUITE, N)
    rows: list[list[object]] = [
        ["OpenMined PSI (P-256, 1 core, in-process)", openmined_s, 1.0, "", openmined_matches]
    ]
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-e2e-") as tmp:
        root = Path(tmp)
        initiator_dir, responder_dir = _federation(root, N)
        server = serve(responder_dir, workers=1, log_path=root / "serve.log")
        pool = new_process_pool()
        try:
            node = NodeContext.load(initiator_dir, BatchRunner(pool))
            node.runner.hash(_SUITE, [b"warm-up"] * CORES * 2)  # the pool's workers exist
            for run in ("first session", "repeat session"):
                with stopwatch() as watch:
                    result = run_match(
                        node, "police-nl", "passports", "passports", "mutual",
                        "benchmark", "bench",
                    )  # fmt: skip
                rows.append(
                    [
                        f"blindmatch {_SUITE}, two nodes over mTLS, {run}",
                        watch.seconds,
                        openmined_s / watch.seconds,
                        f"{watch.seconds / floor:.2f}x",
                        result.match_count,
                    ]
                )
        finally:
            pool.shutdown()
            stop(server)
    rows.append(
        [f"crypto floor: 4n X25519 over {CORES} cores", floor, openmined_s / floor, "1x", ""]
    )
    print_table(
        f"Mutual PSI end to end, two nodes on loopback, {N:,} x {N:,}, half overlap, {CORES} cores",
        ["run", "seconds", "speed-up vs OpenMined", "vs crypto floor", "matches"],
        rows,
    )
    print(
        "blindmatch times are run_match in the initiator's process against a `blindmatch "
        "serve` responder: net of CLI start-up, including both nodes' store reads, hits "
        "and audit writes; both nodes share the machine's cores.",
        flush=True,
    )


if __name__ == "__main__":
    main()
