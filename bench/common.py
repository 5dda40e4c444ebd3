"""Timing and reporting shared by the benchmarks: ratios measured side by side in one run.

Floors are rates measured with every core busy at once (`multiplication_seconds`), not
one core's rate divided by the cores: on this shared machine two busy vCPUs run up to 15%
slower than twice one, and a one-core sample swung from 57 to 77 µs between runs while
the 40-second builds it was the floor of did not.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from crypto.batch import BatchRunner, new_process_pool
from crypto.groups import get_suite

__all__ = [
    "CORES",
    "Stopwatch",
    "median_time",
    "multiplication_seconds",
    "on_all_cores",
    "print_table",
    "stopwatch",
]

CORES = os.cpu_count() or 1


class Stopwatch:
    """Elapsed wall-clock seconds of a `with stopwatch()` block."""

    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - start


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall-clock seconds of `runs` calls of `fn`."""
    times = []
    for _ in range(runs):
        with stopwatch() as watch:
            fn()
        times.append(watch.seconds)
    return statistics.median(times)


def on_all_cores(fn: Callable[[BatchRunner], object], runner: BatchRunner | None = None) -> float:
    """Median seconds of 5 calls of `fn(runner)`, on a fresh process pool if none is given."""
    own = runner is None
    runner = runner or BatchRunner(new_process_pool())
    try:
        fn(runner)  # starts the workers
        return median_time(lambda: fn(runner), 5)
    finally:
        if own and runner.executor is not None:
            runner.executor.shutdown()


def multiplication_seconds(suite: str, runner: BatchRunner | None = None) -> float:
    """Seconds per scalar multiplication of `suite` with every core multiplying at once."""
    count = 5000 * CORES
    group = get_suite(suite)
    points = group.hash_batch([b"floor%d" % i for i in range(count)])
    key = group.random_scalar()
    return on_all_cores(lambda r: r.multiply(suite, key, points), runner) / count


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Prints a Markdown table, ready to paste into the README."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_cell(v) for v in row) + " |")
    print(flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
