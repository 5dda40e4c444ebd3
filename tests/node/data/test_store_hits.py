"""Hits as records in the store: the migration that collapsed per-session rows, the upsert of
what a session finds, the filters and the acknowledgement (DESIGN §5)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from node.data.store import _MIGRATIONS, SCHEMA_VERSION, Store
from node.errors import ConfigError, Conflict, NotFound

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
# The migration that made hits records: the stores of every version before it kept one
# row per session and hit (found by content, so that later migrations leave this test be).
HITS_MIGRATION = next(i for i, s in enumerate(_MIGRATIONS) if "CREATE TABLE hit_records" in s)


def iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="seconds")


def hit(ref: str, type_: str = "passport", label: str | None = None) -> dict[str, Any]:
    return {"ref": ref, "type": type_, "peer_label": label}


def record(store: Store, session: str, hits: list[dict[str, Any]], **options: Any) -> list[int]:
    """Records one session's hits as `SessionRecord.complete` does, in one transaction."""
    peer = options.pop("peer", "police-nl")
    role = options.pop("role", "initiator")
    list_name = options.pop("list_name", "targets")
    mode = options.pop("mode", "mutual")
    with store.transaction():
        return list(store.add_hits(session, peer, role, list_name, mode, hits, **options))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store.open(tmp_path, create=True) as store:
        yield store


# -- the migration ------------------------------------------------------------------------------


def _old_store(path: Path) -> None:
    """A store as the version before hit records left it: one hit row per session."""
    conn = sqlite3.connect(path, isolation_level=None)
    for script in _MIGRATIONS[:HITS_MIGRATION]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {HITS_MIGRATION}")
    sessions = [  # id, peer, role, mode, list, started
        ("s1", "police-nl", "initiator", "mutual", "targets", "2026-01-01T10:00:00+00:00"),
        ("s2", "police-nl", "responder", "mutual", "targets", "2026-01-02T10:00:00+00:00"),
        ("s3", "police-nl", "initiator", "screen", "targets", "2026-01-03T10:00:00+00:00"),
        ("s4", "border-be", "initiator", "mutual", "targets", "2026-01-04T10:00:00+00:00"),
        ("s5", "police-nl", "initiator", "mutual", "other", "2026-01-05T10:00:00+00:00"),
    ]
    conn.executemany(
        "INSERT INTO sessions (id, peer, role, mode, suite, list, purpose, status, started_at) "
        "VALUES (?, ?, ?, ?, 'x25519-blake3', ?, 'test', 'completed', ?)",
        sessions,
    )
    rows = [  # session, ref, type, peer label, created
        ("s1", "R1", "passport", "op A", "2026-01-01T10:00:05+00:00"),
        ("s1", "R1", "passport", "op A", "2026-01-01T10:00:05+00:00"),  # twice in one session
        ("s1", "R2", "phone", None, "2026-01-01T10:00:05+00:00"),
        ("s2", "R1", "passport", "op A", "2026-01-02T10:00:05+00:00"),
        ("s2", "R2", "phone", "", "2026-01-02T10:00:05+00:00"),  # '' and NULL: no label both
        ("s3", "R1", "passport", "op A", "2026-01-03T10:00:05+00:00"),
        ("s3", "R1", "passport", "op B", "2026-01-03T10:00:05+00:00"),  # another label
        ("s4", "R1", "passport", "op A", "2026-01-04T10:00:05+00:00"),  # another peer
        ("s5", "R1", "passport", "op A", "2026-01-05T10:00:05+00:00"),  # another list
    ]
    for session, ref, type_, label, created in rows:
        conn.execute(
            "INSERT INTO hits (session_id, peer, role, ref, type, peer_label, created_at) "
            "SELECT id, peer, role, ?, ?, ?, ? FROM sessions WHERE id = ?",
            (ref, type_, label, created, session),
        )
    conn.close()


