"""Webhook notification end to end (issue 13): two real `blindmatch serve` nodes, each with
its own webhook on a real HTTP receiver in this process that checks every signature.

A mutual session's new hits are delivered once each, on both sides; a repeat session
queues nothing; a receiver that is down, then answers 503, still gets every notification
once it comes up, across a restart of serve, and `status` shows the failures meanwhile."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.federation import Federation, free_port
from tests.webhook_receiver import Receiver

CUSTOMS, POLICE = "customs-nl", "police-nl"
CUSTOMS_LIST = """ref,iban,phone,label
C1,NL91ABNA0417164300,,customs case C1
C2,,+31612345678,
C3,DE89370400440532013000,,customs case C3
"""
POLICE_LIST = """ref,iban,phone,label
P1,NL91 ABNA 0417 1643 00,06-12345678,police op TULIP
P9,GB82WEST12345698765432,,police other
"""
SECRETS = {"/customs": "customs-webhook-secret", "/police": "police-webhook-secret"}
PATH = {CUSTOMS: "/customs", POLICE: "/police"}
WAIT = 30.0


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path)
    try:
        fed.add_node(CUSTOMS)
        fed.add_node(POLICE)
        fed.add_peer(CUSTOMS, POLICE, "--release-labels")
        fed.add_peer(POLICE, CUSTOMS, "--release-labels")
        fed.ingest(CUSTOMS, "seizures", CUSTOMS_LIST)
        fed.ingest(POLICE, "targets", POLICE_LIST)
        yield fed
    finally:
        fed.close()


def _hook(fed: Federation, agency: str, url: str) -> None:
    webhook = {"url": url, "secret": SECRETS[PATH[agency]]}
    fed.configure(agency, notify_retry_seconds=1, notify={"webhook": [webhook]})


def _outbox(fed: Federation, agency: str) -> list[tuple[Any, ...]]:
    """(hit id, attempts, delivered, last error) of every outbox row of `agency`."""
    path = fed.node(agency) / "store.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT hit_id, attempts, delivered_at IS NOT NULL, last_error FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def _match(fed: Federation) -> None:
    fed.match(CUSTOMS, POLICE, "seizures", "targets", purpose="notification test")


def _delivered(fed: Federation, agency: str) -> bool:
    rows = _outbox(fed, agency)
    return bool(rows) and all(delivered for _, _, delivered, _ in rows)


def test_new_hits_are_notified_once_on_both_sides(fed: Federation) -> None:
    with Receiver(SECRETS) as receiver:
        for agency in (CUSTOMS, POLICE):
            _hook(fed, agency, receiver.url(PATH[agency]))
            fed.start(agency)
        _match(fed)
        hits = {agency: {h["id"]: h for h in fed.hits(agency)} for agency in (CUSTOMS, POLICE)}
        assert len(hits[CUSTOMS]) == 2 and len(hits[POLICE]) == 2

        def all_answered() -> bool:
            return all(_delivered(fed, agency) for agency in (CUSTOMS, POLICE))

        assert wait_until(all_answered, WAIT), receiver.all()
        for agency in (CUSTOMS, POLICE):
            got = receiver.accepted(PATH[agency])
            assert sorted(int(r.delivery) for r in got) == sorted(hits[agency])  # once each
            for r in got:
                hit = hits[agency][int(r.delivery)]
                assert r.signed and r.content_type == "application/json"
                assert r.body["hit_id"] == hit["id"] and r.body["node"] == agency
                for key in ("list", "ref", "type", "peer", "peer_label", "role", "mode"):
                    assert r.body[key] == hit[key], key
                assert r.body["first_seen"] == hit["first_seen"]
                peer = POLICE if agency == CUSTOMS else CUSTOMS
                assert r.body["next_step"].startswith(f"contact {peer} through the usual channel")
                assert (
                    f"hits ack {fed.node(agency).resolve()} {hit['id']} --by NAME"
                    in (r.body["next_step"])
                )
        assert {r.body["role"] for r in receiver.accepted("/customs")} == {"initiator"}
        assert {r.body["role"] for r in receiver.accepted("/police")} == {"responder"}
        queued = {agency: len(_outbox(fed, agency)) for agency in (CUSTOMS, POLICE)}

        # A repeat session finds the same hits: nothing is queued (rows commit with the hits).
        _match(fed)
        assert {agency: len(_outbox(fed, agency)) for agency in (CUSTOMS, POLICE)} == queued
        # A record that matches later is one new hit a side, and one more delivery each.
        fed.ingest(CUSTOMS, "seizures", "ref,iban\nC4,GB82WEST12345698765432\n")
        _match(fed)
        assert wait_until(lambda: len(receiver.accepted()) == 6 and all_answered(), WAIT)
        assert len(receiver.all()) == 6  # nothing sent twice
        assert [r.body["ref"] for r in receiver.accepted("/customs")][-1] == "C4"
        assert [r.body["ref"] for r in receiver.accepted("/police")][-1] == "P9"
        for agency in (CUSTOMS, POLICE):
            fed.stop(agency)


def _status(fed: Federation, agency: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(fed.cli("status", fed.node(agency), "--json").stdout)
    return report


def test_a_receiver_down_then_failing_gets_everything_across_a_restart(
    fed: Federation,
) -> None:
    port = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}/customs"
    _hook(fed, CUSTOMS, url)
    fed.start(POLICE)
    fed.start(CUSTOMS)
    _match(fed)
    hit_ids = sorted(h["id"] for h in fed.hits(CUSTOMS))

    def tried_twice() -> bool:
        rows = _outbox(fed, CUSTOMS)
        return len(rows) == 2 and all(attempts >= 2 for _, attempts, _, _ in rows)

    assert wait_until(tried_twice, WAIT), _outbox(fed, CUSTOMS)
    fed.stop(CUSTOMS)  # deliveries pending (stopped at once: the next retry is seconds away)
    assert all("cannot connect" in (error or "") for *_, error in _outbox(fed, CUSTOMS))
    status = _status(fed, CUSTOMS)
    (entry,) = status["notifications"]
    assert entry["url"] == url and entry["configured"]
    assert (entry["pending"], entry["delivered"], entry["failing"]) == (2, 0, 2)
    assert "cannot connect" in entry["oldest_pending"]["last_error"]
    assert any(f"notifications to {url} are failing" in w for w in status["warnings"])
    assert SECRETS["/customs"] not in json.dumps(status)
    text = fed.cli("status", fed.node(CUSTOMS)).stdout
    assert url in text and SECRETS["/customs"] not in text

    # The receiver comes up, refusing each delivery's first request with 503.
    with Receiver(SECRETS, port=port, answer=lambda p, d, nth: 503 if nth == 0 else 200) as rx:
        fed.start(CUSTOMS)
        assert wait_until(lambda: _delivered(fed, CUSTOMS), WAIT), (_outbox(fed, CUSTOMS), rx.all())
        assert sorted(int(r.delivery) for r in rx.accepted()) == hit_ids
        assert [r.status for r in rx.all()].count(503) == 2 and len(rx.all()) == 4
        assert all(r.signed for r in rx.all())
        assert all(error is None for *_, error in _outbox(fed, CUSTOMS))
        status = _status(fed, CUSTOMS)
        (entry,) = status["notifications"]
        assert (entry["pending"], entry["delivered"], entry["failing"]) == (0, 2, 0)
        assert not any("notifications" in w for w in status["warnings"])
        fed.stop(CUSTOMS)
    fed.stop(POLICE)
    log = fed.log(CUSTOMS).read_text()
    assert SECRETS["/customs"] not in log and "delivered" in log
