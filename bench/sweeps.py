"""Deconfliction sweeps and events (issue 13): a sweep of an operations list against three
peers, four real nodes over mTLS on loopback; the elements of one event and their cost.

**The sweep.** A throwaway federation made with the real CLI (`bench.common.init_node`,
`add_peer`, `served`): customs-nl, the sweeping node, and its partners police-nl, border-be
and customs-de, each with an operations list ``ops`` of BENCH_SWEEP_N (default 10,000)
records, all four served by `blindmatch serve` (each its own process and process pool;
scheduled sweeps off, so only the benchmark sweeps). Each policy allows the other side the
list ``ops`` in mutual sessions, labels released. The records are `node.data.sample`
entities (persons, passports, phones, e-mails, IBANs, containers, IMO numbers, air waybills,
plates; about 3 in 10 with two kinds), and one in ten carries an event somewhere in the
Netherlands: 60% of the events 200 m for 4 hours, 35% 1 km for 12 hours, 5% 5 km for 24
hours, each starting at a random whole hour of 2026-12-01 to 2027-01-29. Each partner's list
shares a tenth of customs-nl's entities (a different tenth for each, written in other
notations; an entity's event is the same on both sides) and has 90% of its own.

`node.jobs.sweeps.sweep` runs in this process on the benchmarks' process pool, with the
node's own concurrency (`SWEEP_CONCURRENCY`: the three sessions at once), timed around the
call: the first sweep (the partners read their lists from SQLite), the median of three
repeats (lists cached), one repeat with one session at a time, and the whole
`blindmatch sweep` command, start-up included. Each sweep records its sessions, hits and
audit entries on both sides, as a sweep does. The crypto floor is the scalar
multiplications the three mutual sessions cannot avoid: a session of n (customs-nl's
distinct elements) x m (the partner's) costs 2n + 2m X25519 multiplications (the initiator
blinds n, the responder re-blinds them and blinds m, the initiator re-blinds those), at the
rate of the faster implementation with every core busy (`bench.common.x25519_floor`),
sampled before the first run and after each: a run's floor is the mean of the samples on
either side of it (the machine drifts, and is shared). All four nodes share the machine's
cores; peak RSS is the sweeping process's high-water mark during the run.

**Events.** The element count of single events (`node.data.events.Event`, at the Dam in
Amsterdam) and the time to encode them: the cells (`Event.cells`, the H3 cover), the
elements (`event_elements`: cells x slots, canonical values, encoded), and hashing the
elements into both suites' groups on every core, as ingest does.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import functools
import json
import os
import random
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    CORES,
    Floor,
    add_peer,
    cpu_census,
    init_node,
    median_time,
    peak_rss_mb,
    peak_rss_reset,
    print_table,
    run_cli,
    served,
    shared_runner,
    stopwatch,
    x25519_floor,
)
from crypto.batch import BatchRunner
from crypto.groups import ELEMENT_SIZE
from node.cli.demo import blindmatch, free_port
from node.data.events import Event, event_elements, finest_level, slots
from node.data.sample import COLUMNS, sample_records
from node.data.store import Store
from node.jobs.sweeps import SWEEP_CONCURRENCY, SweepResult, sweep
from node.setup.context import NodeContext

__all__ = ["main"]

N = int(os.environ.get("BENCH_SWEEP_N", "10000"))
_SUITE = "x25519-blake3"
_HASH_SUITES = ("x25519-blake3", "ristretto255-sha512")
_LIST = "ops"
SWEEPER = "customs-nl"
PEERS = ("police-nl", "border-be", "customs-de")
_SEED = 13
_PEER_BASE = 10_000_000  # partner k's own entities start at k x this: none is customs-nl's
_OVERLAP = 10  # each partner shares 1/_OVERLAP of customs-nl's entities
_EVENT_RATE = 0.1
_EVENT_MIX = ((0.60, 200.0, 4), (0.35, 1_000.0, 12), (0.05, 5_000.0, 24))  # share, m, hours
_NL = ((50.8, 53.5), (3.4, 7.2))  # latitude, longitude
_FIRST = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
_EVENT_DAYS = 60
_EVENT_COLUMNS = ("lat", "lon", "radius_m", "start", "end")
_DAM = (52.3731, 4.8926)
_REPEATS = 3
_PLACES = 200  # random centres an event's element count is also taken at


# -- the operations lists ------------------------------------------------------------------------


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


def _event(entity: int) -> list[str]:
    """The event columns of an entity's record: empty for 9 in 10."""
    rng = random.Random(entity * 1_000_003 + 17)
    if rng.random() >= _EVENT_RATE:
        return [""] * len(_EVENT_COLUMNS)
    pick = rng.random()
    radius, hours = _EVENT_MIX[-1][1:]  # if rounding leaves `pick` over
    for share, kind_radius, kind_hours in _EVENT_MIX:
        if pick < share:
            radius, hours = kind_radius, kind_hours
            break
        pick -= share
    start = _FIRST + dt.timedelta(hours=rng.randrange(_EVENT_DAYS * 24))
    return [
        f"{rng.uniform(*_NL[0]):.5f}",
        f"{rng.uniform(*_NL[1]):.5f}",
        f"{radius:g}",
        _iso(start),
        _iso(start + dt.timedelta(hours=hours)),
    ]


