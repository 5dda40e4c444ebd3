"""The notification outbox in the store: queued by `SessionRecord.complete` in the hit's own
transaction (one row per new hit and webhook), claimed with a lease, settled, summarised,
and erased with its hit."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from crypto.batch import BatchRunner
from node.data import outbox
from node.sessions.erasure import drop_list, expire_records, remove_record
from node.sessions.records import SessionRecord
from node.setup.config import NodeConfig, Webhook, write_config
from node.setup.context import NodeContext
from tests.conftest import MakeNode, RunCli

A, B = "https://a.example/hook", "http://127.0.0.1:9/b"
T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
WATCH = "ref,email,iban,label\nW1,w1@example.org,,case W1\nW2,w2@example.org,,case W2\n"


def _context(config: NodeConfig, webhooks: tuple[Webhook, ...]) -> NodeContext:
    config = dataclasses.replace(config, webhooks=webhooks)
    write_config(config)
    node = NodeContext.load(config.node_dir, BatchRunner())
    node.now = lambda: T0
    return node


@pytest.fixture
def config(make_node: MakeNode, run_cli: RunCli, tmp_path: Path) -> NodeConfig:
    config = make_node()
    (tmp_path / "watch.csv").write_text(WATCH)
    run_cli("ingest", config.node_dir, "--list", "watch", tmp_path / "watch.csv", check=True)
    return config


def _session(node: NodeContext, n: int, hits: list[dict[str, Any]]) -> None:
    record = SessionRecord(
        node, f"{n:032x}", "police-nl", "responder", "mutual", "x25519-blake3", "watch",
        "targets", "test", "pytest",
    )  # fmt: skip
    record.start(2)
    record.complete(len(hits), 3, hits)


def _rows(node: NodeContext) -> list[tuple[Any, ...]]:
    return (
        node.store()
        .conn.execute(
            "SELECT h.ref, h.peer_label, o.url, o.attempts, o.next_attempt_at, o.delivered_at "
            "FROM outbox o JOIN hits h ON h.id = o.hit_id ORDER BY o.id"
        )
        .fetchall()
    )


W1 = {"ref": "W1", "type": "email", "peer_label": "their case 1"}
W2 = {"ref": "W2", "type": "email", "peer_label": None}


def test_each_new_hit_is_queued_once_per_webhook(config: NodeConfig) -> None:
    node = _context(config, (Webhook(A, "sa"), Webhook(B, "sb")))
    _session(node, 1, [W1, W2])
    due = outbox.stamp(T0)
    assert _rows(node) == [
        ("W1", "their case 1", A, 0, due, None),
        ("W2", "", A, 0, due, None),
        ("W1", "their case 1", B, 0, due, None),
        ("W2", "", B, 0, due, None),
    ]
    _session(node, 2, [W1, W2])  # seen again: nothing new to notify
    assert len(_rows(node)) == 4
    _session(node, 3, [{**W1, "peer_label": "their new case"}])  # a new label is a new hit
    assert [r[:3] for r in _rows(node)[4:]] == [("W1", "their new case", A)] + [
        ("W1", "their new case", B)
    ]


def test_no_webhook_no_row_and_later_webhooks_get_no_old_hit(config: NodeConfig) -> None:
    node = _context(config, ())
    _session(node, 1, [W1])
    assert _rows(node) == []
    node.config = dataclasses.replace(node.config, webhooks=(Webhook(A, "sa"),))
    _session(node, 2, [W1, W2])  # W1 is seen again, W2 is new
    assert [r[:3] for r in _rows(node)] == [("W2", "", A)]


def test_claim_lease_failure_delivery_and_summary(config: NodeConfig) -> None:
    node = _context(config, (Webhook(A, "sa"), Webhook(B, "sb")))
    _session(node, 1, [W1, W2])
    store, conn = node.store(), node.store().conn
    assert outbox.has_due(conn, A, T0) and not outbox.has_due(conn, A, T0 - dt.timedelta(1))
    first = outbox.claim(store, A, T0, lease_seconds=60, limit=1)
    assert [(d.url, d.hit["ref"], d.attempts) for d in first] == [(A, "W1", 0)]
    assert first[0].hit["peer_label"] == "their case 1" and first[0].hit["status"] == "new"
    second = outbox.claim(store, A, T0, lease_seconds=60, limit=5)  # the lease keeps W1 out
    assert [d.hit["ref"] for d in second] == ["W2"]
    assert outbox.claim(store, A, T0, lease_seconds=60, limit=5) == []
    assert not outbox.has_due(conn, A, T0)
    retry = T0 + dt.timedelta(seconds=2)
    assert outbox.record_failure(conn, first[0].outbox_id, "answered HTTP 503\n x", retry)
    assert outbox.mark_delivered(conn, second[0].outbox_id, T0)
    assert not outbox.mark_delivered(conn, second[0].outbox_id, T0)  # once
    assert [d.hit["ref"] for d in outbox.claim(store, A, retry, 60, 5)] == ["W1"]
    outbox.release(conn, {first[0].outbox_id}, retry)  # serve stopped before sending it
    summary = {s["url"]: s for s in outbox.summary(conn, [A, B, "https://new.example/"])}
    assert summary[A] == {
        "url": A,
        "pending": 1,
        "delivered": 1,
        "failing": 1,
        "oldest_pending": {
            "hit_id": first[0].hit_id,
            "queued_at": outbox.stamp(T0),
            "attempts": 1,
            "last_error": "answered HTTP 503 x",
            "next_attempt_at": outbox.stamp(retry),
        },
    }
    assert (summary[B]["pending"], summary[B]["failing"]) == (2, 0)
    assert summary["https://new.example/"]["pending"] == 0
    assert summary["https://new.example/"]["oldest_pending"] is None


def test_an_erased_hit_takes_its_undelivered_rows(config: NodeConfig) -> None:
    node = _context(config, (Webhook(A, "sa"),))
    _session(node, 1, [W1, W2, {**W2, "peer_label": "later label"}])
    remove_record(node, node.store(), "watch", "W1", "court order 1", "pytest")
    assert [r[0] for r in _rows(node)] == ["W2", "W2"]
    # Retention: W2 was last stored 40 days ago, the node keeps records 30.
    node.config = dataclasses.replace(node.config, retain_days=30)
    old = outbox.stamp(T0 - dt.timedelta(days=40))[:19] + "+00:00"
    node.store().conn.execute("UPDATE records SET stored_at = ? WHERE ref = 'W2'", (old,))
    (done,) = expire_records(node, node.store())
    assert done.erased.hits == 2 and _rows(node) == []
    _session(node, 2, [W2])  # found again after erasure: a new hit, queued again
    assert [r[0] for r in _rows(node)] == ["W2"]
    drop_list(node, node.store(), "watch", "court order 2", "pytest")
    assert _rows(node) == []
    assert node.store().conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
