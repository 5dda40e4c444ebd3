"""End to end: the federation PKI lifecycle with three real `blindmatch serve` processes.

The nodes join as operators would: `init --csr-out`, `ca sign` where the CA's
key is, `cert install`. Then one serving node renews its certificate and the
new one is used without a restart; then the CA revokes one agency, and the two
others install the CRL while they serve: the revoked node is refused at its
next call, they refuse to start sessions with it, and they keep matching.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from node.data.sample import write_csv
from node.errors import PeerError
from node.rpc.probe import peer_certificate
from node.setup import pki
from node.setup.config import NodeConfig
from tests.federation import Federation, free_port, peer_channel
from tests.node.rpc.peer_wire import raw_methods

AGENCIES = ("customs-nl", "police-nl", "border-be")
# Generated lists of one seed; overlapping entity ranges are shared, written differently.
RANGES = {"customs-nl": (0, 1), "police-nl": (20, 2), "border-be": (10, 3)}
RECORDS = 40


def join(fed: Federation, agency: str) -> None:
    """Creates a node as its operator would: a request, the CA's signature, the install."""
    fed.addresses[agency] = f"127.0.0.1:{free_port()}"
    request, certificate = fed.root / f"{agency}.csr", fed.root / f"{agency}.crt"
    out = fed.cli(
        "init", fed.node(agency), "--agency", agency, "--listen", fed.addresses[agency],
        "--region", "NL", "--csr-out", request,
    ).stdout  # fmt: skip
    assert "blindmatch cert install" in out
    fed.cli("ca", "sign", fed.root / "ca", request, "--out", certificate)
    fed.cli("cert", "install", fed.node(agency), certificate, "--ca-cert", fed.root / "ca/ca.crt")