def _write_operations(path: Path, ranges: list[tuple[int, int]], style_seed: int) -> Path:
    """Writes the sample entities of `ranges` (start, count), each with its event if it has one."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, *_EVENT_COLUMNS])
        for start, count in ranges:
            for i, row in enumerate(
                sample_records(count, seed=_SEED, start=start, style_seed=style_seed), start
            ):
                writer.writerow([*(row[c] for c in COLUMNS), *_event(i)])
    return path


def _entities(agency: str, n: int) -> list[tuple[int, int]]:
    """The entity ranges (start, count) of an agency's list: a partner shares its own tenth."""
    if agency == SWEEPER:
        return [(0, n)]
    k = PEERS.index(agency)
    shared = n // _OVERLAP
    return [(k * shared, shared), (_PEER_BASE * (k + 1), n - shared)]


def _federation(root: Path, n: int) -> dict[str, Path]:
    """The CA and the four nodes, with their policies and their operations lists."""
    blindmatch("ca", "init", str(root / "ca"))
    agencies = (SWEEPER, *PEERS)
    address = {agency: f"127.0.0.1:{free_port()}" for agency in agencies}
    nodes = {}
    for style, agency in enumerate(agencies):
        node = nodes[agency] = init_node(root, agency, address[agency], _SUITE)
        blindmatch("config", "set", str(node), "sweep_minutes", "0")  # only the benchmark sweeps
        for peer in PEERS if agency == SWEEPER else (SWEEPER,):
            add_peer(
                node, peer, address[peer], "--lists", _LIST, "--modes", "mutual",
                "--release-labels",
            )  # fmt: skip
        path = _write_operations(root / f"{agency}.csv", _entities(agency, n), 100 + style)
        blindmatch("ingest", str(node), "--list", _LIST, "--kind", "operations", str(path))
    return nodes


def _list_figures(node: Path) -> tuple[int, int, int, Counter[str]]:
    """Records, records with an event, distinct elements (a session's set) and elements by type."""
    with Store.open(node) as store:
        points = store.list_points(_LIST, _SUITE)
        rows = [row for row in store.element_rows(points.element_ids.tolist()) if row]
        records = next(info.records for info in store.lists() if info.name == _LIST)
    packed = points.packed
    distinct = len({packed[i : i + ELEMENT_SIZE] for i in range(0, len(packed), ELEMENT_SIZE)})
    with_event = len({ref for ref, t, _ in rows if t == "event"})
    return records, with_event, distinct, Counter(t for _, t, _ in rows)


# -- the sweeps ----------------------------------------------------------------------------------


def _sweep(node: NodeContext, limit: int) -> tuple[float, list[SweepResult], float, str]:
    """One sweep in this process: seconds, results, this process's peak RSS (MB), others' CPU."""
    coroutine = sweep(node, purpose="benchmark sweep", operator="bench", limit=limit)
    peak_rss_reset()
    with cpu_census() as census, stopwatch() as watch:
        results = asyncio.run(coroutine)
    peak = peak_rss_mb()
    failed = [r.line() for r in results if not r.ok]
    if failed or len(results) != len(PEERS):
        raise SystemExit(f"sweep failed: {failed or results}")
    return watch.seconds, results, peak, census.describe()


@dataclass
class _Run:
    """One timed sweep and the floor sampled on either side of it."""

    what: str
    seconds: float
    shared: dict[str, object]
    each: str  # seconds of each session, in PEERS order
    peak_rss_mb: float
    others: str
    floor: Floor | None = None


def _cli_sweep(node_dir: Path) -> tuple[_Run, float]:
    """The whole `blindmatch sweep` command, and the peak RSS of its largest pool worker."""
    args = ["sweep", str(node_dir), "--purpose", "benchmark sweep", "--operator", "bench"]
    with cpu_census() as census:
        command = run_cli([*args, "--json"], node_dir.parent, timeout=1200)
    if command.returncode != 0:
        raise SystemExit(f"blindmatch sweep failed ({command.returncode}): {command.stderr}")
    shared = {str(r["peer"]): r["match_count"] for r in json.loads(command.stdout)}
    what = "`blindmatch sweep` (CLI, start-up included)"
    run = _Run(what, command.seconds, shared, "", command.peak_rss_mb, census.describe())
    return run, command.children_peak_rss_mb


