"""`init --csr-out`, `ca sign|revoke|crl`, `cert install`, `crl install`, through the entry point.

Each refusal is one line on stderr, exit 1, and changes nothing; every
installation is audited, without key material.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node.setup import pki
from tests.conftest import RunCli

LISTEN = ["--listen", "127.0.0.1:50051"]


def fails(proc: Any, text: str) -> None:
    """The command exited 1 with one line on stderr containing `text`."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def audit_bodies(node: Path, event: str) -> list[dict[str, Any]]:
    with sqlite3.connect(node / "store.sqlite") as conn:
        rows = conn.execute("SELECT body FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(body) for (body,) in rows]


def audit_count(node: Path) -> int:
    with sqlite3.connect(node / "store.sqlite") as conn:
        return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])


def tls_files(node: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((node / "tls").iterdir())}


def request_node(run_cli: RunCli, tmp_path: Path, agency: str = "customs-nl") -> Path:
    """`init --csr-out` of node `agency` in tmp_path/agency, its request in tmp_path/agency.csr."""
    out = run_cli(
        "init", agency, "--agency", agency, *LISTEN, "--csr-out", f"{agency}.csr", check=True
    ).stdout
    assert f"ca sign CA_DIR {agency}.csr" in out and f"cert install {agency}" in out
    return tmp_path / agency


def test_init_takes_at_most_one_of_ca_and_csr_out(run_cli: RunCli, tmp_path: Path) -> None:
    run_cli("ca", "init", "ca", check=True)
    both = run_cli("init", "n", "--agency", "customs-nl", *LISTEN, "--ca", "ca", "--csr-out", "r")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert not (tmp_path / "n").exists()


