"""Timing and reporting shared by the benchmarks: ratios measured side by side in one run."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CORES", "Stopwatch", "median_time", "print_table", "stopwatch"]

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
