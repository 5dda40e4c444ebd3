"""A peer that stalls: a real TCP listener on loopback that accepts connections and never answers.

A node calling it gets through TCP but never through the TLS handshake, so its
session makes no progress at all: what a hung partner looks like on the wire.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

__all__ = ["SilentPeer"]


class SilentPeer:
    """Listens on 127.0.0.1 (a free port) and holds every connection open, silent, until closed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # read nothing, write nothing

    def __enter__(self) -> SilentPeer:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()
