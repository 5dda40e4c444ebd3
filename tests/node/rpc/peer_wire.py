"""A peer on the real wire, for end-to-end tests of the serving side (no mocks).

Raw calls to a served node with another node's federation certificate, hand-made
or byte-level messages, and what the served node recorded (audit entries, the
sessions table) read straight from its store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.policy import PROTOCOL_VERSION
from node.setup.config import NodeConfig, write_config
from tests.federation import Federation

__all__ = [
    "REFUSAL_EVENTS",
    "SERVICE",
    "aio_channel",
    "audit_entries",
    "check_health",
    "federation",
    "hello",
    "leaks",
    "raw_methods",
    "session_statuses",
    "set_node_options",
    "set_peer_options",
    "verify_audit",
    "wait_for",
]

SERVICE = "blindmatch.v1.Matching"
REFUSAL_EVENTS = ("session.refused", "session.failed", "screen.refused")
# A Python class name in a peer-facing text: CamelCase words such as DecodeError.
CLASS_NAME = re.compile(r"\b_?[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b")


@contextlib.contextmanager
def federation(prefix: str) -> Iterator[Federation]:
    """A Federation in a temporary directory; its servers stopped and the directory removed
    however the block ends."""
    root = Path(tempfile.mkdtemp(prefix=f"blindmatch-{prefix}-"))
    try:
        fed = Federation(root)
        try:
            yield fed
        finally:
            fed.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _credentials(node_dir: Path) -> grpc.ChannelCredentials:
    tls = node_dir / "tls"
    return grpc.ssl_channel_credentials(
        root_certificates=(tls / "ca.crt").read_bytes(),
        private_key=(tls / "node.key").read_bytes(),
        certificate_chain=(tls / "node.crt").read_bytes(),
    )


def aio_channel(node_dir: Path, peer: str, address: str) -> grpc.aio.Channel:
    """An asyncio mTLS channel to `peer` at `address` with `node_dir`'s certificate."""
    options = [("grpc.ssl_target_name_override", peer)]
    return grpc.aio.secure_channel(address, _credentials(node_dir), options=options)


def raw_methods(channel: grpc.Channel) -> dict[str, Any]:
    """The three RPCs of a sync channel taking and returning raw bytes (any wire content)."""

    def same(data: bytes) -> bytes:
        return data

    path = f"/{SERVICE}/"
    return {
        "Session": channel.stream_stream(path + "Session", same, same),
        "FetchEncodedList": channel.unary_stream(path + "FetchEncodedList", same, same),
        "Screen": channel.unary_unary(path + "Screen", same, same),
    }


def hello(**fields: object) -> pb.InitiatorMessage:
    """A valid hello for list `targets`, with `fields` replaced."""
    values: dict[str, object] = dict(
        protocol_version=PROTOCOL_VERSION,
        session_id=secrets.token_hex(16),
        suite="x25519-blake3",
        mode=pb.MODE_MUTUAL,
        list="targets",
        purpose="serving-side test",
        set_size=2,
        initiator_list="mine",
    )
    values.update(fields)
    return pb.InitiatorMessage(hello=pb.Hello(**values))  # type: ignore[arg-type]


def check_health(channel: grpc.Channel, timeout: float = 1.0) -> tuple[float, Any]:
    """One health check of the Matching service: (seconds it took, status or the RpcError)."""
    stub = health_pb2_grpc.HealthStub(channel)
    start = time.monotonic()
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)
        outcome: Any = reply.status
    except grpc.RpcError as exc:
        outcome = exc
    return time.monotonic() - start, outcome


def audit_entries(node_dir: Path, events: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The node's audit entries (event and body fields), oldest first, optionally of `events`."""
    with sqlite3.connect(node_dir / "store.sqlite", timeout=30) as db:
        rows = db.execute("SELECT seq, event, body FROM audit ORDER BY seq").fetchall()
    entries = [{"seq": seq, "event": event, **json.loads(body)} for seq, event, body in rows]
    return [e for e in entries if events is None or e["event"] in events]


def session_statuses(node_dir: Path) -> dict[str, str]:
    """Every recorded session's id and status."""
    with sqlite3.connect(node_dir / "store.sqlite", timeout=30) as db:
        return dict(db.execute("SELECT id, status FROM sessions").fetchall())


def set_node_options(node_dir: Path, **options: object) -> None:
    """Sets top-level node.toml keys (serving limits) through the node's own config writer."""
    config = NodeConfig.load(node_dir)
    write_config(dataclasses.replace(config, **options))  # type: ignore[arg-type]


def set_peer_options(node_dir: Path, peer: str, **options: object) -> None:
    """Sets policy keys of one peer in node.toml (ones the CLI does not set, too)."""
    config = NodeConfig.load(node_dir)
    peers = dict(config.peers)
    peers[peer] = dataclasses.replace(peers[peer], **options)  # type: ignore[arg-type]
    write_config(dataclasses.replace(config, peers=MappingProxyType(peers)))


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Polls `condition()` until it returns something true, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def leaks(
    details: str, root: Path, hidden_lists: Iterable[str], echoed: Iterable[str] = ()
) -> list[str]:
    """What a peer-facing status text gives away that it must not (STYLE 12): a local path
    under the federation's `root`, the store or key files, a local list the peer may not see,
    a Python class or traceback. `echoed` are the peer's own strings, which a text may quote
    back to it; they are taken out first."""
    text = details
    for value in sorted(echoed, key=len, reverse=True):
        if value:
            for form in (repr(value[:40]), repr(value), value):
                text = text.replace(form, " ")
    found = [
        word
        for word in (str(root), "/tmp", "store.sqlite", "node.toml", "audit.key", "node.key")
        if word in text
    ]
    found += [name for name in hidden_lists if name in text]
    found += [word for word in ("Traceback", "Exception", "Error(", "pb2") if word in text]
    found += CLASS_NAME.findall(text)
    return found


def verify_audit(fed: Federation, agency: str) -> None:
    """`blindmatch audit verify` passes on `agency`'s node."""
    proc = fed.cli("audit", "verify", fed.node(agency), check=False)
    assert proc.returncode == 0 and "intact" in proc.stdout, proc.stdout + proc.stderr
