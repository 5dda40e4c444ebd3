"""`blindmatch user add|list|remove` through the real entry point: the token printed once and
stored only as its SHA-256, the --json shapes, every error (exit 1, JSON on stdout), and the
audit entries naming who added or removed whom."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from node.setup.config import NodeConfig
from tests.conftest import RunCli


def _audit(config: NodeConfig, event: str) -> list[dict[str, object]]:
    conn = sqlite3.connect(config.store_path)
    try:
        rows = conn.execute("SELECT body FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(body) for (body,) in rows.fetchall()]
    finally:
        conn.close()


def test_user_add_prints_a_token_once_and_stores_its_hash(
    run_cli: RunCli, node: NodeConfig
) -> None:
    shown = run_cli("user", "add", node.node_dir, "--name", "J. de Vries", "--role", "analyst")
    assert shown.returncode == 0, shown.stderr
    token = shown.stdout.splitlines()[1]
    assert token.startswith("bm_") and len(token) >= 40
    added = run_cli(
        "user", "add", node.node_dir, "--name", "case-system", "--role", "admin", "--json",
        "--operator", "it-desk",
    )  # fmt: skip
    second = json.loads(added.stdout)
    assert set(second) == {"name", "role", "created", "created_by", "token"}
    assert second["role"] == "admin" and second["created_by"] == "it-desk"
    assert second["token"] != token

    conn = sqlite3.connect(node.store_path)
    try:
        stored = dict(conn.execute("SELECT name, token_hash FROM users").fetchall())
    finally:
        conn.close()
    assert stored["J. de Vries"] == hashlib.sha256(token.encode()).digest()
    for path in node.node_dir.iterdir():  # the token itself is nowhere in the node
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path

    listed = run_cli("user", "list", node.node_dir, "--json", check=True)
    assert [u["name"] for u in json.loads(listed.stdout)] == ["J. de Vries", "case-system"]
    assert "token" not in listed.stdout and token not in listed.stdout
    table = run_cli("user", "list", node.node_dir, check=True).stdout
    assert "J. de Vries" in table and "analyst" in table and token not in table

    added_entries = _audit(node, "user.added")
    assert [(e["user"], e["role"]) for e in added_entries] == [
        ("J. de Vries", "analyst"),
        ("case-system", "admin"),
    ]
    assert added_entries[0]["operator"] and added_entries[1]["operator"] == "it-desk"


def test_user_remove_and_errors(run_cli: RunCli, node: NodeConfig) -> None:
    run_cli("user", "add", node.node_dir, "--name", "ann", "--role", "analyst", check=True)
    for args, kind, says in [
        (["add", "--name", "ann", "--role", "admin"], "conflict", "exists already"),
        (["add", "--name", "  ", "--role", "admin"], "config_error", "--name must name"),
        (["add", "--name", "x" * 101, "--role", "admin"], "config_error", "--name must name"),
        (["remove", "--name", "bob"], "not_found", "no user named 'bob' (users: ann)"),
    ]:
        proc = run_cli("user", args[0], node.node_dir, *args[1:], "--json")
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith("blindmatch: error: ") and says in proc.stderr
        assert json.loads(proc.stdout) == {"error": {"kind": kind, "message": proc.stderr[19:-1]}}
    usage = run_cli("user", "add", node.node_dir, "--name", "x", "--role", "boss")
    assert usage.returncode == 2

    removed = run_cli(
        "user", "remove", node.node_dir, "--name", "ann", "--operator", "dpo", "--json", check=True
    )
    assert json.loads(removed.stdout)["name"] == "ann"
    assert json.loads(run_cli("user", "list", node.node_dir, "--json").stdout) == []
    assert _audit(node, "user.removed") == [{"operator": "dpo", "user": "ann", "role": "analyst"}]
    assert "intact" in run_cli("audit", "verify", node.node_dir, check=True).stdout
