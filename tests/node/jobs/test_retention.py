"""Retention: a real `blindmatch serve --workers 2` erases records kept past their list's
retention on its own, once, audited, and applies a changed node default while it runs; and
a record whose validity window closes is erased then, not at the hourly pass, so that a
peer's cached screening set stops matching it from that moment."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

from node.data.store import Store
from tests.conftest import wait_until
from tests.federation import Federation
from tests.node.rpc.peer_wire import federation, wait_for

WATCH = """ref,iban,email,label
W1,NL91ABNA0417164300,old@example.org,case W1
W2,GB82WEST12345698765432,,case W2
"""
FOREVER = "ref,email\nF1,forever@example.org\n"
PLAIN = "ref,email\nQ1,plain@example.org\n"
WAIT = 60.0


def _ago(days: int) -> str:
    """A `stored_at` of `days` ago, in the form the node writes."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat(timespec="seconds")


def _rows(node_dir: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{node_dir / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _expired(node_dir: Path) -> list[dict[str, Any]]:
    rows = _rows(node_dir, "SELECT body FROM audit WHERE event = 'records.expired' ORDER BY seq")
    return [json.loads(body) for (body,) in rows]


def _refs(node_dir: Path) -> set[str]:
    return {ref for (ref,) in _rows(node_dir, "SELECT ref FROM records")}


def test_serve_purges_expired_records_once_audited(tmp_path: Path) -> None:
    fed = Federation(tmp_path)
    try:
        node_dir = fed.add_node("customs-nl")
        fed.ingest("customs-nl", "watch", WATCH, "--retain-days", "30")
        fed.ingest("customs-nl", "forever", FOREVER, "--retain-days", "0")
        fed.ingest("customs-nl", "plain", PLAIN)  # the node default: 0, keep
        fed.cli("epoch", "rotate", node_dir, "--list", "watch")  # a peer could have cached it
        with Store.open(node_dir) as store, store.transaction() as conn:
            for ref, days in (("W1", 40), ("W2", 29), ("F1", 400), ("Q1", 20)):
                conn.execute("UPDATE records SET stored_at = ? WHERE ref = ?", (_ago(days), ref))
            for list_name, ref in (("watch", "W1"), ("watch", "W2"), ("plain", "Q1")):
                hit = {"ref": ref, "type": "email", "peer_label": "their case"}
                store.add_hits("a" * 32, "police-nl", "responder", list_name, "mutual", [hit])
        ((elements,),) = _rows(
            node_dir, "SELECT count(*) FROM elements e JOIN records r ON r.id = e.record_id "
            "WHERE r.ref = 'W1'",
        )  # fmt: skip

        fed.start("customs-nl", "--workers", "2")
        log = fed.log("customs-nl")

        def passes(count: int) -> bool:
            return log.read_text().count("retention pass:") >= count

        assert wait_until(lambda: passes(2), WAIT), log.read_text()[-3000:]
        assert _refs(node_dir) == {"W2", "F1", "Q1"}
        assert _rows(node_dir, "SELECT ref FROM hits ORDER BY ref") == [("Q1",), ("W2",)]
        (entry,) = _expired(node_dir)  # both serving processes purged; one erased, once
        assert entry.pop("stored_before") < _ago(29)
        assert entry == {
            "operator": "node",
            "list": "watch",
            "retain_days": 30,
            "records": 1,
            "elements": elements,
            "hits": 1,
        }
        rotated = _rows(
            node_dir, "SELECT body FROM audit WHERE event = 'epoch.rotated' ORDER BY seq"
        )
        assert json.loads(rotated[-1][0])["reason"] == "records expired"
        assert [e for (e,) in _rows(node_dir, "SELECT id FROM screen_epochs")] == [2]
        assert _rows(node_dir, "SELECT version FROM lists WHERE name = 'watch'") == [(2,)]

        # A node default applies, while serving, to lists without their own retention.
        fed.cli("config", "set", node_dir, "retain_days", "10")
        assert wait_until(lambda: passes(4) and len(_expired(node_dir)) == 2, WAIT)
        assert _refs(node_dir) == {"W2", "F1"}
        assert _rows(node_dir, "SELECT ref FROM hits") == [("W2",)]
        plain = _expired(node_dir)[1]
        assert (plain["list"], plain["retain_days"], plain["records"]) == ("plain", 10, 1)
        assert "audit log intact" in fed.cli("audit", "verify", node_dir).stdout
        assert fed.stop("customs-nl") == 0
    finally:
        fed.close()


PROBE = "ref,iban\nQ1,NL91ABNA0417164300\nQ2,GB82WEST12345698765432\n"
SOON = 10  # seconds from the ingest to the end of R1's validity window: after one screening
CLOSED_WITHIN = 3  # seconds from the end of a window to the pass that erases the record


def _screened(fed: Federation) -> set[str]:
    """police-nl's refs that customs-nl's ops list matches, by screening (a cached set)."""
    result = fed.match("police-nl", "customs-nl", "probe", "ops", mode="screen")
    return {m["ref"] for m in result["matches"]}


def test_a_record_is_not_screened_from_the_moment_its_window_closes() -> None:
    with federation("windows") as fed:
        for agency in ("customs-nl", "police-nl"):
            fed.add_node(agency)
        fed.add_peer("customs-nl", "police-nl", "--modes", "screen", "--release-labels")
        fed.add_peer("police-nl", "customs-nl", "--modes", "screen")
        fed.ingest("police-nl", "probe", PROBE)
        until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=SOON)
        ops = (
            "ref,iban,valid_until,label\n"
            f"R1,NL91ABNA0417164300,{until.isoformat()},op ending\n"
            "R2,GB82WEST12345698765432,,op open\n"
        )
        fed.ingest("customs-nl", "ops", ops, "--kind", "operations")
        fed.start("customs-nl")
        node_dir = fed.node("customs-nl")

        # police-nl fetches the encoded set (R1 in it) and finds both.
        assert _screened(fed) == {"Q1", "Q2"}
        assert dt.datetime.now(dt.UTC) < until, f"too slow: raise SOON ({SOON} s)"

        # R1's window closes: serve erases it then, and rotates the screening key epoch.
        def erased() -> list[dict[str, Any]]:
            return [e for e in _window_expired(node_dir) if e["records"] == 1]

        (entry,) = wait_for(erased, SOON + 30, "R1 erased when its window closed")
        at = dt.datetime.fromisoformat(entry["valid_until_before"])
        assert until <= at <= until + dt.timedelta(seconds=CLOSED_WITHIN), (until, at)
        assert _refs(node_dir) == {"R2"}
        rotated = _rows(node_dir, "SELECT body FROM audit WHERE event = 'epoch.rotated'")
        assert json.loads(rotated[-1][0])["reason"] == "records expired"

        # The same cached set no longer answers for R1: police-nl is told to fetch again.
        assert _screened(fed) == {"Q2"}
        fetched = _rows(node_dir, "SELECT count(*) FROM audit WHERE event = 'screen.fetched'")
        assert fetched == [(2,)]
        assert fed.stop("customs-nl") == 0


def _window_expired(node_dir: Path) -> list[dict[str, Any]]:
    return [e for e in _expired(node_dir) if "valid_until_before" in e]
