"""Deconfliction sweeps end to end (issue 13): real `blindmatch serve` nodes over real mTLS.

A serving node (two forked servers: one sweeps) sweeps a freshly ingested
operations list with the two peers whose policy allows it, on its own, within
its poll interval; both sides record hits of a mutual session whose audited
purpose is `deconfliction sweep`; peers whose policy allows neither the list nor
the mode are never called. A repeat sweep from the CLI sees the same hits again.
A serving node sweeps again on its own when a record is removed, when a record's
validity window opens (no version changes then), and on schedule: a pair whose
last sweep is `sweep_minutes` old (the test ages the session's record in the
store, as an hour passing would) is swept with nothing changed, while serving
and after a restart. Then `sweep()` in this process, and serve's own sweeps,
against served peers, a peer that refuses (PERMISSION_DENIED), a silent TCP
listener and a closed port: the served peers' results arrive long before the
stalled one is given up, and every failure is one result, not an exception.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from crypto.batch import BatchRunner
from node.jobs.sweeps import PURPOSE, SweepResult, sweep, sweep_on_change_and_schedule
from node.setup.context import NodeContext
from tests.federation import Federation, free_port
from tests.node.rpc.peer_wire import audit_entries, federation, session_statuses, wait_for
from tests.silent_peer import SilentPeer

CUSTOMS, POLICE, BORDER = "customs-nl", "police-nl", "border-be"
COUNT_ONLY, OTHER_LISTS = "coast-de", "tax-fr"  # peers customs-nl must never sweep with
REFUSER = "guard-pl"  # allowed by customs-nl; its own policy allows customs-nl no ops list
STALLED, DOWN = "stalled-xx", "down-yy"
LIST = "ops-2026"
OURS = """ref,iban,phone,label
O1,NL91ABNA0417164300,,op NIGHTJAR
O2,,+31612345678,op NIGHTJAR
O3,GB82WEST12345698765432,,op HERON
"""
WINDOWED = """ref,iban,phone,label,valid_from
O1,NL91ABNA0417164300,,op NIGHTJAR,
O2,,+31612345678,op NIGHTJAR,
O3,GB82WEST12345698765432,,op HERON,
O4,DE89370400440532013000,,op LATER,{opens}
"""
POLICE_OPS = """ref,iban,phone,label
P1,NL91 ABNA 0417 1643 00,,police op TULIP
P2,DE89370400440532013000,,
"""
BORDER_OPS = """ref,iban,phone,label
B1,,06-12345678,border op
B2,GB82WEST12345698765432,,border op 2
"""
SWEEP_WITHIN = 30.0  # seconds from the ingest to both sessions recorded: poll 1 s + two sessions
OPENS_IN = 10  # seconds from an ingest to a record's valid_from: after two sweeps


def _audit_export(fed: Federation, agency: str) -> list[dict[str, Any]]:
    proc = fed.cli("audit", "export", fed.node(agency))
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _sessions_with(entries: list[dict[str, Any]], event: str) -> dict[str, dict[str, Any]]:
    """The entries of `event` (one per session), by peer."""
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        body = json.loads(entry["body"])  # exported as the signed text
        if entry.get("event") == event:
            assert body["peer"] not in found, f"two {event} entries with {body['peer']}"
            found[body["peer"]] = body
    return found


def _add_peer_at(fed: Federation, peer: str, address: str) -> None:
    """Adds to customs-nl a peer at an address that is none of the federation's nodes."""
    fed.cli("peer", "add", fed.node(CUSTOMS), "--agency", peer, "--address", address)


def _add_refuser(fed: Federation) -> None:
    """A served node that customs-nl may sweep with, but whose policy refuses its list."""
    fed.add_node(REFUSER)
    fed.add_peer(CUSTOMS, REFUSER)
    fed.add_peer(REFUSER, CUSTOMS, "--lists", "watch")
    fed.start(REFUSER)


