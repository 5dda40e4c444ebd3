"""`blindmatch audit export`: entries a supervisory authority can re-verify with audit.pub alone;
`audit verify --since`: the entries from a time on, checked on the node."""

import json
import sqlite3
from pathlib import Path

import blake3
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.conftest import RunCli
from tests.node.cli.test_cli import setup_node


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def third_party_check(lines: list[dict[str, object]], public_pem: bytes) -> None:
    """Re-verifies exported entries as the chain format says, without blindmatch's code."""
    key = load_pem_public_key(public_pem)
    previous: dict[str, object] | None = None
    for line in lines:
        prev_hash = bytes.fromhex(str(line["prev_hash"]))
        if previous is not None:
            assert line["seq"] == int(str(previous["seq"])) + 1
            assert prev_hash.hex() == previous["hash"]
        digest = blake3.blake3(
            _lp(b"blindmatch/v1 audit entry")
            + _lp(prev_hash)
            + int(str(line["seq"])).to_bytes(8, "big")
            + b"".join(_lp(str(line[k]).encode()) for k in ("at", "event", "body"))
        ).digest()
        assert digest.hex() == line["hash"]
        key.verify(bytes.fromhex(str(line["signature"])), digest)  # type: ignore[union-attr]
        previous = line


def export(run_cli: RunCli, *args: str) -> list[dict[str, object]]:
    proc = run_cli("audit", "export", "node", *args, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_export_is_reverifiable_and_itself_audited(run_cli: RunCli, tmp_path: Path) -> None:
    node = setup_node(run_cli, tmp_path)
    run_cli("config", "set", "node", "date_order", "DMY", check=True)
    run_cli("peer", "add", "node", "--agency", "police-nl", "--address", "h:1", check=True)
    lines = export(run_cli, "--operator", "dpo")
    # init --ca installs the node's certificate, audited, before anything else.
    assert [line["event"] for line in lines] == ["cert.installed", "config.set", "peer.added"]
    assert lines[0]["seq"] == 1 and lines[0]["prev_hash"] == "00" * 32
    third_party_check(lines, (node / "audit.pub").read_bytes())

    again = export(run_cli)
    assert again[:3] == lines and again[3]["event"] == "audit.exported"
    assert json.loads(str(again[3]["body"])) == {"operator": "dpo", "since": "", "entries": 3}
    third_party_check(again, (node / "audit.pub").read_bytes())

    later = export(run_cli, "--since", str(again[-1]["at"]))
    assert [line["seq"] for line in later] == [4, 5]  # from that entry on, linked by prev_hash
    third_party_check(later, (node / "audit.pub").read_bytes())
    assert export(run_cli, "--since", "2999-01-01") == []

    tampered = [dict(line) for line in again]
    tampered[2]["body"] = str(tampered[2]["body"]).replace("h:1", "h:2")
    try:
        third_party_check(tampered, (node / "audit.pub").read_bytes())
    except AssertionError:
        pass
    else:
        raise AssertionError("an altered entry passed the third-party check")

    bad = run_cli("audit", "export", "node", "--since", "last tuesday")
    assert bad.returncode == 1 and "is not an ISO date" in bad.stderr


def _tamper(node: Path, seq: int) -> None:
    """Alters entry `seq`'s body as someone who can write the store file could."""
    conn = sqlite3.connect(node / "store.sqlite")
    try:
        with conn:
            conn.execute("DROP TRIGGER IF EXISTS audit_append_only_update")
            conn.execute("UPDATE audit SET body = '{}' WHERE seq = ?", (seq,))
    finally:
        conn.close()


def test_verify_since_checks_only_the_entries_from_that_time(
    run_cli: RunCli, tmp_path: Path
) -> None:
    node = setup_node(run_cli, tmp_path)  # entry 1: cert.installed
    run_cli("config", "set", "node", "date_order", "DMY", check=True)  # 2
    run_cli("peer", "add", "node", "--agency", "police-nl", "--address", "h:1", check=True)  # 3
    conn = sqlite3.connect(node / "store.sqlite")
    try:
        ((since,),) = conn.execute("SELECT at FROM audit WHERE seq = 2").fetchall()
    finally:
        conn.close()

    out = run_cli("audit", "verify", "node", "--since", since, check=True).stdout
    assert out.startswith("audit log intact: 2 entries checked from entry 2 (those at or after ")
    _tamper(node, 1)  # before --since: not checked
    assert run_cli("audit", "verify", "node").returncode == 1
    again = run_cli("audit", "verify", "node", "--since", since, check=True).stdout
    assert "intact: 2 entries checked from entry 2" in again
    _tamper(node, 3)  # after --since: found
    failed = run_cli("audit", "verify", "node", "--since", since)
    assert failed.returncode == 1 and "entry 3 (peer.added at " in failed.stderr
    assert "hash does not match its content" in failed.stderr
    bad = run_cli("audit", "verify", "node", "--since", "yesterday")
    assert bad.returncode == 1 and "is not an ISO date" in bad.stderr
