"""Mutual PSI between two real nodes over mTLS on loopback, 50,000 x 50,000, half overlap (issue 6).

Two nodes are created with the real CLI in a throwaway directory, each
ingesting BENCH_E2E_N (default 50,000) passport numbers without their country,
one `passport_number` element each — the numbers of `bench.psi`'s sets, so
OpenMined PSI runs on sets of the same sizes and overlap. The responder,
police-nl, runs as `blindmatch serve` (its own process and process pool, on
grpc.aio); the initiator, customs-nl, runs the node's asyncio initiator
`node.rpc.client.match` in this process on the benchmarks' process pool,
exactly what `blindmatch match` does minus interpreter start-up, imports and
forking its pool: the time is measured around `match` (the store read, the
session recorded, 25,000 hits and the audit entries written on both sides
included). Both nodes share this machine's cores. One more row times the
whole `blindmatch match` command, start-up included.

Side by side in one run: OpenMined PSI (P-256, one core), the first session
(the responder reads its list from SQLite) and a repeat (the responder's list
is cached per list version), the CLI, and the crypto floor: 4n X25519
multiplications at the rate of the faster implementation (bare libsodium or bare
OpenSSL) with every core multiplying, sampled just before and just after the
sessions and averaged (`bench.common.x25519_floor`).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import tempfile
from pathlib import Path

from bench.common import (
    CORES,
    add_peer,
    cpu_census,
    init_node,
    print_table,
    run_cli,
    served,
    shared_runner,
    stopwatch,
    x25519_floor,
)
from bench.psi import _openmined, _sets
from node.cli.demo import blindmatch, free_port
from node.rpc.client import match
from node.sessions.results import MatchResult
from node.setup.context import NodeContext

__all__ = ["main"]

N = int(os.environ.get("BENCH_E2E_N", "50000"))
_SUITE = "x25519-blake3"


def _write_passports(path: Path, start: int, count: int) -> Path:
    """Passport numbers without their country: one element each (`passport_number`; with the
    country, canonical forms v2 add `passport` too, two elements a row)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ref", "passport"])
        writer.writerows([f"P{i}", f"X{i:09d}"] for i in range(start, start + count))
    return path


def _federation(root: Path, n: int) -> tuple[Path, Path]:
    """Creates the CA, the initiator and the responder nodes with half-overlapping lists."""
    blindmatch("ca", "init", str(root / "ca"))
    address = {"customs-nl": f"127.0.0.1:{free_port()}", "police-nl": f"127.0.0.1:{free_port()}"}
    start = {"customs-nl": 0, "police-nl": n // 2}
    for agency in address:
        node = init_node(root, agency, address[agency], _SUITE)
        peer = "police-nl" if agency == "customs-nl" else "customs-nl"
        add_peer(node, peer, address[peer])
        path = _write_passports(root / f"{agency}.csv", start[agency], n)
        blindmatch("ingest", str(node), "--list", "passports", str(path))
    return root / "customs-nl", root / "police-nl"


def _session(node: NodeContext) -> tuple[float, MatchResult]:
    """One mutual session against police-nl, timed around `match`."""
    coroutine = match(node, "police-nl", "passports", "passports", "mutual", "benchmark", "bench")
    with stopwatch() as watch:
        result = asyncio.run(coroutine)
    return watch.seconds, result


def _cli_session(initiator_dir: Path) -> tuple[float, int]:
    """The whole `blindmatch match` command, interpreter start-up and pool included."""
    args = [
        "match", str(initiator_dir), "--peer", "police-nl", "--list", "passports",
        "--mode", "mutual", "--purpose", "benchmark", "--json",
    ]  # fmt: skip
    command = run_cli(args, initiator_dir.parent, timeout=600)
    if command.returncode != 0:
        raise SystemExit(f"blindmatch match failed ({command.returncode}): {command.stderr}")
    return command.seconds, int(json.loads(command.stdout)["match_count"])


def main() -> None:
    """Runs the end-to-end benchmark and prints its table."""
    runner = shared_runner()  # before any gRPC object exists in this process
    xs, ys = _sets(N)
    openmined_s, openmined_matches = _openmined(xs, ys)
    del xs, ys
    expected = N - N // 2
    sessions: list[tuple[str, float, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-e2e-") as tmp:
        root = Path(tmp)
        initiator_dir, responder_dir = _federation(root, N)
        with served([responder_dir], root):
            node = NodeContext.load(initiator_dir, runner)
            before = x25519_floor(runner)
            for run in ("first session", "repeat session"):
                with cpu_census() as census:
                    seconds, result = _session(node)
                sessions.append(
                    (f"{run}, in-process initiator", seconds, result.match_count, census.describe())
                )
            with cpu_census() as census:
                cli_seconds, cli_found = _cli_session(initiator_dir)
            cli = "`blindmatch match` (CLI, start-up included)"
            sessions.append((cli, cli_seconds, cli_found, census.describe()))
            after = x25519_floor(runner)
    sampled = before.averaged(after)
    floor = 4 * N * sampled.seconds
    openmined = "OpenMined PSI (P-256, 1 core, in-process)"
    rows: list[list[object]] = [
        [openmined, openmined_s, 1.0, f"{openmined_s / floor:.2f}x", openmined_matches, ""]
    ]
    for run, seconds, found, others in sessions:
        if found != expected:
            raise SystemExit(f"{run}: {found} matches, expected {expected}")
        rows.append(
            [
                f"blindmatch {_SUITE}, two nodes over mTLS, {run}",
                seconds,
                openmined_s / seconds,
                f"{seconds / floor:.2f}x",
                found,
                others,
            ]
        )
    rows.append(
        [
            f"crypto floor: 4n X25519 on {CORES} busy cores ({sampled.implementation})",
            floor,
            openmined_s / floor,
            "1x",
            "",
            "",
        ]
    )
    print_table(
        f"Mutual PSI end to end, two nodes on loopback, {N:,} x {N:,}, half overlap, {CORES} cores",
        ["run", "seconds", "speed-up vs OpenMined", "vs crypto floor", "matches", "others' CPU s"],
        rows,
    )
    print(
        "blindmatch in-process times are `node.rpc.client.match` in the initiator's process "
        "against a `blindmatch serve` responder: net of CLI start-up, including both nodes' "
        "store reads, hits and audit writes; both nodes share the machine's cores. Floor: "
        f"{sampled.describe()}, the mean of samples before ({before.describe()}) and after "
        f"({after.describe()}) the sessions. Others' CPU s: core-seconds the machine spent on "
        "processes not of this benchmark during the session (0 on a quiet machine; the "
        f"session itself can use at most {CORES} x its seconds).",
        flush=True,
    )


if __name__ == "__main__":
    main()
