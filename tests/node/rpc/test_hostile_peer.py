"""A hostile peer over the real wire (issue 10): Hypothesis draws the messages of every RPC.

An authorised peer sends a served node (a real `blindmatch serve` process, real
mTLS) random and boundary-sized fields in every message: hellos with overlong
and control-character strings, wrong versions, unknown suites and modes, set
sizes up to 2**64-1, reused session ids; garbage and ragged Elements and Tags;
labels with mismatched and huge indices; bytes that are not protobuf at all,
or not UTF-8 where a string is; messages at gRPC's size cap; streams
half-closed early or cancelled; fetch and screening requests likewise.

Whatever it sends: no INTERNAL or UNKNOWN status, no peer-facing text that
gives away the node's internals, every refusal audited exactly once, the node
still answers a normal session afterwards, and `audit verify` stays intact.

How refusals are counted. A call that ends with a status other than OK that
this client did not cancel is a refusal the node must have audited once
(`session.refused` before a session is recorded, `session.failed` after;
`screen.refused` for fetch and screening). A stream this client cancels after
the node's hello reply is a recorded session, so it is audited once exactly
when the sessions table says `failed`. A stream cancelled at once may or may not
have reached the node before the cancellation, so it accounts for between
zero and one entry: that slack is the only one in the comparison.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import oprf
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.policy import PROTOCOL_VERSION
from tests.federation import Federation, peer_channel
from tests.node.rpc.peer_wire import (
    REFUSAL_EVENTS,
    audit_entries,
    federation,
    hello,
    leaks,
    raw_methods,
    session_statuses,
    verify_audit,
    wait_for,
)

RESPONDER, HOSTILE = "police-nl", "customs-nl"
HIDDEN = ("secret-ops",)  # a list on the responder that the hostile peer may not use
MAX_SET = 1_000_000  # the hostile peer's max_set_size (the default)
WIRE_MAX = 4 * 2**20  # the responder's gRPC receive cap
MAX_BATCH = 4096  # screening items per batch
REUSED_IDS = tuple(f"{i:032x}" for i in range(1, 4))
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
EXAMPLES = int(os.environ.get("BLINDMATCH_HOSTILE_EXAMPLES", "60"))  # more for a soak run

POLICE = """ref,name,dob,passport,passport_country,phone,iban,label
P1,José Álvarez-Núñez,1980-04-03,,,+31 6 1234 5678,,police op TULIP
P2,,,,,,NL91ABNA0417164300,police op DELTA
P3,"DE VRIES, PIETER",15.02.1990,nx4r-71k22,NLD,,,police watchlist 1182
P4,Other Person,1965-06-06,YY1234567,DEU,+49 151 23456789,,police not shared
"""
CUSTOMS = """ref,name,dob,passport,passport_country,phone,iban,label
C1,"ALVAREZ NUNEZ, Jose",03.04.1980,,,06-12345678,,customs case C1
C2,,,,,,NL91 ABNA 0417 1643 00,customs case C2
C3,Pieter de Vries,19900215,NX4R71K22,NLD,,,customs case C3
C4,Secret Person,1971-01-01,ZZ9876543,NLD,+31 6 99887766,,customs C4
"""
SECRET = """ref,passport,passport_country,label
S1,AA1111111,NLD,undercover
"""

BAD_VERSIONS = [0, PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 2**32 - 1]


@dataclass
class Served:
    """The served responder and what a well-behaved peer knows of it."""

    fed: Federation
    expected_match: int
    responder_size: int  # the responder's declared set size for "targets"
    epoch: int
    list_version: int


@dataclass
class Tally:
    """How the calls of one test ended, to compare with the responder's audit."""

    refused: int = 0  # non-OK statuses this client did not cause by cancelling
    cancelled_admitted: list[str] = field(default_factory=list)  # after the hello reply
    cancelled_at_once: int = 0  # the node may never have seen these
    codes: Counter[str] = field(default_factory=Counter)

    def ended(self, code: grpc.StatusCode, details: str, served: Served, echoed: list[str]) -> None:
        self.codes[code.name] += 1
        assert code not in NEVER, (code, details)
        hidden = [name for name in HIDDEN if name not in echoed]
        assert not leaks(details, served.fed.root, hidden, echoed), details
        if code is not grpc.StatusCode.OK:
            self.refused += 1


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with federation("hostile") as fed:
        for agency in (RESPONDER, HOSTILE):
            fed.add_node(agency)
        fed.add_peer(RESPONDER, HOSTILE, "--modes", "mutual,count,screen", "--release-labels",
                     "--lists", "targets,missing-list", "--sessions-per-hour", "100000",
                     "--max-concurrent", "16")  # fmt: skip
        fed.add_peer(HOSTILE, RESPONDER, "--release-labels")
        fed.ingest(RESPONDER, "targets", POLICE)
        fed.ingest(RESPONDER, "secret-ops", SECRET)
        fed.ingest(HOSTILE, "mine", CUSTOMS)
        fed.start(RESPONDER)
        expected = fed.match(HOSTILE, RESPONDER, "mine", "targets")["match_count"]
        with _channel(fed) as channel:
            stub = pb_grpc.MatchingStub(channel)
            request = pb.FetchEncodedListRequest(
                protocol_version=PROTOCOL_VERSION, list="targets", purpose="t"
            )
            chunk = next(iter(stub.FetchEncodedList(request, timeout=30)))
            reply = _hello_reply(fed, stub)
        yield Served(fed, expected, reply.set_size, chunk.epoch, chunk.list_version)


