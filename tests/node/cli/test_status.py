"""`status` on real nodes: serving or not, which peer is down, expiries, lists, new hits.

Three nodes; customs-nl and police-nl serve, border-be is configured as a
peer of customs-nl but not started. customs-nl's status must say it serves,
that police-nl answers (with its certificate's expiry) and border-be does not,
list its lists with versions and screening epochs, and count the new hits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.federation import Federation, free_port

CUSTOMS = """ref,iban,label
C1,NL91 ABNA 0417 1643 00,customs case C1
C2,DE89 3704 0044 0532 0130 00,customs case C2
"""
POLICE = """ref,iban,label
P1,NL91ABNA0417164300,police op DELTA
"""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("status"))
    try:
        for agency in ("customs-nl", "police-nl", "border-be"):
            fed.add_node(agency)
        fed.add_peer("customs-nl", "police-nl", "--modes", "mutual,screen")
        fed.add_peer("police-nl", "customs-nl", "--modes", "mutual,screen")
        fed.add_peer("customs-nl", "border-be")
        fed.ingest("customs-nl", "wl", CUSTOMS)
        fed.ingest("police-nl", "wl", POLICE)
        fed.start("customs-nl")
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def _status(fed: Federation, agency: str) -> dict[str, Any]:
    result = fed.cli("status", fed.node(agency), "--json")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_status_names_the_peer_that_is_down(fed: Federation) -> None:
    assert fed.match("customs-nl", "police-nl", "wl")["match_count"] == 1
    assert fed.match("customs-nl", "police-nl", "wl", mode="screen")["match_count"] == 1
    report = _status(fed, "customs-nl")

    assert report["agency"] == "customs-nl"
    serving = report["serving"]
    assert serving["answering"] is True
    assert serving["pid"] == fed.servers["customs-nl"].pid
    started = dt.datetime.fromisoformat(serving["since"])
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - started < dt.timedelta(hours=1)

    peers = {p["agency"]: p for p in report["peers"]}
    assert peers["police-nl"]["reachable"] is True and peers["police-nl"]["error"] is None
    assert 700 <= peers["police-nl"]["certificate"]["days_left"] <= 730
    assert peers["border-be"]["reachable"] is False
    assert peers["border-be"]["certificate"] is None
    assert "unavailable" in peers["border-be"]["error"]
    assert 700 <= report["certificate"]["days_left"] <= 730

    (wl,) = report["lists"]
    assert (wl["list"], wl["records"], wl["version"]) == ("wl", 2, 1)
    assert report["new_hits"] == 1  # the IBAN, found by mutual and screen: one hit record
    assert [w for w in report["warnings"] if "border-be" in w], report["warnings"]
    assert not [w for w in report["warnings"] if "police-nl" in w], report["warnings"]

    # police-nl answered screening: its list has a current epoch for that list version
    police = _status(fed, "police-nl")
    assert police["lists"][0]["screening_epoch"]["list_version"] == 1
    assert police["peers"][0]["reachable"] is True


def test_status_of_a_stopped_node_says_so(fed: Federation) -> None:
    report = _status(fed, "border-be")
    assert report["serving"] is None
    assert any("not serving" in w and "blindmatch serve" in w for w in report["warnings"])
    text = fed.cli("status", fed.node("border-be")).stdout
    assert "border-be on 127.0.0.1:" in text and "not serving" in text
    assert "no lists" in text and "new hits: 0" in text


def test_status_flags_a_revoked_peer_and_the_installed_crl(fed: Federation) -> None:
    ca, crl = fed.root / "ca", fed.root / "federation.crl"
    fed.cli("ca", "revoke", ca, "--agency", "police-nl", "--reason", "laptop stolen")
    fed.cli("ca", "crl", ca, "--out", crl)
    fed.cli("crl", "install", fed.node("customs-nl"), crl)
    report = _status(fed, "customs-nl")

    assert report["crl"]["number"] == 1 and report["crl"]["revoked"] == 1
    police = next(p for p in report["peers"] if p["agency"] == "police-nl")
    assert police["certificate"]["revoked"] is True
    assert any("police-nl" in w and "revoked" in w for w in report["warnings"])
    text = fed.cli("status", fed.node("customs-nl")).stdout
    assert "revocation list: number 1, 1 revoked" in text and "REVOKED" in text


def test_status_of_a_node_waiting_for_its_certificate(fed: Federation) -> None:
    node = fed.root / "customs-de"
    fed.cli(
        "init",
        node,
        "--agency",
        "customs-de",
        "--listen",
        "127.0.0.1:1",
        "--csr-out",
        fed.root / "customs-de.csr",
    )
    fed.cli("peer", "add", node, "--agency", "customs-nl", "--address", fed.addresses["customs-nl"])
    report = _status(fed, "customs-de")
    assert report["certificate"] is None and report["serving"] is None
    assert report["peers"][0]["reachable"] is False
    assert any("cert install" in w for w in report["warnings"]), report["warnings"]
    assert "certificate: none installed" in fed.cli("status", node).stdout


def _join(fed: Federation, agency: str, days: int) -> None:
    """Creates `agency`'s node by request, with a certificate the CA signs for `days` days."""
    fed.addresses[agency] = f"127.0.0.1:{free_port()}"
    request, certificate = fed.root / f"{agency}.csr", fed.root / f"{agency}.crt"
    listen = fed.addresses[agency]
    fed.cli("init", fed.node(agency), "--agency", agency, "--listen", listen, "--csr-out", request)
    fed.cli("ca", "sign", fed.root / "ca", request, "--out", certificate, "--days", days)
    fed.cli("cert", "install", fed.node(agency), certificate, "--ca-cert", fed.root / "ca/ca.crt")


def test_status_and_serve_warn_30_days_before_a_certificate_expires(tmp_path: Path) -> None:
    fed = Federation(tmp_path)
    try:
        _join(fed, "customs-nl", 31)  # 30 whole days left when checked: warned
        _join(fed, "police-nl", 20)
        _join(fed, "border-be", 32)  # 31 days left: not yet
        for peer in ("police-nl", "border-be"):
            fed.add_peer("customs-nl", peer)
            fed.add_peer(peer, "customs-nl")
        for agency in ("customs-nl", "police-nl", "border-be"):
            fed.start(agency)
        report = _status(fed, "customs-nl")
    finally:
        fed.close()

    assert report["certificate"]["days_left"] == 30
    peers = {p["agency"]: p for p in report["peers"]}
    assert peers["police-nl"]["reachable"] and peers["border-be"]["reachable"]
    assert peers["police-nl"]["certificate"]["days_left"] == 19
    assert peers["border-be"]["certificate"]["days_left"] == 31
    warnings = report["warnings"]
    own = [w for w in warnings if w.startswith("this node's certificate expires in 30 days")]
    assert len(own) == 1 and f"blindmatch init {fed.node('customs-nl')}" in own[0], warnings
    assert [w for w in warnings if w.startswith("peer police-nl's certificate expires in 19 days")]
    assert not [w for w in warnings if "border-be" in w], warnings
    # serve says so at start-up, in its log, for its own certificate only
    assert "this node's certificate (serial" in fed.log("customs-nl").read_text()
    assert "expires in 30 days: renew it" in fed.log("customs-nl").read_text()
    assert "expires in 19 days: renew it" in fed.log("police-nl").read_text()
    assert "renew it" not in fed.log("border-be").read_text()
