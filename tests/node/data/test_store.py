"""Tests for node.store: schema version, transactions, sessions and hits, packed points."""

import sqlite3
from pathlib import Path

import pytest

from node.data.identifiers import CANON_VERSION
from node.data.store import SCHEMA_VERSION, Store
from node.errors import Incompatible, NotFound


def test_schema_version_and_pragmas(tmp_path: Path) -> None:
    with Store.open(tmp_path, create=True) as store:
        assert store.schema_version == SCHEMA_VERSION >= 1
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with Store.open(tmp_path) as store:  # reopening does not migrate again
        assert store.schema_version == SCHEMA_VERSION


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="blindmatch init"):
        Store.open(tmp_path)


def test_transaction_rolls_back(tmp_path: Path) -> None:
    with Store.open(tmp_path, create=True) as store:
        with pytest.raises(RuntimeError), store.transaction() as conn:
            conn.execute(
                "INSERT INTO lists (name, kind, version, updated_at) "
                "VALUES ('a', 'watchlist', 1, 'now')"
            )
            raise RuntimeError("boom")
        assert store.lists() == []
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO lists (name, kind, version, updated_at) "
                "VALUES ('a', 'watchlist', 1, 'now')"
            )
        assert [i.name for i in store.lists()] == ["a"]


def test_a_nested_transaction_is_a_savepoint(tmp_path: Path) -> None:
    insert = "INSERT INTO lists (name, kind, version, updated_at) VALUES (?, 'watchlist', 1, 'now')"
    with Store.open(tmp_path, create=True) as store:
        with store.transaction() as conn:
            conn.execute(insert, ("outer",))
            with pytest.raises(RuntimeError), store.transaction() as nested:
                nested.execute(insert, ("failed",))
                raise RuntimeError("boom")
            with store.transaction() as nested:
                nested.execute(insert, ("nested",))
            assert conn.in_transaction  # nothing committed before the outer block ends
        assert not store.conn.in_transaction
        assert [i.name for i in store.lists()] == ["nested", "outer"]


def test_audit_is_append_only(tmp_path: Path) -> None:
    with Store.open(tmp_path, create=True) as store:
        store.conn.execute(
            "INSERT INTO audit VALUES (1, 'now', 'ingest', '{}', x'00', x'00', x'00')"
        )
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.conn.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.conn.execute("UPDATE audit SET event = 'x'")


def test_list_points_sessions_hits(tmp_path: Path) -> None:
    with Store.open(tmp_path, create=True) as store, store.transaction() as conn:
        conn.execute(
            "INSERT INTO lists (id, name, kind, version, updated_at, canon_version) "
            "VALUES (1, 'w', 'watchlist', 1, 'x', ?)",
            (CANON_VERSION,),
        )
        conn.execute(
            "INSERT INTO records (id, list_id, ref, label) "
            "VALUES (1, 1, 'r1', 'case 1'), (2, 1, 'r2', NULL)"
        )
        conn.executemany(
            "INSERT INTO elements VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, 1, "iban", b"e1", b"R" * 32, b"X" * 32),
                (2, 2, "imo", b"e2", b"r" * 32, b"x" * 32),
                (3, 1, "phone", b"e3", b"Q" * 32, b"Y" * 32),
            ],
        )
    with Store.open(tmp_path) as store:
        points = store.list_points("w", "x25519-blake3")
        assert points.packed == b"X" * 32 + b"x" * 32 + b"Y" * 32
        assert points.element_ids.tolist() == [1, 2, 3] and len(points) == 3
        assert store.element_rows([1, 2, 3, 4, 3]) == [
            ("r1", "iban", "case 1"),
            ("r2", "imo", None),
            ("r1", "phone", "case 1"),
            None,  # no such element (removed since the list was read)
            ("r1", "phone", "case 1"),
        ]
        assert store.list_points("w", "ristretto255-sha512").packed[:32] == b"R" * 32
        with pytest.raises(NotFound, match="no list 'nope'"):
            store.list_points("nope", "x25519-blake3")
        [info] = store.lists()
        assert (info.records, info.elements) == (2, 3)

        store.record_session(
            "s1", "police-nl", "initiator", "mutual", "x25519-blake3", "w", "deconfliction"
        )
        new = store.add_hits(
            "s1",
            "police-nl",
            "initiator",
            "w",
            "mutual",
            [{"ref": "r1", "type": "iban", "peer_label": "L"}],
        )
        store.finish_session("s1", "done", match_count=1)
        [hit] = store.hits()
        assert list(new) == [hit["id"]]
        assert hit == {
            "id": hit["id"],
            "peer": "police-nl",
            "list": "w",
            "ref": "r1",
            "type": "iban",
            "peer_label": "L",
            "role": "initiator",
            "mode": "mutual",
            "status": "new",
            "first_seen": hit["first_seen"],
            "last_seen": hit["first_seen"],
            "sessions": 1,
        }
        [session] = store.sessions(peer="police-nl")
        assert session["status"] == "done" and session["match_count"] == 1
        with pytest.raises(NotFound):
            store.finish_session("nope", "done")


def test_a_list_made_under_older_canonical_forms_is_not_matched(tmp_path: Path) -> None:
    with Store.open(tmp_path, create=True) as store, store.transaction() as conn:
        # A list as an older blindmatch stored it: the migration gave it canon_version 1.
        conn.execute(
            "INSERT INTO lists (name, kind, version, updated_at) "
            "VALUES ('old', 'watchlist', 3, 'x')"
        )
    with Store.open(tmp_path) as store:
        (info,) = store.lists()
        assert info.stale and info.to_json()["version"] == 3
        with pytest.raises(Incompatible, match="--list old --replace FILE") as refused:
            store.list_points("old", "x25519-blake3")
        assert (
            refused.value.peer
            == "list 'old' must be reloaded by its agency before it can be matched"
        )
