"""Mutual PSI, in-process parties, 50,000 x 50,000 with half overlap (issue 2).

Side by side in one run: OpenMined PSI (P-256, single-threaded, its own
hashing included), blindmatch's parties with each suite over a process pool on
all cores (hashing excluded: a node hashes once at ingest and caches; shown on
its own line), and the crypto floor: 4 scalar multiplications per element pair,
at the rate measured here with every core multiplying (`bench.common`): for
x25519 the faster of bare libsodium and bare OpenSSL X25519, for ristretto255
libsodium's multiplication as the suite calls it.
"""

from __future__ import annotations

import os

from bench.common import (
    CORES,
    multiplication_seconds,
    print_table,
    shared_runner,
    stopwatch,
    x25519_floor,
)
from crypto.batch import BatchRunner
from crypto.groups import SUITES, Group
from crypto.psi import Initiator, Mode, Responder, run_locally

N = int(os.environ.get("BENCH_PSI_N", "50000"))


def _sets(n: int) -> tuple[list[bytes], list[bytes]]:
    xs = [b"blindmatch/v1\x00passport\x00NLD:X%09d" % i for i in range(n)]
    ys = [b"blindmatch/v1\x00passport\x00NLD:X%09d" % i for i in range(n // 2, n + n // 2)]
    return xs, ys


def _openmined(xs: list[bytes], ys: list[bytes]) -> tuple[float, int]:
    import private_set_intersection.python as psi

    with stopwatch() as watch:
        client = psi.client.CreateWithNewKey(True)
        server = psi.server.CreateWithNewKey(True)
        setup = server.CreateSetupMessage(1e-9, len(xs), ys, psi.DataStructure.RAW)
        request = client.CreateRequest(xs)
        response = server.ProcessRequest(request)
        matches = len(client.GetIntersection(setup, response))
    return watch.seconds, matches


def _floor(suite: str, n: int, runner: BatchRunner) -> float:
    """Seconds for 4n scalar multiplications with every core multiplying."""
    if suite == "x25519-blake3":
        return x25519_floor(runner).seconds * 4 * n
    return multiplication_seconds(suite, runner) * 4 * n


def _session(group: Group, runner: BatchRunner, x: bytes, y: bytes) -> tuple[float, int, int]:
    with stopwatch() as watch:
        initiator = Initiator.with_new_key(group, x, Mode.MUTUAL, runner=runner)
        responder = Responder.with_new_key(group, y, Mode.MUTUAL, runner=runner)
        run_locally(initiator, responder)
        found = len(initiator.matches())
        found_by_responder = len(responder.matches())
    return watch.seconds, found, found_by_responder


def main() -> None:
    xs, ys = _sets(N)
    openmined_s, openmined_matches = _openmined(xs, ys)
    rows: list[list[object]] = [
        ["OpenMined PSI (P-256, 1 core)", openmined_s, 1.0, "", openmined_matches]
    ]
    runner = shared_runner()
    for group in SUITES.values():
        with stopwatch() as hashing:
            x = runner.hash(group.name, xs)
            y = runner.hash(group.name, ys)
        seconds, found, found_r = _session(group, runner, x, y)
        floor = _floor(group.name, N, runner)
        rows.append(
            [
                f"blindmatch {group.name}, session",
                seconds,
                openmined_s / seconds,
                f"{seconds / floor:.2f}x floor ({floor:.2f} s)",
                f"{found} / {found_r}",
            ]
        )
        rows.append(
            [f"blindmatch {group.name}, hashing 2n (ingest, cached)", hashing.seconds, "", "", ""]
        )
    print_table(
        f"Mutual PSI in-process, {N:,} x {N:,}, half overlap, {CORES} cores",
        ["run", "seconds", "speed-up vs OpenMined", "vs crypto floor", "matches (I / R)"],
        rows,
    )


if __name__ == "__main__":
    main()
