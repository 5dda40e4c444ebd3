"""`blindmatch hits` and `hits ack` through the real entry point: filters, the --json shape,
the table, every error, and the audit entries of listing and acknowledging."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from node.data.store import Store
from node.setup.config import NodeConfig
from tests.conftest import MakeNode, RunCli

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
HIT_KEYS = [
    "id", "peer", "list", "ref", "type", "peer_label", "role", "mode", "status",
    "first_seen", "last_seen", "sessions",
]  # fmt: skip
# What the store holds that the audit log must never hold.
SECRETS = ["REF-A", "REF-B", "REF-C", "op TULIP", "op DELTA", "the desk said no"]


@pytest.fixture
def node(make_node: MakeNode) -> NodeConfig:
    """customs-nl with police-nl as peer and three hits: A (two sessions), B, C."""
    config = make_node()
    found = [  # session, peer, list, ref, type, peer label, hours after T0
        ("s1", "police-nl", "seizures", "REF-A", "passport", "op TULIP", 0),
        ("s2", "border-be", "seizures", "REF-B", "iban", None, 1),
        ("s3", "police-nl", "other", "REF-C", "phone", "op DELTA", 48),
        ("s4", "police-nl", "seizures", "REF-A", "passport", "op TULIP", 72),
    ]
    with Store.open(config.node_dir) as store:
        for session, peer, list_name, ref, type_, label, hours in found:
            hit = {"ref": ref, "type": type_, "peer_label": label}
            when = T0 + dt.timedelta(hours=hours)
            store.add_hits(session, peer, "initiator", list_name, "mutual", [hit], seen_at=when)
    return config


def hits_json(run_cli: RunCli, node: NodeConfig, *filters: str) -> list[dict[str, Any]]:
    proc = run_cli("hits", node.node_dir, "--json", *filters)
    assert proc.returncode == 0, proc.stderr
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def audit_bodies(node: NodeConfig, event: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(node.node_dir / "store.sqlite")
    try:
        rows = conn.execute("SELECT body FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(body) for (body,) in rows]
    finally:
        conn.close()


def test_hits_json_shape_order_and_filters(run_cli: RunCli, node: NodeConfig) -> None:
    every = hits_json(run_cli, node)
    assert all(list(h) == HIT_KEYS for h in every)
    by_ref = {h["ref"]: h for h in every}
    assert [h["ref"] for h in every] == ["REF-A", "REF-C", "REF-B"]  # latest seen first
    assert by_ref["REF-A"] == {
        "id": by_ref["REF-A"]["id"],
        "peer": "police-nl",
        "list": "seizures",
        "ref": "REF-A",
        "type": "passport",
        "peer_label": "op TULIP",
        "role": "initiator",
        "mode": "mutual",
        "status": "new",
        "first_seen": "2026-03-01T08:00:00+00:00",
        "last_seen": "2026-03-04T08:00:00+00:00",
        "sessions": 2,
    }
    assert by_ref["REF-B"]["peer_label"] is None

    def refs(*filters: str) -> list[str]:
        return [h["ref"] for h in hits_json(run_cli, node, *filters)]

    assert refs("--peer", "police-nl") == ["REF-A", "REF-C"]
    assert refs("--list", "seizures") == ["REF-A", "REF-B"]
    assert refs("--peer", "police-nl", "--list", "other") == ["REF-C"]
    assert refs("--since", "2026-03-02") == ["REF-A", "REF-C"]
    assert refs("--since", "2026-03-01T09:00Z") == ["REF-A", "REF-C", "REF-B"]  # at or after
    assert refs("--since", "2026-03-01T10:00:01+01:00") == ["REF-A", "REF-C"]  # UTC 09:00:01
    assert refs("--since", "2026-03-05") == []
    assert refs("--peer", "nobody-xx") == [] and refs("--list", "nothing") == []

    run_cli("hits", "ack", node.node_dir, str(by_ref["REF-C"]["id"]), "--by", "analyst", check=True)
    assert refs() == ["REF-A", "REF-B", "REF-C"]  # new first
    assert refs("--new") == ["REF-A", "REF-B"]
    assert refs("--new", "--peer", "police-nl") == ["REF-A"]


def test_hits_table_and_hints(run_cli: RunCli, node: NodeConfig) -> None:
    lines = run_cli("hits", node.node_dir, check=True).stdout.splitlines()
    assert lines[0].split() == [
        "id", "status", "peer", "list", "ref", "type", "peer_label", "role", "mode",
        "first", "seen", "(UTC)", "last", "seen", "(UTC)", "sessions",
    ]  # fmt: skip
    assert lines[2].split()[1:] == [
        "new", "police-nl", "seizures", "REF-A", "passport", "op", "TULIP", "initiator",
        "mutual", "2026-03-01", "08:00:00", "2026-03-04", "08:00:00", "2",
    ]  # fmt: skip
    assert lines[-1].startswith("3 hit(s), 3 new; acknowledge one with 'blindmatch hits ack")

    none = run_cli("hits", node.node_dir, "--peer", "nobody-xx", "--list", "nothing", check=True)
    assert none.stdout.startswith("no hits match the filters")
    assert "no peer 'nobody-xx' in node.toml" in none.stdout
    assert "no list 'nothing' on this node" in none.stdout
    known = run_cli("hits", node.node_dir, "--since", "2027-01-01", check=True).stdout
    assert known.strip() == "no hits match the filters"


def test_hits_usage_errors(run_cli: RunCli, node: NodeConfig) -> None:
    for option, value, says in (
        ("--since", "yesterday", "--since 'yesterday' is not an ISO date or time"),
        ("--peer", "Not An Agency!", "--peer"),
        ("--list", "no/such", "--list"),
    ):
        proc = run_cli("hits", node.node_dir, option, value, "--json")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(f"blindmatch: error: {says}") or says in proc.stderr
        assert proc.stderr.count("\n") == 1
        assert "message" in json.loads(proc.stdout)["error"]
    missing = run_cli("hits", node.node_dir.parent / "nowhere")
    assert missing.returncode == 1 and "blindmatch init" in missing.stderr
    assert audit_bodies(node, "hits.viewed") == []  # refused before anything was read


def test_hits_listing_is_audited_without_what_it_shows(run_cli: RunCli, node: NodeConfig) -> None:
    run_cli("hits", node.node_dir, "--operator", "j.smit", check=True)
    run_cli(
        "hits", node.node_dir, "--new", "--since", "2026-03-02", "--peer", "police-nl",
        "--list", "seizures", "--json", "--operator", "j.smit", check=True,
    )  # fmt: skip
    assert audit_bodies(node, "hits.viewed") == [
        {
            "operator": "j.smit",
            "new_only": False,
            "since": None,
            "peer": None,
            "list": None,
            "count": 3,
        },
        {
            "operator": "j.smit",
            "new_only": True,
            "since": "2026-03-02T00:00:00+00:00",
            "peer": "police-nl",
            "list": "seizures",
            "count": 1,
        },
    ]
    assert "intact" in run_cli("audit", "verify", node.node_dir, check=True).stdout


def test_ack_moves_a_hit_to_acknowledged_and_audits_it(run_cli: RunCli, node: NodeConfig) -> None:
    [hit] = hits_json(run_cli, node, "--peer", "border-be")
    proc = run_cli(
        "hits", "ack", node.node_dir, str(hit["id"]), "--by", "J. de Vries",
        "--note", "the desk said no", "--operator", "j.smit", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    acked = json.loads(proc.stdout)
    assert dt.datetime.fromisoformat(acked.pop("acknowledged_at")).tzinfo is not None
    assert acked == {
        **hit,
        "status": "acknowledged",
        "acknowledged_by": "J. de Vries",
        "note": "the desk said no",
    }
    [entry] = audit_bodies(node, "hit.acknowledged")
    assert entry == {
        "operator": "j.smit",
        "by": "J. de Vries",
        "hit_id": hit["id"],
        "peer": "border-be",
        "list": "seizures",
        "type": "iban",
        "note_chars": len("the desk said no"),
    }
    assert [h["status"] for h in hits_json(run_cli, node, "--peer", "border-be")] == [
        "acknowledged"
    ]
    [other] = hits_json(run_cli, node, "--list", "other")
    text = run_cli("hits", "ack", node.node_dir, str(other["id"]), "--by", "analyst", check=True)
    assert text.stdout.startswith(f"hit {other['id']} (phone in other, found with police-nl)")
    assert "acknowledged by analyst at 20" in text.stdout

    conn = sqlite3.connect(node.node_dir / "store.sqlite")
    try:
        bodies = " ".join(body for (body,) in conn.execute("SELECT body FROM audit"))
    finally:
        conn.close()
    assert not [s for s in SECRETS if s in bodies]
    assert "intact" in run_cli("audit", "verify", node.node_dir, check=True).stdout


def _dump(node_dir: Path) -> list[str]:
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_ack_errors_change_nothing(run_cli: RunCli, node: NodeConfig) -> None:
    first = hits_json(run_cli, node)[0]["id"]
    run_cli("hits", "ack", node.node_dir, str(first), "--by", "analyst", check=True)
    before = _dump(node.node_dir)
    failures = [
        ([str(first), "--by", "someone"], f"hit {first} was already acknowledged by analyst"),
        (["999", "--by", "analyst"], "no hit 999 in"),
        (["2", "--by", "  "], "--by must name the person"),
        (["2", "--by", "x" * 101], "--by must name the person"),
        (["2", "--by", "bad\x1bname"], "--by must name the person"),
        (["2", "--by", "analyst", "--note", "n" * 1_001], "--note must be printable text"),
        (["2", "--by", "analyst", "--note", "bell\x07"], "--note must be printable text"),
    ]
    for args, says in failures:
        proc = run_cli("hits", "ack", node.node_dir, *args, "--json")
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith("blindmatch: error: ") and says in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
        assert json.loads(proc.stdout)["error"]["message"]
    for args in (["x"], ["0"], ["-3"], ["2"]):  # not an id, or no --by: usage errors
        extra = [] if args == ["2"] else ["--by", "analyst"]
        proc = run_cli("hits", "ack", node.node_dir, *args, *extra)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "usage: blindmatch hits ack" in proc.stderr
    assert _dump(node.node_dir) == before
