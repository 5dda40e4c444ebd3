"""One `serve` per node directory: an exclusive lock on `NODE_DIR/serve.lock`.

The lock is an advisory `flock` held for the life of the serving process (and
inherited by its forked workers), so it is released by the kernel however the
process ends, even by SIGKILL: a stale file never blocks a restart. The file
holds the pid of the holder and when it started serving, for the error a
second `serve` prints and for `status` (`serving`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from node.errors import ConfigError

__all__ = ["LOCK_FILE", "Serving", "serve_lock", "serving"]

LOCK_FILE = "serve.lock"
_TAKE_ATTEMPTS = 20  # `status` may hold the lock for an instant to see whether it is free


@dataclass(frozen=True)
class Serving:
    """A `serve` holding the lock: its pid and when it started."""

    pid: int
    since: str


@contextlib.contextmanager
def serve_lock(node_dir: Path) -> Iterator[None]:
    """Holds the node's serve lock, or raises ConfigError naming the pid that holds it."""
    path = node_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for attempt in range(_TAKE_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _TAKE_ATTEMPTS - 1:
                    raise ConfigError(_held_by(node_dir, fd)) from None
                time.sleep(0.025)
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _held_by(node_dir: Path, fd: int) -> str:
    """Why the lock is taken, naming the pid in the file (read again if it is being written)."""
    text = ""
    for _ in range(20):  # the holder writes its pid just after taking the lock
        text = os.pread(fd, 64, 0).decode(errors="replace").split(" ")[0].strip()
        if text.isdigit():
            break
        time.sleep(0.05)
    if not text.isdigit():
        return f"{node_dir} is already being served (its lock {LOCK_FILE} is held); stop that serve"
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        # `serve --workers N` forked servers that share the lock; they outlive it while they stop.
        return (
            f"{node_dir} is still being served by processes that pid {pid} started; pid {pid} "
            "has exited and they are stopping: wait for them, then start serve again"
        )
    except PermissionError:  # runs as another user: it exists
        pass
    return f"{node_dir} is already being served by pid {pid}; stop it first (kill -TERM {pid})"


def serving(node_dir: Path) -> Serving | None:
    """The `serve` of this node directory, or None when none holds the lock."""
    path = node_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:  # free: nobody serves (released at once; a starting serve retries meanwhile)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            pass
        for _ in range(20):  # the holder writes its pid just after taking the lock
            pid, _, since = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(" ")
            if pid.isdigit() and since:
                return Serving(int(pid), since)
            time.sleep(0.05)
        return Serving(0, "")
    finally:
        os.close(fd)