def test_the_migration_collapses_per_session_hits_into_records(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    _old_store(path)
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        keys = ("peer", "list", "ref", "type", "peer_label")
        got = {tuple(h[k] for k in keys): h for h in store.hits()}
        assert all(h["status"] == "new" for h in got.values())
        r1 = got["police-nl", "targets", "R1", "passport", "op A"]
        assert (r1["first_seen"], r1["last_seen"], r1["sessions"]) == (
            "2026-01-01T10:00:05+00:00",
            "2026-01-03T10:00:05+00:00",
            3,
        )
        assert (r1["role"], r1["mode"]) == ("initiator", "screen")  # those of its latest session
        r2 = got["police-nl", "targets", "R2", "phone", None]
        assert (r2["sessions"], r2["role"], r2["mode"]) == (2, "responder", "mutual")
        assert r2["last_seen"] == "2026-01-02T10:00:05+00:00"
        for other in (
            ("police-nl", "targets", "R1", "passport", "op B"),
            ("border-be", "targets", "R1", "passport", "op A"),
            ("police-nl", "other", "R1", "passport", "op A"),
        ):
            assert got[other]["sessions"] == 1
        assert len(got) == 5
        # The last session is kept, so that the next session counts as one more.
        record(store, "s3", [hit("R1", label="op A")], mode="screen", seen_at=T0)
        assert store.hits(list_name="targets", peer="police-nl")[0]["sessions"] == 3
        record(store, "s6", [hit("R1", label="op A")], seen_at=T0)
        assert store.hits(list_name="targets", peer="police-nl")[0]["sessions"] == 4
    dump = _dump(path)
    with Store.open(path) as store:  # opening it again changes nothing
        assert store.schema_version == SCHEMA_VERSION
    assert _dump(path) == dump


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# -- recording ----------------------------------------------------------------------------------


def test_a_hit_seen_again_is_updated_not_added(store: Store) -> None:
    found = [hit("R1", label="op A"), hit("R2", "phone"), hit("R1", label="op A")]
    new = record(store, "s1", found, seen_at=T0)
    assert len(new) == 2  # R1 twice in one session is one hit
    assert store.new_hit_count() == 2
    first = {h["ref"]: h for h in store.hits()}
    assert set(new) == {first["R1"]["id"], first["R2"]["id"]}
    assert first["R1"] == {
        "id": first["R1"]["id"],
        "peer": "police-nl",
        "list": "targets",
        "ref": "R1",
        "type": "passport",
        "peer_label": "op A",
        "role": "initiator",
        "mode": "mutual",
        "status": "new",
        "first_seen": iso(T0),
        "last_seen": iso(T0),
        "sessions": 1,
    }
    assert first["R2"]["peer_label"] is None

    # The same session recorded again counts once; another session counts one more.
    assert record(store, "s1", [hit("R1", label="op A")], seen_at=T0) == []
    assert store.hit(first["R1"]["id"])["sessions"] == 1  # type: ignore[index]
    new = record(
        store, "s2", [hit("R1", label="op A"), hit("R3")], role="responder", seen_at=T0 + HOUR
    )
    after = {h["ref"]: h for h in store.hits()}
    assert new == [after["R3"]["id"]]
    r1 = after["R1"]
    assert (r1["id"], r1["sessions"], r1["first_seen"], r1["last_seen"], r1["role"]) == (
        first["R1"]["id"],
        2,
        iso(T0),
        iso(T0 + HOUR),
        "responder",
    )
    assert after["R2"] == first["R2"]  # not found again: untouched
    # Another label, peer, list or type is another hit.
    assert len(record(store, "s3", [hit("R1", label="op B")], seen_at=T0)) == 1
    assert len(record(store, "s4", [hit("R1", label="op A")], peer="border-be")) == 1
    assert len(record(store, "s5", [hit("R1", label="op A")], list_name="other")) == 1
    assert len(record(store, "s6", [hit("R1", "passport_number", "op A")])) == 1
    assert len(store.hits()) == 7 == store.new_hit_count()


def test_an_acknowledged_hit_seen_again_stays_acknowledged(store: Store) -> None:
    [hit_id] = record(store, "s1", [hit("R1")], seen_at=T0)
    with store.transaction():
        store.acknowledge_hit(hit_id, "J. de Vries", "called the desk", at=T0 + HOUR)
    assert record(store, "s2", [hit("R1")], mode="screen", seen_at=T0 + 2 * HOUR) == []
    again = store.hit(hit_id)
    assert again is not None
    assert (again["status"], again["sessions"], again["mode"]) == ("acknowledged", 2, "screen")
    assert (again["acknowledged_by"], again["note"]) == ("J. de Vries", "called the desk")
    assert store.new_hit_count() == 0 and store.hits(new_only=True) == []


def test_add_hits_outside_a_transaction_commits_in_its_own(tmp_path: Path) -> None:
    with Store.open(tmp_path, create=True) as store:
        assert len(store.add_hits("s1", "p-nl", "initiator", "l", "mutual", [hit("R1")])) == 1
    with Store.open(tmp_path) as store:
        assert store.new_hit_count() == 1


def test_a_failed_transaction_records_no_hit(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_hits("s1", "police-nl", "initiator", "targets", "mutual", [hit("R1")])
        raise RuntimeError("the audit entry could not be written")
    assert store.hits() == []
    assert len(record(store, "s2", [hit("R1")])) == 1  # the temporary table holds nothing


# -- filters ------------------------------------------------------------------------------------


def test_filters_and_order(store: Store) -> None:
    record(store, "s1", [hit("A")], seen_at=T0)
    record(store, "s2", [hit("B")], peer="border-be", seen_at=T0 + HOUR)
    record(store, "s3", [hit("C")], list_name="other", seen_at=T0 + 2 * HOUR)
    record(store, "s4", [hit("D")], seen_at=T0 + 3 * HOUR)
    ids = {h["ref"]: h["id"] for h in store.hits()}
    with store.transaction():
        store.acknowledge_hit(ids["D"], "analyst")

    def refs(**filters: Any) -> list[str]:
        return [h["ref"] for h in store.hits(**filters)]

    assert refs() == ["C", "B", "A", "D"]  # new first, then the latest seen first
    assert refs(new_only=True) == ["C", "B", "A"]
    assert refs(since=T0 + HOUR) == ["C", "B", "D"]  # at or after
    assert refs(since=T0 + HOUR + dt.timedelta(seconds=1)) == ["C", "D"]
    assert refs(since=(T0 + HOUR).astimezone(dt.timezone(dt.timedelta(hours=2)))) == refs(
        since=T0 + HOUR
    )  # any time zone, compared in UTC
    assert refs(peer="border-be") == ["B"]
    assert refs(list_name="other") == ["C"]
    assert refs(peer="police-nl", list_name="targets", new_only=True) == ["A"]
    assert refs(peer="nobody") == [] and refs(list_name="nothing") == []


# -- acknowledgement ----------------------------------------------------------------------------


def test_acknowledge_records_who_when_and_the_note(store: Store) -> None:
    [hit_id] = record(store, "s1", [hit("R1", label="op A")], seen_at=T0)
    with store.transaction():
        acked = store.acknowledge_hit(hit_id, "  J. de Vries ", "line one\r\nline two\n", at=T0)
    assert acked == {
        **store.hits()[0],
        "status": "acknowledged",
        "acknowledged_by": "J. de Vries",
        "acknowledged_at": iso(T0),
        "note": "line one\nline two",
    }
    assert store.hit(hit_id) == acked
    assert store.new_hit_count() == 0


def test_acknowledge_errors_change_nothing(store: Store) -> None:
    [first, second] = record(store, "s1", [hit("R1"), hit("R2")], seen_at=T0)
    with store.transaction():
        store.acknowledge_hit(first, "analyst", at=T0)
    before = store.hits()
    with pytest.raises(NotFound, match="no hit 99 .* hits NODE_DIR --new"):
        store.acknowledge_hit(99, "analyst")
    with pytest.raises(Conflict, match=f"hit {first} was already acknowledged by analyst"):
        store.acknowledge_hit(first, "someone else")
    bad = [
        ("", None, "--by"),
        ("   ", None, "--by"),
        ("x" * 101, None, "--by"),
        ("name\x1b[31m", None, "--by"),
        ("analyst", "y" * 1_001, "--note"),
        ("analyst", "bell\x07", "--note"),
        ("analyst", "tab\there", "--note"),
    ]
    for by, note, option in bad:
        with pytest.raises(ConfigError, match=option):
            store.acknowledge_hit(second, by, note)
    assert store.hits() == before
    assert store.hit(first)["acknowledged_by"] == "analyst"  # type: ignore[index]
    # The bounds themselves are accepted.
    store.acknowledge_hit(second, "x" * 100, "y" * 1_000)