def request_key(request: Path) -> bytes:
    """The public key a certificate request is for, as DER."""
    csr = x509.load_pem_x509_csr(request.read_bytes())
    return csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pending_key(node: Path) -> bytes:
    """The public half of the node's pending key, as DER."""
    key = serialization.load_pem_private_key((node / "tls" / "pending.key").read_bytes(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_init_without_ca_or_csr_out_writes_the_request_into_the_node(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """DESIGN §6: both are optional; the request goes to NODE_DIR/node.csr, also on renewal."""
    run_cli("ca", "init", "ca", check=True)
    node, request = tmp_path / "node", tmp_path / "node" / "node.csr"
    out = run_cli("init", "node", "--agency", "customs-nl", *LISTEN, check=True).stdout
    assert "wrote its certificate request to node/node.csr" in out
    assert "send node/node.csr to the federation CA operator" in out
    assert request_key(request) == pending_key(node)
    assert not (node / "tls" / "node.crt").exists()
    run_cli("ca", "sign", "ca", request, "--out", "first.crt", check=True)
    run_cli("cert", "install", "node", "first.crt", "--ca-cert", "ca/ca.crt", check=True)
    first = pki.certificate_info(node / "tls" / "node.crt")
    assert first.agency == "customs-nl"

    # A renewal without --csr-out replaces the request file, and nothing else until installed.
    store = (node / "store.sqlite").read_bytes()
    out = run_cli("init", "node", "--agency", "customs-nl", *LISTEN, check=True).stdout
    assert "wrote a renewal request for customs-nl to node/node.csr" in out
    assert request_key(request) == pending_key(node)
    assert (node / "store.sqlite").read_bytes() == store
    assert pki.certificate_info(node / "tls" / "node.crt").serial == first.serial
    run_cli("ca", "sign", "ca", request, "--out", "renewed.crt", check=True)
    run_cli("cert", "install", "node", "renewed.crt", "--ca-cert", "ca/ca.crt", check=True)
    assert pki.certificate_info(node / "tls" / "node.crt").serial != first.serial
    assert not (node / "tls" / "pending.key").exists()


def test_a_node_joins_by_request_and_works_only_once_installed(
    run_cli: RunCli, tmp_path: Path
) -> None:
    run_cli("ca", "init", "ca", check=True)
    node = request_node(run_cli, tmp_path)
    assert (node / "tls" / "pending.key").stat().st_mode & 0o077 == 0
    assert not (node / "tls" / "node.crt").exists() and not list(node.rglob("ca.key"))
    peer = ["--agency", "police-nl", "--address", "127.0.0.1:9"]
    run_cli("peer", "add", node.name, *peer, check=True)
    for command in (
        ["serve", node.name],
        ["match", node.name, "--peer", "police-nl", "--list", "x", "--purpose", "test"],
    ):
        fails(run_cli(*command, timeout=60), "no TLS certificate installed yet")

    signed = run_cli("ca", "sign", "ca", "customs-nl.csr", check=True).stdout
    serial = pki.certificate_info(tmp_path / "customs-nl.crt").serial  # the default --out
    assert f"signed customs-nl: serial {pki.serial_text(serial)}" in signed
    assert "(730 days)" in signed and "hosts 127.0.0.1" in signed
    installed = run_cli(
        "cert", "install", node.name, "customs-nl.crt", "--ca-cert", "ca/ca.crt",
        "--operator", "anna", check=True,
    ).stdout  # fmt: skip
    assert pki.serial_text(serial) in installed and "without a restart" in installed
    assert pki.certificate_info(node / "tls" / "node.crt").serial == serial
    assert set(tls_files(node)) == {"ca.crt", "node.crt", "node.key"}
    entry = audit_bodies(node, "cert.installed")
    assert [(e["operator"], e["serial"]) for e in entry] == [("anna", pki.serial_text(serial))]
    assert run_cli("audit", "verify", node.name).returncode == 0
    export = run_cli("audit", "export", node.name, check=True).stdout
    assert "PRIVATE KEY" not in export and "BEGIN" not in export

    again = run_cli("cert", "install", node.name, "customs-nl.crt", "--ca-cert", "ca/ca.crt")
    fails(again, "already installed")


def test_cert_install_refusals_change_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    run_cli("ca", "init", "ca", check=True)
    run_cli("ca", "init", "other-ca", check=True)
    node = request_node(run_cli, tmp_path)
    police = request_node(run_cli, tmp_path, "police-nl")
    run_cli("ca", "sign", "other-ca", "customs-nl.csr", "--out", "foreign.crt", check=True)
    run_cli("ca", "sign", "ca", "police-nl.csr", "--out", "police.crt", check=True)
    before, entries = tls_files(node), audit_count(node)
    for cert, ca, message in [
        ("foreign.crt", "ca/ca.crt", "foreign.crt is not signed by ca/ca.crt"),
        ("police.crt", "ca/ca.crt", "names agency police-nl, but this node is customs-nl"),
        ("police.crt", "police.crt", "police.crt is not a CA certificate"),
        ("missing.crt", "ca/ca.crt", "certificate missing.crt not found"),
    ]:
        fails(run_cli("cert", "install", node.name, cert, "--ca-cert", ca), message)
    assert tls_files(node) == before and audit_count(node) == entries
    # police-nl's certificate is for police-nl's pending key; customs-nl's key differs.
    fails(
        run_cli("cert", "install", police.name, "foreign.crt", "--ca-cert", "other-ca/ca.crt"),
        "names agency customs-nl",
    )


def test_renewal_makes_a_new_request_and_install_swaps_the_pair(
    run_cli: RunCli, tmp_path: Path
) -> None:
    run_cli("ca", "init", "ca", check=True)
    run_cli("init", "node", "--agency", "customs-nl", *LISTEN, "--ca", "ca", check=True)
    node = tmp_path / "node"
    old = tls_files(node)
    store = (node / "store.sqlite").read_bytes()
    config = (node / "node.toml").read_bytes()
    assert len(audit_bodies(node, "cert.installed")) == 1  # init --ca installs the same way

    wrong = run_cli("init", "node", "--agency", "police-nl", *LISTEN, "--csr-out", "r.csr")
    fails(wrong, "is the node of agency customs-nl, not police-nl")
    fails(run_cli("init", "node", "--agency", "customs-nl", *LISTEN, "--ca", "ca"), "--csr-out")
    out = run_cli(
        "init", "node", "--agency", "customs-nl", *LISTEN, "--csr-out", "renew.csr", check=True
    ).stdout
    assert "renewal request" in out
    assert {k: v for k, v in tls_files(node).items() if k != "pending.key"} == old
    assert (node / "store.sqlite").read_bytes() == store
    assert (node / "node.toml").read_bytes() == config
    twice = run_cli("init", "node", "--agency", "customs-nl", *LISTEN, "--csr-out", "r2.csr")
    fails(twice, "holds the key of an earlier request")

    run_cli("ca", "sign", "ca", "renew.csr", "--out", "renew.crt", "--days", "90", check=True)
    run_cli("cert", "install", "node", "renew.crt", "--ca-cert", "ca/ca.crt", check=True)
    new = tls_files(node)
    assert new["node.key"] != old["node.key"] and new["node.crt"] != old["node.crt"]
    assert "pending.key" not in new
    info = pki.certificate_info(node / "tls" / "node.crt")
    assert (info.not_after - info.not_before).days == 90  # backdated a few minutes
    assert [e["serial"] for e in audit_bodies(node, "cert.installed")][-1] == pki.serial_text(
        info.serial
    )


def test_revocation_is_published_as_a_crl_each_node_installs_in_order(
    run_cli: RunCli, tmp_path: Path
) -> None:
    run_cli("ca", "init", "ca", check=True)
    run_cli("ca", "init", "other-ca", check=True)
    run_cli("init", "node", "--agency", "customs-nl", *LISTEN, "--ca", "ca", check=True)
    node = tmp_path / "node"
    request_node(run_cli, tmp_path, "border-be")
    run_cli("ca", "sign", "ca", "border-be.csr", check=True)
    serial = pki.serial_text(pki.certificate_info(tmp_path / "border-be.crt").serial)

    fails(run_cli("ca", "revoke", "ca", "--agency", "nobody-xx"), "no certificate of agency")
    fails(run_cli("ca", "revoke", "ca", "--agency", "border-be", "--reason", "a\nb"), "one line")
    assert run_cli("ca", "revoke", "ca").returncode == 2  # --agency or --serial
    revoked = run_cli("ca", "revoke", "ca", "--serial", serial, "--reason", "key-compromise")
    assert f"revoked border-be's certificate {serial} (key-compromise)" in revoked.stdout
    again = run_cli("ca", "revoke", "ca", "--agency", "border-be", check=True)
    assert "was revoked on" in again.stdout

    first = run_cli("ca", "crl", "ca", "--out", "first.crl", check=True).stdout
    assert "CRL number 1 with 1 revoked" in first
    run_cli("ca", "crl", "ca", "--out", "second.crl", check=True)
    run_cli("ca", "crl", "other-ca", "--out", "foreign.crl", check=True)
    installed = run_cli("crl", "install", "node", "second.crl", "--operator", "bert", check=True)
    assert "installed CRL number 2 (1 revoked)" in installed.stdout
    assert pki.RevocationList.load(node / "tls" / "crl.pem").lookup_blocking(int(serial, 16))
    same = run_cli("crl", "install", "node", "second.crl", check=True)
    assert "installed already" in same.stdout
    entries, crl = audit_count(node), (node / "tls" / "crl.pem").read_bytes()
    fails(run_cli("crl", "install", "node", "first.crl"), "older than the installed number 2")
    fails(run_cli("crl", "install", "node", "foreign.crl"), "not signed by this node's")
    run_cli("ca", "crl", "ca", "--out", "third.crl", check=True)
    third = x509.load_pem_x509_crl((tmp_path / "third.crl").read_bytes())
    tampered = bytearray(third.public_bytes(serialization.Encoding.DER))
    tampered[-1] ^= 1  # the signature's last byte
    (tmp_path / "tampered.crl").write_bytes(bytes(tampered))
    fails(run_cli("crl", "install", "node", "tampered.crl"), "not signed by this node's")
    (tmp_path / "garbage.crl").write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n")
    fails(run_cli("crl", "install", "node", "garbage.crl"), "not a certificate revocation list")
    assert audit_count(node) == entries and (node / "tls" / "crl.pem").read_bytes() == crl
    assert audit_bodies(node, "crl.installed") == [
        {"operator": "bert", "crl_number": 2, "revoked": 1}
    ]