def _channel(fed: Federation) -> grpc.Channel:
    return peer_channel(fed.node(HOSTILE), RESPONDER, fed.addresses[RESPONDER])


def _hello_reply(fed: Federation, stub: Any) -> pb.HelloReply:
    """The responder's hello reply to a well-formed hello (the session then cut short, and
    waited for until it is recorded failed)."""
    opening = hello(list="targets", set_size=1)
    call = stub.Session(iter([opening]), timeout=30)
    reply = next(call).hello_reply
    call.cancel()
    wait_for(
        lambda: session_statuses(fed.node(RESPONDER)).get(opening.hello.session_id) == "failed",
        timeout=30,
        what="the cut-short session to be recorded failed",
    )
    return reply


# -- strategies -----------------------------------------------------------------------------------


def texts(*valid: str) -> st.SearchStrategy[str]:
    """Strings a hostile peer sends: random, control characters, boundary and overlong lengths."""
    hostile = st.one_of(
        st.text(max_size=30),
        st.text(st.characters(categories=["Cc"]), min_size=1, max_size=30),
        st.sampled_from([1, 31, 32, 33, 100, 101, 300, 301, 1_200, 100_000]).map(lambda n: "a" * n),
        st.sampled_from(["", " ", "\u202e", "x\ny", "é" * 300, "\x00" * 10, "A" * 32, "g" * 32]),
    )
    return st.one_of(st.sampled_from(valid), hostile) if valid else hostile


def packed(unit: int) -> st.SearchStrategy[bytes]:
    """Packed points or tags: whole numbers of `unit` bytes, ragged, degenerate, at the cap."""
    return st.one_of(
        st.integers(0, 6).flatmap(lambda k: st.binary(min_size=unit * k, max_size=unit * k)),
        st.binary(max_size=70),
        st.sampled_from([b"\xff" * unit * 2, bytes(unit * 2)]),
        st.sampled_from([WIRE_MAX - 64, WIRE_MAX + 1]).map(bytes),
    )


def not_utf8(message: pb.InitiatorMessage) -> bytes:
    """The message's bytes with a hello purpose that is not UTF-8 merged in."""
    purpose = b"\x32\x02\xff\xfe"  # Hello field 6 (purpose), two bytes
    return message.SerializeToString() + b"\x0a" + bytes([len(purpose)]) + purpose


HELLO = dict(
    protocol_version=PROTOCOL_VERSION,
    suite="x25519-blake3",
    mode=pb.MODE_MUTUAL,
    list="targets",
    purpose="hostile peer test",
    set_size=2,
    initiator_list="mine",
)
HOSTILE_HELLO = {
    "protocol_version": st.sampled_from(BAD_VERSIONS),
    "session_id": st.one_of(st.sampled_from(REUSED_IDS), texts()),
    "suite": texts("ristretto255-sha512"),
    "mode": st.sampled_from([pb.MODE_UNSPECIFIED, pb.MODE_COUNT, 3, -1, 2**31 - 1]),
    "list": texts("missing-list", "secret-ops", "no-such-list", "a" * 100),
    "purpose": texts(),
    "set_size": st.one_of(
        st.sampled_from([0, 1, 3, MAX_SET, MAX_SET + 1, 2**40, 2**40 + 1, 2**64 - 1]),
        st.integers(0, 2**64 - 1),
    ),
    "initiator_list": texts(),
}


