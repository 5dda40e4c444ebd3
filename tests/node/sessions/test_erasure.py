"""Erasure (`records remove`, `lists drop`, `ingest --retain-days`): end to end over real
`blindmatch serve` processes, and through the real CLI for what it erases and refuses."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.data.store import Store
from node.setup.config import NodeConfig
from tests.conftest import MakeNode, RunCli
from tests.federation import Federation

CUSTOMS = """ref,name,dob,passport,passport_country,phone,iban,label
C1,"ALVAREZ NUNEZ, Jose",03.04.1980,,,06-12345678,,customs case C1
C2,,,,,,NL91 ABNA 0417 1643 00,customs case C2
C3,Pieter de Vries,19900215,NX4R71K22,NLD,,,customs case C3
"""
POLICE = """ref,name,dob,passport,passport_country,phone,iban,label
P1,José Álvarez-Núñez,1980-04-03,,,+31 6 1234 5678,,police op TULIP
P2,,,,,,NL91ABNA0417164300,police op DELTA
P3,"DE VRIES, PIETER",15.02.1990,nx4r-71k22,NLD,,,police watchlist 1182
"""
# What the erased record P3 is made of: none of it may reach the audit log.
P3_TRACES = ("P3", "VRIES", "PIETER", "NX4R71K22", "1182", "1990")
REASON = "court order 2026/114 (erasure request)"


def _rows(node_dir: Path, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on a node's store (the node may be serving meanwhile)."""
    conn = sqlite3.connect(f"file:{node_dir / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def _audit(node_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = _rows(node_dir, "SELECT event, body FROM audit ORDER BY seq")
    return [(event, json.loads(body)) for event, body in rows]


def _refs(result: dict[str, Any]) -> set[str]:
    return {m["ref"] for m in result["matches"]}


def _screen_cache_epoch(fed: Federation, agency: str) -> int:
    ((epoch,),) = _rows(
        fed.node(agency),
        "SELECT epoch FROM screen_cache WHERE peer = 'police-nl' AND list = 'targets'",
    )
    return int(epoch)


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    """police-nl (serving, the remover) answers customs-nl and border-be; customs-nl serves too."""
    fed = Federation(tmp_path)
    try:
        for agency in ("customs-nl", "police-nl", "border-be"):
            fed.add_node(agency)
        fed.add_peer("police-nl", "customs-nl", "--modes", "mutual,screen", "--release-labels")
        fed.add_peer("police-nl", "border-be", "--modes", "screen")
        fed.add_peer("customs-nl", "police-nl", "--release-labels")
        fed.add_peer("border-be", "police-nl")
        fed.ingest("police-nl", "targets", POLICE)
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        fed.ingest("border-be", "seizures", CUSTOMS)
        fed.start("police-nl")
        fed.start("customs-nl")
        yield fed
    finally:
        fed.close()


def test_records_remove_makes_the_hit_disappear_everywhere(fed: Federation) -> None:
    police = fed.node("police-nl")
    # Before: mutual sessions both ways and screening queries find C3 / P3.
    assert "C3" in _refs(fed.match("customs-nl", "police-nl", "seizures", "targets"))
    assert "P3" in _refs(fed.match("police-nl", "customs-nl", "targets", "seizures"))
    for agency in ("customs-nl", "border-be"):  # each fetches and caches the encoded set
        assert "C3" in _refs(fed.match(agency, "police-nl", "seizures", "targets", mode="screen"))
    old_epoch = _screen_cache_epoch(fed, "customs-nl")
    assert _screen_cache_epoch(fed, "border-be") == old_epoch
    ((p3_hits,),) = _rows(police, "SELECT count(*) FROM hits WHERE ref = 'P3'")
    assert p3_hits > 0
    ((version,),) = _rows(police, "SELECT version FROM lists WHERE name = 'targets'")

    removed = fed.cli(
        "records", "remove", police, "--list", "targets", "--ref", "P3",
        "--reason", REASON, "--operator", "dpo-anna",
    )  # fmt: skip
    assert "1 record erased" in removed.stdout and "P3" not in removed.stdout

    # The remover keeps nothing of P3: record, elements, hits; the list changed version.
    assert _rows(police, "SELECT 1 FROM records WHERE ref = 'P3'") == []
    assert _rows(police, "SELECT 1 FROM hits WHERE ref = 'P3'") == []
    assert _rows(police, "SELECT count(*) FROM hits WHERE ref != 'P3'")[0][0] > 0
    assert _rows(police, "SELECT version FROM lists WHERE name = 'targets'") == [(version + 1,)]
    # The key every cached copy was made under is gone.
    epochs = _rows(police, "SELECT id FROM screen_epochs")
    assert len(epochs) == 1 and epochs[0][0] > old_epoch

    # A cache fetched before the removal that even claims the list's current version cannot
    # answer for P3 (its key is gone): the query is refused as stale, border-be fetches again.
    conn = sqlite3.connect(fed.node("border-be") / "store.sqlite")
    with conn:
        conn.execute("UPDATE screen_cache SET list_version = ?", (version + 1,))
    conn.close()
    border = fed.match("border-be", "police-nl", "seizures", "targets", mode="screen")
    assert _refs(border) == {"C1", "C2"}
    assert _screen_cache_epoch(fed, "border-be") > old_epoch

    # The next screening query with the cache as it was fetched, and the next mutual session.
    screen = fed.match("customs-nl", "police-nl", "seizures", "targets", mode="screen")
    assert _refs(screen) == {"C1", "C2"}
    (query,) = [b for e, b in _audit(fed.node("customs-nl")) if e == "screen.query"][-1:]
    assert query["fetches"] == 1 and query["epoch"] > old_epoch
    assert _refs(fed.match("customs-nl", "police-nl", "seizures", "targets")) == {"C1", "C2"}
    assert _refs(fed.match("police-nl", "customs-nl", "targets", "seizures")) == {"P1", "P2"}

    # The audit says who removed one record, why and how much went; never what.
    entries = _audit(police)
    (entry,) = [b for e, b in entries if e == "record.removed"]
    assert entry == {
        "operator": "dpo-anna",
        "list": "targets",
        "reason": REASON,
        "records": 1,
        "elements": 4,  # person, person_year, passport, passport_number
        "hits": p3_hits,
    }
    rotated = [b for e, b in entries if e == "epoch.rotated" and b["reason"] == "record removed"]
    assert len(rotated) == 1 and rotated[0]["previous"] == old_epoch
    text = json.dumps(entries, ensure_ascii=False)
    assert not [t for t in P3_TRACES if t in text.replace(REASON, "")]
    assert "audit log intact" in fed.cli("audit", "verify", police).stdout


def _node_with_lists(make_node: MakeNode, run_cli: RunCli, tmp_path: Path) -> NodeConfig:
    config = make_node()
    (tmp_path / "police.csv").write_text(POLICE)
    (tmp_path / "customs.csv").write_text(CUSTOMS)
    run_cli("ingest", config.node_dir, "--list", "targets", "police.csv", check=True)
    run_cli("ingest", config.node_dir, "--list", "other", "customs.csv", check=True)
    run_cli("epoch", "rotate", config.node_dir, "--list", "targets", check=True)
    with Store.open(config.node_dir) as store, store.transaction():
        for list_name, ref in (("targets", "P1"), ("targets", "P2"), ("other", "C1")):
            hit = {"ref": ref, "type": "person", "peer_label": None}
            store.add_hits("s" * 32, "police-nl", "responder", list_name, "mutual", [hit])
    return config


def _dump(node_dir: Path) -> list[str]:
    """Every row of the store, the audit log included."""
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_lists_drop_erases_everything_of_the_list(
    make_node: MakeNode, run_cli: RunCli, tmp_path: Path
) -> None:
    node_dir = _node_with_lists(make_node, run_cli, tmp_path).node_dir
    assert _rows(node_dir, "SELECT count(*) FROM screen_entries") == [(8,)]

    dropped = run_cli(
        "lists", "drop", node_dir, "--list", "targets", "--reason", "operation closed",
        "--operator", "ops-lead", check=True,
    )  # fmt: skip
    assert "3 record(s), 8 element(s) and 2 hit(s) erased" in dropped.stdout

    assert _rows(node_dir, "SELECT name FROM lists") == [("other",)]
    for table in ("screen_epochs", "screen_entries"):
        assert _rows(node_dir, f"SELECT count(*) FROM {table}") == [(0,)]
    assert _rows(node_dir, "SELECT count(*) FROM records") == [(3,)]  # the other list's
    ((elements,),) = _rows(node_dir, "SELECT count(*) FROM elements")
    ((other,),) = _rows(
        node_dir,
        "SELECT count(*) FROM elements e JOIN records r ON e.record_id = r.id "
        "JOIN lists l ON r.list_id = l.id WHERE l.name = 'other'",
    )
    assert elements == other > 0
    assert _rows(node_dir, "SELECT list, ref FROM hits") == [("other", "C1")]
    (entry,) = [b for e, b in _audit(node_dir) if e == "list.dropped"]
    assert entry == {
        "operator": "ops-lead",
        "list": "targets",
        "kind": "watchlist",
        "reason": "operation closed",
        "records": 3,
        "elements": 8,
        "hits": 2,
    }
    assert "audit log intact" in run_cli("audit", "verify", node_dir, check=True).stdout
    # A list of that name made again starts afresh, with an epoch number never used before.
    run_cli("ingest", node_dir, "--list", "targets", "police.csv", check=True)
    rotated = run_cli("epoch", "rotate", node_dir, "--list", "targets", check=True).stdout
    assert "screening epoch 2," in rotated


def test_removing_the_last_record_leaves_an_empty_list(
    make_node: MakeNode, run_cli: RunCli, tmp_path: Path
) -> None:
    node_dir = _node_with_lists(make_node, run_cli, tmp_path).node_dir
    for ref in ("P1", "P2", "P3"):
        run_cli(
            "records", "remove", node_dir, "--list", "targets", "--ref", ref, "--reason", "DPO-7",
            check=True,
        )  # fmt: skip
    lists = json.loads(run_cli("lists", node_dir, "--json", check=True).stdout)
    (targets,) = [i for i in lists if i["list"] == "targets"]
    assert (targets["records"], targets["elements"], targets["version"]) == (0, 0, 4)
    assert _rows(node_dir, "SELECT list FROM hits") == [("other",)]
    removed = [b for e, b in _audit(node_dir) if e == "record.removed"]
    assert [b["hits"] for b in removed] == [1, 1, 0]


def test_records_remove_without_a_reason_audits_who_and_how_many(
    make_node: MakeNode, run_cli: RunCli, tmp_path: Path
) -> None:
    """--reason is optional (DESIGN §6), as for `lists drop`: the entry says reason null."""
    node_dir = _node_with_lists(make_node, run_cli, tmp_path).node_dir
    ((elements,),) = _rows(
        node_dir,
        "SELECT count(*) FROM elements e JOIN records r ON e.record_id = r.id "
        "JOIN lists l ON r.list_id = l.id WHERE l.name = 'targets' AND r.ref = 'P1'",
    )
    removed = run_cli(
        "records", "remove", node_dir, "--list", "targets", "--ref", "P1",
        "--operator", "dpo-ben",
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    assert "1 record erased" in removed.stdout
    assert _rows(node_dir, "SELECT ref FROM records WHERE ref = 'P1'") == []
    (entry,) = [b for e, b in _audit(node_dir) if e == "record.removed"]
    assert entry == {
        "operator": "dpo-ben",
        "list": "targets",
        "reason": None,
        "records": 1,
        "elements": elements,
        "hits": 1,
    }
    assert elements > 0
    assert "audit log intact" in run_cli("audit", "verify", node_dir, check=True).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["records", "remove", "--list", "nope", "--ref", "P1", "--reason", "x"], "no list 'nope'"),
        (["records", "remove", "--list", "targets", "--ref", "P9", "--reason", "x"], "no record"),
        (["records", "remove", "--list", "targets", "--ref", "P1", "--reason", "a\nb"], "--reason"),
        (["lists", "drop", "--list", "nope"], "no list 'nope'"),
        (["ingest", "--list", "targets", "police.csv", "--retain-days", "-1"], "--retain-days"),
        (["config", "set", "retain_days", "-5"], "retain_days must be"),
    ],
)
def test_refusals_exit_1_and_change_nothing(
    make_node: MakeNode, run_cli: RunCli, tmp_path: Path, args: list[str], message: str
) -> None:
    node_dir = _node_with_lists(make_node, run_cli, tmp_path).node_dir
    before = _dump(node_dir), (node_dir / "node.toml").read_text()
    command = args[:2] if args[0] in ("records", "lists", "config") else args[:1]
    proc = run_cli(*command, node_dir, *args[len(command) :])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("blindmatch: error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr
    assert (_dump(node_dir), (node_dir / "node.toml").read_text()) == before


def test_retain_days_is_kept_by_later_ingests(
    make_node: MakeNode, run_cli: RunCli, tmp_path: Path
) -> None:
    node_dir = make_node().node_dir
    (tmp_path / "police.csv").write_text(POLICE)
    ingest = ("ingest", node_dir, "--list", "targets", "police.csv")
    run_cli(*ingest, "--retain-days", "30", check=True)
    run_cli(*ingest, check=True)
    assert _rows(node_dir, "SELECT retain_days FROM lists") == [(30,)]
    run_cli(*ingest, "--replace", check=True)
    assert _rows(node_dir, "SELECT retain_days FROM lists") == [(30,)]
    assert "30 days" in run_cli("lists", node_dir, check=True).stdout
    run_cli(*ingest, "--retain-days", "0", check=True)
    assert _rows(node_dir, "SELECT retain_days FROM lists") == [(0,)]
    assert "kept" in run_cli("lists", node_dir, check=True).stdout
    # Every record written is stamped, from the node's clock.
    stamps = _rows(node_dir, "SELECT DISTINCT stored_at IS NOT NULL FROM records")
    assert stamps == [(1,)]
    ingests = [b for e, b in _audit(node_dir) if e == "ingest"]
    assert [b.get("retain_days") for b in ingests] == [30, None, None, 0]