def _initiated(fed: Federation) -> dict[str, int]:
    """How many sessions customs-nl has started with each peer (its audit)."""
    counts: dict[str, int] = {}
    for entry in audit_entries(fed.node(CUSTOMS), ("session.initiated",)):
        counts[entry["peer"]] = counts.get(entry["peer"], 0) + 1
    return counts


def _rows(fed: Federation, agency: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Runs one statement on `agency`'s store (committed), beside its serving processes."""
    db = sqlite3.connect(fed.node(agency) / "store.sqlite", timeout=30)
    try:
        with db:
            return db.execute(query, args).fetchall()
    finally:
        db.close()


def _settled(fed: Federation, police: int, border: int) -> bool:
    """Whether customs-nl has started so many sessions with police-nl and border-be, all ended."""
    rows = _rows(fed, CUSTOMS, "SELECT peer, status FROM sessions WHERE role = 'initiator'")
    peers = [peer for peer, status in rows if status != "running"]
    return len(peers) == len(rows) and (peers.count(POLICE), peers.count(BORDER)) == (
        police,
        border,
    )


def _age_sweeps(fed: Federation, peer: str, minutes: int) -> None:
    """Makes customs-nl's sessions with `peer` look `minutes` older: time passing, to the store."""
    for session_id, started in _rows(
        fed, CUSTOMS, "SELECT id, started_at FROM sessions WHERE peer = ?", peer
    ):
        older = dt.datetime.fromisoformat(started) - dt.timedelta(minutes=minutes)
        _rows(
            fed,
            CUSTOMS,
            "UPDATE sessions SET started_at = ? WHERE id = ?",
            older.isoformat(timespec="seconds"),
            session_id,
        )


def _version(fed: Federation) -> int:
    ((version,),) = _rows(fed, CUSTOMS, "SELECT version FROM lists WHERE name = ?", LIST)
    return int(version)


@pytest.fixture
def fed() -> Iterator[Federation]:
    with federation("sweeps") as fed:
        for agency in (CUSTOMS, POLICE, BORDER, COUNT_ONLY, OTHER_LISTS):
            fed.add_node(agency)
        fed.add_peer(CUSTOMS, POLICE, "--release-labels")
        fed.add_peer(CUSTOMS, BORDER)
        fed.add_peer(CUSTOMS, COUNT_ONLY, "--modes", "count")
        fed.add_peer(CUSTOMS, OTHER_LISTS, "--lists", "watch")
        for agency, rows in ((POLICE, POLICE_OPS), (BORDER, BORDER_OPS)):
            fed.add_peer(agency, CUSTOMS, "--release-labels")
            fed.ingest(agency, LIST, rows, "--kind", "operations")
        fed.configure(CUSTOMS, sweep_poll_seconds=1)
        yield fed


def test_serve_sweeps_a_changed_list_with_allowed_peers_then_cli_repeats(
    fed: Federation,
) -> None:
    for agency in (POLICE, BORDER):
        fed.start(agency)
    fed.start(CUSTOMS, "--workers", "2")
    started = time.monotonic()
    fed.ingest(CUSTOMS, LIST, OURS, "--kind", "operations")

    def swept() -> bool:
        done = audit_entries(fed.node(CUSTOMS), ("session.initiated",))
        return {e["peer"] for e in done} == {POLICE, BORDER}

    wait_for(swept, SWEEP_WITHIN, "serve to sweep ops-2026 with police-nl and border-be")
    assert time.monotonic() - started < SWEEP_WITHIN

    # Each peer swept once: one of the two serving processes sweeps, the other stands by.
    log = fed.log(CUSTOMS).read_text()
    assert log.count("sweeps: this process sweeps") == 1, log
    assert log.count("another serving process of this node sweeps") == 1, log
    assert f"sweep: {LIST} with {POLICE}: 1 shared (session " in log
    assert f"sweep: {LIST} with {BORDER}: 2 shared (session " in log

    # Both sides hold hits of a mutual session.
    ours = fed.hits(CUSTOMS)
    assert {(h["peer"], h["ref"], h["type"]) for h in ours} == {
        (POLICE, "O1", "iban"),
        (BORDER, "O2", "phone"),
        (BORDER, "O3", "iban"),
    }
    assert {(h["mode"], h["role"], h["list"], h["sessions"]) for h in ours} == {
        ("mutual", "initiator", LIST, 1)
    }
    assert {h["peer_label"] for h in ours if h["peer"] == POLICE} == {"police op TULIP"}
    for agency, refs in ((POLICE, {"P1"}), (BORDER, {"B1", "B2"})):
        theirs = fed.hits(agency)
        assert {h["ref"] for h in theirs} == refs
        assert {(h["peer"], h["mode"], h["role"]) for h in theirs} == {
            (CUSTOMS, "mutual", "responder")
        }

    # The audit, as a supervisory authority gets it: the sweep's purpose, on both sides.
    initiated = _sessions_with(_audit_export(fed, CUSTOMS), "session.initiated")
    assert set(initiated) == {POLICE, BORDER}
    for body in initiated.values():
        assert body["purpose"] == PURPOSE and body["operator"] == "node"
        assert body["mode"] == "mutual" and body["list"] == LIST
    for agency in (POLICE, BORDER):
        answered = _sessions_with(_audit_export(fed, agency), "session.answered")
        assert answered[CUSTOMS]["purpose"] == PURPOSE and answered[CUSTOMS]["mode"] == "mutual"

    # A peer whose policy allows not the mode, or not the list, is never called.
    for entry in audit_entries(fed.node(CUSTOMS)):
        if entry["event"].startswith("session."):
            assert entry["peer"] not in (COUNT_ONLY, OTHER_LISTS), entry
    assert COUNT_ONLY not in log and OTHER_LISTS not in log

    # A sweep from the command line: the same hits seen again, none new.
    proc = fed.cli(
        "sweep", fed.node(CUSTOMS), "--purpose", "weekly check", "--operator", "ana", "--json"
    )
    results = json.loads(proc.stdout)
    assert [(r["list"], r["peer"], r["match_count"], r["error"]) for r in results] == [
        (LIST, BORDER, 2, None),
        (LIST, POLICE, 1, None),
    ]
    assert all(set(r) == {"list", "peer", "session_id", "match_count", "error"} for r in results)
    statuses = session_statuses(fed.node(CUSTOMS))
    assert all(statuses[r["session_id"]] == "completed" for r in results)
    again = fed.hits(CUSTOMS)
    assert {h["id"] for h in again} == {h["id"] for h in ours}
    assert {h["sessions"] for h in again} == {2}
    assert {h["sessions"] for h in fed.hits(POLICE)} == {2}
    by_ana = [
        e
        for e in audit_entries(fed.node(CUSTOMS), ("session.initiated",))
        if e["operator"] == "ana"
    ]
    assert {e["purpose"] for e in by_ana} == {"weekly check"} and len(by_ana) == 2

    # The plain output: one line per (list, peer).
    proc = fed.cli("sweep", fed.node(CUSTOMS), "--peer", POLICE, "--purpose", "check")
    assert proc.stdout.splitlines()[0].startswith(f"{LIST} with {POLICE}: 1 shared (session ")
    for agency in (CUSTOMS, POLICE, BORDER):
        fed.stop(agency)


def test_serve_sweeps_again_on_schedule_with_nothing_changed(fed: Federation) -> None:
    for agency in (POLICE, BORDER, CUSTOMS):
        fed.start(agency)
    fed.ingest(CUSTOMS, LIST, OURS, "--kind", "operations")
    wait_for(lambda: _settled(fed, 1, 1), SWEEP_WITHIN, "serve's sweep of the ingest")
    hits = {h["id"]: h for h in fed.hits(CUSTOMS)}
    version = _version(fed)

    # An hour passes for police-nl's pair only: it is swept on schedule, border-be's is not.
    _age_sweeps(fed, POLICE, 61)
    wait_for(lambda: _settled(fed, 2, 1), SWEEP_WITHIN, "a scheduled sweep with police-nl")
    log = fed.log(CUSTOMS).read_text()
    (line,) = [x for x in log.splitlines() if "sweeps: scheduled sweep" in x]
    assert f"(every 60 min): {LIST} with {POLICE} not swept since " in line, line
    assert BORDER not in line
    assert _initiated(fed) == {POLICE: 2, BORDER: 1}
    assert _version(fed) == version  # nothing changed
    again = {h["id"]: h for h in fed.hits(CUSTOMS)}
    assert set(again) == set(hits)  # the same hits, none new
    assert {(h["peer"], h["sessions"]) for h in again.values()} == {(POLICE, 2), (BORDER, 1)}
    assert {h["sessions"] for h in fed.hits(POLICE)} == {2}
    for entry in audit_entries(fed.node(CUSTOMS), ("session.initiated",)):
        assert (entry["purpose"], entry["operator"]) == (PURPOSE, "node")

    # The schedule is the store's: restarted, serve sweeps at once a pair last swept over an
    # hour ago (border-be's, aged now), and not one swept within the hour (police-nl's).
    fed.stop(CUSTOMS)
    _age_sweeps(fed, BORDER, 61)
    fed.start(CUSTOMS)
    wait_for(lambda: _settled(fed, 2, 2), SWEEP_WITHIN, "a scheduled sweep after the restart")
    log = fed.log(CUSTOMS).read_text()
    lines = [x for x in log.splitlines() if "sweeps: scheduled sweep" in x]
    assert len(lines) == 2 and f"{LIST} with {BORDER} not swept since" in lines[1], lines
    assert POLICE not in lines[1]
    assert _initiated(fed) == {POLICE: 2, BORDER: 2}
    assert {h["sessions"] for h in fed.hits(CUSTOMS)} == {2}
    for agency in (CUSTOMS, POLICE, BORDER):
        fed.stop(agency)


def test_serve_sweeps_when_a_record_is_removed_and_when_a_window_opens(fed: Federation) -> None:
    for agency in (POLICE, BORDER, CUSTOMS):
        fed.start(agency)
    # O4 (police-nl's P2) becomes valid later: its window opens after the next two sweeps.
    opens = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=OPENS_IN)
    fed.ingest(CUSTOMS, LIST, WINDOWED.format(opens=opens.isoformat()), "--kind", "operations")
    wait_for(lambda: _settled(fed, 1, 1), SWEEP_WITHIN, "serve's sweep of the ingest")
    refs = {(h["peer"], h["ref"]) for h in fed.hits(CUSTOMS)}
    assert refs == {(POLICE, "O1"), (BORDER, "O2"), (BORDER, "O3")}

    # A record removed: the list is swept again with both peers; O3 is not found again.
    remove = ("records", "remove", fed.node(CUSTOMS), "--list", LIST, "--ref", "O3")
    fed.cli(*remove, "--reason", "operation closed")
    wait_for(lambda: _settled(fed, 2, 2), SWEEP_WITHIN, "serve's sweep of the removal")
    assert dt.datetime.now(dt.UTC) < opens, f"too slow: raise OPENS_IN ({OPENS_IN} s)"
    ours = {(h["peer"], h["ref"]): h for h in fed.hits(CUSTOMS)}
    assert set(ours) == {(POLICE, "O1"), (BORDER, "O2")}
    assert {h["sessions"] for h in ours.values()} == {2}
    theirs = {h["ref"]: h["sessions"] for h in fed.hits(BORDER)}
    assert theirs == {"B1": 2, "B2": 1}  # O3's partner record: seen in the first sweep only
    counts = _rows(
        fed,
        CUSTOMS,
        "SELECT peer, match_count FROM sessions WHERE role = 'initiator' ORDER BY started_at",
    )
    assert sorted(counts[2:]) == [(BORDER, 1), (POLICE, 1)]
    version = _version(fed)

    # O4's window opens: no version changes, yet the list is swept again and O4 is found.
    wait_for(lambda: _settled(fed, 3, 3), OPENS_IN + SWEEP_WITHIN, "a sweep as O4's window opens")
    assert _version(fed) == version
    started = _rows(fed, CUSTOMS, "SELECT max(started_at) FROM sessions WHERE role = 'initiator'")[
        0
    ][0]
    assert started >= opens.isoformat()
    ours = {(h["peer"], h["ref"]): h for h in fed.hits(CUSTOMS)}
    assert set(ours) == {(POLICE, "O1"), (BORDER, "O2"), (POLICE, "O4")}
    assert ours[(POLICE, "O4")]["sessions"] == 1
    assert {h["ref"] for h in fed.hits(POLICE)} == {"P1", "P2"}
    log = fed.log(CUSTOMS).read_text()
    assert f"operations list {LIST} has a record whose validity window opened" in log
    assert "scheduled sweep" not in log
    for agency in (CUSTOMS, POLICE, BORDER):
        fed.stop(agency)