# A new session id each time (ids are reused on purpose only through REUSED_IDS).
fresh_ids = st.builds(lambda: secrets.token_hex(16))


@st.composite
def hellos(draw: st.DrawFn) -> pb.InitiatorMessage:
    """A hello with up to three of its fields hostile (the others valid)."""
    fields: dict[str, Any] = dict(HELLO, session_id=draw(fresh_ids))
    for name in draw(st.sets(st.sampled_from(sorted(HOSTILE_HELLO)), max_size=3)):
        fields[name] = draw(HOSTILE_HELLO[name])
    return pb.InitiatorMessage(hello=pb.Hello(**fields))


label_texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from([1_000, 1_001, 100_000]).map(lambda n: "L" * n),
    st.text(st.characters(categories=["Cc"]), max_size=10),
)
indices = st.one_of(st.sampled_from([0, 1, 2, 3, 2**32 - 1]), st.integers(0, 2**32 - 1))
bodies = st.one_of(
    packed(32).map(lambda b: pb.InitiatorMessage(blinded=pb.Elements(packed=b))),
    packed(16).map(lambda b: pb.InitiatorMessage(reveal=pb.Tags(packed=b))),
    st.builds(
        lambda i, labels: pb.InitiatorMessage(labels=pb.Labels(index=i, label=labels)),
        st.lists(indices, max_size=5),
        st.lists(label_texts, max_size=5),
    ),
    hellos(),
    st.just(pb.InitiatorMessage()),  # no body
    st.binary(min_size=1, max_size=40),  # bytes, rarely a protobuf message
    hellos().map(not_utf8),
)


def _points(seed: int, count: int) -> bytes:
    """`count` pseudo-random X25519 u-coordinates below 2**255 (almost all valid points)."""
    data = bytearray(random.Random(seed).randbytes(32 * count))
    for end in range(31, len(data), 32):
        data[end] &= 0x7F
    return bytes(data)


def flows(responder_size: int) -> st.SearchStrategy[list[Any]]:
    """Sessions in the protocol's shape with random points and tags, so that they get deep:
    complete (the responder answers them), or cut short and followed by anything."""

    @st.composite
    def flow(draw: st.DrawFn) -> list[Any]:
        size = draw(st.integers(0, 4))
        mode = draw(st.sampled_from([pb.MODE_MUTUAL, pb.MODE_COUNT]))
        x_a = _points(draw(st.integers(0, 2**32)), size)
        steps = [
            hello(session_id=draw(fresh_ids), mode=mode, set_size=size),
            pb.InitiatorMessage(blinded=pb.Elements(packed=x_a)),
        ]
        if mode == pb.MODE_MUTUAL:
            tags = random.Random(draw(st.integers(0, 2**32))).randbytes(16 * responder_size)
            steps.append(pb.InitiatorMessage(reveal=pb.Tags(packed=tags)))
        if draw(st.booleans()):
            steps = steps[: draw(st.integers(1, len(steps)))] + draw(st.lists(bodies, max_size=2))
        return steps

    return flow()


ENDINGS = st.sampled_from(["half-close", "half-close", "cancel-after-reply", "cancel-at-once"])


