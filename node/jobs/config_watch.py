"""Policy without restarts: a serving node re-reads node.toml when the file changes.

Every call reads `node.config` when it is admitted, so swapping it applies a
changed peer policy (lists, modes, label release, rates, concurrent calls, set
size, screening budget), `idle_seconds` and the screening epoch length to the
next call; calls in flight keep what they were admitted with. A node.toml that
does not load is logged and the previous configuration kept. Who changed what
is audited by the command that wrote the file (`peer set`, `config set`);
`listen`, `agency` and `max_sessions` still need a restart, and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import os

from node.errors import ConfigError
from node.setup.config import NodeConfig
from node.setup.context import NodeContext

__all__ = ["CHECK_SECONDS", "watch_config"]

CHECK_SECONDS = 1.0
"""How often node.toml's identity (inode, size, mtime) is compared."""
_RESTART_KEYS = ("agency", "listen", "max_sessions", "grace_seconds", "api_listen", "api_tls")

log = logging.getLogger(__name__)


def _stamp(path: os.PathLike[str]) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


async def watch_config(node: NodeContext, interval: float = CHECK_SECONDS) -> None:
    """Reloads `node.config` from node.toml whenever the file changes; runs until cancelled."""
    path = node.config.config_path
    seen = await asyncio.to_thread(_stamp, path)
    while True:
        await asyncio.sleep(interval)
        stamp = await asyncio.to_thread(_stamp, path)
        if stamp == seen or stamp is None:
            continue
        seen = stamp
        try:
            config = await asyncio.to_thread(NodeConfig.load, node.config.node_dir)
        except ConfigError as exc:
            log.error("node.toml changed but cannot be used; the previous policy stays: %s", exc)
            continue
        stale = [k for k in _RESTART_KEYS if getattr(config, k) != getattr(node.config, k)]
        changed = sorted(
            name
            for name in {*config.peers, *node.config.peers}
            if config.peers.get(name) != node.config.peers.get(name)
        )
        node.config = config
        log.info(
            "node.toml reloaded: peers changed: %s%s",
            ", ".join(changed) or "none",
            f"; {', '.join(stale)} apply after a restart" if stale else "",
        )
