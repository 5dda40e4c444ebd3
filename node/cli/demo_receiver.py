"""The demo's webhook receiver: each agency's case system, as a few lines of `http.server`.

It listens on 127.0.0.1 (a free port) in a thread. Each agency has its own path
(``/AGENCY``) and its own random secret, written into that node's
``[[notify.webhook]]``. For every POST it does what docs/NOTIFICATIONS.md asks of
a receiver: it checks ``X-Blindmatch-Signature`` (``sha256=`` and the hex
HMAC-SHA256 of the raw body under the secret) in constant time *before* parsing
the body, and deduplicates on ``X-Blindmatch-Delivery`` (the hit id; delivery is
at least once). A verified delivery is answered 204, a repeat of one too; a bad
signature 401 (the node will retry it), an unknown path 404. Use it as a context
manager: leaving it shuts the server down and joins its thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Delivery", "Receiver", "verified"]

MAX_BODY = 1 << 20
"""Largest body read; a notification is well under a kilobyte."""


def verified(secret: str, body: bytes, header: str) -> bool:
    """Whether `header` is the signature of the raw `body` under `secret`."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


@dataclass(frozen=True)
class Delivery:
    """One notification as received: for which agency, its delivery id and its checked body."""

    agency: str
    delivery: str
    body: dict[str, Any] | None
    """The parsed JSON body; None when the signature did not check out (never parsed)."""
    signature_ok: bool


class Receiver:
    """A webhook receiver for `agencies` on 127.0.0.1; configure nodes with `url` and `secret`."""

    def __init__(self, agencies: Iterable[str]) -> None:
        self._secrets = {agency: secrets.token_hex(32) for agency in agencies}
        self._first: dict[tuple[str, str], Delivery] = {}  # first verified one per delivery id
        self._bad: list[Delivery] = []
        self._repeats = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                status = receiver._receive(
                    self.path,
                    self.headers.get("X-Blindmatch-Signature", ""),
                    self.headers.get("X-Blindmatch-Delivery", ""),
                    self._body(),
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _body(self) -> bytes | None:
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    return None
                return self.rfile.read(length) if 0 <= length <= MAX_BODY else None

            def log_message(self, format: str, *args: Any) -> None:  # the demo prints instead
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo webhook receiver", daemon=True
        )

    def _receive(self, path: str, signature: str, delivery: str, body: bytes | None) -> int:
        """Checks and keeps one request; returns the HTTP status to answer."""
        agency = path.strip("/")
        secret = self._secrets.get(agency)
        if secret is None:
            return 404
        if body is None:
            return 400
        if not verified(secret, body, signature):
            with self._lock:
                self._bad.append(Delivery(agency, delivery, None, False))
            return 401
        try:
            parsed = json.loads(body)
        except ValueError:
            return 400
        with self._lock:
            if (agency, delivery) in self._first:
                self._repeats += 1
            else:
                self._first[(agency, delivery)] = Delivery(agency, delivery, parsed, True)
        return 204

    def url(self, agency: str) -> str:
        """The URL that `agency`'s node delivers to."""
        return f"http://127.0.0.1:{self.port}/{agency}"

    def secret(self, agency: str) -> str:
        """The secret `agency`'s node signs with (never printed)."""
        return self._secrets[agency]

    def deliveries(self) -> list[Delivery]:
        """Every verified delivery, once per (agency, delivery id), in arrival order."""
        with self._lock:
            return list(self._first.values())

    def rejected(self) -> list[Delivery]:
        """Every request whose signature did not check out."""
        with self._lock:
            return list(self._bad)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
