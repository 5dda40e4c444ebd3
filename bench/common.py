"""Timing and reporting shared by the benchmarks: ratios measured side by side in one run.

Floors are rates measured with every core busy at once (`multiplication_seconds`,
`x25519_floor`), not one core's rate divided by the cores: on this shared machine two
busy vCPUs run up to 15% slower than twice one, and a one-core sample swung from 57 to
77 µs between runs while the 40-second builds it was the floor of did not.

One process pool serves every section (`shared_runner`): it is forked before any gRPC
object exists in this process (`python -m bench` creates it first), since a fork once
gRPC's threads run can deadlock the child.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crypto.batch import BatchRunner, new_process_pool
from crypto.groups import get_suite
from loadtests.run import serve, stop
from node.cli.demo import blindmatch

__all__ = [
    "CORES",
    "Census",
    "Command",
    "Floor",
    "add_peer",
    "cpu_census",
    "Stopwatch",
    "init_node",
    "median_time",
    "multiplication_seconds",
    "on_all_cores",
    "peak_rss_reset",
    "peak_rss_mb",
    "print_table",
    "run_cli",
    "served",
    "shared_runner",
    "stopwatch",
    "tree_cpu_seconds",
    "x25519_floor",
]

CORES = os.cpu_count() or 1

_shared: BatchRunner | None = None


def shared_runner() -> BatchRunner:
    """The benchmarks' process pool over all cores, started on first use (before gRPC)."""
    global _shared
    if _shared is None:
        _shared = BatchRunner(new_process_pool())
        _shared.hash("x25519-blake3", [b"warm-up"] * CORES * 2)
    return _shared


def shutdown_shared_runner() -> None:
    """Stops the shared pool's workers, if it was started."""
    global _shared
    if _shared is not None and _shared.executor is not None:
        _shared.executor.shutdown(cancel_futures=True)
    _shared = None


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
    """Median seconds of 5 calls of `fn(runner)`, on the shared pool if none is given."""
    runner = runner or shared_runner()
    fn(runner)  # warm
    return median_time(lambda: fn(runner), 5)


def multiplication_seconds(suite: str, runner: BatchRunner | None = None) -> float:
    """Seconds per scalar multiplication of `suite` (its own code, point checks included),
    with every core multiplying at once."""
    count = 5000 * CORES
    group = get_suite(suite)
    points = group.hash_batch([b"floor%d" % i for i in range(count)])
    key = group.random_scalar()
    return on_all_cores(lambda r: r.multiply(suite, key, points), runner) / count


# -- who else used the cores ---------------------------------------------------------------------


class Census:
    """CPU seconds of a `with cpu_census()` block: this process and its descendants, the whole
    machine, and so the other processes sharing it (NaN where /proc is missing)."""

    ours: float = float("nan")
    machine: float = float("nan")

    @property
    def others(self) -> float:
        """CPU seconds the machine spent on other processes (0 where unknown)."""
        return max(0.0, self.machine - self.ours) if not math.isnan(self.machine) else 0.0

    def describe(self) -> str:
        return f"{self.others:.1f}" if not math.isnan(self.machine) else "n/a"


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / _HZ  # all but idle and iowait


def _descendants_cpu() -> dict[int, float]:
    """CPU seconds of every live descendant of this process, and of this process."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _HZ
    me = os.getpid()
    ours = {me}
    grown = True
    while grown:
        more = {pid for pid, ppid in parent.items() if ppid in ours} - ours
        grown = bool(more)
        ours |= more
    return {pid: cpu[pid] for pid in ours}


def _waited_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def cpu_census() -> Iterator[Census]:
    """Counts the CPU the block used, ours and the machine's (Linux; NaN elsewhere)."""
    census = Census()
    try:
        machine, ours, waited = _machine_busy(), _descendants_cpu(), _waited_children_cpu()
    except OSError:
        yield census
        return
    yield census
    after = _descendants_cpu()
    census.machine = _machine_busy() - machine
    census.ours = (
        sum(cpu - ours.get(pid, 0.0) for pid, cpu in after.items())
        + _waited_children_cpu()
        - waited
    )


# -- the X25519 floor: the fastest implementation at hand, every core busy ---------------------


def _sodium_x25519(scalar: bytes, points: bytes) -> None:
    """Bare libsodium X25519 (pynacl) over packed points: no checks, results dropped."""
    from nacl.bindings import crypto_scalarmult

    for i in range(0, len(points), 32):
        crypto_scalarmult(scalar, points[i : i + 32])


def _openssl_x25519(scalar: bytes, points: bytes) -> None:
    """Bare OpenSSL X25519 (`cryptography`), public-key objects included: results dropped."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    key = X25519PrivateKey.from_private_bytes(scalar)
    load = X25519PublicKey.from_public_bytes
    for i in range(0, len(points), 32):
        key.exchange(load(points[i : i + 32]))


_X25519_IMPLEMENTATIONS = {
    "libsodium (pynacl)": _sodium_x25519,
    "OpenSSL (cryptography)": _openssl_x25519,
}


@dataclass(frozen=True)
class Floor:
    """Seconds per X25519 multiplication with every core busy: the faster implementation's,
    and each implementation's, sampled in the same minutes."""

    seconds: float
    implementation: str
    samples: dict[str, float]
    others: float = 0.0  # CPU seconds other processes used while it was sampled

    @classmethod
    def of(cls, samples: dict[str, float], others: float = 0.0) -> Floor:
        """The floor of these per-implementation samples: the fastest."""
        fastest = min(samples, key=samples.__getitem__)
        return cls(samples[fastest], fastest, samples, others)

    def averaged(self, other: Floor) -> Floor:
        """This and a later sample averaged per implementation (the machine drifts)."""
        samples = {k: (v + other.samples[k]) / 2 for k, v in self.samples.items()}
        return Floor.of(samples, self.others + other.others)

    def describe(self) -> str:
        both = ", ".join(f"{name} {s * 1e6:.1f} µs" for name, s in self.samples.items())
        return (
            f"{self.seconds * 1e6:.1f} µs a multiplication ({both}; all {CORES} cores busy; "
            f"others' CPU meanwhile {self.others:.1f} s)"
        )


