"""A real HTTP receiver of webhook deliveries for tests: `http.server` on loopback in a thread.

It records every request (path, delivery id, body, whether its signature checks out
with the secret for its path) and answers each with the status `answer(path, delivery,
nth)` chooses (default 200), after `delay(path)` seconds. Use it as a context manager:
leaving it shuts the server down, closes its socket and joins its thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    path: str
    delivery: str
    body: dict[str, Any]
    signed: bool
    content_type: str
    status: int
    at: float


class Receiver:
    """Webhook receiver on 127.0.0.1 (`port` 0: any free port); `url(path)` to configure."""

    def __init__(
        self,
        secrets: Mapping[str, str],
        port: int = 0,
        answer: Callable[[str, str, int], int] | None = None,
        delay: Callable[[str], float] | None = None,
    ) -> None:
        self.secrets = dict(secrets)
        self.answer = answer or (lambda path, delivery, nth: 200)
        self.delay = delay or (lambda path: 0.0)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                secret = receiver.secrets.get(self.path, "")
                expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
                given = self.headers.get("X-Blindmatch-Signature", "")
                delivery = self.headers.get("X-Blindmatch-Delivery", "")
                time.sleep(receiver.delay(self.path))
                with receiver.lock:
                    nth = sum(
                        1
                        for r in receiver.received
                        if (r.path, r.delivery) == (self.path, delivery)
                    )
                    status = receiver.answer(self.path, delivery, nth)
                    receiver.received.append(
                        Received(
                            self.path,
                            delivery,
                            json.loads(raw),
                            bool(secret) and hmac.compare_digest(expected, given),
                            self.headers.get("Content-Type", ""),
                            status,
                            time.monotonic(),
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook receiver")

    def url(self, path: str) -> str:
        """The URL of `path` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self, path: str | None = None) -> list[Received]:
        """The requests answered 2xx (of `path`, if given)."""
        with self.lock:
            return [
                r
                for r in self.received
                if 200 <= r.status < 300 and (path is None or r.path == path)
            ]

    def all(self) -> list[Received]:
        """Every request, whatever it was answered."""
        with self.lock:
            return list(self.received)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
