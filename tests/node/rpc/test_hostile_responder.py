"""A hostile responder against the real `blindmatch match` (issue 10).

The responder is a gRPC server in this test process with a real node
certificate for police-nl from the federation's CA, implementing the generated
`MatchingServicer` with one misbehaviour per test: bad points, bad labels, more
elements than declared, a set larger than policy allows, out-of-order
messages, a stall, no summary, a hostile status. Each time the initiator must
exit 1 with one clear line naming the peer (no traceback), record the session
`failed` with a human reason in its store and audit log, store no hit, and
keep its audit log intact.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from crypto.groups import ELEMENT_SIZE, TAG_SIZE, get_suite
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.setup import pki
from tests.federation import Federation

CUSTOMS = """ref,name,dob,passport,passport_country,phone,iban,label
C1,"ALVAREZ NUNEZ, Jose",03.04.1980,,,06-12345678,,customs case C1
C2,,,,,,NL91 ABNA 0417 1643 00,customs case C2
C3,Pieter de Vries,19900215,NX4R71K22,NLD,,,customs case C3
"""
IDLE_SECONDS = 3  # the initiator's idle_seconds: how long the stall case takes
MAX_SET_SIZE = 1000  # the initiator's max_set_size for police-nl
HOLD_SECONDS = 30.0  # how long a hostile call waits for the initiator to give up
POINTS = get_suite("x25519-blake3").hash_batch([b"hostile %d" % i for i in range(4)])
CLASS_NAME = re.compile(r"\b_?(?:[A-Z][a-z0-9]+){2,}\b")  # e.g. InvalidElement, _Rendezvous


@dataclass
class Call:
    """One Session call as the hostile responder sees it."""

    requests: Iterator[pb.InitiatorMessage]
    context: grpc.ServicerContext
    hello: pb.Hello
    ended: threading.Event

    def read_x_a(self) -> int:
        """Reads the initiator's blinded elements; returns how many."""
        count = 0
        while count < self.hello.set_size:
            message = next(self.requests)
            assert message.WhichOneof("body") == "blinded", message
            count += len(message.blinded.packed) // ELEMENT_SIZE
        return count

    def hold(self) -> None:
        """Keeps the call open until the initiator ends it (or HOLD_SECONDS pass)."""
        self.ended.wait(HOLD_SECONDS)

    def read_to_end(self) -> None:
        """Reads whatever the initiator sends until it finishes sending."""
        for _ in self.requests:
            pass


Script = Callable[[Call], Iterator[pb.ResponderMessage]]