def x25519_floor(runner: BatchRunner | None = None, per_core: int = 5000, runs: int = 5) -> Floor:
    """The X25519 multiplication rate with every core multiplying, for the faster of libsodium
    and OpenSSL: both are timed in alternation (the machine drifts), median of `runs` each."""
    runner = runner or shared_runner()
    group = get_suite("x25519-blake3")
    points = group.hash_batch([b"floor%d" % i for i in range(per_core)])
    scalar = group.random_scalar()

    def one(fn: Callable[[bytes, bytes], None]) -> float:
        with stopwatch() as watch:
            for future in [runner.submit(fn, scalar, points) for _ in range(runner.workers)]:
                future.result()
        return watch.seconds / (per_core * runner.workers)

    times: dict[str, list[float]] = {name: [] for name in _X25519_IMPLEMENTATIONS}
    for fn in _X25519_IMPLEMENTATIONS.values():
        one(fn)  # warm: imports in the workers
    with cpu_census() as census:
        for _ in range(runs):
            for name, fn in _X25519_IMPLEMENTATIONS.items():
                times[name].append(one(fn))
    samples = {name: statistics.median(t) for name, t in times.items()}
    return Floor.of(samples, census.others)


# -- throw-away federations: real nodes made with the CLI, served as processes ------------------


def init_node(
    root: Path, agency: str, address: str, suite: str = "x25519-blake3", region: str = "NL"
) -> Path:
    """`blindmatch init` of `root/agency` listening on `address`, signed by the CA in `root/ca`
    (`blindmatch ca init` it first)."""
    node = root / agency
    blindmatch(
        "init", str(node), "--agency", agency, "--listen", address,
        "--ca", str(root / "ca"), "--region", region, "--suite", suite,
    )  # fmt: skip
    return node


def add_peer(node: Path, peer: str, address: str, *options: str) -> None:
    """`blindmatch peer add`, with limits no benchmark reaches (sessions per hour, set size)
    unless `options` say otherwise (later options win)."""
    blindmatch(
        "peer", "add", str(node), "--agency", peer, "--address", address,
        "--max-set-size", "100000000", "--sessions-per-hour", "1000000", *options,
    )  # fmt: skip


@contextmanager
def served(node_dirs: Sequence[Path], log_dir: Path, workers: int = 1) -> Iterator[None]:
    """`blindmatch serve` of every node, each in its own process group, until the block ends;
    then each is stopped by its pid (SIGTERM, SIGKILL of its group after a grace period), also
    when the block or a later start fails."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for node in node_dirs:
            processes.append(serve(node, workers, log_path=log_dir / f"{node.name}.serve.log"))
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()  # all at once: they stop in parallel
        for process in processes:
            stop(process)


@dataclass(frozen=True)
class Command:
    """A finished CLI command: wall-clock seconds, exit code, output, and the peak RSS in MB
    of its own process and of the largest of its child processes (e.g. its pool's workers),
    NaN where /proc is missing."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    children_peak_rss_mb: float


def _tree(root: int) -> set[int]:
    """`root` and its live descendants."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        grown = bool(more)
        tree |= more
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by the process `root` and its live descendants (user and
    system; NaN where /proc is missing)."""
    if not os.path.isdir("/proc"):
        return float("nan")
    total = 0.0
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / _HZ
    return total


def _raise_peaks(pids: set[int], peaks: dict[int, int]) -> None:
    """Raises `peaks[pid]` to the VmHWM (KiB) of each of `pids` still alive."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                hwm = next((int(x.split()[1]) for x in f if x.startswith("VmHWM:")), 0)
        except (OSError, ValueError):
            continue
        peaks[pid] = max(peaks.get(pid, 0), hwm)


def run_cli(args: Sequence[str], out_dir: Path, timeout: float = 900.0) -> Command:
    """Runs `python -m node.cli ARGS`, timed, its output in files under `out_dir`, watching
    the peak RSS of it and its children (VmHWM, polled: a high-water mark, so only a peak in
    a child's last few milliseconds can be missed); its process group is killed if it
    outlives `timeout`. (Not `ru_maxrss`: a child's counts the parent's RSS at fork.)"""
    out, err = out_dir / "command.out", out_dir / "command.err"
    peaks: dict[int, int] = {}
    watching = os.path.isdir("/proc")
    with open(out, "wb") as stdout, open(err, "wb") as stderr, stopwatch() as watch:
        process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *args],
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            pids, polls = {process.pid}, 0
            while process.poll() is None:
                if watching:
                    if polls % 25 == 0:  # new children: every 0.5 s (a scan of /proc: 1 ms)
                        pids = _tree(process.pid)
                    _raise_peaks(pids, peaks)
                    polls += 1
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    own = peaks.pop(process.pid, 0)
    return Command(
        watch.seconds,
        process.returncode,
        out.read_text(encoding="utf-8"),
        err.read_text(encoding="utf-8"),
        own / 1024 if watching else float("nan"),
        max(peaks.values(), default=0) / 1024 if watching else float("nan"),
    )


def peak_rss_reset() -> None:
    """Resets this process's peak RSS (VmHWM) to its current RSS (Linux; else a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's peak RSS in MB since the last `peak_rss_reset` (NaN where unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


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
