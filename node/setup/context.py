"""What a running node needs in every session: its config, executor, audit key, clock, store."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.batch import BatchRunner
from node.data import audit
from node.data.store import Store
from node.setup.config import NodeConfig

__all__ = ["NodeContext"]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class NodeContext:
    """A loaded node: config, batch runner, audit signing key, and an injectable clock."""

    config: NodeConfig
    runner: BatchRunner
    audit_key: Ed25519PrivateKey
    now: Callable[[], dt.datetime] = field(default=_utc_now)
    _stores: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def load(cls, node_dir: str | os.PathLike[str], runner: BatchRunner) -> NodeContext:
        """Loads the node in `node_dir`, or raises ConfigError / NotFound saying what is missing."""
        config = NodeConfig.load(node_dir)
        return cls(config, runner, audit.load_signing_key(config.audit_key))

    def open_store(self) -> Store:
        """Opens a new store connection; the caller closes it."""
        return Store.open(self.config.node_dir)

    def store(self) -> Store:
        """The calling thread's store connection, opened on first use and kept (blocking)."""
        store: Store | None = getattr(self._stores, "store", None)
        if store is None:
            store = self._stores.store = self.open_store()
        return store
