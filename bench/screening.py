"""Screening (issue 5): building an encoded list of N entries, and a 1,000-item query against it.

Both run the node's own code (`node.sessions.screen_responder`, `screen_initiator`) on
a process pool over all cores, with a real SQLite store; the query goes through
`LocalTransport` (the responder's answering code, `Answering`, called in-process, no
gRPC or TLS), so it measures the crypto and store work of both sides, not the network.

Floors, from the rate of ristretto255 scalar multiplications (libsodium) with every
core multiplying (`bench.common`), measured in the same run just before and just after
the build and averaged:
- encoding: 1 scalar multiplication per entry (the Finalize hashing, HKDF, AEAD and the
  SQLite writes are overhead on top of it);
- query of m items: 3 scalar multiplications per item (blind, evaluate, unblind), as in
  DESIGN §7. The VOPRF proof adds 3 more per item (R: composite M; I: M and Z), so the
  verifiable query costs about twice this floor in scalar multiplications alone.

`BENCH_SCREEN_N` sets N (default 1,000,000); `BENCH_SCREEN_RUNS` the timed queries.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from pathlib import Path
from types import MappingProxyType

from bench.common import CORES, multiplication_seconds, print_table, shared_runner, stopwatch
from crypto.batch import BatchRunner
from node.data.store import Store, utc_now
from node.sessions.answering import Answering
from node.sessions.screen_initiator import LocalTransport, run_screen
from node.sessions.screen_responder import current_epoch, rotate_epoch
from node.setup import pki
from node.setup.config import NodeConfig, PeerPolicy, write_config
from node.setup.context import NodeContext

N = int(os.environ.get("BENCH_SCREEN_N", "1000000"))
QUERY = 1000
RUNS = int(os.environ.get("BENCH_SCREEN_RUNS", "5"))
SUITE = "ristretto255-sha512"


def _element(i: int) -> bytes:
    return b"blindmatch/v1\x00passport\x00NLD:X%09d" % i


def _node(root: Path, agency: str, peer: str, runner: BatchRunner) -> NodeContext:
    node_dir = root / agency
    node_dir.mkdir(mode=0o700)
    pki.generate_audit_key(node_dir)
    Store.open(node_dir, create=True).close()
    policy = PeerPolicy(
        peer, "127.0.0.1:1", modes=frozenset({"screen"}), release_labels=True,
        screen_budget_per_day=10**9,
    )  # fmt: skip
    config = NodeConfig(
        node_dir=node_dir, agency=agency, listen="127.0.0.1:1",
        peers=MappingProxyType({peer: policy}),
    )  # fmt: skip
    write_config(config)
    return NodeContext.load(node_dir, runner)


def _fill(node: NodeContext, name: str, indices: range, runner: BatchRunner) -> None:
    """Stores a list directly (bench data, no canonicalisation): one passport per record."""
    step = 100_000
    with node.open_store() as store, store.transaction() as conn:
        conn.execute(
            "INSERT INTO lists (name, kind, version, updated_at) VALUES (?, 'watchlist', 1, ?)",
            (name, utc_now()),
        )
        list_id, _, _ = store.list_row(name)
        for start in range(indices.start, indices.stop, step):
            part = range(start, min(start + step, indices.stop))
            elements = [_element(i) for i in part]
            points = runner.hash(SUITE, elements)
            conn.executemany(
                "INSERT INTO records (id, list_id, ref, label) VALUES (?, ?, ?, ?)",
                ((i + 1, list_id, f"R{i}", f"Case {i}; contact ops") for i in part),
            )
            conn.executemany(
                "INSERT INTO elements (record_id, type, element, point_ristretto, point_x25519) "
                "VALUES (?, 'passport', ?, ?, ?)",
                (
                    (i + 1, e, points[k * 32 : k * 32 + 32], bytes(32))
                    for k, (i, e) in enumerate(zip(part, elements, strict=True))
                ),
            )


async def _queries(police: NodeContext, customs: NodeContext) -> tuple[float, list[float], int]:
    """The first query (fetches and caches the encoded list), then RUNS more, on one loop."""
    transport = LocalTransport(Answering.of(police), "customs-nl")

    async def query() -> int:
        result = await run_screen(
            customs, transport, "police-nl", "manifest", "wl", "bench", "bench"
        )
        return int(result.match_count)

    with stopwatch() as first:
        hits = await query()
    times = []
    for _ in range(RUNS):
        with stopwatch() as watch:
            assert await query() == hits
        times.append(watch.seconds)
    return first.seconds, times, hits


def main() -> None:
    runner = shared_runner()
    with tempfile.TemporaryDirectory(prefix="bench-screen-") as tmp:
        root = Path(tmp)
        police = _node(root, "police-nl", "customs-nl", runner)
        customs = _node(root, "customs-nl", "police-nl", runner)
        _fill(police, "wl", range(N), runner)
        # The query: half of it in the watchlist.
        _fill(customs, "manifest", range(N - QUERY // 2, N + QUERY // 2), runner)
        # The machine is shared: the rate is sampled before and after the build, averaged.
        mult_before = multiplication_seconds(SUITE, runner)
        with police.open_store() as store, stopwatch() as build:
            rotate_epoch(police, store, "wl", "bench")
            current_epoch(police, store, "wl")
        mult = (mult_before + multiplication_seconds(SUITE, runner)) / 2
        encode_floor = mult * N
        first, times, hits = asyncio.run(_queries(police, customs))
        median = statistics.median(times)
        query_floor = mult * 3 * QUERY
    print_table(
        f"Screening, {CORES} cores, {mult * 1e6:.1f} µs a scalar mult with all cores busy",
        ["step", "seconds", "floor (s)", "x floor", "notes"],
        [
            [f"build encoded list, {N:,} entries", build.seconds, encode_floor,
             build.seconds / encode_floor, "floor: 1 scalar mult per entry over all cores"],
            [f"query {QUERY:,} items, first (fetch + cache {N:,} entries)", first, "",
             "", f"{hits} hits"],
            [f"query {QUERY:,} items, median of {RUNS} after the first", median, query_floor,
             median / query_floor, "floor: 3 scalar mults per item, all cores (+3 for the proof)"],
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