def test_a_stalled_or_refusing_peer_does_not_delay_the_others(fed: Federation) -> None:
    idle = 8
    fed.configure(CUSTOMS, idle_seconds=idle)
    fed.ingest(CUSTOMS, LIST, OURS, "--kind", "operations")
    for agency in (POLICE, BORDER):
        fed.start(agency)
    _add_refuser(fed)
    down = f"127.0.0.1:{free_port()}"  # nothing listens: the peer is down
    with SilentPeer() as silent:
        _add_peer_at(fed, STALLED, silent.address)
        _add_peer_at(fed, DOWN, down)
        node = NodeContext.load(fed.node(CUSTOMS), BatchRunner())
        arrived: list[tuple[float, SweepResult]] = []
        start = time.monotonic()

        def on_result(result: SweepResult) -> None:
            arrived.append((time.monotonic() - start, result))

        results = asyncio.run(
            sweep(node, purpose="stall test", operator="pytest", on_result=on_result)
        )
        assert silent.accepted, "the sweep never reached the silent listener"
    by_peer = {r.peer: r for r in results}
    assert [r.peer for r in results] == sorted(by_peer)  # plan order
    assert by_peer[POLICE].match_count == 1 and by_peer[BORDER].match_count == 2
    assert "unreachable" in (by_peer[DOWN].error or "")
    assert "refused: PERMISSION_DENIED" in (by_peer[REFUSER].error or ""), by_peer[REFUSER]
    assert f"{idle} s" in (by_peer[STALLED].error or ""), by_peer[STALLED]
    when = {r.peer: t for t, r in arrived}
    # The served peers' results, and the refusals, arrive well before the stalled session is
    # given up.
    assert when[POLICE] < idle / 2 and when[BORDER] < idle / 2, arrived
    assert when[DOWN] < idle / 2 and when[REFUSER] < idle / 2, arrived
    assert when[STALLED] >= idle - 0.5, arrived
    assert arrived[-1][1].peer == STALLED
    # Every session is recorded, the stalled one failed (the down peer's too: it started).
    statuses = session_statuses(fed.node(CUSTOMS))
    completed = [r.session_id for r in results if r.ok]
    assert all(s is not None and statuses[s] == "completed" for s in completed)
    failed = audit_entries(fed.node(CUSTOMS), ("session.failed",))
    assert {e["peer"] for e in failed} == {STALLED, DOWN, REFUSER}
    for agency in (POLICE, BORDER, REFUSER):
        fed.stop(agency)


