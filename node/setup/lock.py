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
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"{node_dir} is already being served by pid {holder}; stop that process "
                f"first (kill -TERM {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
