"""A real Dask cluster for tests (`distributed.LocalCluster`), and killing one of its workers
while it runs a task.

`running_cluster` starts a scheduler on 127.0.0.1 (no dashboard) in this process and
worker processes under nannies (or worker threads with `processes=False`), with their
scratch space in a directory of the test's; on exit it closes the cluster and kills, by
pid, any process the cluster started that is still running, however the test ended.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.conftest import command_line, descendants, kill_processes, still_running, wait_until

__all__ = ["BusyWorkerKiller", "running_cluster"]

CLOSE_SECONDS = 30.0


@contextmanager
def running_cluster(directory: Path, **options: Any) -> Iterator[Any]:
    """A LocalCluster of 2 single-threaded worker processes (override with `options`)."""
    import dask
    from distributed import LocalCluster

    before = set(descendants(os.getpid()))
    settings: dict[str, Any] = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "protocol": "tcp://",  # with processes=False Dask would choose inproc://
        "dashboard_address": None,
        # the scheduler's HTTP server (health, metrics) runs even without a dashboard
        "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
        "local_directory": str(directory),
        **options,
    }
    with dask.config.set({"temporary-directory": str(directory)}):  # the scheduler's scratch
        cluster = LocalCluster(**settings)
    try:
        yield cluster
    finally:
        started = {
            pid: start
            for pid, start in descendants(os.getpid()).items()
            if pid not in before and "multiprocessing." not in command_line(pid)
        }  # multiprocessing's resource tracker is this process's, for as long as it runs
        try:
            cluster.close(timeout=CLOSE_SECONDS)
        finally:
            if not wait_until(lambda: not still_running(started), 10.0, interval=0.05):
                kill_processes(started)


class BusyWorkerKiller:
    """Kills, from a thread, the process of the first worker seen running a task whose key
    starts with `prefix` (`distributed` keys are FUNCTION-NAME-UUID). With `replaced`, on
    exit it waits until the cluster has as many workers as at the start (the nanny restarts
    the killed one, in a few seconds); without, the cluster goes on with one worker less
    until then."""

    def __init__(self, scheduler_address: str, prefix: str, replaced: bool = False) -> None:
        from distributed import Client

        self.client = Client(scheduler_address, timeout=10, set_as_default=False)
        self.prefix = prefix
        self.replaced = replaced
        self.killed: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="worker-killer", daemon=True)

    def __enter__(self) -> BusyWorkerKiller:
        self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        try:
            if self.killed is not None and self.replaced:
                assert wait_until(self._replaced, 60.0, interval=0.1), "no worker replaced it"
        finally:
            self.client.close(timeout=10)

    def _replaced(self) -> bool:
        try:
            pids = self.client.run(os.getpid).values()
        except OSError:  # a worker the scheduler still lists is gone
            return False
        return self.killed not in pids and len(pids) >= self.workers

    def _busy_worker(self) -> str | None:
        for worker, keys in self.client.processing().items():
            if any(str(key).startswith(self.prefix) for key in keys):
                return str(worker)
        return None

    def _run(self) -> None:
        busy: list[str] = []

        def found() -> bool:
            worker = self._busy_worker()
            if worker is not None:
                busy.append(worker)
            return self.stop.is_set() or bool(busy)

        wait_until(found, 120.0, interval=0.005)
        if not busy:
            return
        pid = int(self.client.run(os.getpid, workers=busy[:1])[busy[0]])
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.killed = pid