class HostileResponder(pb_grpc.MatchingServicer):
    """Answers every Session call with `script`, whatever it asks."""

    def __init__(self) -> None:
        self.script: Script | None = None

    def Session(  # noqa: N802 (gRPC's method name)
        self, request_iterator: Iterator[pb.InitiatorMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.ResponderMessage]:
        ended = threading.Event()
        context.add_callback(ended.set)
        first = next(request_iterator)
        assert self.script is not None
        yield from self.script(Call(request_iterator, context, first.hello, ended))


def reply(set_size: int) -> pb.ResponderMessage:
    return pb.ResponderMessage(hello_reply=pb.HelloReply(set_size=set_size, list_kind="watchlist"))


def y_b(packed: bytes) -> pb.ResponderMessage:
    return pb.ResponderMessage(blinded=pb.Elements(packed=packed))


def labels(index: list[int], label: list[str]) -> pb.ResponderMessage:
    return pb.ResponderMessage(labels=pb.Labels(index=index, label=label))


def sends(*messages: pb.ResponderMessage) -> Script:
    """A script that sends `messages`, then holds the call open."""

    def script(call: Call) -> Iterator[pb.ResponderMessage]:
        yield from messages
        call.hold()

    return script


def no_summary(call: Call) -> Iterator[pb.ResponderMessage]:
    """A whole session by the protocol, but the call ends without the summary."""
    yield reply(2)
    count = call.read_x_a()
    yield pb.ResponderMessage(evaluated=pb.Tags(packed=bytes(TAG_SIZE) * count))
    yield y_b(POINTS[: 2 * ELEMENT_SIZE])
    call.read_to_end()


def hostile_status(call: Call) -> Iterator[pb.ResponderMessage]:
    """A refusal whose text is long, multi-line and full of terminal escapes."""
    yield reply(2)
    call.read_x_a()  # nothing of the initiator's left in flight: the status is what it reads
    details = "\x1b[31m" + "Z" * 5000 + "\nTraceback (most recent call last):\n\x07"
    call.context.abort(grpc.StatusCode.INVALID_ARGUMENT, details)


TWO = POINTS[: 2 * ELEMENT_SIZE]
CASES: dict[str, tuple[str, Script, str]] = {
    # case: (mode, script, what the error and the audited reason say)
    "bad-point": ("mutual", sends(reply(2), y_b(b"\xff" * 64)), "not a valid x25519 point"),
    "ragged-point": ("mutual", sends(reply(2), y_b(TWO[:33])), "whole number"),
    "extra-elements": ("mutual", sends(reply(2), y_b(POINTS[:96])), "more than the 2 elements"),
    "oversized-set": (
        "mutual",
        sends(reply(MAX_SET_SIZE + 1)),
        f"more than its max_set_size of {MAX_SET_SIZE:,}",
    ),
    "label-index": ("mutual", sends(reply(2), y_b(TWO), labels([7], ["x"])), "label index 7"),
    "label-lengths": (
        "mutual",
        sends(reply(2), y_b(TWO), labels([0, 1], ["x"])),
        "2 indices but 1 labels",
    ),
    "label-too-long": (
        "mutual",
        sends(reply(2), y_b(TWO), labels([0], ["x" * 2000])),
        "longer than 1000 characters",
    ),
    "label-flood": (  # each message valid, together more than the peer's set may hold
        "mutual",
        sends(reply(2), y_b(TWO), *[labels([0] * 500, ["x"] * 500)] * 3),
        f"more labels than its max_set_size of {MAX_SET_SIZE:,}",
    ),
    "labels-in-count": (
        "count",
        sends(reply(2), y_b(TWO), labels([0], ["x"])),
        "no place in a count session",
    ),
    "second-reply": ("mutual", sends(reply(2), reply(3)), "second hello reply"),
    "before-reply": ("mutual", sends(y_b(TWO)), "before its hello reply"),
    "empty-message": ("mutual", sends(pb.ResponderMessage()), "without a body"),
    "stall": ("mutual", sends(reply(2)), f"sent nothing for {IDLE_SECONDS} s"),
    "no-summary": ("mutual", no_summary, "without a summary"),
    "hostile-status": ("mutual", hostile_status, "refused: INVALID_ARGUMENT: [31mZZZ"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, Any]]:
    fed = Federation(tmp_path_factory.mktemp("hostile"))
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    try:
        fed.add_node("customs-nl")
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        tls = fed.root / "police-nl-hostile"
        pki.issue_node_certificate(fed.root / "ca", tls, "police-nl", ("127.0.0.1",))
        credentials = grpc.ssl_server_credentials(
            [((tls / "tls" / "node.key").read_bytes(), (tls / "tls" / "node.crt").read_bytes())],
            root_certificates=(tls / "tls" / "ca.crt").read_bytes(),
            require_client_auth=True,
        )
        servicer = HostileResponder()
        pb_grpc.add_MatchingServicer_to_server(servicer, server)
        port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        fed.addresses["police-nl"] = f"127.0.0.1:{port}"
        fed.add_peer("customs-nl", "police-nl", "--max-set-size", str(MAX_SET_SIZE))
        fed.configure("customs-nl", idle_seconds=IDLE_SECONDS)
        yield fed, servicer
    finally:
        server.stop(0)
        fed.close()


def query(node: Path, sql: str, *params: object) -> list[Any]:
    with sqlite3.connect(node / "store.sqlite", timeout=30) as db:
        return db.execute(sql, params).fetchall()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_responder_fails_the_session_cleanly(
    hostile: tuple[Federation, HostileResponder], case: str
) -> None:
    fed, servicer = hostile
    mode, script, says = CASES[case]
    servicer.script = script
    purpose = f"hostile responder: {case}"
    node = fed.node("customs-nl")

    proc = fed.match("customs-nl", "police-nl", "seizures", "targets", mode, purpose, check=False)

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("blindmatch: error: ") and "police-nl" in line, line
    assert says in line, line
    assert line.isprintable() and len(line) < 600, line

    [(session_id, status)] = query(
        node, "SELECT id, status FROM sessions WHERE purpose = ?", purpose
    )
    assert status == "failed"
    rows = query(node, "SELECT body FROM audit WHERE event = 'session.failed'")
    [reason] = [
        body["reason"] for (text,) in rows if (body := json.loads(text))["session_id"] == session_id
    ]
    assert reason and says.split(": ")[-1] in reason, reason
    assert not CLASS_NAME.search(reason) and "unexpected error" not in reason, reason
    assert reason.isprintable() and len(reason) <= 300, reason
    assert query(node, "SELECT count(*) FROM hits") == [(0,)]
    assert "intact" in fed.cli("audit", "verify", node).stdout
