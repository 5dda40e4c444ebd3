"""Scalar multiplication and hashing of large packed batches over all cores.

`cryptography`'s X25519 and libsodium hold the GIL, so parallelism means
processes. A `BatchRunner` splits a packed batch into slices, runs them on a
`concurrent.futures.Executor` (a process pool by default) and joins the results
in order; batches below `min_parallel` elements run in-process, where shipping
them to a worker would cost more than it saves. The work functions are
module-level and name the suite by string, so they pickle to any executor
(a local process pool, or a Dask cluster's `client.get_executor()`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

from crypto.groups import ELEMENT_SIZE, get_suite

__all__ = ["BatchRunner", "new_process_pool"]

T = TypeVar("T")


def new_process_pool(workers: int | None = None, start_method: str = "forkserver") -> Executor:
    """Returns a process pool for batches; `forkserver` stays safe after gRPC has started."""
    context = multiprocessing.get_context(start_method)
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=context)


def _multiply(suite: str, scalar: bytes, points: bytes) -> bytes:
    return get_suite(suite).multiply(scalar, points)


def _hash(suite: str, elements: Sequence[bytes]) -> bytes:
    return get_suite(suite).hash_batch(elements)


class BatchRunner:
    """Runs batch group operations in-process or spread over an executor."""

    def __init__(
        self, executor: Executor | None = None, workers: int | None = None, min_parallel: int = 256
    ) -> None:
        self.executor = executor
        self.workers = workers or os.cpu_count() or 1
        self.min_parallel = min_parallel

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
        try:
            joined.set_result(b"".join(part.result() for part in parts))
        except Exception as exc:
            joined.set_exception(exc)

    for part in parts:
        part.add_done_callback(on_part_done)
    return joined
