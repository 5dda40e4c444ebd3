"""Real-time screening (`node.rpc.live_screening`): the service behind `POST /v1/screen`,
in-process, against real `blindmatch serve` partners over mTLS.

customs-nl screens; police-nl (labels released), border-be (labels withheld, only list wl)
and guard-de (a budget of 3 items a day) serve. ghost-nl is configured but never started,
stall-nl is a listener that accepts and never answers, kmar-nl is configured without the
screen mode.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from crypto.batch import BatchRunner, new_process_pool
from node.errors import ConfigError, InvalidInput
from node.rpc.live_screening import (
    DEADLINE_SECONDS,
    LIVE_LIST,
    MAX_IDENTIFIERS,
    PREFETCH_PURPOSE,
    LiveScreening,
    ScreenHit,
    ScreenOutcome,
)
from node.setup.config import NodeConfig
from node.setup.context import NodeContext
from tests.conftest import MakeNode, wait_until
from tests.federation import Federation, free_port

T = TypeVar("T")

CUSTOMS, POLICE, BORDER, GUARD = "customs-nl", "police-nl", "border-be", "guard-de"
POLICE_LIST = """ref,passport,passport_country,name,dob,email,label
P-1,AB1234567,NLD,,,a@example.org,Case 1: contact police ops
P-2,CD7654321,NLD,Hans Müller,1980-04-03,,
P-3,,,,,shared@example.org,Case 3
P-4,AB1234567,NLD,,,,Case 4 (same passport as P-1)
"""
BORDER_LIST = """ref,email,iban,label
B-1,shared@example.org,,border case 1
B-2,,GB82 WEST 1234 5698 7654 32,border case 2
"""
WEBHOOK = {"url": "http://127.0.0.1:9/hits", "secret": "s3cret"}
PASSPORT = {"type": "passport", "value": "AB1234567", "country": "NL"}
PERSON = {"type": "person", "name": "MÜLLER, hans", "dob": "03.04.1980"}
SHARED = {"type": "email", "value": "Shared@Example.org"}
MISS = {"type": "email", "value": "nobody@example.org"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = Federation(tmp_path_factory.mktemp("live"))
    try:
        for agency in (CUSTOMS, POLICE, BORDER, GUARD):
            federation.add_node(agency)
        screen = ("--modes", "mutual,count,screen")
        federation.add_peer(
            POLICE, CUSTOMS, *screen, "--release-labels", "--screen-budget", "1000000"
        )
        federation.add_peer(BORDER, CUSTOMS, *screen, "--lists", "wl", "--screen-budget", "1000000")
        federation.add_peer(GUARD, CUSTOMS, *screen, "--release-labels", "--screen-budget", "3")
        for peer in (POLICE, BORDER, GUARD):
            federation.add_peer(CUSTOMS, peer, *screen)
        customs = federation.node(CUSTOMS)
        for agency, modes in (
            ("ghost-nl", "screen"),
            ("stall-nl", "screen"),
            ("kmar-nl", "mutual"),
        ):
            address = f"127.0.0.1:{free_port()}"
            federation.addresses[agency] = address
            federation.cli("peer", "add", customs, "--agency", agency, "--address", address,
                           "--modes", modes)  # fmt: skip
        federation.configure(CUSTOMS, notify={"webhook": [WEBHOOK]})
        federation.ingest(POLICE, "wl", POLICE_LIST)
        federation.ingest(BORDER, "wl", BORDER_LIST)
        federation.ingest(BORDER, "secret", BORDER_LIST)
        federation.ingest(GUARD, "wl", "ref,passport,label\nG-1,NLD:AB1234567,guard case\n")
        for agency in (POLICE, BORDER, GUARD):
            federation.start(agency)
        yield federation
    finally:
        federation.close()


def _live(
    fed: Federation,
    body: Callable[[LiveScreening], Awaitable[T]],
    runner: BatchRunner | None = None,
) -> T:
    """Runs `body` with a started LiveScreening of customs-nl, closed afterwards."""

    async def main() -> T:
        node = NodeContext.load(fed.node(CUSTOMS), runner or BatchRunner())
        live = LiveScreening(node)
        await live.start()
        try:
            return await body(live)
        finally:
            await live.close()

    return asyncio.run(main())


def _screen(
    fed: Federation,
    identifiers: list[dict[str, Any]],
    targets: list[tuple[str, str]] | None,
    purpose: str = "live screening test",
    operator: str = "alice",
) -> ScreenOutcome:
    return _live(fed, lambda live: live.screen(identifiers, targets, purpose, operator))


def _audit(agency_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    conn = sqlite3.connect(agency_dir / "store.sqlite")
    try:
        rows = conn.execute("SELECT event, body FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(event, json.loads(body)) for event, body in rows]


def _rows(agency_dir: Path, query: str, *args: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(agency_dir / "store.sqlite")
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def _hits(outcome: ScreenOutcome) -> set[tuple[int, str, str, str, str | None]]:
    return {(h.index, h.type, h.peer, h.list, h.peer_label) for h in outcome.hits}


def test_hits_and_misses_with_labels_are_recorded_and_audited(fed: Federation) -> None:
    customs = fed.node(CUSTOMS)
    audit_before = len(_audit(customs))
    identifiers = [
        {**PASSPORT, "ref": "BK-1"},
        PERSON,
        SHARED,
        MISS,
        {"type": "iban", "value": "GB82WEST12345698765432"},
        {"type": "passport", "value": "ab 123 4567"},  # no country: only passport_number
    ]
    outcome = _screen(fed, identifiers, [(POLICE, "wl"), (BORDER, "wl")])
    both = "Case 1: contact police ops; Case 4 (same passport as P-1)"
    assert outcome.errors == []
    assert _hits(outcome) == {
        (0, "passport", POLICE, "wl", both),
        (0, "passport_number", POLICE, "wl", both),
        (1, "person", POLICE, "wl", None),  # P-2 has no label
        (1, "person_year", POLICE, "wl", None),
        (2, "email", POLICE, "wl", "Case 3"),
        (2, "email", BORDER, "wl", None),  # border-be withholds its labels
        (4, "iban", BORDER, "wl", None),
        (5, "passport_number", POLICE, "wl", both),
    }
    assert [h.index for h in outcome.hits] == sorted(h.index for h in outcome.hits)
    assert outcome.hits[0] == ScreenHit(0, "passport", POLICE, "wl", both)  # stronger first

    # One session per target, completed, under the list "(live)"; hits as rows of `hits`.
    sessions = _rows(customs, "SELECT peer, list, peer_list, mode, status, local_count, "
                     "match_count, purpose FROM sessions ORDER BY started_at, id")  # fmt: skip
    assert sorted(sessions[-2:]) == [
        (BORDER, LIVE_LIST, "wl", "screen", "completed", 7, 2, "live screening test"),
        (POLICE, LIVE_LIST, "wl", "screen", "completed", 7, 5, "live screening test"),
    ]
    hits = {(h["peer"], h["ref"], h["type"], h["peer_label"]): h for h in fed.hits(CUSTOMS)}
    assert hits[(POLICE, "BK-1", "passport", both)]["list"] == LIVE_LIST
    assert (POLICE, "BK-1", "passport_number", both) in hits
    generated = [ref for (_, ref, _, _) in hits if ref != "BK-1"]
    assert generated and all(re.fullmatch(r"live-[0-9a-f]{16}-[1-5]", r) for r in generated)
    assert len({r.rsplit("-", 1)[0] for r in generated}) == 1  # one request, one id
    outbox = _rows(customs, "SELECT count(*) FROM outbox WHERE url = ?", WEBHOOK["url"])
    assert outbox == [(len(hits),)]

    # Audited per target with purpose and operator; labels received disclosed; no identifier.
    entries = _audit(customs)[audit_before:]
    queries = {b["peer"]: b for e, b in entries if e == "screen.query"}
    assert set(queries) == {POLICE, BORDER}
    for body in queries.values():
        assert body["purpose"] == "live screening test" and body["operator"] == "alice"
        assert body["list"] == LIVE_LIST and body["peer_list"] == "wl"
        assert body["identifiers"] == 6 and body["batch_size"] == 7  # distinct elements
        assert re.fullmatch(r"[0-9a-f]{32}", body["batch_id"])
    assert queries[POLICE]["new_hits"] == 6 and queries[BORDER]["new_hits"] == 2
    disclosed = [b for e, b in entries if e == "disclosure"]
    assert [(d["peer"], d["direction"], d["labels"]) for d in disclosed] == [
        (POLICE, "received", 5)
    ]
    text = json.dumps(entries, ensure_ascii=False)
    for secret in ("AB1234567", "example.org", "Example.org", "MÜLLER", "hans", "WEST"):
        assert secret not in text

    # The same ref screened again is the same hit, seen again: nothing new to notify.
    again = _screen(fed, [{**PASSPORT, "ref": "BK-1"}], [(POLICE, "wl")])
    assert _hits(again) == {(0, "passport", POLICE, "wl", both),
                            (0, "passport_number", POLICE, "wl", both)}  # fmt: skip
    seen = [h for h in fed.hits(CUSTOMS) if h["ref"] == "BK-1"]
    assert {h["sessions"] for h in seen} == {2}
    assert _rows(customs, "SELECT count(*) FROM outbox") == [(len(hits),)]


def test_concurrent_calls_share_screen_calls_and_keep_their_purposes(fed: Federation) -> None:
    police = fed.node(POLICE)
    expected = {0: {("passport", POLICE), ("passport_number", POLICE)},
                1: {("email", POLICE)}, 2: set(),
                3: {("person", POLICE), ("person_year", POLICE)}}  # fmt: skip
    identifiers = {0: PASSPORT, 1: SHARED, 3: PERSON}
    calls = 64
    answered_before = sum(e == "screen.answered" for e, _ in _audit(police))
    pool = new_process_pool(2, start_method="forkserver")

    async def body(live: LiveScreening) -> tuple[list[ScreenOutcome], ScreenOutcome, int]:
        await live.screen([PASSPORT], [(POLICE, "wl")], "warm-up", "alice")  # the set in memory
        before = live.calls
        outcomes = await asyncio.gather(
            *(
                live.screen(
                    [identifiers.get(i % 4, {"type": "email", "value": f"x{i}@example.org"})],
                    [(POLICE, "wl")],
                    "purpose A" if i % 2 else "purpose B",
                    f"user{i % 3}",
                )
                for i in range(calls)
            )
        )
        many = [{"type": "passport", "value": f"ZZ{i:07d}", "country": "DE"} for i in range(300)]
        large = await live.screen([*many, PASSPORT], [(POLICE, "wl")], "purpose A", "bob")
        return outcomes, large, live.calls - before

    try:
        outcomes, large, screen_calls = _live(fed, body, BatchRunner(pool, workers=2))
    finally:
        pool.shutdown()
    for i, outcome in enumerate(outcomes):
        assert outcome.errors == []
        assert {(h.type, h.peer) for h in outcome.hits} == expected[i % 4], i
        assert {h.index for h in outcome.hits} <= {0}
    assert {(h.index, h.type) for h in large.hits} == {(300, "passport"), (300, "passport_number")}
    assert screen_calls < calls / 2, f"{calls} calls took {screen_calls} Screen calls"

    # The partner answered exactly those calls, each for one purpose; our audit keeps each
    # call's own purpose and operator, and names the Screen call that answered it.
    answered = [b for e, b in _audit(police) if e == "screen.answered"][answered_before + 1 :]
    assert len(answered) == screen_calls
    by_batch = {b["session_id"]: b for b in answered}
    assert sum(b["batch_size"] for b in answered) == 2 * 16 + 1 * 16 + 1 * 16 + 2 * 16 + 602
    queries = [b for e, b in _audit(fed.node(CUSTOMS)) if e == "screen.query"][-(calls + 1) :]
    assert {(q["purpose"], q["operator"]) for q in queries[:-1]} == {
        (p, f"user{u}") for p in ("purpose A", "purpose B") for u in range(3)
    }
    for query in queries:
        assert by_batch[query["batch_id"]]["purpose"] == query["purpose"]
    assert len({q["batch_id"] for q in queries}) == screen_calls


def test_a_failing_target_is_an_error_while_the_others_answer(fed: Federation) -> None:
    customs = fed.node(CUSTOMS)
    sessions_before = len(_rows(customs, "SELECT id FROM sessions"))
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:  # takes connections and never answers
        while True:
            try:
                held.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    stall = f"127.0.0.1:{silent.getsockname()[1]}"
    fed.configure(CUSTOMS, "stall-nl", address=stall)
    targets = [(POLICE, "wl"), ("ghost-nl", "wl"), ("stall-nl", "wl"), ("kmar-nl", "wl"),
               ("nobody-nl", "wl"), (BORDER, "secret")]  # fmt: skip
    try:
        started = time.monotonic()
        outcome = _screen(fed, [PASSPORT], targets)
        took = time.monotonic() - started
    finally:
        silent.close()
        for connection in held:
            connection.close()
    assert {(h.peer, h.type) for h in outcome.hits} == {(POLICE, "passport"),
                                                        (POLICE, "passport_number")}  # fmt: skip
    errors = {e.peer: e for e in outcome.errors}
    assert list(errors) == ["ghost-nl", "stall-nl", "kmar-nl", "nobody-nl", BORDER]
    assert errors["ghost-nl"].kind == "peer_error"
    assert "unreachable" in errors["ghost-nl"].message
    assert errors["stall-nl"].kind == "peer_error"
    assert "is still being fetched" in errors["stall-nl"].message
    assert errors["kmar-nl"].kind == "policy_denied"
    assert "--modes mutual,screen" in errors["kmar-nl"].message
    assert errors["nobody-nl"].kind == "config_error"
    assert "blindmatch peer add" in errors["nobody-nl"].message
    assert errors[BORDER].kind == "peer_error" and errors[BORDER].list == "secret"
    assert "PERMISSION_DENIED" in errors[BORDER].message
    assert took < DEADLINE_SECONDS + 5, "a stalled peer held the call past its deadline"

    # Sessions that started are recorded failed with their reason; local refusals start none.
    rows = _rows(customs, "SELECT peer, status FROM sessions")[sessions_before:]
    assert sorted(rows) == sorted([(POLICE, "completed"), ("ghost-nl", "failed"),
                                   ("stall-nl", "failed"), (BORDER, "failed")])  # fmt: skip
    failed = [b for e, b in _audit(customs) if e == "session.failed"][-3:]
    assert {b["peer"] for b in failed} == {"ghost-nl", "stall-nl", BORDER}
    assert all(b["purpose"] == "live screening test" and b["reason"] for b in failed)


def test_close_ends_calls_in_flight_as_interrupted(fed: Federation) -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    fed.configure(CUSTOMS, "stall-nl", address=f"127.0.0.1:{silent.getsockname()[1]}")

    async def body(live: LiveScreening) -> tuple[ScreenOutcome, float]:
        call = asyncio.ensure_future(
            live.screen([PASSPORT], [(POLICE, "wl"), ("stall-nl", "wl")], "closing", "alice")
        )
        answered = (
            "SELECT 1 FROM sessions WHERE peer = ? AND purpose = 'closing' AND status = 'completed'"
        )
        deadline = time.monotonic() + 60.0  # police-nl answers; stall-nl never will
        while not await asyncio.to_thread(_rows, fed.node(CUSTOMS), answered, POLICE):
            assert time.monotonic() < deadline, "police-nl did not answer"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await live.close()
        return await call, time.monotonic() - started

    try:
        outcome, closing = _live(fed, body)
    finally:
        silent.close()
    assert closing < 2.0
    assert {h.peer for h in outcome.hits} == {POLICE}
    assert [(e.peer, e.kind) for e in outcome.errors] == [("stall-nl", "interrupted")]
    last = _rows(fed.node(CUSTOMS), "SELECT peer, status FROM sessions ORDER BY rowid DESC LIMIT 1")
    assert last == [("stall-nl", "failed")]


def test_budget_and_revocation_refusals_are_target_errors(fed: Federation) -> None:
    first = _screen(fed, [PASSPORT], [(GUARD, "wl")])  # 2 of its 3 items a day
    assert _hits(first) == {(0, "passport", GUARD, "wl", "guard case"),
                            (0, "passport_number", GUARD, "wl", "guard case")}  # fmt: skip
    over = _screen(fed, [PASSPORT], [(GUARD, "wl"), (POLICE, "wl")])
    assert [(e.peer, e.kind) for e in over.errors] == [(GUARD, "peer_error")]
    assert "RESOURCE_EXHAUSTED" in over.errors[0].message and "budget" in over.errors[0].message
    assert {h.peer for h in over.hits} == {POLICE}

    customs = fed.node(CUSTOMS)
    crl = fed.root / "federation.crl"
    fed.cli("ca", "revoke", fed.root / "ca", "--agency", GUARD, "--reason", "test")
    fed.cli("ca", "crl", fed.root / "ca", "--out", crl)
    fed.cli("crl", "install", customs, crl)
    try:
        revoked = _screen(fed, [PASSPORT], [(GUARD, "wl"), (POLICE, "wl")])
    finally:
        (customs / "tls" / "crl.pem").unlink()
    assert [(e.peer, e.kind) for e in revoked.errors] == [(GUARD, "peer_error")]
    assert "revoked" in revoked.errors[0].message
    assert {h.peer for h in revoked.hits} == {POLICE}
    refused = [b for e, b in _audit(customs) if e == "screen.refused"][-1]
    assert refused["peer"] == GUARD and refused["operator"] == "alice"


def test_epoch_rotation_and_list_changes_refetch_transparently(fed: Federation) -> None:
    police, customs = fed.node(POLICE), fed.node(CUSTOMS)

    def fetched() -> list[int]:
        return [b["epoch"] for e, b in _audit(police) if e == "screen.fetched"]

    first = _screen(fed, [PASSPORT], [(POLICE, "wl")])
    assert len(first.hits) == 2
    before = fetched()
    fed.cli("epoch", "rotate", police, "--list", "wl")
    fed.ingest(POLICE, "wl", "ref,email,label\nP-9,new@example.org,Case 9\n")  # version + 1

    async def body(live: LiveScreening) -> list[ScreenOutcome]:
        return list(
            await asyncio.gather(
                *(
                    live.screen([identifier], [(POLICE, "wl")], "after rotation", "alice")
                    for identifier in (PASSPORT, {"type": "email", "value": "new@example.org"})
                )
            )
        )

    rotated, added = _live(fed, body)
    assert rotated.errors == [] and added.errors == []
    assert {h.type for h in rotated.hits} == {"passport", "passport_number"}
    assert _hits(added) == {(0, "email", POLICE, "wl", "Case 9")}
    assert len(fetched()) == len(before) + 1  # one fetch for both calls
    assert fetched()[-1] > max(before)
    queries = [b for e, b in _audit(customs) if e == "screen.query"][-2:]
    assert {q["epoch"] for q in queries} == {fetched()[-1]}
    assert sum(q["fetches"] for q in queries) >= 1
    cached = _rows(customs, "SELECT epoch FROM screen_cache WHERE peer = ?", POLICE)
    assert cached == [(fetched()[-1],)]


def test_configured_targets_are_the_default_and_prefetched(fed: Federation) -> None:
    customs, police = fed.node(CUSTOMS), fed.node(POLICE)
    conn = sqlite3.connect(customs / "store.sqlite")
    with conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM screen_cache")  # nothing cached: start() must fetch
    conn.close()
    fed.configure(CUSTOMS, screen={"target": [{"peer": POLICE, "list": "wl"},
                                              {"peer": BORDER, "list": "wl"}]})  # fmt: skip

    def prefetched() -> set[str]:
        return {b["peer"] for e, b in _audit(police) + _audit(fed.node(BORDER))
                if e == "screen.fetched" and b["purpose"] == PREFETCH_PURPOSE}  # fmt: skip

    async def body(live: LiveScreening) -> ScreenOutcome:
        assert await asyncio.to_thread(wait_until, lambda: prefetched() == {CUSTOMS}, 30)
        return await live.screen([SHARED], None, "default targets", "carol")

    try:
        outcome = _live(fed, body)
    finally:
        fed.configure(CUSTOMS, screen={"target": []})
    assert outcome.errors == []
    assert _hits(outcome) == {(0, "email", POLICE, "wl", "Case 3"),
                              (0, "email", BORDER, "wl", None)}  # fmt: skip
    assert sum(e == "screen.fetched" for e, _ in _audit(police)) >= 1


# -- without partners -----------------------------------------------------------------------


@pytest.fixture
def lone(make_node: MakeNode) -> NodeConfig:
    return make_node()


def _refused(config: NodeConfig, *args: Any) -> str:
    async def main() -> None:
        live = LiveScreening(NodeContext.load(config.node_dir, BatchRunner()))
        try:
            await live.screen(*args)
        finally:
            await live.close()

    with pytest.raises((InvalidInput, ConfigError)) as info:
        asyncio.run(main())
    return str(info.value)


@pytest.mark.parametrize(
    ("identifiers", "message"),
    [
        ([], r"identifiers: give 1 to 1,000 identifiers per call \(0 given\)"),
        ([MISS] * (MAX_IDENTIFIERS + 1), r"\(1,001 given\)"),
        ([{"type": "shoe", "value": "42"}], r"identifiers\[0\]\.type: 'shoe' is not an identifier"),
        ([{"value": "42"}], r"identifiers\[0\]\.type: missing"),
        (["AB1234567"], r"identifiers\[0\]: must be an object"),
        ([MISS, {"type": "passport", "value": "AB!"}], r"identifiers\[1\]\.value: passport number"),
        (
            [{"type": "passport", "value": "AB1234567", "country": "XX"}],
            r"identifiers\[0\]\.country",
        ),
        ([{"type": "person", "name": "Hans"}], r"identifiers\[0\]\.dob: missing"),
        (
            [{**PERSON, "dob": "31.02.1980"}],
            r"identifiers\[0\]\.dob: date 31.02.1980 does not exist",
        ),
        ([{**MISS, "colour": "red"}], r"identifiers\[0\]\.colour: unknown field for email"),
        ([{"type": "iban", "value": "NL00"}], r"identifiers\[0\]\.value: IBAN"),
        ([{**MISS, "ref": "a\x00b"}], r"identifiers\[0\]\.ref: must be printable"),
        ([{"type": "email", "value": ""}], r"identifiers\[0\]\.value: missing"),
    ],
)
def test_bad_identifiers_name_the_field(
    lone: NodeConfig, identifiers: list[Any], message: str
) -> None:
    assert re.search(message, _refused(lone, identifiers, [(POLICE, "wl")], "test", "alice"))


def test_every_bad_identifier_is_named_at_once(lone: NodeConfig) -> None:
    text = _refused(lone, [{"type": "vin", "value": "x"}, MISS, {"type": "imo", "value": "1"}],
                    [(POLICE, "wl")], "test", "alice")  # fmt: skip
    assert "identifiers[0].value" in text and "identifiers[2].value" in text
    assert "identifiers[1]" not in text


@pytest.mark.parametrize(
    ("targets", "purpose", "operator", "message"),
    [
        ([(POLICE, "w l")], "test", "alice", r"targets\[0\]\.list: 'w l' is not a list name"),
        ([(POLICE, "wl"), ("Police", "wl")], "test", "alice", r"targets\[1\]\.peer: agency id"),
        ([(POLICE, "wl")], " ", "alice", r"purpose: every request needs a purpose"),
        ([(POLICE, "wl")], "x" * 301, "alice", r"purpose: the purpose must be printable"),
        ([(POLICE, "wl")], "test", "", r"operator: the person screening must be named"),
        (None, "test", "alice", r"no screening target.*\[\[screen.target\]\]"),
        ([], "test", "alice", r"no screening target"),
    ],
)
def test_bad_targets_purpose_or_operator(
    lone: NodeConfig, targets: Any, purpose: str, operator: str, message: str
) -> None:
    assert re.search(message, _refused(lone, [MISS], targets, purpose, operator))


# -- measured (make bench runs the API-level figure; this is the service alone) ------------------


@pytest.mark.slow
def test_throughput_against_a_served_100000_entry_list(tmp_path: Path) -> None:
    """Single-identifier calls from 32 concurrent callers, and 200 calls/s arriving at random,
    against a served list of 100,000 passports: prints queries/s and p50/p95 latency."""
    entries, seconds, callers = 100_000, 15.0, 32
    fed = Federation(tmp_path)
    pool = None
    try:
        for agency in (CUSTOMS, POLICE):
            fed.add_node(agency)
        fed.add_peer(CUSTOMS, POLICE, "--modes", "screen")
        fed.add_peer(POLICE, CUSTOMS, "--modes", "screen", "--release-labels",
                     "--screen-budget", "100000000")  # fmt: skip
        rows = "".join(f"R{i},NLD:X{i:08d},case {i}\n" for i in range(entries))
        fed.ingest(POLICE, "wl", "ref,passport,label\n" + rows)
        fed.start(POLICE)
        pool = new_process_pool(2, start_method="forkserver")
        rng = random.Random(7)

        async def body(live: LiveScreening) -> list[str]:
            probe = {"type": "passport", "value": "X00000005", "country": "NL"}
            while (await live.screen([probe], [(POLICE, "wl")], "warm-up", "bench")).errors:
                pass  # until police-nl has built its encoded set and we fetched it

            async def one(latencies: list[float]) -> None:
                i = rng.randrange(2 * entries)  # half hits, half misses
                value = {"type": "passport", "value": f"X{i:08d}", "country": "NL"}
                started = time.perf_counter()
                outcome = await live.screen([value], [(POLICE, "wl")], "bench", "bench")
                latencies.append(time.perf_counter() - started)
                assert not outcome.errors and bool(outcome.hits) == (i < entries)

            async def closed_loop(latencies: list[float], until: float) -> None:
                while time.perf_counter() < until:
                    await one(latencies)

            async def arrivals(latencies: list[float], rate: float, until: float) -> None:
                calls, at = [], time.perf_counter()
                while at < until:
                    at += rng.expovariate(rate)
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
                    calls.append(asyncio.ensure_future(one(latencies)))
                await asyncio.gather(*calls)

            lines = []
            for name, run in (
                (f"{callers} callers", lambda lat, until: asyncio.gather(
                    *(closed_loop(lat, until) for _ in range(callers)))),
                ("200 calls/s", lambda lat, until: arrivals(lat, 200.0, until)),
            ):  # fmt: skip
                latencies: list[float] = []
                calls = live.calls
                started = time.perf_counter()
                await run(latencies, started + seconds)
                took = time.perf_counter() - started
                latencies.sort()
                p50, p95 = (latencies[int(len(latencies) * q)] * 1e3 for q in (0.5, 0.95))
                lines.append(
                    f"{name}: {len(latencies) / took:.0f} queries/s, p50 {p50:.1f} ms, "
                    f"p95 {p95:.1f} ms, {len(latencies) / (live.calls - calls):.1f} queries "
                    "per Screen call"
                )
            return lines

        for line in _live(fed, body, BatchRunner(pool, workers=2)):
            print(line)
    finally:
        if pool is not None:
            pool.shutdown()
        fed.close()
