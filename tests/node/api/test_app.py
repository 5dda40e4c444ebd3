"""The API app in-process (httpx's ASGI transport), for what a real node cannot be made to do
on demand: a screening service that fails with a bug (500 JSON, logged, audited), one that
refuses a field (422 naming it), and an audit log that cannot be written (503, not answered)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from crypto.batch import BatchRunner
from node.api.app import create_app
from node.api.gate import AccessLog
from node.data import users
from node.data.store import Store, utc_now
from node.errors import InvalidInput, StoreBusy
from node.setup.config import NodeConfig
from node.setup.context import NodeContext

REQUEST = {"purpose": "a test", "identifiers": [{"type": "phone", "value": "+31612345678"}]}


@dataclass
class Hit:
    index: int
    type: str
    peer: str
    list: str
    peer_label: str | None


@dataclass
class Outcome:
    hits: list[Hit] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)


class FakeScreening:
    def __init__(self, answer: Outcome | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    async def screen(
        self,
        identifiers: list[dict[str, Any]],
        targets: list[tuple[str, str]] | None,
        purpose: str,
        operator: str,
    ) -> Outcome:
        self.calls.append((identifiers, targets, purpose, operator))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _token(config: NodeConfig) -> str:
    token = users.new_token()
    with Store.open(config.store_path) as store, store.transaction() as conn:
        users.add_user(conn, "Ana Lyst", "analyst", users.hash_token(token), utc_now(), "test")
    return token


def _call(config: NodeConfig, live: FakeScreening, body: Any = REQUEST) -> httpx.Response:
    node = NodeContext.load(config.node_dir, BatchRunner())
    token = _token(config)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(node, live), client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post(
                "/v1/screen", json=body, headers={"Authorization": f"Bearer {token}"}
            )

    return asyncio.run(run())


def _last_access(config: NodeConfig) -> dict[str, Any]:
    conn = sqlite3.connect(config.store_path)
    try:
        (body,) = conn.execute(
            "SELECT body FROM audit WHERE event = 'api.request' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    entry: dict[str, Any] = json.loads(body)
    return entry


def test_a_screening_answers_its_hits(node: NodeConfig) -> None:
    live = FakeScreening(Outcome([Hit(0, "phone", "police-nl", "targets", "op TULIP")]))
    answer = _call(node, live, {**REQUEST, "targets": [{"peer": "police-nl", "list": "targets"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "hits": [
            {"index": 0, "type": "phone", "peer": "police-nl", "list": "targets",
             "peer_label": "op TULIP"}
        ],
        "errors": [],
    }  # fmt: skip
    [(identifiers, targets, purpose, operator)] = live.calls
    assert identifiers == REQUEST["identifiers"] and targets == [("police-nl", "targets")]
    assert (purpose, operator) == ("a test", "Ana Lyst")
    entry = _last_access(node)
    assert entry == {
        "operator": "Ana Lyst",
        "role": "analyst",
        "method": "POST",
        "route": "/v1/screen",
        "status": 200,
        "client": "127.0.0.1",
        "purpose": "a test",
    }


def test_a_refused_field_is_422_naming_it(node: NodeConfig) -> None:
    live = FakeScreening(InvalidInput("identifiers[0].value: not a phone number"))
    answer = _call(node, live)
    assert answer.status_code == 422
    assert answer.json() == {
        "error": {"kind": "invalid_input", "message": "identifiers[0].value: not a phone number"}
    }


def test_a_bug_is_a_logged_500_json_error_and_audited(
    node: NodeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    answer = _call(node, FakeScreening(RuntimeError("boom at line 7")))
    assert answer.status_code == 500
    assert answer.json()["error"]["kind"] == "internal_error"
    assert "boom" not in answer.text  # the detail stays in the node's log
    assert "boom at line 7" in caplog.text
    assert _last_access(node)["status"] == 500


def test_an_unwritable_audit_log_means_no_answer(
    node: NodeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(self: AccessLog, fields: dict[str, Any]) -> None:
        raise StoreBusy("the store is locked")

    monkeypatch.setattr(AccessLog, "_append_blocking", busy)
    live = FakeScreening(Outcome([Hit(0, "phone", "police-nl", "targets", "op TULIP")]))
    answer = _call(node, live)
    assert answer.status_code == 503
    assert answer.json()["error"]["kind"] == "unavailable"
    assert "TULIP" not in answer.text
