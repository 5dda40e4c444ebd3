"""Hits as records, end to end: two real `blindmatch serve` nodes run twenty mutual sessions
over the same lists, in both directions and some at once; each side keeps one hit per
record, element type and peer label, seen by all twenty; then an analyst lists and
acknowledges them through the CLI, and the audit log holds both (issue 12)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.federation import Federation, port_is_free

CUSTOMS = """ref,iban,phone,label
C1,NL91ABNA0417164300,,customs case C1
C2,,+31612345678,
C3,DE89370400440532013000,,customs case C3
"""
POLICE = """ref,iban,phone,label
P1,NL91 ABNA 0417 1643 00,06-12345678,police op TULIP
P9,GB82WEST12345698765432,,police other
"""
SESSIONS = 20
# (ref, type, peer label) of what each side finds: P1 matches C1's IBAN and C2's phone.
CUSTOMS_FINDS = {("C1", "iban", "police op TULIP"), ("C2", "phone", "police op TULIP")}
POLICE_FINDS = {("P1", "iban", "customs case C1"), ("P1", "phone", None)}
# What the stores hold that no audit entry may.
NEVER_AUDITED = ["C1", "C2", "P1", "customs case", "police op", "checked with TULIP"]


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path)
    try:
        fed.add_node("customs-nl")
        fed.add_node("police-nl")
        fed.add_peer("customs-nl", "police-nl", "--release-labels")
        fed.add_peer("police-nl", "customs-nl", "--release-labels")
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        fed.ingest("police-nl", "targets", POLICE)
        fed.start("customs-nl")
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def _session(fed: Federation, n: int) -> dict[str, Any]:
    """Session `n`: even ones customs-nl asks, odd ones police-nl asks."""
    if n % 2:
        return dict(fed.match("police-nl", "customs-nl", "targets", "seizures", purpose=f"s{n}"))
    return dict(fed.match("customs-nl", "police-nl", "seizures", "targets", purpose=f"s{n}"))


def _key(hit: dict[str, Any]) -> tuple[str, str, str | None]:
    return hit["ref"], hit["type"], hit["peer_label"]


def _audit(fed: Federation, agency: str) -> list[dict[str, Any]]:
    """Every audit entry of `agency` as {"event", **its body}, read from its store."""
    conn = sqlite3.connect(fed.node(agency) / "store.sqlite")
    try:
        rows = conn.execute("SELECT event, body FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [{"event": event, **json.loads(body)} for event, body in rows]


def test_twenty_sessions_leave_one_hit_each_then_ack(fed: Federation) -> None:
    # Three at a time (under each peer's max_concurrent): both stores take concurrent writers.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda n: _session(fed, n), range(SESSIONS)))
    assert [r["match_count"] for r in results] == [2] * SESSIONS
    count = fed.match("customs-nl", "police-nl", "seizures", "targets", mode="count")
    assert count["match_count"] == 2  # a count session records no hit: nothing changes below

    for agency, peer, list_name, finds in (
        ("customs-nl", "police-nl", "seizures", CUSTOMS_FINDS),
        ("police-nl", "customs-nl", "targets", POLICE_FINDS),
    ):
        hits = fed.hits(agency, "--new")
        assert {_key(h) for h in hits} == finds and len(hits) == len(finds)
        for h in hits:
            assert (h["peer"], h["list"], h["mode"], h["status"]) == (
                peer,
                list_name,
                "mutual",
                "new",
            )
            assert h["sessions"] == SESSIONS
            assert h["role"] in ("initiator", "responder")
            assert h["first_seen"] <= h["last_seen"]
        # Each hit was new in exactly one of the twenty sessions' records on each side.
        ended = ("session.initiated", "session.answered")
        done = [e for e in _audit(fed, agency) if e["event"] in ended]
        assert len(done) == SESSIONS + 1  # and the count session, recorded with no hit
        assert sum(e["new_hits"] for e in done) == len(finds)

    filters = ("--new", "--peer", "police-nl", "--list", "seizures", "--since", "2026-01-01")
    c1, c2 = sorted(fed.hits("customs-nl", *filters), key=_key)
    assert (c1["ref"], c2["ref"]) == ("C1", "C2")
    acked = json.loads(
        fed.cli(
            "hits", "ack", fed.node("customs-nl"), c1["id"], "--by", "J. de Vries",
            "--note", "checked with TULIP", "--json",
        ).stdout
    )  # fmt: skip
    assert (acked["id"], acked["status"], acked["acknowledged_by"]) == (
        c1["id"],
        "acknowledged",
        "J. de Vries",
    )
    assert [h["id"] for h in fed.hits("customs-nl", "--new")] == [c2["id"]]
    assert [h["id"] for h in fed.hits("customs-nl")] == [c2["id"], c1["id"]]  # new first
    again = fed.cli("hits", "ack", fed.node("customs-nl"), c1["id"], "--by", "someone", check=False)
    assert again.returncode == 1 and "already acknowledged by J. de Vries" in again.stderr

    # Another session finds it again: counted, and it stays acknowledged.
    _session(fed, 0)
    [seen] = [h for h in fed.hits("customs-nl") if h["id"] == c1["id"]]
    assert (seen["status"], seen["sessions"]) == ("acknowledged", SESSIONS + 1)

    addresses = dict(fed.addresses)
    for agency in ("customs-nl", "police-nl"):
        assert fed.stop(agency) == 0
        assert port_is_free(addresses[agency])
        entries = _audit(fed, agency)
        viewed = [e for e in entries if e["event"] == "hits.viewed"]
        assert viewed and all(set(e) >= {"operator", "new_only", "count"} for e in viewed)
        text = json.dumps(entries)
        assert not [s for s in NEVER_AUDITED if s in text]
        assert "audit log intact" in fed.cli("audit", "verify", fed.node(agency)).stdout
    [ack] = [e for e in _audit(fed, "customs-nl") if e["event"] == "hit.acknowledged"]
    assert ack == {
        "event": "hit.acknowledged",
        "operator": ack["operator"],
        "by": "J. de Vries",
        "hit_id": c1["id"],
        "peer": "police-nl",
        "list": "seizures",
        "type": c1["type"],
        "note_chars": len("checked with TULIP"),
    }
