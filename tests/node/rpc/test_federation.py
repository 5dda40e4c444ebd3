"""End to end: real `blindmatch serve` processes over real mTLS on loopback (issue 4)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.data.sample import write_csv
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from tests.conftest import BLINDMATCH
from tests.federation import Federation, peer_channel
from tests.node.rpc.peer_wire import hello

CUSTOMS = """ref,name,dob,passport,passport_country,phone,iban,container,label
C1,"ALVAREZ NUNEZ, Jose",03.04.1980,,,06-12345678,,,customs case C1
C2,,,,,,NL91 ABNA 0417 1643 00,,customs case C2
C3,Pieter de Vries,19900215,NX4R71K22,NLD,,,,customs case C3
C4,Secret Person,1971-01-01,ZZ9876543,NLD,+31 6 99887766,DE89 3704 0044 0532 0130 00,\
TGHU8765436,customs C4
"""
POLICE = """ref,name,dob,passport,passport_country,phone,iban,label
P1,José Álvarez-Núñez,1980-04-03,,,+31 6 1234 5678,,police op TULIP
P2,,,,,,NL91ABNA0417164300,police op DELTA
P3,"DE VRIES, PIETER",15.02.1990,nx4r-71k22,NLD,,,police watchlist 1182
P4,Other Person,1965-06-06,YY1234567,DEU,+49 151 23456789,,police not shared
"""
# The initiator's identifiers that police-nl does not hold, raw and canonical.
NOT_SHARED = [
    b"Secret Person",
    b"person secret",
    b"ZZ9876543",
    b"99887766",
    b"+31699887766",
    b"DE89370400440532013000",
    b"DE89 3704",
    b"TGHU8765436",
    b"customs C4",
]
EXPECTED_CUSTOMS = {
    ("C1", "person"),
    ("C1", "person_year"),
    ("C1", "phone"),
    ("C2", "iban"),
    ("C3", "person"),
    ("C3", "person_year"),
    ("C3", "passport"),
    ("C3", "passport_number"),
}
EXPECTED_POLICE = {
    ("P1", "person"),
    ("P1", "person_year"),
    ("P1", "phone"),
    ("P2", "iban"),
    ("P3", "person"),
    ("P3", "person_year"),
    ("P3", "passport"),
    ("P3", "passport_number"),
}
LABELS = {
    "C1": "customs case C1",
    "C2": "customs case C2",
    "C3": "customs case C3",
    "P1": "police op TULIP",
    "P2": "police op DELTA",
    "P3": "police watchlist 1182",
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("federation"))
    try:
        for agency in ("customs-nl", "police-nl", "stranger-nl", "border-be"):
            fed.add_node(agency)
            if agency != "police-nl":
                fed.ingest(agency, "seizures", CUSTOMS)
        fed.add_peer("customs-nl", "police-nl", "--release-labels")
        fed.add_peer(
            "police-nl",
            "customs-nl",
            "--release-labels",
            "--lists",
            "targets,large",
            "--max-set-size",
            "60000",
        )
        fed.add_peer("stranger-nl", "police-nl")  # police-nl does not know stranger-nl
        fed.add_peer("border-be", "police-nl")
        fed.add_peer("police-nl", "border-be", "--modes", "count")
        fed.ingest("police-nl", "targets", POLICE)
        fed.ingest("police-nl", "secret", POLICE)
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def test_mutual_session_matches_messy_notations_on_both_sides(fed: Federation) -> None:
    result = fed.match("customs-nl", "police-nl", "seizures", "targets")
    assert result["mode"] == "mutual" and result["suite"] == "x25519-blake3"
    assert result["match_count"] == 8
    assert {(m["ref"], m["type"]) for m in result["matches"]} == EXPECTED_CUSTOMS
    police_labels = {
        "C1": "police op TULIP",
        "C2": "police op DELTA",
        "C3": "police watchlist 1182",
    }
    assert all(m["peer_label"] == police_labels[m["ref"]] for m in result["matches"])

    theirs = fed.hits("police-nl", "--peer", "customs-nl", "--list", "targets")
    assert {(h["ref"], h["type"]) for h in theirs} == EXPECTED_POLICE
    customs_labels = {"P1": "customs case C1", "P2": "customs case C2", "P3": "customs case C3"}
    assert all(h["peer_label"] == customs_labels[h["ref"]] for h in theirs)
    assert all((h["role"], h["mode"], h["peer"]) == ("responder", "mutual", "customs-nl")
               for h in theirs)  # fmt: skip
    ours = fed.hits("customs-nl", "--peer", "police-nl", "--list", "seizures")
    assert {(h["ref"], h["type"]) for h in ours} == EXPECTED_CUSTOMS
    assert all(h["role"] == "initiator" and h["status"] == "new" for h in ours)


def test_count_session_reveals_only_the_number(fed: Federation) -> None:
    before = {agency: fed.hits(agency) for agency in ("customs-nl", "police-nl")}
    result = fed.match("customs-nl", "police-nl", "seizures", "targets", mode="count")
    assert (result["match_count"], result["matches"]) == (8, [])
    for agency, hits in before.items():  # a count session records no hit, new or seen again
        assert fed.hits(agency) == hits
    # The responder never learns the count, so its log must not claim one.
    lines = [line for line in (fed.root / "police-nl.log").read_text().splitlines()
             if result["session_id"] in line]  # fmt: skip
    assert lines and all("shared" not in line for line in lines), lines
    assert any("count kept by the initiator" in line for line in lines), lines


def test_responder_keeps_none_of_the_initiators_other_identifiers(fed: Federation) -> None:
    fed.match("customs-nl", "police-nl", "seizures", "targets")
    for path in fed.node("police-nl").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in NOT_SHARED if s in data], path
    log = (fed.root / "police-nl.log").read_bytes()
    assert not [s for s in NOT_SHARED if s in log]


@pytest.mark.parametrize(
    "agency,peer_list,mode,status",
    [
        ("stranger-nl", "targets", "mutual", "UNAUTHENTICATED: your agency is not a peer"),
        ("customs-nl", "secret", "mutual", "PERMISSION_DENIED: list 'secret' is not available"),
        ("border-be", "targets", "mutual", "PERMISSION_DENIED: mode 'mutual' is not allowed"),
    ],
    ids=["unknown-peer", "forbidden-list", "forbidden-mode"],
)
def test_refusals_carry_the_right_status(
    fed: Federation, agency: str, peer_list: str, mode: str, status: str
) -> None:
    proc = fed.match(agency, "police-nl", "seizures", peer_list, mode=mode, check=False)
    assert proc.returncode == 1
    assert f"refused: {status}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_node_without_a_federation_certificate_cannot_connect(fed: Federation) -> None:
    other_ca = fed.root / "rogue-ca"
    fed.cli("ca", "init", other_ca)
    fed.add_node("rogue-nl", ca=other_ca)
    fed.add_peer("rogue-nl", "police-nl")
    fed.ingest("rogue-nl", "seizures", CUSTOMS)
    proc = fed.match("rogue-nl", "police-nl", "seizures", "targets", check=False)
    assert proc.returncode == 1 and "TLS handshake" in proc.stderr


def test_a_federation_member_cannot_answer_in_another_agencys_place(fed: Federation) -> None:
    # stranger-nl believes customs-nl listens where police-nl does: police-nl's
    # certificate does not name customs-nl, so the handshake fails.
    fed.cli("peer", "add", fed.node("stranger-nl"), "--agency", "customs-nl",
            "--address", fed.addresses["police-nl"])  # fmt: skip
    proc = fed.match("stranger-nl", "customs-nl", "seizures", "targets", check=False)
    assert proc.returncode == 1 and "TLS handshake" in proc.stderr


def restart(fed: Federation, agency: str) -> None:
    assert fed.stop(agency) == 0
    fed.start(agency)


def raw_session(fed: Federation, messages: list[pb.InitiatorMessage]) -> grpc.RpcError:
    """Sends hand-made messages as customs-nl; returns the error the responder ended with."""
    with peer_channel(fed.node("customs-nl"), "police-nl", fed.addresses["police-nl"]) as channel:
        responses = pb_grpc.MatchingStub(channel).Session(iter(messages), timeout=30)
        with pytest.raises(grpc.RpcError) as caught:
            for _ in responses:
                pass
    return caught.value


@pytest.mark.parametrize(
    "messages,code,reason",
    [
        (
            [hello(), pb.InitiatorMessage(blinded=pb.Elements(packed=b"\x01" * 33))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "whole number",
        ),
        (
            [hello(), pb.InitiatorMessage(blinded=pb.Elements(packed=b"\xff" * 64))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a valid x25519 point",
        ),
        (
            [hello(), pb.InitiatorMessage(blinded=pb.Elements(packed=bytes(96)))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "more than the 2 elements",
        ),
        (
            [pb.InitiatorMessage(blinded=pb.Elements(packed=bytes(32)))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "open with a hello",
        ),
        ([hello(suite="p256-sha256")], grpc.StatusCode.FAILED_PRECONDITION, "suite"),
        ([hello(protocol_version=3)], grpc.StatusCode.FAILED_PRECONDITION, "protocol version 3"),
        (
            [hello(set_size=10**9)],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than this node",
        ),
        (
            [hello(), pb.InitiatorMessage(blinded=pb.Elements(packed=bytes(5 * 2**20)))],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",
        ),
        ([hello(list="nope")], grpc.StatusCode.PERMISSION_DENIED, "'nope'"),
    ],
    ids=[
        "ragged",
        "bad-point",
        "oversend",
        "no-hello",
        "suite",
        "version",
        "oversized-set",
        "oversized-message",
        "list",
    ],  # fmt: skip
)
def test_hostile_messages_are_refused_and_the_node_keeps_serving(
    fed: Federation, messages: list[pb.InitiatorMessage], code: grpc.StatusCode, reason: str
) -> None:
    error = raw_session(fed, messages)
    assert error.code() == code and reason in error.details()
    result = fed.match("customs-nl", "police-nl", "seizures", "targets", mode="count")
    assert result["match_count"] == 8


def test_health_and_reflection_are_served(fed: Federation) -> None:
    with peer_channel(fed.node("customs-nl"), "police-nl", fed.addresses["police-nl"]) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="blindmatch.v1.Matching"), timeout=10
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(
            reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([request]), timeout=10
            )
        )
        names = {s.name for s in reply.list_services_response.service}
        assert "blindmatch.v1.Matching" in names and "grpc.health.v1.Health" in names


def large_lists(fed: Federation) -> None:
    """Both sides get the same 30,000-record list, so a session lasts a few seconds."""
    if not (fed.root / "large.csv").exists():
        write_csv(fed.root / "large.csv", 30_000, seed=7)
        fed.cli("ingest", fed.node("police-nl"), "--list", "large", fed.root / "large.csv")
        fed.cli("ingest", fed.node("customs-nl"), "--list", "large", fed.root / "large.csv")


def start_large_match(fed: Federation, purpose: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BLINDMATCH, "match", str(fed.node("customs-nl")), "--peer", "police-nl", "--list",
         "large", "--purpose", purpose, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_drains_a_session_in_flight(fed: Federation) -> None:
    large_lists(fed)
    match = start_large_match(fed, "drain test")
    try:
        wait_for_running_session(fed.node("police-nl"), "drain test")
        assert fed.stop("police-nl") == 0  # SIGTERM: NOT_SERVING, then stop with grace
        out, err = match.communicate(timeout=120)
    finally:
        match.kill()
        fed.start("police-nl")
    assert match.returncode == 0, err
    assert json.loads(out)["match_count"] > 20_000


def test_responder_killed_mid_session_leaves_no_partial_hits(fed: Federation) -> None:
    large_lists(fed)
    hits_before = fed.hits("customs-nl")
    match = start_large_match(fed, "kill test")
    try:
        wait_for_running_session(fed.node("police-nl"), "kill test")
        fed.stop("police-nl", signal.SIGKILL)
        out, err = match.communicate(timeout=120)
    finally:
        match.kill()
    assert match.returncode == 1
    assert json.loads(out)["error"]["kind"] == "peer_error"  # --json: the error on stdout too
    assert err.startswith("blindmatch: error: peer police-nl")
    assert fed.hits("customs-nl") == hits_before
    with sqlite3.connect(fed.node("customs-nl") / "store.sqlite") as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM sessions ORDER BY rowid")]
    assert statuses[-1] == "failed"
    fed.start("police-nl")


def wait_for_running_session(node: Path, purpose: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(node / "store.sqlite") as db:
            query = "SELECT 1 FROM sessions WHERE status = 'running' AND purpose = ?"
            if db.execute(query, (purpose,)).fetchone():
                return
        time.sleep(0.02)
    raise AssertionError("the responder never started the session")


def test_restart_keeps_lists_hits_and_audit_and_audit_detects_alteration(fed: Federation) -> None:
    fed.match("customs-nl", "police-nl", "seizures", "targets")
    police = fed.node("police-nl")
    before = [fed.cli(*args, police).stdout for args in (("lists", "--json"), ("hits", "--json"))]
    verified = fed.cli("audit", "verify", police).stdout
    assert "intact" in verified
    restart(fed, "police-nl")
    assert fed.cli("audit", "verify", police).stdout == verified  # before `hits` audits again
    after = [fed.cli(*args, police).stdout for args in (("lists", "--json"), ("hits", "--json"))]
    assert after == before

    copy = fed.root / "police-copy"
    subprocess.run(["cp", "-r", str(police), str(copy)], check=True)
    with sqlite3.connect(copy / "store.sqlite") as db:  # an attacker with file access
        db.execute("DROP TRIGGER audit_append_only_update")
        (seq,) = db.execute(
            "SELECT min(seq) FROM audit "
            "WHERE event = 'session.answered' AND body LIKE '%customs-nl%'"
        ).fetchone()
        db.execute(
            "UPDATE audit SET body = replace(body, 'customs-nl', 'someone-else') WHERE seq = ?",
            (seq,),
        )
    proc = fed.cli("audit", "verify", copy, check=False)
    assert proc.returncode == 1 and f"entry {seq} " in proc.stderr and "altered" in proc.stderr


def test_sigterm_drains_and_exits_cleanly(fed: Federation) -> None:
    assert fed.stop("police-nl") == 0
    fed.start("police-nl")