def _bytes(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def _strings(message: Any) -> list[str]:
    """The strings of a request, which a refusal may quote back to the peer."""
    if isinstance(message, bytes):
        return []
    if isinstance(message, pb.InitiatorMessage):
        if not message.HasField("hello"):
            return []
        message = message.hello
    return [v for _, v in message.ListFields() if isinstance(v, str)]


# -- the calls ------------------------------------------------------------------------------------


def _session(methods: dict[str, Any], messages: list[Any], ending: str) -> tuple[Any, str, int]:
    """Sends `messages` on one Session stream and ends it as `ending` says."""
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        for message in messages:
            yield _bytes(message)
        if ending != "half-close":
            release.wait(60)

    call = methods["Session"](requests(), timeout=30)
    responses = 0
    try:
        if ending == "cancel-at-once":
            call.cancel()
        for _ in call:
            responses += 1
            if ending == "cancel-after-reply":
                call.cancel()
    except grpc.RpcError:
        pass
    finally:
        release.set()
    return call.code(), call.details() or "", responses


def _settle(served: Served, tally: Tally, before: int, events: tuple[str, ...]) -> None:
    """Waits until every refusal the tally knows of is audited, then compares the count with
    the audit (see the module docstring)."""
    node = served.fed.node(RESPONDER)

    def closed() -> dict[str, str] | None:
        statuses = session_statuses(node)
        done = all(statuses.get(s) in ("failed", "completed") for s in tally.cancelled_admitted)
        return statuses if done else None

    statuses = wait_for(closed, timeout=60, what="the cancelled sessions to be closed")
    failed_cancelled = [s for s in tally.cancelled_admitted if statuses[s] == "failed"]
    exact = tally.refused + len(failed_cancelled)

    def audited() -> list[dict[str, Any]] | None:
        entries = audit_entries(node, events)[before:]
        return entries if len(entries) >= exact else None

    entries = wait_for(audited, timeout=60, what=f"{exact} refusals to be audited")
    assert exact <= len(entries) <= exact + tally.cancelled_at_once, (
        exact,
        tally,
        [(e["event"], e.get("session_id"), e.get("reason")) for e in entries],
    )
    by_session = Counter(e.get("session_id") for e in entries if e["event"] == "session.failed")
    assert all(by_session[s] == 1 for s in failed_cancelled)
    assert all(e.get("reason") for e in entries)  # a human reason each


def _still_serving(served: Served) -> None:
    """A normal session still completes, the audit verifies, and the node logged no bug."""
    fed = served.fed
    assert fed.match(HOSTILE, RESPONDER, "mine", "targets")["match_count"] == served.expected_match
    verify_audit(fed, RESPONDER)
    log = (fed.root / f"{RESPONDER}.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


def test_hostile_sessions(served: Served) -> None:
    node = served.fed.node(RESPONDER)
    before = len(audit_entries(node, REFUSAL_EVENTS))
    tally = Tally()
    first = st.one_of(hellos(), hellos(), bodies)
    sequences = st.one_of(
        st.builds(lambda a, rest: [a, *rest], first, st.lists(bodies, max_size=4)),
        flows(served.responder_size),
    )
    with _channel(served.fed) as channel:
        methods = raw_methods(channel)

        @HYPOTHESIS
        @given(messages=sequences, ending=ENDINGS)
        def session(messages: list[Any], ending: str) -> None:
            code, details, responses = _session(methods, messages, ending)
            if code is not grpc.StatusCode.CANCELLED:
                tally.ended(code, details, served, _strings(messages[0]))
            elif responses:  # the hello reply came: the session was recorded
                opened = pb.InitiatorMessage.FromString(_bytes(messages[0]))
                tally.cancelled_admitted.append(opened.hello.session_id)
            else:
                tally.cancelled_at_once += 1

        session()
    _settle(served, tally, before, ("session.refused", "session.failed"))
    assert tally.codes["OK"] and tally.refused, tally  # both kinds of outcome were drawn
    _still_serving(served)


def test_hostile_fetches(served: Served) -> None:
    node = served.fed.node(RESPONDER)
    before = len(audit_entries(node, ("screen.refused",)))
    tally = Tally()
    hostile = {
        "protocol_version": st.sampled_from(BAD_VERSIONS),
        "list": texts("missing-list", "secret-ops", "no-such-list", "a" * 100),
        "purpose": texts(),
    }

    @st.composite
    def requests(draw: st.DrawFn) -> pb.FetchEncodedListRequest:
        fields: dict[str, Any] = dict(
            protocol_version=PROTOCOL_VERSION, list="targets", purpose="hostile fetch"
        )
        for name in draw(st.sets(st.sampled_from(sorted(hostile)), max_size=3)):
            fields[name] = draw(hostile[name])
        return pb.FetchEncodedListRequest(**fields)

    with _channel(served.fed) as channel:
        methods = raw_methods(channel)

        @HYPOTHESIS
        @given(
            request=st.one_of(requests(), st.binary(min_size=1, max_size=40)),
            cancel=st.booleans(),
        )
        def fetch(request: Any, cancel: bool) -> None:
            call = methods["FetchEncodedList"](_bytes(request), timeout=30)
            try:
                for _ in call:
                    if cancel:
                        call.cancel()
            except grpc.RpcError:
                pass
            if call.code() is not grpc.StatusCode.CANCELLED:  # cancelled after a chunk: served
                tally.ended(call.code(), call.details() or "", served, _strings(request))

        fetch()
    _settle(served, tally, before, ("screen.refused",))
    assert tally.codes["OK"] and tally.refused, tally
    _still_serving(served)


def test_hostile_screening_queries(served: Served) -> None:
    node = served.fed.node(RESPONDER)
    before = len(audit_entries(node, ("screen.refused",)))
    tally = Tally()
    points = [oprf.hash_to_group(bytes([i])) for i in range(4)]
    hostile = {
        "protocol_version": st.sampled_from(BAD_VERSIONS),
        "session_id": texts(),
        "list": texts("missing-list", "secret-ops", "no-such-list", "a" * 100),
        "purpose": texts(),
        "epoch": st.one_of(
            st.sampled_from([0, served.epoch + 1, 2**64 - 1]), st.integers(0, 2**64 - 1)
        ),
        "list_version": st.one_of(
            st.sampled_from([0, served.list_version + 1, 2**64 - 1]), st.integers(0, 2**64 - 1)
        ),
        "blinded": st.one_of(
            packed(32),
            st.integers(0, 4).map(lambda k: b"".join(points[:k])),
            st.sampled_from([MAX_BATCH, MAX_BATCH + 1]).map(lambda k: points[0] * k),
        ),
    }

    @st.composite
    def requests(draw: st.DrawFn) -> pb.ScreenRequest:
        fields: dict[str, Any] = dict(
            protocol_version=PROTOCOL_VERSION,
            session_id=draw(fresh_ids),
            list="targets",
            epoch=served.epoch,
            list_version=served.list_version,
            purpose="hostile screening",
            blinded=b"".join(points[:2]),
        )
        for name in draw(st.sets(st.sampled_from(sorted(hostile)), max_size=3)):
            fields[name] = draw(hostile[name])
        return pb.ScreenRequest(**fields)

    with _channel(served.fed) as channel:
        methods = raw_methods(channel)

        @HYPOTHESIS
        @given(request=st.one_of(requests(), requests(), st.binary(min_size=1, max_size=40)))
        def screen(request: Any) -> None:
            try:
                _, call = methods["Screen"].with_call(_bytes(request), timeout=30)
                code, details = call.code(), call.details() or ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
            tally.ended(code, details, served, _strings(request))

        screen()
    _settle(served, tally, before, ("screen.refused",))
    assert tally.codes["OK"] and tally.refused, tally
    _still_serving(served)


def test_a_session_cancelled_while_it_is_recorded_ends_failed_not_running(served: Served) -> None:
    """The peer cancels while the responder's thread records the session: the session is
    then recorded failed and audited, not left `running` for ever."""
    fed = served.fed
    node = fed.node(RESPONDER)
    session_id = secrets.token_hex(16)
    release = threading.Event()

    def requests() -> Iterator[pb.InitiatorMessage]:
        yield hello(session_id=session_id, set_size=1)
        release.wait(60)

    lock = sqlite3.connect(node / "store.sqlite", isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the responder's write of the session now waits
        with _channel(fed) as channel, ThreadPoolExecutor(1) as pool:
            call = pb_grpc.MatchingStub(channel).Session(requests(), timeout=60)
            reply = pool.submit(lambda: next(call, None))
            # No reply while the store is locked: the responder is recording the session.
            assert not wait([reply], timeout=1.0).done
            call.cancel()
            release.set()
            lock.execute("ROLLBACK")
            assert wait([reply], timeout=30).done
    finally:
        release.set()
        lock.close()
    status = wait_for(
        lambda: (
            session_statuses(node).get(session_id) in ("failed", "completed")
            and session_statuses(node)[session_id]
        ),
        timeout=30,
        what="the cancelled session to be closed",
    )
    assert status == "failed"
    failed = [e for e in audit_entries(node, ("session.failed",)) if e["session_id"] == session_id]
    assert [e["reason"] for e in failed] == [
        "cancelled: the initiator cancelled or disconnected, or this node was stopping"
    ]
    verify_audit(fed, RESPONDER)
