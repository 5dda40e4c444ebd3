"""Where the serving processes' metrics meet: prometheus-client's multiprocess directory.

`serve` calls `metrics_directory` before anything imports prometheus-client
(the library chooses its storage when first imported) and before it forks its
`--workers`: every serving process then writes its counters to files in
``NODE_DIR/metrics/PID`` (PID: the `serve` command's own), and a scrape of any
of them sums them all. Directories left by a `serve` that died without cleaning
up (SIGKILL) are removed by the next one; a `serve` of another node, or one
still running, is never touched. Nothing here imports prometheus-client.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ENV", "metrics_directory"]

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def metrics_directory(node_dir: Path) -> Iterator[Path]:
    """Sets `ENV` to a fresh directory for this `serve`, removed (with stale ones) at the end."""
    root = node_dir / "metrics"
    root.mkdir(mode=0o700, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and not _running(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    mine = root / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir(mode=0o700)
    previous = os.environ.get(ENV)
    os.environ[ENV] = str(mine)
    try:
        yield mine
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(mine, ignore_errors=True)