def _in_process(node: NodeContext, what: str, limit: int) -> _Run:
    seconds, results, peak, others = _sweep(node, limit)
    by_peer = {r.peer: r for r in results}
    each = " / ".join(f"{by_peer[p].seconds:.2f}" for p in PEERS)
    return _Run(what, seconds, {p: by_peer[p].match_count for p in PEERS}, each, peak, others)


def _shared(counts: dict[str, object]) -> str:
    return " / ".join(f"{counts[p]:,}" for p in PEERS)


def _sweep_section(runner: BatchRunner) -> None:
    runs: list[_Run] = []
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-sweep-") as tmp:
        root = Path(tmp)
        nodes = _federation(root, N)
        figures = {agency: _list_figures(node) for agency, node in nodes.items()}
        with served(list(nodes.values()), root):
            node = NodeContext.load(nodes[SWEEPER], runner)
            at_once = f"{min(SWEEP_CONCURRENCY, len(PEERS))} sessions at once"
            plan = [
                (f"`sweep()`, first ({at_once})", SWEEP_CONCURRENCY),
                *((f"`sweep()`, repeat {i}", SWEEP_CONCURRENCY) for i in range(1, _REPEATS + 1)),
                ("`sweep()`, one session at a time", 1),
            ]
            samples = [x25519_floor(runner)]
            for what, limit in plan:
                runs.append(_in_process(node, what, limit))
                samples.append(x25519_floor(runner))
                runs[-1].floor = samples[-2].averaged(samples[-1])
            cli_run, cli_workers_mb = _cli_sweep(nodes[SWEEPER])
            runs.append(cli_run)
            samples.append(x25519_floor(runner))
            runs[-1].floor = samples[-2].averaged(samples[-1])
    n = figures[SWEEPER][2]
    multiplications = sum(2 * n + 2 * figures[p][2] for p in PEERS)
    rows: list[list[object]] = []
    ratios: list[float] = []
    for run in runs:
        assert run.floor is not None
        floor = multiplications * run.floor.seconds
        if run.what.startswith("`sweep()`, repeat"):
            ratios.append(run.seconds / floor)
        rows.append(
            [
                run.what,
                run.seconds,
                floor,
                f"{run.seconds / floor:.2f}x",
                _shared(run.shared),
                run.each,
                f"{run.peak_rss_mb:,.0f}",
                run.others,
            ]
        )
    repeats = [r.seconds for r in runs if r.what.startswith("`sweep()`, repeat")]
    what = f"`sweep()`, median of the {_REPEATS} repeats"
    median = [statistics.median(repeats), "", f"{statistics.median(ratios):.2f}x"]
    rows.append([what, *median, "", "", "", ""])
    list_rows: list[list[object]] = []
    for agency, (records, with_event, distinct, types) in figures.items():
        identifiers = sum(c for t, c in types.items() if t != "event")
        list_rows.append(
            [
                agency,
                records,
                with_event,
                identifiers,
                types["event"],
                sum(types.values()),
                distinct,
            ]
        )
    print_table(
        f"Operations lists ({N:,} records each; partners share {N // _OVERLAP:,} entities with "
        f"{SWEEPER})",
        [
            "node",
            "records",
            "with an event",
            "identifier elements",
            "event elements",
            "elements",
            "distinct (session set)",
        ],
        list_rows,
    )
    mix = Counter[str]()
    for *_, types in figures.values():
        mix.update(types)
    total = sum(mix.values())
    print(
        "Element types over the four lists: "
        + ", ".join(f"{t} {c / total:.1%}" for t, c in mix.most_common())
        + ".",
        flush=True,
    )
    print_table(
        f"Deconfliction sweep, four nodes on loopback: {SWEEPER}'s {N:,}-record list against "
        f"{len(PEERS)} peers, {CORES} cores",
        [
            "run",
            "seconds",
            "crypto floor s",
            "vs floor",
            f"shared elements ({' / '.join(PEERS)})",
            "each session s",
            "peak RSS MB",
            "others' CPU s",
        ],
        rows,
    )
    rates = ", ".join(f"{f.seconds * 1e6:.1f}" for f in samples)
    print(
        f"Floor: 2n + 2m X25519 multiplications a session, {multiplications:,} over the "
        f"{len(PEERS)} sessions (n = {n:,} distinct elements of {SWEEPER}; m = "
        f"{' / '.join(f'{figures[p][2]:,}' for p in PEERS)}), at the rate of the faster "
        f"implementation with all {CORES} cores busy, sampled before and after each run and "
        f"averaged: {rates} µs a multiplication in turn (the last: {samples[-1].describe()}). "
        "`sweep()` runs in this process; peak RSS: this process's high-water mark during the "
        "sweep (reset before it; the pool's workers not included). The CLI's is its own "
        f"process's (its largest pool worker: {cli_workers_mb:,.0f} MB). customs-nl's own "
        "`blindmatch serve` runs meanwhile, idle.",
        flush=True,
    )


