"""The local API of a real `blindmatch serve`, for end-to-end tests: where it listens, and
requests through real HTTP (httpx) with a user's bearer token."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_until
from tests.federation import Federation

__all__ = ["Api", "ConsoleWorld", "add_user", "api_address", "api_entries"]

_API_LINE = re.compile(r"(\S+) api on (https?://\S+) \(pid (\d+)\)")
TIMEOUT = 30.0


@dataclass
class ConsoleWorld:
    """A served federation whose node's console is at `base`, with one user's `token`."""

    fed: Federation
    base: str
    token: str


def api_address(fed: Federation, agency: str, servers: int = 1) -> str:
    """The base URL `agency`'s serve prints ("AGENCY api on URL"), once `servers` printed it."""
    found: list[str] = []

    def printed() -> bool:
        text = fed.log(agency).read_text(errors="replace")
        found[:] = [m.group(2) for m in _API_LINE.finditer(text) if m.group(1) == agency]
        return len(found) >= servers

    assert wait_until(printed, 30.0, interval=0.05), fed.log(agency).read_text()[-2000:]
    return found[-1]


def add_user(fed: Federation, agency: str, name: str, role: str) -> str:
    """Adds an API user through the CLI; returns its token."""
    proc = fed.cli("user", "add", fed.node(agency), "--name", name, "--role", role, "--json")
    token: str = json.loads(proc.stdout)["token"]
    return token


def api_entries(node_dir: Path, event: str = "api.request") -> list[dict[str, Any]]:
    """The node's audit entries of `event` (body fields), oldest first."""
    conn = sqlite3.connect(node_dir / "store.sqlite", timeout=30)
    try:
        rows = conn.execute("SELECT body FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(body) for (body,) in rows.fetchall()]
    finally:
        conn.close()


class Api:
    """Requests to one node's API as one user (or none)."""

    def __init__(self, base: str, token: str | None, verify: Any = True) -> None:
        self.base = base
        self.token = token
        self.verify = verify

    def as_user(self, token: str | None) -> Api:
        """The same API with another user's token."""
        return Api(self.base, token, self.verify)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        with httpx.Client(base_url=self.base, timeout=TIMEOUT, verify=self.verify) as client:
            return client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


def error_of(response: httpx.Response) -> dict[str, str]:
    """The `{"kind", "message"}` of an error answer (asserting the shape)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"kind", "message"}, body
    error: dict[str, str] = body["error"]
    return error