def audit_entries(node: Path, event: str) -> list[dict[str, Any]]:
    """The bodies of `node`'s audit entries of `event`, oldest first."""
    with sqlite3.connect(node / "store.sqlite") as conn:
        rows = conn.execute("SELECT body FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(body) for (body,) in rows]


def presented_serial(fed: Federation, asking: str, peer: str) -> int:
    """The serial of the certificate `peer` presents to a new connection from `asking`."""
    config = NodeConfig.load(fed.node(asking))
    certificate = asyncio.run(peer_certificate(config, peer, fed.addresses[peer], 10.0))
    return certificate.serial_number


def refusals_on_the_wire(
    fed: Federation, caller: str, serving: str
) -> dict[str, tuple[grpc.StatusCode, bool]]:
    """Each RPC of `serving` called with `caller`'s certificate: its status code, and whether
    the details say "certificate revoked"."""
    outcomes = {}
    with peer_channel(fed.node(caller), serving, fed.addresses[serving]) as channel:
        methods = raw_methods(channel)
        calls = {
            "Session": lambda: list(methods["Session"](iter([b""]), timeout=10)),
            "FetchEncodedList": lambda: list(methods["FetchEncodedList"](b"", timeout=10)),
            "Screen": lambda: methods["Screen"](b"", timeout=10),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as refused:
                call()
            error = refused.value
            outcomes[name] = (error.code(), "certificate revoked" in (error.details() or ""))
    return outcomes


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("pki-federation"))
    try:
        for agency in AGENCIES:
            join(fed, agency)
            start, seed = RANGES[agency]
            path = write_csv(
                fed.root / f"{agency}.csv", RECORDS, seed=7, start=start, style_seed=seed
            )
            fed.cli("ingest", fed.node(agency), "--list", "watch", path)
        for agency in AGENCIES:
            for peer in AGENCIES:
                if peer != agency:
                    fed.add_peer(agency, peer, "--modes", "mutual,count,screen")
        for agency in AGENCIES:
            fed.start(agency)
        yield fed
    finally:
        fed.close()


def test_nodes_join_by_request_and_the_ca_key_stays_with_the_ca(fed: Federation) -> None:
    ca_key = (fed.root / "ca" / "ca.key").read_bytes()
    for agency in AGENCIES:
        node = fed.node(agency)
        files = [p for p in node.rglob("*") if p.is_file()]
        assert not any(p.name == "ca.key" or ca_key in p.read_bytes() for p in files)
        assert not (node / "tls" / "pending.key").exists()  # became node.key
        info = pki.certificate_info(node / "tls" / "node.crt")
        assert info.agency == agency
        installed = audit_entries(node, "cert.installed")
        assert [e["serial"] for e in installed] == [pki.serial_text(info.serial)]
        assert "BEGIN" not in json.dumps(installed)  # never key or certificate material
    issued = {e.agency for e in pki.issued_certificates(fed.root / "ca")}
    assert issued == set(AGENCIES)


def test_members_match_with_certificates_from_requests(fed: Federation) -> None:
    for agency, peer in [("customs-nl", "police-nl"), ("police-nl", "border-be")]:
        result = fed.match(agency, peer, "watch")
        assert result["match_count"] > 0


def test_the_probe_reads_only_the_certificate_of_the_peer_meant(fed: Federation) -> None:
    config = NodeConfig.load(fed.node("customs-nl"))
    police = pki.certificate_info(fed.node("police-nl") / "tls" / "node.crt").serial
    assert presented_serial(fed, "customs-nl", "police-nl") == police
    with pytest.raises(PeerError, match="does not accept"):  # border-be answering as police-nl
        asyncio.run(peer_certificate(config, "police-nl", fed.addresses["border-be"], 10.0))
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(PeerError, match=f"peer police-nl at {closed} is unreachable"):
        asyncio.run(peer_certificate(config, "police-nl", closed, 10.0))


def test_renewal_on_a_serving_node_takes_effect_without_a_restart(fed: Federation) -> None:
    police = fed.node("police-nl")
    pid = fed.servers["police-nl"].pid
    old = pki.certificate_info(police / "tls" / "node.crt").serial
    assert presented_serial(fed, "customs-nl", "police-nl") == old
    store_before = (police / "store.sqlite").read_bytes()
    request, certificate = fed.root / "police-renewal.csr", fed.root / "police-renewal.crt"
    fed.cli(
        "init", police, "--agency", "police-nl", "--listen", fed.addresses["police-nl"],
        "--csr-out", request,
    )  # fmt: skip
    assert pki.certificate_info(police / "tls" / "node.crt").serial == old  # untouched so far
    assert (police / "store.sqlite").read_bytes() == store_before
    fed.cli("ca", "sign", fed.root / "ca", request, "--out", certificate)
    out = fed.cli(
        "cert", "install", police, certificate, "--ca-cert", fed.root / "ca/ca.crt"
    ).stdout
    assert "without a restart" in out
    new = pki.certificate_info(police / "tls" / "node.crt").serial
    assert new != old
    # The very next connection gets the new certificate, from the same process.
    assert presented_serial(fed, "customs-nl", "police-nl") == new
    assert fed.servers["police-nl"].pid == pid and fed.servers["police-nl"].poll() is None
    assert fed.match("customs-nl", "police-nl", "watch")["match_count"] > 0
    assert fed.match("police-nl", "customs-nl", "watch")["match_count"] > 0  # as client too


def test_a_revoked_agency_is_refused_both_ways_while_the_others_keep_matching(
    fed: Federation,
) -> None:
    ca = fed.root / "ca"
    revoked = fed.cli("ca", "revoke", ca, "--agency", "border-be", "--reason", "key-compromise")
    assert "revoked border-be's certificate" in revoked.stdout
    crl = fed.root / "federation.crl"
    fed.cli("ca", "crl", ca, "--out", crl)
    for agency in ("customs-nl", "police-nl"):
        fed.cli("crl", "install", fed.node(agency), crl)  # while serving
        assert audit_entries(fed.node(agency), "crl.installed")[-1]["revoked"] == 1

    # The revoked node's next session is refused at once, by a node that was not restarted.
    proc = fed.match("border-be", "customs-nl", "watch", check=False)
    assert proc.returncode == 1 and "certificate revoked" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    refused = audit_entries(fed.node("customs-nl"), "session.refused")[-1]
    assert refused["peer"] == "border-be" and "revoked" in refused["reason"]
    proc = fed.match("border-be", "police-nl", "watch", mode="screen", check=False)
    assert proc.returncode == 1 and "certificate revoked" in proc.stderr
    assert audit_entries(fed.node("police-nl"), "screen.refused")[-1]["peer"] == "border-be"
    # On the wire every call the revoked node makes is refused UNAUTHENTICATED.
    assert refusals_on_the_wire(fed, "border-be", "customs-nl") == {
        name: (grpc.StatusCode.UNAUTHENTICATED, True)
        for name in ("Session", "FetchEncodedList", "Screen")
    }

    # Sessions to the revoked node are not started: it never hears of them.
    border_seen = audit_entries(fed.node("border-be"), "session.answered")
    border_refused = audit_entries(fed.node("border-be"), "session.refused")
    for mode in ("mutual", "screen"):
        proc = fed.match("customs-nl", "border-be", "watch", mode=mode, check=False)
        assert proc.returncode == 1
        assert "is revoked by the federation CRL installed" in proc.stderr
        assert "the session was not started" in proc.stderr
    refusal = audit_entries(fed.node("customs-nl"), "session.refused")[-1]
    assert refusal["role"] == "initiator" and refusal["peer"] == "border-be"
    assert audit_entries(fed.node("customs-nl"), "screen.refused")[-1]["peer"] == "border-be"
    assert audit_entries(fed.node("border-be"), "session.answered") == border_seen
    assert audit_entries(fed.node("border-be"), "session.refused") == border_refused

    # The other pair keeps matching, both ways.
    assert fed.match("customs-nl", "police-nl", "watch")["match_count"] > 0
    assert fed.match("police-nl", "customs-nl", "watch", mode="count")["match_count"] > 0
    assert all(fed.servers[a].poll() is None for a in AGENCIES)
