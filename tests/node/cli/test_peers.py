"""`blindmatch peer add|set|remove|list`: one option changes one thing, every change is audited."""

import json
import sqlite3
import tomllib
from pathlib import Path

from tests.conftest import RunCli
from tests.node.cli.test_cli import setup_node

POLICE = ["--agency", "police-nl"]


def peers(run_cli: RunCli) -> list[dict[str, object]]:
    result: list[dict[str, object]] = json.loads(
        run_cli("peer", "list", "node", "--json", check=True).stdout
    )
    return result


def policy_entries(node: Path) -> list[tuple[str, dict[str, object]]]:
    with sqlite3.connect(node / "store.sqlite") as conn:
        rows = conn.execute("SELECT event, body FROM audit WHERE event LIKE 'peer.%' ORDER BY seq")
        return [(event, json.loads(body)) for event, body in rows]


def test_set_changes_only_the_options_given(run_cli: RunCli, tmp_path: Path) -> None:
    node = setup_node(run_cli, tmp_path)
    run_cli(
        "peer", "add", "node", *POLICE, "--address", "127.0.0.1:50052",
        "--modes", "mutual,count,screen", "--release-labels", "--lists", "targets",
        "--operator", "anna", check=True,
    )  # fmt: skip
    added = {
        "agency": "police-nl",
        "address": "127.0.0.1:50052",
        "lists": ["targets"],
        "modes": ["count", "mutual", "screen"],
        "release_labels": True,
        "max_set_size": 1_000_000,
        "sessions_per_hour": 60,
        "max_concurrent": 4,
        "screen_budget": 100_000,
    }
    assert peers(run_cli) == [added]

    run_cli("peer", "set", "node", *POLICE, "--sessions-per-hour", "1", check=True)
    assert peers(run_cli) == [{**added, "sessions_per_hour": 1}]  # screen and labels kept
    run_cli("peer", "set", "node", *POLICE, "--withhold-labels", "--screen-budget", "5", check=True)
    changed = {**added, "sessions_per_hour": 1, "release_labels": False, "screen_budget": 5}
    assert peers(run_cli) == [changed]
    stored = tomllib.loads((node / "node.toml").read_text())["peers"]["police-nl"]
    assert stored["screen_budget_per_day"] == 5 and stored["modes"] == added["modes"]

    run_cli("peer", "remove", "node", *POLICE, "--operator", "bert", check=True)
    assert peers(run_cli) == []
    assert "no peers" in run_cli("peer", "list", "node", check=True).stdout

    entries = policy_entries(node)
    assert [event for event, _ in entries] == [
        "peer.added",
        "peer.changed",
        "peer.changed",
        "peer.removed",
    ]
    assert entries[0][1] == {
        "operator": "anna",
        "peer": "police-nl",
        "before": None,
        "after": added,
    }
    assert entries[1][1]["before"] == added
    assert entries[1][1]["after"] == {**added, "sessions_per_hour": 1}
    assert entries[3][1] == {
        "operator": "bert",
        "peer": "police-nl",
        "before": changed,
        "after": None,
    }
    assert "intact" in run_cli("audit", "verify", "node", check=True).stdout


def test_what_cannot_be_done_is_refused_and_changes_nothing(
    run_cli: RunCli, tmp_path: Path
) -> None:
    node = setup_node(run_cli, tmp_path)
    run_cli("peer", "add", "node", *POLICE, "--address", "127.0.0.1:50052", check=True)
    config = (node / "node.toml").read_bytes()
    entries = policy_entries(node)
    cases = [
        (("add", *POLICE, "--address", "h:1"), "already configured; change it with"),
        (("set", "--agency", "nobody-nl", "--max-concurrent", "2"), "is not configured"),
        (("remove", "--agency", "nobody-nl"), "is not configured"),
        (("set", *POLICE), "changes nothing without an option"),
        (("set", *POLICE, "--modes", "mutual,telepathy"), "unknown mode(s) telepathy"),
        (("set", *POLICE, "--address", "nowhere"), "is not HOST:PORT"),
        (("set", *POLICE, "--max-concurrent", "-1"), "must be a non-negative integer"),
        (("add", "--agency", "customs-nl", "--address", "h:1"), "this node's own agency"),
    ]
    for args, message in cases:
        proc = run_cli("peer", args[0], "node", *args[1:])
        assert proc.returncode == 1, (args, proc.stdout)
        assert message in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
    both = run_cli("peer", "set", "node", *POLICE, "--release-labels", "--withhold-labels")
    assert both.returncode == 2
    assert (node / "node.toml").read_bytes() == config
    assert policy_entries(node) == entries


def test_list_json_keys_are_in_the_contract_order(run_cli: RunCli, tmp_path: Path) -> None:
    setup_node(run_cli, tmp_path)
    run_cli("peer", "add", "node", *POLICE, "--address", "127.0.0.1:50052", check=True)
    run_cli("peer", "add", "node", "--agency", "border-be", "--address", "h:1", check=True)
    printed = run_cli("peer", "list", "node", "--json", check=True).stdout
    order = [
        "agency",
        "address",
        "lists",
        "modes",
        "release_labels",
        "sessions_per_hour",
        "max_concurrent",
        "max_set_size",
        "screen_budget",
    ]  # DESIGN §6
    assert [list(peer) for peer in json.loads(printed)] == [order, order]
    assert [peer["agency"] for peer in json.loads(printed)] == ["border-be", "police-nl"]