def test_serve_sweeps_are_not_delayed_by_a_stalled_or_refusing_peer(fed: Federation) -> None:
    idle = 8
    fed.configure(CUSTOMS, idle_seconds=idle)
    for agency in (POLICE, BORDER):
        fed.start(agency)
    _add_refuser(fed)
    ended: dict[str, float] = {}  # seconds from the ingest to the end of each peer's session
    with SilentPeer() as silent:
        _add_peer_at(fed, STALLED, silent.address)
        fed.start(CUSTOMS)
        fed.ingest(CUSTOMS, LIST, OURS, "--kind", "operations")
        start = time.monotonic()

        def all_ended() -> bool:
            sessions = "SELECT peer, status FROM sessions WHERE role = 'initiator'"
            for peer, status in _rows(fed, CUSTOMS, sessions):
                if status != "running":
                    ended.setdefault(peer, time.monotonic() - start)
            return set(ended) == {POLICE, BORDER, REFUSER, STALLED}

        wait_for(all_ended, SWEEP_WITHIN + idle, "serve's sweep with four peers", interval=0.1)
        assert silent.accepted, "serve's sweep never reached the silent listener"
    statuses = dict(_rows(fed, CUSTOMS, "SELECT peer, status FROM sessions"))
    assert statuses == {
        POLICE: "completed",
        BORDER: "completed",
        REFUSER: "failed",
        STALLED: "failed",
    }
    # The others are done well before the stalled session is given up.
    assert max(ended[POLICE], ended[BORDER], ended[REFUSER]) < idle / 2, ended
    assert ended[STALLED] >= idle - 1, ended
    log = fed.log(CUSTOMS).read_text()
    assert f"sweep: {LIST} with {POLICE}: 1 shared" in log
    assert f"sweep: {LIST} with {BORDER}: 2 shared" in log
    refused = f"sweep: {LIST} with {REFUSER}: failed: peer {REFUSER} refused: PERMISSION_DENIED"
    stalled = f"sweep: {LIST} with {STALLED}: failed: peer {STALLED} sent nothing for {idle} s"
    for start_of_line in (refused, stalled):
        (line,) = [x for x in log.splitlines() if start_of_line in x]
        assert line.endswith("(failure 1 in a row; retried in 30 s)"), line
    for agency in (CUSTOMS, POLICE, BORDER, REFUSER):
        fed.stop(agency)


