"""One `serve` per node directory: an exclusive lock on `NODE_DIR/serve.lock`.

The lock is an advisory `flock` held for the life of the serving process (and
inherited by its forked workers), so it is released by the kernel however the
process ends, even by SIGKILL: a stale file never blocks a restart. The file
holds the pid of the holder, for the error a second `serve` prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from node.errors import ConfigError

__all__ = ["LOCK_FILE", "serve_lock"]

LOCK_FILE = "serve.lock"


@contextlib.contextmanager
def serve_lock(node_dir: Path) -> Iterator[None]:
    """Holds the node's serve lock, or raises ConfigError naming the pid that holds it."""
    path = node_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(_held_by(node_dir, fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _held_by(node_dir: Path, fd: int) -> str:
    """Why the lock is taken, naming the pid in the file (read again if it is being written)."""
    text = ""
    for _ in range(20):  # the holder writes its pid just after taking the lock
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
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
