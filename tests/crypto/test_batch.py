"""`new_process_pool`: workers exit with their creator and ignore Ctrl-C.

Each test runs the pool in a child Python process (its own session, so its
process group can be signalled and cleaned up whole), finds the pool's
processes in /proc and watches them with a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["fork", "forkserver"]
DEADLINE = 5.0  # seconds for the pool's processes to go
START_DEADLINE = 30.0  # seconds for the child to build its pool

# argv[1] is the start method. Prints the pool's worker pids, then sleeps.
SLEEPER = """
import os, sys, time
from crypto.batch import BatchRunner, new_process_pool
pool = new_process_pool(2, start_method=sys.argv[1])
BatchRunner(pool, min_parallel=1).hash("x25519-blake3", [b"a", b"b", b"c", b"d"])
print(*[p.pid for p in pool._processes.values()], flush=True)
time.sleep(600)
"""

# Prints the worker pids once a ~50 s batch runs; on Ctrl-C, cancels it,
# prints how many parts failed (a worker interrupted) and exits with 130.
LONG_BATCH = """
import sys, time
from crypto.batch import BatchRunner, new_process_pool
pool = new_process_pool(2, start_method=sys.argv[1])
runner = BatchRunner(pool)
parts = [runner.submit(time.sleep, 0.05) for _ in range(2000)]
try:  # from before the print: the test may send Ctrl-C as soon as it reads it
    parts[0].result()
    print(*[p.pid for p in pool._processes.values()], flush=True)
    for part in parts:
        part.result()
except KeyboardInterrupt:
    pool.shutdown(cancel_futures=True)
    print(sum(1 for p in parts if not p.cancelled() and p.exception()), flush=True)
    sys.exit(130)
sys.exit(1)
"""

# Prints the pool's and the in-process results (hex) as JSON, then shuts down.
SAME_BYTES = """
import json, sys
from crypto.batch import BatchRunner, new_process_pool
from crypto.groups import get_suite
pool = new_process_pool(2, start_method=sys.argv[1])
runner, local = BatchRunner(pool, min_parallel=1), BatchRunner()
out = {}
for name in ("x25519-blake3", "ristretto255-sha512"):
    suite = get_suite(name)
    elements = [b"element %d" % i for i in range(1001)]
    points = local.hash(name, elements)
    scalar = suite.random_scalar()
    out[name] = {
        "pool": [runner.hash(name, elements).hex(), runner.multiply(name, scalar, points).hex()],
        "local": [points.hex(), local.multiply(name, scalar, points).hex()],
    }
pool.shutdown()
print(json.dumps(out), flush=True)
"""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of `pid` from /proc, or None once it is reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Pid -> start time of every live process below `root`."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)] = (stat[1], stat[2])
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _running(pid: int, start: int) -> bool:
    """Whether `pid` (started at `start`, so not a reused pid) still runs.

    An exited process left unreaped by its new parent is gone for our purpose,
    but not one whose parent is this test: that would be ours to reap.
    """
    stat = _stat(pid)
    if stat is None or stat[2] != start:
        return False
    state, ppid, _ = stat
    return state != "Z" or ppid == os.getpid()


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _read_line(child: subprocess.Popen[bytes], seconds: float) -> str:
    """The child's next stdout line; fails the test past the deadline."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    data = b""
    deadline = time.monotonic() + seconds
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            pytest.fail(f"no line from the child within {seconds} s (read {data!r})")
        data += chunk
    return data.decode()


@contextmanager
def _child(script: str, method: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Runs `script` in its own session; kills its whole process group on the way out."""
    stderr = (tmp_path / "stderr").open("wb")  # a file: a pipe would stay open in the workers
    child = subprocess.Popen(
        [sys.executable, "-c", script, method],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        yield child
    finally:
        with suppress(ProcessLookupError):  # the group id is the child's pid
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
        stderr.close()


def _pool_processes(child: subprocess.Popen[bytes], line: str) -> dict[int, int]:
    """Pid -> start time of the child's workers, forkserver and resource tracker."""
    workers = [int(pid) for pid in line.split()]
    processes = _descendants(child.pid)
    assert len(workers) == 2, "both workers start with the pool"
    assert set(workers) <= set(processes), (workers, processes)
    return processes


def _still_running(processes: dict[int, int]) -> list[int]:
    return [pid for pid, start in processes.items() if _running(pid, start)]


@pytest.mark.parametrize("method", METHODS)
def test_pool_dies_with_its_creator_killed(method: str, tmp_path: Path) -> None:
    with _child(SLEEPER, method, tmp_path) as child:
        processes = _pool_processes(child, _read_line(child, START_DEADLINE))
        forkservers = {
            stat[1] for pid in processes if (stat := _stat(pid)) and stat[1] != child.pid
        }
        # With forkserver, the workers are the forkserver's children.
        assert bool(forkservers) == (method == "forkserver"), forkservers
        assert forkservers <= set(processes)
        child.send_signal(signal.SIGKILL)
        child.wait(DEADLINE)
        assert _wait_for(lambda: not _still_running(processes), DEADLINE), (
            f"still running {DEADLINE} s after the creator was killed: {_still_running(processes)}"
        )


@pytest.mark.parametrize("method", METHODS)
def test_ctrl_c_interrupts_only_the_creator(method: str, tmp_path: Path) -> None:
    with _child(LONG_BATCH, method, tmp_path) as child:
        processes = _pool_processes(child, _read_line(child, START_DEADLINE))
        os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C does to a foreground job
        deadline = time.monotonic() + DEADLINE
        failed = _read_line(child, DEADLINE)
        assert child.wait(max(0.0, deadline - time.monotonic())) == 130
        stderr = (tmp_path / "stderr").read_text()
        assert failed.strip() == "0", f"parts failed in the workers:\n{stderr}"
        assert "Traceback" not in stderr, stderr
        assert _wait_for(lambda: not _still_running(processes), DEADLINE), (
            f"still running {DEADLINE} s after the creator exited: {_still_running(processes)}"
        )


@pytest.mark.parametrize("method", METHODS)
def test_pool_gives_the_same_bytes_as_in_process(method: str, tmp_path: Path) -> None:
    with _child(SAME_BYTES, method, tmp_path) as child:
        results = json.loads(_read_line(child, START_DEADLINE))
        assert child.wait(DEADLINE) == 0
    for name, result in results.items():
        assert result["pool"] == result["local"], name


def test_a_joined_batch_leaves_no_reference_cycle_holding_its_results():
    """The parts' callbacks must not keep the results alive until the cyclic GC runs: at a
    million elements a session, that garbage was tens of megabytes."""
    import gc
    from concurrent.futures import Future, ThreadPoolExecutor

    from crypto.batch import BatchRunner
    from crypto.groups import SUITES

    group = SUITES["x25519-blake3"]
    points = group.hash_batch([b"e%d" % i for i in range(64)])
    with ThreadPoolExecutor(2) as executor:
        runner = BatchRunner(executor, workers=2, min_parallel=1)
        gc.collect()
        gc.disable()
        try:
            gc.set_debug(gc.DEBUG_SAVEALL)
            assert len(runner.submit_multiply(group.name, group.random_scalar(), points).result())
            gc.collect()
            cyclic_futures = [o for o in gc.garbage if isinstance(o, Future)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert cyclic_futures == []