def test_serve_job_retries_a_failed_peer_with_backoff_and_sweeps_the_others_once(
    fed: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blindmatch.sweeps")
    fed.start(POLICE)  # border-be is down until later
    node = NodeContext.load(fed.node(CUSTOMS), BatchRunner())

    def initiated() -> dict[str, int]:
        entries = audit_entries(fed.node(CUSTOMS), ("session.initiated",))
        return {peer: sum(e["peer"] == peer for e in entries) for peer in (POLICE, BORDER)}

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "failure" in r.getMessage()]

    async def until(condition: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not await asyncio.to_thread(condition):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        job = asyncio.create_task(sweep_on_change_and_schedule(node, retry_first=1.0))
        try:
            await until(lambda: "as of now" in caplog.text, 10, "the job's baseline")
            await asyncio.to_thread(fed.ingest, CUSTOMS, LIST, OURS, "--kind", "operations")
            await until(lambda: len(failures()) >= 2, 20, "two failures with border-be")
            assert initiated() == {POLICE: 1, BORDER: 0}
            await asyncio.to_thread(fed.start, BORDER)
            await until(lambda: initiated()[BORDER] == 1, 20, "a retry with border-be")
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)

    asyncio.run(scenario())
    assert initiated() == {POLICE: 1, BORDER: 1}  # police-nl swept once, never retried
    lines = failures()
    assert all(f"{LIST} with {BORDER}: failed: peer {BORDER} is unreachable" in x for x in lines)
    assert "failure 1 in a row; retried in 1 s" in lines[0]
    assert "failure 2 in a row; retried in 2 s" in lines[1]
    assert f"sweep: {LIST} with {BORDER}: 2 shared" in caplog.text
    for agency in (POLICE, BORDER):
        fed.stop(agency)
