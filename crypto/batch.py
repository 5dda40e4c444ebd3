"""Scalar multiplication and hashing of large packed batches over all cores.

`cryptography`'s X25519 and libsodium hold the GIL, so parallelism means
processes. A `BatchRunner` splits a packed batch into slices, runs them on a
`concurrent.futures.Executor` (a process pool by default) and joins the results
in order; batches below `min_parallel` elements run in-process, where shipping
them to a worker would cost more than it saves. The work functions are
module-level and name the suite by string, so they pickle to any executor
(a local process pool, or a Dask cluster's `client.get_executor()`); they take
and return packed bytes, and are pure (same bytes in, same bytes out, no side
effect), so an executor may run a slice again when a worker is lost. `workers`,
the number of slices, may be a function asked at each batch: a cluster's
thread count changes as workers come and go.

`new_process_pool` starts all its workers before it returns. They ignore
SIGINT, so Ctrl-C is the creating process's alone to handle, end at once on
SIGTERM (whatever handler the creator had), and exit when that process dies,
even by SIGKILL.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing.synchronize import Barrier
from typing import Any, TypeVar

from crypto.groups import ELEMENT_SIZE, get_suite

__all__ = ["BatchRunner", "new_process_pool"]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_POLL_SECONDS = 0.5  # creator checks where pidfd_open is missing
_START_TIMEOUT = 120.0  # only a worker stuck while starting gets near this

_started: Barrier | None = None  # in a worker, from `_init_worker` until `_wait_started`


def new_process_pool(workers: int | None = None, start_method: str = "fork") -> Executor:
    """Returns a process pool for batches, every worker started and ready.

    Call it before any gRPC channel or server exists in this process: with
    "fork" the workers are forked here, from the calling thread, and a fork
    once gRPC's threads run can deadlock the child. "forkserver" and "spawn"
    are safe at any time but start workers more slowly.

    Workers ignore SIGINT: on Ctrl-C, catch `KeyboardInterrupt` and call
    `shutdown(cancel_futures=True)`. They exit when this process dies. With
    "fork" and "spawn" the kernel also kills them when the calling thread ends
    (PR_SET_PDEATHSIG follows the forking thread), so call it from a thread
    that outlives the pool, normally the main thread.
    """
    count = workers or os.cpu_count() or 1
    context = multiprocessing.get_context(start_method)
    started = context.Barrier(count)
    pool = ProcessPoolExecutor(
        max_workers=count,
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(), started),
    )
    try:
        # Each task holds its worker until `count` of them run at once, so no
        # worker is idle when the next is submitted: every submit starts a new
        # worker (with "fork", the first starts all), and we return only when
        # each has run `_init_worker`. Nothing is forked later, from another thread.
        for future in [pool.submit(_wait_started) for _ in range(count)]:
            future.result()
    except BaseException:  # a worker failed to start, or Ctrl-C: don't leave them waiting
        started.abort()
        pool.shutdown(cancel_futures=True)
        raise
    return pool


def _init_worker(creator_pid: int, started: Barrier) -> None:
    global _started
    _started = started
    # Ctrl-C reaches the whole foreground process group. The creator handles it;
    # a KeyboardInterrupt in a worker would fail its task or break the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits its creator's Python handlers; SIGTERM ends a worker at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    child = os.getppid() == creator_pid  # with "forkserver", the forkserver is the parent
    if child and sys.platform == "linux":
        # The kernel kills the worker the moment its parent dies, even mid-call.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        pidfd = os.pidfd_open(creator_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # not Linux, kernel < 5.3, or filtered
        pidfd = None
    if child and os.getppid() != creator_pid:
        # The creator died before prctl took effect, or before pidfd_open,
        # whose pid may then name another process.
        os._exit(0)
    # The only watch for forkserver workers (their parent is the forkserver),
    # and off Linux; behind PR_SET_PDEATHSIG otherwise.
    threading.Thread(
        target=_exit_with_creator,
        args=(creator_pid, child, pidfd),
        name="creator-watch",
        daemon=True,
    ).start()


def _exit_with_creator(creator_pid: int, child: bool, pidfd: int | None) -> None:
    if pidfd is not None:
        # poll rather than select: a forked worker inherits the creator's fds,
        # so the pidfd may be above select's FD_SETSIZE.
        watch = select.poll()
        watch.register(pidfd, select.POLLIN)
        watch.poll()  # returns once the creator has exited
    else:
        while _creator_alive(creator_pid, child):
            time.sleep(_POLL_SECONDS)
    os._exit(0)


def _creator_alive(creator_pid: int, child: bool) -> bool:
    if child:  # reparenting is certain, where the pid may be reused
        return os.getppid() == creator_pid
    try:
        os.kill(creator_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, as another user
        pass
    return True


def _wait_started() -> None:
    global _started
    barrier, _started = _started, None
    assert barrier is not None, "only new_process_pool's start-up runs this"
    barrier.wait(_START_TIMEOUT)


def _multiply(suite: str, scalar: bytes, points: bytes) -> bytes:
    return get_suite(suite).multiply(scalar, points)


def _hash(suite: str, elements: Sequence[bytes]) -> bytes:
    return get_suite(suite).hash_batch(elements)


class BatchRunner:
    """Runs batch group operations in-process or spread over an executor."""

    def __init__(
        self,
        executor: Executor | None = None,
        workers: int | Callable[[], int] | None = None,
        min_parallel: int = 256,
    ) -> None:
        self.executor = executor
        self._workers = workers
        self.min_parallel = min_parallel

    @property
    def workers(self) -> int:
        """How many slices a batch is split into: the executor's workers (asked now)."""
        count = self._workers() if callable(self._workers) else self._workers
        return max(1, count or os.cpu_count() or 1)

    def submit_multiply(self, suite: str, scalar: bytes, points: bytes) -> Future[bytes]:
        """Starts multiplying packed `points` by `scalar`; the future yields packed points."""
        count = len(points) // ELEMENT_SIZE
        if self.executor is None or count < self.min_parallel:
            return _done(_multiply, suite, scalar, points)
        step = -(-count // self.workers) * ELEMENT_SIZE
        parts = [
            self.executor.submit(_multiply, suite, scalar, points[i : i + step])
            for i in range(0, len(points), step)
        ]
        return _joined(parts)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Runs module-level `fn(*args)` on the executor, or in-process without one."""
        if self.executor is None:
            return _done(fn, *args)
        return self.executor.submit(fn, *args)

    def multiply(self, suite: str, scalar: bytes, points: bytes) -> bytes:
        """Multiplies packed `points` by `scalar` and returns packed points."""
        return self.submit_multiply(suite, scalar, points).result()

    def hash(self, suite: str, elements: Sequence[bytes]) -> bytes:
        """Hashes `elements` into the suite's group and returns packed points."""
        if self.executor is None or len(elements) < self.min_parallel:
            return _hash(suite, elements)
        step = -(-len(elements) // self.workers)
        parts = [
            self.executor.submit(_hash, suite, elements[i : i + step])
            for i in range(0, len(elements), step)
        ]
        return b"".join(part.result() for part in parts)


def _done(fn: Callable[..., T], *args: Any) -> Future[T]:
    future: Future[T] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # delivered through the future, as a worker's would be
        future.set_exception(exc)
    return future


def _joined(parts: list[Future[bytes]]) -> Future[bytes]:
    """A future of the concatenated results of `parts`, in order."""
    joined: Future[bytes] = Future()
    remaining = [len(parts)]
    lock = threading.Lock()  # callbacks may run on several executor threads

    def on_part_done(_: Future[bytes]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        # Each part's callbacks hold this function, and so `parts`: emptied, no reference cycle
        # keeps the parts' results (and `joined`'s) alive until the cyclic GC runs.
        done, parts[:] = list(parts), []
        try:
            joined.set_result(b"".join(part.result() for part in done))
        except Exception as exc:
            joined.set_exception(exc)

    for part in parts:
        part.add_done_callback(on_part_done)
    return joined