# -- events --------------------------------------------------------------------------------------


def _per_call(fn: Callable[[], object], budget: float = 1.0) -> float:
    """Median seconds of a call of `fn`, over as many calls as fit in about `budget` s (3-500)."""
    with stopwatch() as watch:
        fn()
    runs = max(3, min(500, int(budget / max(watch.seconds, 1e-6))))
    return median_time(fn, runs)


def _events() -> Iterator[tuple[str, Event]]:
    day = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)

    def event(radius: float, start: dt.datetime, hours: float) -> Event:
        return Event(_DAM[0], _DAM[1], radius, start, start + hours * hour)

    yield "10 m, 1 h", event(10.0, day + 8 * hour, 1)
    yield "200 m, 4 h (as in the lists)", event(200.0, day + 8 * hour, 4)
    yield "1 km, 12 h, slot-aligned", event(1_000.0, day, 12)
    yield "1 km, 12 h, not aligned", event(1_000.0, day + 8 * hour, 12)
    yield "5 km, 24 h (as in the lists)", event(5_000.0, day, 24)
    yield "50 km, 31 days (the maximum)", event(50_000.0, _FIRST, 31 * 24)


def _hash_both(runner: BatchRunner, elements: list[bytes]) -> None:
    for suite in _HASH_SUITES:
        runner.hash(suite, elements)


def _elsewhere(event: Event, places: int) -> tuple[int, int]:
    """The fewest and most elements of the same event centred at `places` random places in
    the Netherlands."""
    rng = random.Random(5)
    counts = [
        len(dataclasses.replace(event, lat=rng.uniform(*_NL[0]), lon=rng.uniform(*_NL[1])).cells())
        for _ in range(places)
    ]
    n_slots = len(slots(event.start, event.end))
    return min(counts) * n_slots, max(counts) * n_slots


def _event_section(runner: BatchRunner) -> None:
    rows: list[list[object]] = []
    for what, event in _events():
        finest = finest_level(event.radius_m)
        cells = event.cells()
        elements = [element for _, element in event_elements(event)]
        fewest, most = _elsewhere(event, _PLACES)
        cells_s = _per_call(event.cells)
        elements_s = _per_call(functools.partial(event_elements, event))
        hash_s = _per_call(functools.partial(_hash_both, runner, elements), budget=3.0)
        window = f"{event.start:%m-%d %H:%M}–{event.end:%m-%d %H:%M}"
        rows.append(
            [
                what,
                window,
                f"7–{finest}" if finest > 7 else "7",
                len(slots(event.start, event.end)),
                len(cells),
                len(elements),
                f"{fewest:,}–{most:,}",
                f"{cells_s * 1e3:,.2f}",
                f"{elements_s * 1e3:,.2f}",
                f"{hash_s * 1e3:,.1f}",
            ]
        )
    print_table(
        f"Elements of one event (at the Dam, Amsterdam; UTC), {CORES} cores",
        [
            "event",
            "window (UTC)",
            "levels",
            "slots",
            "cells",
            "elements",
            f"elements, {_PLACES} places in NL",
            "cells ms",
            "elements ms",
            "hash, both groups, ms",
        ],
        rows,
    )
    print(
        "cells, elements: at the Dam; the same event centred at random places in the "
        "Netherlands has the fewest to the most elements shown. Times at the Dam: "
        "cells: `Event.cells()` (the H3 cover, every level); elements: `event_elements` "
        "(cover, slots, canonical values, encoded; cells included); hash: the elements into "
        f"both suites' groups ({', '.join(_HASH_SUITES)}) on the benchmarks' pool, as ingest "
        "does (in-process under 256 elements). Medians of repeated calls.",
        flush=True,
    )


def main() -> None:
    """Runs the sweep and events benchmarks and prints their tables."""
    runner = shared_runner()  # before any gRPC object exists in this process
    _event_section(runner)
    _sweep_section(runner)


if __name__ == "__main__":
    main()
