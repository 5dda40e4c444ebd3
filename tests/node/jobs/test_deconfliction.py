"""Deconfliction as a service, end to end (issue 13): four real `blindmatch serve` processes
over real mTLS, each notifying its agency's webhook on a real HTTP receiver that checks the
HMAC of every delivery.

customs-nl ingests its operations list while all four serve; its own serve sweeps every
allowed peer within a minute (default poll). A person shared with police-nl, a phone shared
with border-be and an event 400 m from one of customs-de's, in overlapping hours, are
found; customs-de's event 6 km away and border-be's event at the same place a week later
are not. Both sides of each conflict get exactly one delivery per new hit. A repeat sweep
queues nothing. customs-de's receiver is down at first: its deliveries wait, survive a
restart of its serve, and arrive once the receiver is up.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.jobs.sweeps import PURPOSE
from tests.federation import Federation, free_port
from tests.node.rpc.peer_wire import audit_entries, federation, wait_for
from tests.webhook_receiver import Receiver

CUSTOMS, POLICE, BORDER, GERMANY = "customs-nl", "police-nl", "border-be", "customs-de"
PARTNERS = (POLICE, BORDER, GERMANY)
AGENCIES = (CUSTOMS, *PARTNERS)
LIST = "ops"
SECRETS = {f"/{a}": f"{a}-webhook-secret" for a in AGENCIES}
SWEEP_WITHIN = 60.0  # the promise, with the default 10 s poll
DELIVERED_WITHIN = 60.0

DAY = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).date().isoformat()
NEXT_WEEK = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).date().isoformat()
DAM = (52.3731, 4.8926)  # Amsterdam, Dam square
HEADER = "ref,name,dob,phone,lat,lon,radius_m,start,end,label\n"
# 0.0036° of latitude is 400 m; 0.054° is 6.0 km.
CUSTOMS_OPS = HEADER + (
    f"C1,Jan de Vries,1980-04-12,,,,,,,customs op MARLIN\n"
    f"C2,,,+31 6 1234 5678,,,,,,customs op MARLIN\n"
    f"C3,,,,{DAM[0]},{DAM[1]},200,{DAY}T08:00Z,{DAY}T14:00Z,customs op ORCA\n"
    f"C4,Piet Jansen,1975-01-01,,,,,,,customs op other\n"
)
POLICE_LABEL = "police op TULIP (+31 70 000 0000)"
POLICE_OPS = (
    HEADER + f"P1,JAN DE VRIES,12.04.1980,,,,,,,{POLICE_LABEL}\nP2,,,+31 6 9999 0000,,,,,,\n"
)
BORDER_OPS = HEADER + (
    f"B1,,,0612345678,,,,,,border op DUNE\n"
    f"B2,,,,{DAM[0]},{DAM[1]},200,{NEXT_WEEK}T08:00Z,{NEXT_WEEK}T14:00Z,border next week\n"
)
GERMANY_OPS = HEADER + (
    f"D1,,,,{DAM[0] + 0.0036},{DAM[1]},200,{DAY}T12:00Z,{DAY}T18:00Z,Zoll op ELBE\n"
    f"D2,,,,{DAM[0] + 0.054},{DAM[1]},200,{DAY}T08:00Z,{DAY}T14:00Z,Zoll 6 km away\n"
)
EXPECTED = {  # (agency, peer, local ref, type) of every conflict, both sides
    (CUSTOMS, POLICE, "C1", "person"),
    (CUSTOMS, POLICE, "C1", "person_year"),
    (POLICE, CUSTOMS, "P1", "person"),
    (POLICE, CUSTOMS, "P1", "person_year"),
    (CUSTOMS, BORDER, "C2", "phone"),
    (BORDER, CUSTOMS, "B1", "phone"),
    (CUSTOMS, GERMANY, "C3", "event"),
    (GERMANY, CUSTOMS, "D1", "event"),
}


def _outbox(fed: Federation, agency: str) -> list[tuple[int, int, bool]]:
    """(hit id, attempts, delivered) of every outbox row of `agency`."""
    path = fed.node(agency) / "store.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT hit_id, attempts, delivered_at IS NOT NULL FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [(int(h), int(a), bool(d)) for h, a, d in rows]


def _delivered(fed: Federation, agency: str) -> bool:
    rows = _outbox(fed, agency)
    return bool(rows) and all(done for *_, done in rows)


@pytest.fixture
def fed() -> Iterator[Federation]:
    with federation("deconfliction") as fed:
        for agency in AGENCIES:
            fed.add_node(agency, region="DE" if agency == GERMANY else "NL")
        for partner in PARTNERS:
            fed.add_peer(CUSTOMS, partner, "--release-labels", "--lists", LIST)
            fed.add_peer(partner, CUSTOMS, "--release-labels", "--lists", LIST)
        for agency, rows in ((POLICE, POLICE_OPS), (BORDER, BORDER_OPS), (GERMANY, GERMANY_OPS)):
            fed.ingest(agency, LIST, rows, "--kind", "operations")
        yield fed


def _hook(fed: Federation, agency: str, url: str) -> None:
    webhook = {"url": url, "secret": SECRETS[f"/{agency}"]}
    fed.configure(agency, notify_retry_seconds=1, notify={"webhook": [webhook]})


def test_an_ingest_is_swept_with_every_partner_and_both_sides_are_notified_once(
    fed: Federation,
) -> None:
    germany_port = free_port()  # customs-de's receiver: nothing listens there yet
    with Receiver(SECRETS) as receiver:
        for agency in (CUSTOMS, POLICE, BORDER):
            _hook(fed, agency, receiver.url(f"/{agency}"))
        _hook(fed, GERMANY, f"http://127.0.0.1:{germany_port}/{GERMANY}")
        for agency in AGENCIES:
            fed.start(agency)

        started = time.monotonic()
        fed.ingest(CUSTOMS, LIST, CUSTOMS_OPS, "--kind", "operations")

        def swept() -> bool:
            done = audit_entries(fed.node(CUSTOMS), ("session.initiated",))
            return {e["peer"] for e in done} == set(PARTNERS)

        wait_for(swept, SWEEP_WITHIN, "customs-nl's serve to sweep ops with its three partners")
        assert time.monotonic() - started < SWEEP_WITHIN
        for entry in audit_entries(fed.node(CUSTOMS), ("session.initiated",)):
            assert (entry["purpose"], entry["mode"], entry["operator"]) == (
                PURPOSE,
                "mutual",
                "node",
            )
        # Exactly the conflicts, on both sides: not the event 6 km away, not next week's.
        wait_for(
            lambda: all(fed.hits(a) for a in AGENCIES), 30, "the responders to record their hits"
        )
        hits = {a: {h["id"]: h for h in fed.hits(a)} for a in AGENCIES}
        found = {(a, h["peer"], h["ref"], h["type"]) for a in AGENCIES for h in hits[a].values()}
        assert found == EXPECTED
        labels = {h["ref"]: h["peer_label"] for h in hits[CUSTOMS].values()}
        assert labels == {"C1": POLICE_LABEL, "C2": "border op DUNE", "C3": "Zoll op ELBE"}

        # One delivery per new hit, signed, with the hit's fields: customs-nl, police-nl, border-be.
        def answered() -> bool:
            return all(_delivered(fed, a) for a in (CUSTOMS, POLICE, BORDER))

        wait_for(answered, DELIVERED_WITHIN, "the deliveries to three receivers")
        for agency in (CUSTOMS, POLICE, BORDER):
            got = receiver.accepted(f"/{agency}")
            assert sorted(int(r.delivery) for r in got) == sorted(hits[agency]), agency
            for r in got:
                hit = hits[agency][int(r.delivery)]
                assert r.signed, f"bad signature on a delivery to {agency}"
                assert r.body["hit_id"] == hit["id"] and r.body["node"] == agency
                for key in ("list", "ref", "type", "peer", "peer_label", "first_seen"):
                    assert r.body[key] == hit[key], key
                assert r.body["next_step"].startswith(f"contact {hit['peer']} ")
        assert len(receiver.all()) == len(receiver.accepted())  # none sent twice, none refused

        # customs-de's receiver is down: its delivery is tried, kept, and survives a restart.
        wait_for(
            lambda: [a >= 2 for _, a, _ in _outbox(fed, GERMANY)] == [True],
            DELIVERED_WITHIN,
            "two failed attempts to customs-de's receiver",
        )
        fed.stop(GERMANY)
        status = json.loads(fed.cli("status", fed.node(GERMANY), "--json").stdout)
        (pending,) = status["notifications"]
        assert (pending["pending"], pending["delivered"]) == (1, 0)

        # A repeat sweep finds the same conflicts: sessions counted, nothing new queued.
        queued = {a: len(_outbox(fed, a)) for a in AGENCIES}
        fed.start(GERMANY)
        proc = fed.cli("sweep", fed.node(CUSTOMS), "--purpose", "weekly check", "--json")
        results = json.loads(proc.stdout)
        counts = {r["peer"]: (r["match_count"], r["error"]) for r in results}
        assert counts[POLICE] == (2, None) and counts[BORDER] == (1, None)  # elements shared
        assert counts[GERMANY][0] >= 1 and counts[GERMANY][1] is None  # cells x slots shared
        for partner in PARTNERS:
            wait_for(
                lambda p=partner: {h["sessions"] for h in fed.hits(p)} == {2},  # type: ignore[misc]
                30,
                f"{partner} to record the repeat session",
            )
        assert {h["sessions"] for h in fed.hits(CUSTOMS)} == {2}
        assert {a: len(_outbox(fed, a)) for a in AGENCIES} == queued

        with Receiver(SECRETS, port=germany_port) as germany:
            wait_for(lambda: _delivered(fed, GERMANY), DELIVERED_WITHIN, "customs-de's delivery")
            (got,) = germany.all()
            assert got.signed and int(got.delivery) == next(iter(hits[GERMANY]))
            assert (got.body["ref"], got.body["type"], got.body["peer_label"]) == (
                "D1",
                "event",
                "customs op ORCA",
            )
        assert len(receiver.all()) == sum(len(hits[a]) for a in (CUSTOMS, POLICE, BORDER))
        for agency in AGENCIES:
            fed.stop(agency)


def test_the_receiver_checks_signatures(tmp_path: Path) -> None:
    """The receiver this test relies on tells a bad signature from a good one."""
    import hashlib
    import hmac

    import httpx

    body = json.dumps({"hit_id": 1}).encode()
    good = "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
    with Receiver({"/x": "s"}) as rx:
        for signature in (good, "sha256=" + "0" * 64):
            httpx.post(
                rx.url("/x"),
                content=body,
                headers={"X-Blindmatch-Signature": signature, "X-Blindmatch-Delivery": "1"},
            )
    assert [r.signed for r in rx.all()] == [True, False]
