"""What a peer is told (issue 10, STYLE 12): no refusal names the node's internals.

A served node (a real `blindmatch serve` process, real mTLS) refuses requests
of every kind — an unknown peer, a forbidden list, a forbidden mode, an allowed
list that does not exist, bad hello fields, every limit, screening refusals,
malformed bytes, a stall — and each status's details are checked: never the
node directory, the store or its files, a local list the peer may not use
("secret-ops" exists on the responder), nor a Python class name. A forbidden
list is refused in the same words whether or not it exists. The operator's
side of each refusal, the audit reason, is a human sentence too.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from crypto import oprf
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.policy import PROTOCOL_VERSION
from tests.federation import Federation, peer_channel
from tests.node.rpc.peer_wire import (
    CLASS_NAME,
    REFUSAL_EVENTS,
    audit_entries,
    federation,
    hello,
    leaks,
    raw_methods,
    set_node_options,
    verify_audit,
    wait_for,
)

RESPONDER = "police-nl"
CUSTOMS = "customs-nl"  # lists targets and missing-list; modes mutual and screen; small limits
RATED = "rated-nl"  # one session an hour
SCREENLESS = "screenless-nl"  # mutual only
STRANGER = "stranger-nl"  # a federation member the responder does not know
HIDDEN = "secret-ops"
IDLE = 3
WATCHLIST = """ref,passport,passport_country,email,label
P1,AB1234567,NLD,a@example.org,police case 1
P2,CD7654321,NLD,,police case 2
"""
SECRET = """ref,passport,passport_country,label
S1,ZZ1111111,NLD,undercover
"""


@dataclass(frozen=True)
class Refusal:
    """A refused call as the peer saw it, and the strings the peer itself sent."""

    code: grpc.StatusCode
    details: str
    echoed: tuple[str, ...] = ()


def _bytes(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def _session(fed: Federation, agency: str, *messages: Any) -> Refusal:
    """Sends `messages` (protobuf or raw bytes) on one Session stream as `agency`."""
    data = [_bytes(m) for m in messages]
    with peer_channel(fed.node(agency), RESPONDER, fed.addresses[RESPONDER]) as channel:
        call = raw_methods(channel)["Session"](iter(data), timeout=30)
        try:
            for _ in call:
                pass
        except grpc.RpcError:
            pass
        echoed = _echoed(messages[0])
        return Refusal(call.code(), call.details() or "", echoed)


def _unary(fed: Federation, agency: str, method: str, request: Any) -> Refusal:
    """Sends one request as `agency`; returns how it was refused."""
    data = _bytes(request)
    with peer_channel(fed.node(agency), RESPONDER, fed.addresses[RESPONDER]) as channel:
        try:
            result = raw_methods(channel)[method](data, timeout=30)
            if method == "FetchEncodedList":
                list(result)
        except grpc.RpcError as exc:
            return Refusal(exc.code(), exc.details() or "", _echoed(request))
    return Refusal(grpc.StatusCode.OK, "", _echoed(request))  # not refused: the test says so


def _echoed(message: Any) -> tuple[str, ...]:
    """The strings a request sent, which its refusal may quote back."""
    if isinstance(message, bytes):
        return ()
    if isinstance(message, pb.InitiatorMessage):
        message = message.hello
    return tuple(v for _, v in message.ListFields() if isinstance(v, str))


def _fetch(**fields: object) -> pb.FetchEncodedListRequest:
    values: dict[str, object] = dict(
        protocol_version=PROTOCOL_VERSION, list="targets", purpose="peer text test"
    )
    return pb.FetchEncodedListRequest(**{**values, **fields})  # type: ignore[arg-type]


def _stalled_and_over_concurrency(fed: Federation) -> tuple[Refusal, Refusal]:
    """CUSTOMS may hold one call: a second is refused while the first stalls; the first is then
    aborted by the idle timeout."""
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield hello(set_size=1).SerializeToString()
        release.wait(60)

    with peer_channel(fed.node(CUSTOMS), RESPONDER, fed.addresses[RESPONDER]) as channel:
        call = raw_methods(channel)["Session"](requests(), timeout=60)
        try:
            next(call)  # the hello reply: the slot is held
            second = _session(fed, CUSTOMS, hello(set_size=1))
            try:
                for _ in call:
                    pass
            except grpc.RpcError:
                pass
            stalled = Refusal(call.code(), call.details() or "")
        finally:
            release.set()
    return stalled, second


def _provoke(fed: Federation) -> dict[str, Refusal]:
    """Every refusal the node can give a peer, once each."""
    screen_epoch = next(iter(_fetched(fed)))
    points = [oprf.hash_to_group(bytes([i])) for i in range(4)]

    def screen(**fields: object) -> pb.ScreenRequest:
        values: dict[str, object] = dict(
            protocol_version=PROTOCOL_VERSION,
            session_id=secrets.token_hex(16),
            list="targets",
            epoch=screen_epoch.epoch,
            list_version=screen_epoch.list_version,
            purpose="peer text test",
            blinded=b"".join(points[:1]),
        )
        return pb.ScreenRequest(**{**values, **fields})  # type: ignore[arg-type]

    used = hello()
    _session(fed, CUSTOMS, used)  # recorded, then failed: its id is taken
    _session(fed, RATED, hello(set_size=1))  # uses up RATED's one session this hour
    stalled, over_concurrency = _stalled_and_over_concurrency(fed)
    big = pb.InitiatorMessage(blinded=pb.Elements(packed=bytes(5 * 2**20)))
    return {
        # Session
        "unknown-peer": _session(fed, STRANGER, hello()),
        "forbidden-list": _session(fed, CUSTOMS, hello(list=HIDDEN)),
        "forbidden-absent-list": _session(fed, CUSTOMS, hello(list="no-such-list")),
        "forbidden-mode": _session(fed, CUSTOMS, hello(mode=pb.MODE_COUNT)),
        "missing-allowed-list": _session(fed, CUSTOMS, hello(list="missing-list")),
        "bad-version": _session(fed, CUSTOMS, hello(protocol_version=PROTOCOL_VERSION + 1)),
        "bad-session-id": _session(fed, CUSTOMS, hello(session_id="x" * 100_000)),
        "reused-session-id": _session(fed, CUSTOMS, hello(session_id=used.hello.session_id)),
        "bad-suite": _session(fed, CUSTOMS, hello(suite="p256-sha256")),
        "bad-mode": _session(fed, CUSTOMS, hello(mode=pb.MODE_UNSPECIFIED)),
        "bad-list-name": _session(fed, CUSTOMS, hello(list="l" * 1_200)),
        "bad-purpose": _session(fed, CUSTOMS, hello(purpose="\x00\x07\x1b[31m")),
        "bad-initiator-list": _session(fed, CUSTOMS, hello(initiator_list="../etc")),
        "bad-set-size": _session(fed, CUSTOMS, hello(set_size=2**64 - 1)),
        "over-set-size": _session(fed, CUSTOMS, hello(set_size=101)),
        "over-rate": _session(fed, RATED, hello(set_size=1)),
        "over-concurrency": over_concurrency,
        "stalled": stalled,
        "no-hello": _session(fed, CUSTOMS, pb.InitiatorMessage(reveal=pb.Tags(packed=b""))),
        "not-protobuf": _session(fed, CUSTOMS, b"\xff\xff\xff\xff\x0f"),
        "bad-point": _session(
            fed,
            CUSTOMS,
            hello(set_size=2),
            pb.InitiatorMessage(blinded=pb.Elements(packed=b"\xff" * 64)),
        ),
        "over-message-limit": _session(fed, CUSTOMS, hello(set_size=2), big),
        "too-many-labels": _session(
            fed,
            CUSTOMS,
            hello(set_size=1),
            pb.InitiatorMessage(labels=pb.Labels(index=[0, 0], label=["a", "b"])),
        ),
        # FetchEncodedList
        "fetch-unknown-peer": _unary(fed, STRANGER, "FetchEncodedList", _fetch()),
        "fetch-forbidden-list": _unary(fed, CUSTOMS, "FetchEncodedList", _fetch(list=HIDDEN)),
        "fetch-forbidden-absent-list": _unary(
            fed, CUSTOMS, "FetchEncodedList", _fetch(list="no-such-list")
        ),
        "fetch-forbidden-mode": _unary(fed, SCREENLESS, "FetchEncodedList", _fetch()),
        "fetch-missing-allowed-list": _unary(
            fed, CUSTOMS, "FetchEncodedList", _fetch(list="missing-list")
        ),
        "fetch-bad-version": _unary(fed, CUSTOMS, "FetchEncodedList", _fetch(protocol_version=9)),
        "fetch-bad-purpose": _unary(fed, CUSTOMS, "FetchEncodedList", _fetch(purpose="p" * 301)),
        # A list name (field 2) that is not UTF-8.
        "fetch-not-protobuf": _unary(fed, CUSTOMS, "FetchEncodedList", b"\x12\x02\xff\xfe"),
        # Screen
        "screen-unknown-peer": _unary(fed, STRANGER, "Screen", screen()),
        "screen-forbidden-list": _unary(fed, CUSTOMS, "Screen", screen(list=HIDDEN)),
        "screen-forbidden-absent-list": _unary(fed, CUSTOMS, "Screen", screen(list="no-such-list")),
        "screen-forbidden-mode": _unary(fed, SCREENLESS, "Screen", screen()),
        "screen-missing-allowed-list": _unary(fed, CUSTOMS, "Screen", screen(list="missing-list")),
        "screen-ragged-batch": _unary(fed, CUSTOMS, "Screen", screen(blinded=b"\x01" * 33)),
        "screen-bad-points": _unary(fed, CUSTOMS, "Screen", screen(blinded=b"\xff" * 64)),
        "screen-stale-epoch": _unary(fed, CUSTOMS, "Screen", screen(epoch=screen_epoch.epoch + 7)),
        "screen-over-budget": _unary(fed, CUSTOMS, "Screen", screen(blinded=b"".join(points))),
        "screen-bad-session-id": _unary(fed, CUSTOMS, "Screen", screen(session_id="Z" * 40)),
        "screen-not-protobuf": _unary(fed, CUSTOMS, "Screen", b"\xff" * 9),
        "screen-over-message-limit": _unary(
            fed, CUSTOMS, "Screen", screen(blinded=bytes(5 * 2**20))
        ),
    }


def _fetched(fed: Federation) -> list[pb.EncodedListChunk]:
    with peer_channel(fed.node(CUSTOMS), RESPONDER, fed.addresses[RESPONDER]) as channel:
        return list(pb_grpc.MatchingStub(channel).FetchEncodedList(_fetch(), timeout=30))


EXPECTED = {
    "unknown-peer": "UNAUTHENTICATED",
    "forbidden-list": "PERMISSION_DENIED",
    "forbidden-absent-list": "PERMISSION_DENIED",
    "forbidden-mode": "PERMISSION_DENIED",
    "missing-allowed-list": "NOT_FOUND",
    "bad-version": "FAILED_PRECONDITION",
    "bad-session-id": "INVALID_ARGUMENT",
    "reused-session-id": "INVALID_ARGUMENT",
    "bad-suite": "FAILED_PRECONDITION",
    "bad-mode": "INVALID_ARGUMENT",
    "bad-list-name": "INVALID_ARGUMENT",
    "bad-purpose": "INVALID_ARGUMENT",
    "bad-initiator-list": "INVALID_ARGUMENT",
    "bad-set-size": "INVALID_ARGUMENT",
    "over-set-size": "RESOURCE_EXHAUSTED",
    "over-rate": "RESOURCE_EXHAUSTED",
    "over-concurrency": "RESOURCE_EXHAUSTED",
    "stalled": "ABORTED",
    "no-hello": "INVALID_ARGUMENT",
    "not-protobuf": "INVALID_ARGUMENT",
    "bad-point": "INVALID_ARGUMENT",
    "over-message-limit": "RESOURCE_EXHAUSTED",
    "too-many-labels": "INVALID_ARGUMENT",
    "fetch-unknown-peer": "UNAUTHENTICATED",
    "fetch-forbidden-list": "PERMISSION_DENIED",
    "fetch-forbidden-absent-list": "PERMISSION_DENIED",
    "fetch-forbidden-mode": "PERMISSION_DENIED",
    "fetch-missing-allowed-list": "NOT_FOUND",
    "fetch-bad-version": "FAILED_PRECONDITION",
    "fetch-bad-purpose": "INVALID_ARGUMENT",
    "fetch-not-protobuf": "INVALID_ARGUMENT",
    "screen-unknown-peer": "UNAUTHENTICATED",
    "screen-forbidden-list": "PERMISSION_DENIED",
    "screen-forbidden-absent-list": "PERMISSION_DENIED",
    "screen-forbidden-mode": "PERMISSION_DENIED",
    "screen-missing-allowed-list": "NOT_FOUND",
    "screen-ragged-batch": "INVALID_ARGUMENT",
    "screen-bad-points": "INVALID_ARGUMENT",
    "screen-stale-epoch": "FAILED_PRECONDITION",
    "screen-over-budget": "RESOURCE_EXHAUSTED",
    "screen-bad-session-id": "INVALID_ARGUMENT",
    "screen-not-protobuf": "INVALID_ARGUMENT",
    "screen-over-message-limit": "RESOURCE_EXHAUSTED",
}


@dataclass
class Provoked:
    """The served node and every refusal it gave, by case."""

    fed: Federation
    refusals: dict[str, Refusal]


@pytest.fixture(scope="module")
def provoked() -> Iterator[Provoked]:
    with federation("peer-messages") as fed:
        for agency in (RESPONDER, CUSTOMS, RATED, SCREENLESS, STRANGER):
            fed.add_node(agency)
        fed.add_peer(RESPONDER, CUSTOMS, "--lists", "targets,missing-list", "--modes",
                     "mutual,screen", "--max-set-size", "100", "--screen-budget", "3",
                     "--max-concurrent", "1", "--sessions-per-hour", "1000")  # fmt: skip
        fed.add_peer(RESPONDER, RATED, "--sessions-per-hour", "1")
        fed.add_peer(RESPONDER, SCREENLESS, "--modes", "mutual")
        fed.ingest(RESPONDER, "targets", WATCHLIST)
        fed.ingest(RESPONDER, HIDDEN, SECRET)
        set_node_options(fed.node(RESPONDER), idle_seconds=IDLE)
        fed.start(RESPONDER)
        yield Provoked(fed, _provoke(fed))


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_a_refusal_tells_the_peer_nothing_of_the_nodes_internals(
    provoked: Provoked, case: str
) -> None:
    refusal = provoked.refusals[case]
    assert refusal.code.name == EXPECTED[case], refusal
    assert refusal.details.strip()
    # A request may be told back the names it sent itself (its own strings), nothing more.
    hidden = [] if HIDDEN in refusal.echoed else [HIDDEN]
    assert not leaks(refusal.details, provoked.fed.root, hidden, refusal.echoed), refusal


@pytest.mark.parametrize("rpc", ["", "fetch-", "screen-"])
def test_a_forbidden_list_is_refused_alike_whether_or_not_it_exists(
    provoked: Provoked, rpc: str
) -> None:
    exists = provoked.refusals[f"{rpc}forbidden-list"]
    absent = provoked.refusals[f"{rpc}forbidden-absent-list"]
    assert exists.code is absent.code is grpc.StatusCode.PERMISSION_DENIED
    assert exists.details == absent.details.replace("no-such-list", HIDDEN)


def test_every_refusal_is_audited_with_a_human_reason(provoked: Provoked) -> None:
    fed = provoked.fed
    # Two more sessions failed on purpose: the one whose id is reused, and RATED's first.
    expected = len(provoked.refusals) + 2
    entries = wait_for(
        lambda: (
            (e := audit_entries(fed.node(RESPONDER), REFUSAL_EVENTS)) and len(e) >= expected and e
        ),
        timeout=30,
        what=f"{expected} refusals to be audited",
    )
    for entry in entries:
        reason = entry["reason"]
        assert reason.strip() and not CLASS_NAME.findall(reason), entry
    verify_audit(fed, RESPONDER)
