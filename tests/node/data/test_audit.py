"""Tests for node.audit: the chain format, tamper detection, triggers, concurrency, guards, keys."""

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data import audit
from node.errors import AuditError, NodeError, NotFound

# The store module owns this DDL; it is repeated here verbatim for the tests.
DDL = """
CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL, signature BLOB NOT NULL);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""  # noqa: E501

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # for deterministic tests only
PUB = KEY.public_key()
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)

EVENTS: list[tuple[str, dict[str, object]]] = [
    ("ingest", {"who": "analyst.k", "list": "watchlist", "sizes": {"rows": 120, "records": 118}}),
    ("session.initiated", {"who": "analyst.k", "peer": "police-nl", "purpose": "op. tern"}),
    ("session.answered", {"peer": "police-nl", "mode": "mutual", "counts": {"matches": 3}}),
    ("disclosure", {"peer": "police-nl", "labels_released": 3, "purpose": "op. tern"}),
    ("screen.query", {"peer": "customs-be", "list": "watchlist", "batch": 500}),
    ("screen.answered", {"peer": "customs-be", "batch": 500, "budget_left": 9500}),
    ("epoch.rotated", {"list": "watchlist", "epoch": 7}),
    ("session.refused", {"peer": "unknown-x", "reason": "no policy for this peer"}),
]


def connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def create(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.executescript(DDL)
    return conn


def append(
    conn: sqlite3.Connection,
    event: str,
    fields: Mapping[str, object],
    now: datetime | None = T0,
    key: Ed25519PrivateKey = KEY,
) -> int:
    """Appends the way node code does: one BEGIN IMMEDIATE transaction per change."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq = audit.append(conn, key, event, fields, now=now)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return seq


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = create(connect(tmp_path / "node.db"))
    yield conn
    conn.close()


@pytest.fixture
def chain(db: sqlite3.Connection) -> sqlite3.Connection:
    """A log of len(EVENTS) entries, one minute apart."""
    for i, (event, fields) in enumerate(EVENTS):
        append(db, event, fields, now=T0 + timedelta(minutes=i))
    return db


def as_attacker(conn: sqlite3.Connection) -> sqlite3.Connection:
    """What someone with write access to the file can do first: drop the triggers."""
    conn.execute("DROP TRIGGER audit_append_only_update")
    conn.execute("DROP TRIGGER audit_append_only_delete")
    return conn


def rows(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT seq, at, event, body, prev_hash, hash, signature FROM audit ORDER BY seq"
    ).fetchall()


def reference_hash(prev_hash: bytes, seq: int, at: str, event: str, body: str) -> bytes:
    """The hash re-implemented from the module docstring alone, as an auditor would."""

    def lp(x: bytes) -> bytes:
        return len(x).to_bytes(8, "big") + x

    message = (
        lp(b"blindmatch/v1 audit entry")
        + lp(prev_hash)
        + seq.to_bytes(8, "big")
        + lp(at.encode("utf-8"))
        + lp(event.encode("utf-8"))
        + lp(body.encode("utf-8"))
    )
    return blake3.blake3(message).digest()


# --- a valid chain -------------------------------------------------------------------------------


def test_chain_of_entries_verifies(chain: sqlite3.Connection) -> None:
    result = audit.verify(chain, PUB)
    assert result.ok
    assert result.entries == len(EVENTS)
    assert result.failed_seq is None and result.reason is None
    assert result.head == audit.head(chain)
    assert str(result) == f"audit log intact: {len(EVENTS)} entries, head {result.head}"


def test_empty_log_verifies_and_has_genesis_head(db: sqlite3.Connection) -> None:
    assert audit.head(db) == (0, bytes(32))
    result = audit.verify(db, PUB)
    assert result.ok and result.entries == 0


def test_append_returns_contiguous_seqs(db: sqlite3.Connection) -> None:
    assert [append(db, "ingest", {"n": i}) for i in range(4)] == [1, 2, 3, 4]
    assert audit.head(db).seq == 4


def test_stored_entry_follows_the_documented_format(chain: sqlite3.Connection) -> None:
    prev = bytes(32)
    for seq, at, event, body, prev_hash, digest, signature in rows(chain):
        assert prev_hash == prev
        assert digest == reference_hash(prev_hash, seq, at, event, body)
        assert digest == audit.entry_hash(prev_hash, seq, at, event, body)
        PUB.verify(signature, digest)
        fields = json.loads(body)
        assert body == json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        prev = digest


VECTOR_HASH = "e39c84c3c2401b182c53880409559169030092e385822fcd91df3237837f3931"
VECTOR_SIGNATURE = (
    "67bbaa11d3b7c61793982cc1bd624050d9444f02154ac5dfc9590269a7295a3a"
    "932eacd0c35495aaa70eb8b758483b610e6ec21db587c28ded1474a2ff645306"
)


def test_known_answer_vector() -> None:
    """Pins the format: a re-implementation must reproduce these bytes for this input."""
    conn = create(sqlite3.connect(":memory:", isolation_level=None))
    conn.execute("BEGIN IMMEDIATE")
    audit.append(conn, KEY, "session.answered", {"peer": "police-nl", "purpose": "opération"}, T0)
    (row,) = rows(conn)
    assert row[1:4] == (
        "2026-03-01T09:30:00.123456Z",
        "session.answered",
        '{"peer":"police-nl","purpose":"opération"}',
    )
    assert row[5] == reference_hash(bytes(32), 1, *row[1:4])
    assert row[5].hex() == VECTOR_HASH
    assert row[6].hex() == VECTOR_SIGNATURE


def test_now_is_injectable_and_normalised_to_utc(db: sqlite3.Connection) -> None:
    append(db, "ingest", {}, now=T0)
    append(db, "ingest", {}, now=datetime(2026, 3, 1, 11, 0, tzinfo=timezone(timedelta(hours=2))))
    ats = [row[1] for row in rows(db)]
    assert ats == ["2026-03-01T09:30:00.123456Z", "2026-03-01T09:00:00.000000Z"]
    assert [e.at for e in audit.entries(db)] == [T0, datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]


def test_default_now_is_the_current_utc_time(db: sqlite3.Connection) -> None:
    before = datetime.now(UTC)
    append(db, "ingest", {}, now=None)
    (entry,) = audit.entries(db)
    assert before - timedelta(seconds=1) <= entry.at <= datetime.now(UTC)


def test_naive_now_is_rejected(db: sqlite3.Connection) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        append(db, "ingest", {}, now=datetime(2026, 3, 1, 9, 30))


def test_entries_round_trip_fields_in_order(chain: sqlite3.Connection) -> None:
    got = list(audit.entries(chain))
    assert [(e.seq, e.event, e.fields) for e in got] == [
        (i + 1, event, fields) for i, (event, fields) in enumerate(EVENTS)
    ]
    assert [e.seq for e in audit.entries(chain, since_seq=6)] == [7, 8]


def test_append_does_not_commit(db: sqlite3.Connection, tmp_path: Path) -> None:
    db.execute("BEGIN IMMEDIATE")
    audit.append(db, KEY, "ingest", {"list": "watchlist"}, T0)
    other = connect(tmp_path / "node.db")
    assert audit.head(other).seq == 0
    db.execute("ROLLBACK")
    assert audit.head(db).seq == 0
    other.close()


def test_append_outside_a_transaction_is_refused(db: sqlite3.Connection) -> None:
    with pytest.raises(AuditError, match="BEGIN IMMEDIATE"):
        audit.append(db, KEY, "ingest", {}, T0)
    assert audit.head(db).seq == 0


# --- tampering, each detected and named ----------------------------------------------------------


def test_altered_body_names_that_entry(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute(
        "UPDATE audit SET body = ? WHERE seq = 3",
        ('{"counts":{"matches":0},"mode":"mutual","peer":"police-nl"}',),
    )
    result = audit.verify(chain, PUB)
    assert not result.ok
    assert result.failed_seq == 3
    assert result.entries == 2
    assert result.reason == (
        "entry 3 (session.answered at 2026-03-01T09:32:00.123456Z): "
        "hash does not match its content — the entry was altered"
    )
    assert str(result).startswith("audit log FAILED verification: entry 3 (")


@pytest.mark.parametrize(
    ("column", "value"),
    [("at", "2026-03-01T09:35:00.123456Z"), ("event", "session.refused"), ("body", "{}")],
)
def test_any_altered_column_is_detected(chain: sqlite3.Connection, column: str, value: str) -> None:
    as_attacker(chain).execute(f"UPDATE audit SET {column} = ? WHERE seq = 5", (value,))
    result = audit.verify(chain, PUB)
    assert (result.ok, result.failed_seq) == (False, 5)
    assert "the entry was altered" in (result.reason or "")


def test_altered_body_with_recomputed_hash_fails_the_signature(chain: sqlite3.Connection) -> None:
    seq, at, event, _, prev_hash, _, _ = rows(chain)[3]
    body = '{"labels_released":0}'
    as_attacker(chain).execute(
        "UPDATE audit SET body = ?, hash = ? WHERE seq = ?",
        (body, audit.entry_hash(prev_hash, seq, at, event, body), seq),
    )
    result = audit.verify(chain, PUB)
    assert result.failed_seq == 4
    assert "signature is not valid" in (result.reason or "")


def test_deleted_middle_entry_is_named(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute("DELETE FROM audit WHERE seq = 4")
    result = audit.verify(chain, PUB)
    assert (result.ok, result.failed_seq, result.entries) == (False, 4, 3)
    assert result.reason == (
        "entry 4 missing: the log goes from entry 3 to entry 5 — entries were deleted"
    )


def test_deleted_first_entries_are_named(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute("DELETE FROM audit WHERE seq <= 2")
    result = audit.verify(chain, PUB)
    assert (result.ok, result.failed_seq) == (False, 1)
    assert (result.reason or "").startswith("entries 1 to 2 missing")


def test_deleted_entry_with_renumbering_breaks_the_link(chain: sqlite3.Connection) -> None:
    conn = as_attacker(chain)
    conn.execute("DELETE FROM audit WHERE seq = 4")
    for seq in range(5, len(EVENTS) + 1):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq - 1, seq))
    result = audit.verify(conn, PUB)
    assert (result.ok, result.failed_seq) == (False, 4)
    assert "prev_hash does not link to entry 3" in (result.reason or "")


def test_reordered_entries_are_named(chain: sqlite3.Connection) -> None:
    conn = as_attacker(chain)
    r3, r4 = rows(conn)[2], rows(conn)[3]
    for seq, row in ((3, r4), (4, r3)):
        conn.execute(
            "UPDATE audit SET at=?, event=?, body=?, prev_hash=?, hash=?, signature=? WHERE seq=?",
            (*row[1:], seq),
        )
    result = audit.verify(conn, PUB)
    assert (result.ok, result.failed_seq) == (False, 3)
    assert result.reason == (
        "entry 3 (disclosure at 2026-03-01T09:33:00.123456Z): prev_hash does not link to "
        "entry 2 — entries were removed, reordered or inserted here"
    )


def test_changed_prev_hash_is_named(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute("UPDATE audit SET prev_hash = ? WHERE seq = 6", (bytes(32),))
    result = audit.verify(chain, PUB)
    assert (result.ok, result.failed_seq) == (False, 6)
    assert "prev_hash does not link to entry 5" in (result.reason or "")


def test_chain_rebuilt_with_another_key_is_named(chain: sqlite3.Connection) -> None:
    """An attacker rewrites entry 5 onwards, recomputing every hash, but signs with their key."""
    conn = as_attacker(chain)
    prev = rows(conn)[3][5]
    for seq, at, event, body, *_ in rows(conn)[4:]:
        if seq == 5:
            body = '{"batch":1,"list":"watchlist","peer":"customs-be"}'
        digest = audit.entry_hash(prev, seq, at, event, body)
        conn.execute(
            "UPDATE audit SET body=?, prev_hash=?, hash=?, signature=? WHERE seq=?",
            (body, prev, digest, OTHER_KEY.sign(digest), seq),
        )
        prev = digest
    result = audit.verify(conn, PUB)
    assert (result.ok, result.failed_seq) == (False, 5)
    assert result.reason == (
        "entry 5 (screen.query at 2026-03-01T09:34:00.123456Z): signature is not valid under "
        "this node's audit key — the entry was forged or re-signed with another key"
    )


def test_forged_entry_appended_with_another_key_is_named(chain: sqlite3.Connection) -> None:
    append(chain, "disclosure", {"peer": "x"}, key=OTHER_KEY)
    result = audit.verify(chain, PUB)
    assert (result.ok, result.failed_seq, result.entries) == (False, len(EVENTS) + 1, len(EVENTS))


def test_malformed_columns_are_reported_not_raised(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute("UPDATE audit SET hash = X'00' WHERE seq = 2")
    result = audit.verify(chain, PUB)
    assert (result.ok, result.failed_seq) == (False, 2)
    assert "malformed" in (result.reason or "")


def test_non_canonical_body_signed_by_the_key_is_reported(db: sqlite3.Connection) -> None:
    body = '{"b": 1, "a": 2}'
    digest = audit.entry_hash(bytes(32), 1, "2026-03-01T09:30:00.123456Z", "ingest", body)
    db.execute(
        "INSERT INTO audit VALUES (1, ?, 'ingest', ?, ?, ?, ?)",
        ("2026-03-01T09:30:00.123456Z", body, bytes(32), digest, KEY.sign(digest)),
    )
    result = audit.verify(db, PUB)
    assert (result.ok, result.failed_seq) == (False, 1)
    assert "not canonical JSON" in (result.reason or "")


def test_truncation_is_detected_only_against_a_recorded_head(chain: sqlite3.Connection) -> None:
    recorded = audit.head(chain)
    assert audit.verify(chain, PUB, expected_head=recorded).ok
    as_attacker(chain).execute("DELETE FROM audit WHERE seq > 5")
    assert audit.verify(chain, PUB).ok  # a shorter log is still a valid chain
    result = audit.verify(chain, PUB, expected_head=recorded)
    assert (result.ok, result.failed_seq) == (False, 6)
    assert result.reason == (
        f"the log ends at entry 5 but a head at entry {len(EVENTS)} was recorded — "
        f"entries 6 to {len(EVENTS)} were removed"
    )


def test_rewrite_by_the_key_holder_is_detected_against_a_recorded_head(
    chain: sqlite3.Connection,
) -> None:
    recorded = audit.head(chain)
    conn = as_attacker(chain)
    conn.execute("DELETE FROM audit WHERE seq >= 3")
    append(conn, "ingest", {"list": "other"})
    while audit.head(conn).seq < recorded.seq:
        append(conn, "ingest", {"list": "other"})
    assert audit.verify(conn, PUB).ok
    result = audit.verify(conn, PUB, expected_head=recorded)
    assert (result.ok, result.failed_seq) == (False, recorded.seq)
    assert "does not match the recorded head" in (result.reason or "")


def test_an_older_recorded_head_still_verifies_after_appends(chain: sqlite3.Connection) -> None:
    recorded = audit.head(chain)
    append(chain, "ingest", {"list": "watchlist"})
    assert audit.verify(chain, PUB, expected_head=recorded).ok


# --- verify from a time on (`audit verify --since`) -----------------------------------------------

SINCE = T0 + timedelta(minutes=3)  # entry 4 on: entries 4 to len(EVENTS)


def test_verify_since_checks_from_the_first_entry_at_or_after_that_time(
    chain: sqlite3.Connection,
) -> None:
    result = audit.verify(chain, PUB, since=SINCE - timedelta(seconds=30))
    assert (result.ok, result.first_seq, result.entries) == (True, 4, len(EVENTS) - 3)
    assert result.head == audit.head(chain)
    assert str(result) == (
        f"audit log intact: {len(EVENTS) - 3} entries checked from entry 4 (those at or after "
        f"2026-03-01T09:32:30.123456Z), head {result.head}"
    )
    exact = audit.verify(chain, PUB, since=SINCE.replace(microsecond=123456))
    assert (exact.first_seq, exact.entries) == (4, len(EVENTS) - 3)  # "at or after"
    whole = audit.verify(chain, PUB, since=T0 - timedelta(days=1))
    assert (whole.ok, whole.first_seq, whole.entries) == (True, 1, len(EVENTS))
    later = audit.verify(chain, PUB, since=T0 + timedelta(days=1))
    assert (later.ok, later.entries, later.first_seq) == (True, 0, len(EVENTS) + 1)


def test_verify_since_does_not_check_entries_before_that_time(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute("UPDATE audit SET body = '{}' WHERE seq = 2")
    assert audit.verify(chain, PUB).failed_seq == 2
    assert audit.verify(chain, PUB, since=SINCE).ok


def test_verify_since_names_a_tampered_entry_after_that_time(chain: sqlite3.Connection) -> None:
    as_attacker(chain).execute("UPDATE audit SET body = '{}' WHERE seq = 6")
    result = audit.verify(chain, PUB, since=SINCE)
    assert (result.ok, result.failed_seq, result.entries, result.first_seq) == (False, 6, 2, 4)
    assert result.reason == (
        "entry 6 (screen.answered at 2026-03-01T09:35:00.123456Z): hash does not match its "
        "content — the entry was altered"
    )


def test_verify_since_links_the_first_entry_to_the_one_before(chain: sqlite3.Connection) -> None:
    """Entry 3 is not checked, but entry 4 must link to the hash stored for it."""
    conn = as_attacker(chain)
    conn.execute("UPDATE audit SET hash = ? WHERE seq = 3", (bytes(32),))
    result = audit.verify(conn, PUB, since=SINCE)
    assert (result.ok, result.failed_seq) == (False, 4)
    assert "prev_hash does not link to entry 3" in (result.reason or "")
    conn.execute("DELETE FROM audit WHERE seq = 3")
    result = audit.verify(conn, PUB, since=SINCE)
    assert (result.ok, result.failed_seq) == (False, 3)
    assert result.reason == (
        "entry 3 missing: the log goes from entry 2 to entry 4 — entries were deleted"
    )


def test_verify_since_with_a_recorded_head(chain: sqlite3.Connection) -> None:
    old, recorded = audit.Head(2, rows(chain)[1][5]), audit.head(chain)
    assert audit.verify(chain, PUB, expected_head=old, since=SINCE).ok  # as stored
    assert audit.verify(chain, PUB, expected_head=recorded, since=SINCE).ok
    wrong = audit.Head(2, bytes(32))
    assert audit.verify(chain, PUB, expected_head=wrong, since=SINCE).failed_seq == 2


def test_head_text_round_trips() -> None:
    h = audit.Head(42, bytes(range(32)))
    assert str(h) == "42:" + bytes(range(32)).hex()
    assert audit.Head.parse(str(h)) == h
    for bad in ("42", "x:00", "42:abcd", "-1:" + "00" * 32):
        with pytest.raises(AuditError, match="not an audit head"):
            audit.Head.parse(bad)


# --- the triggers --------------------------------------------------------------------------------


def test_sql_update_and_delete_are_refused(chain: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        chain.execute("UPDATE audit SET body = '{}' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        chain.execute("DELETE FROM audit WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        chain.execute("DELETE FROM audit")
    assert audit.verify(chain, PUB).entries == len(EVENTS)


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_appenders_produce_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    create(connect(path)).close()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        conn = connect(path)
        try:
            start.wait()
            for i in range(50):
                append(conn, "screen.query", {"who": name, "batch": i}, now=None)
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = connect(path)
    result = audit.verify(conn, PUB)
    assert result.ok and result.entries == 100
    whos = [e.fields["who"] for e in audit.entries(conn)]
    assert whos.count("a") == whos.count("b") == 50
    conn.close()


# --- the metadata-only guard ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"element": b"blindmatch/v1\x00passport\x00DEU:C01X00T47"},
        {"sizes": {"chunk": bytearray(32)}},
        {"items": [1, 2, memoryview(b"x")]},
        {"label": "x" * 1_001},
        {"matches": [f"ref-{i}" for i in range(200)]},
    ],
)
def test_payload_like_values_are_rejected(db: sqlite3.Connection, fields: dict) -> None:
    with pytest.raises(ValueError, match="metadata only"):
        append(db, "disclosure", fields)
    assert audit.head(db).seq == 0


def test_value_at_the_limit_is_accepted(db: sqlite3.Connection) -> None:
    append(db, "ingest", {"purpose": "x" * (audit.MAX_VALUE_CHARS - 2)})  # 2 quotes
    assert audit.verify(db, PUB).ok


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "not JSON data"),
        ({"peers": {"a", "b"}}, "not JSON data"),
        ({"ratio": float("nan")}, "JSON cannot hold"),
        ({"counts": {1: 2}}, "non-string key"),
        ({"Bad Name": 1}, "snake_case"),
        ({"x" * 65: 1}, "snake_case"),
    ],
)
def test_non_json_fields_are_rejected(db: sqlite3.Connection, fields: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        append(db, "ingest", fields)


@pytest.mark.parametrize("event", ["", "Session.Answered", "session answered", "a..b", "x" * 65])
def test_malformed_event_names_are_rejected(db: sqlite3.Connection, event: str) -> None:
    with pytest.raises(ValueError, match="dotted lower-case"):
        append(db, event, {})


def test_every_node_event_is_accepted(db: sqlite3.Connection) -> None:
    for event in sorted(audit.EVENTS):
        append(db, event, {})
    assert audit.verify(db, PUB).entries == len(audit.EVENTS)


# --- properties ----------------------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8,
)
field_names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
fields_maps = st.dictionaries(field_names, json_values, max_size=6).filter(
    lambda d: all(len(audit._canonical_json(v)) <= audit.MAX_VALUE_CHARS for v in d.values())
)


@settings(max_examples=50, deadline=None)
@given(st.lists(fields_maps, min_size=1, max_size=5))
def test_any_metadata_round_trips_and_verifies(batches: list[dict[str, object]]) -> None:
    conn = create(sqlite3.connect(":memory:", isolation_level=None))
    for fields in batches:
        append(conn, "ingest", fields)
    assert audit.verify(conn, PUB).entries == len(batches)
    assert [e.fields for e in audit.entries(conn)] == [json.loads(json.dumps(f)) for f in batches]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    data=st.data(),
)
def test_any_flipped_bit_is_named_at_its_entry(n: int, data: st.DataObject) -> None:
    conn = create(sqlite3.connect(":memory:", isolation_level=None))
    for i in range(n):
        append(conn, "screen.query", {"batch": i, "peer": "customs-be"})
    seq = data.draw(st.integers(1, n), label="seq")
    column = data.draw(
        st.sampled_from(["at", "event", "body", "prev_hash", "hash", "signature"]), label="column"
    )
    (value,) = conn.execute(f"SELECT {column} FROM audit WHERE seq = ?", (seq,)).fetchone()
    raw = bytearray(value.encode() if isinstance(value, str) else value)
    bit = data.draw(st.integers(0, 8 * len(raw) - 1), label="bit")
    raw[bit // 8] ^= 1 << (bit % 8)
    tampered: object = bytes(raw)
    if isinstance(value, str):
        tampered = bytes(raw).decode("utf-8", errors="replace")
        if tampered == value:
            return
    as_attacker(conn).execute(f"UPDATE audit SET {column} = ? WHERE seq = ?", (tampered, seq))
    result = audit.verify(conn, PUB)
    assert not result.ok
    assert result.failed_seq == seq


# --- keys ----------------------------------------------------------------------------------------


def write_keys(node_dir: Path, key: object = KEY, mode: int = 0o600) -> tuple[Path, Path]:
    assert isinstance(key, Ed25519PrivateKey | Ed448PrivateKey)
    key_path, pub_path = node_dir / "audit.key", node_dir / "audit.pub"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, mode)
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def test_keys_load_and_work_together(tmp_path: Path, db: sqlite3.Connection) -> None:
    key_path, pub_path = write_keys(tmp_path)
    key, pub = audit.load_signing_key(key_path), audit.load_public_key(str(pub_path))
    append(db, "ingest", {"list": "watchlist"}, key=key)
    assert audit.verify(db, pub).ok


def test_missing_key_files_raise_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="audit.key does not exist"):
        audit.load_signing_key(tmp_path / "audit.key")
    with pytest.raises(NotFound, match="audit.pub does not exist"):
        audit.load_public_key(tmp_path / "audit.pub")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_signing_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_path, _ = write_keys(tmp_path, mode=0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        audit.load_signing_key(key_path)


def test_malformed_and_wrong_type_keys_are_refused(tmp_path: Path) -> None:
    key_path, pub_path = write_keys(tmp_path, key=Ed448PrivateKey.generate())
    with pytest.raises(AuditError, match="not an Ed25519 key"):
        audit.load_signing_key(key_path)
    with pytest.raises(AuditError, match="not an Ed25519 key"):
        audit.load_public_key(pub_path)
    key_path.write_text("not a key")
    pub_path.write_text("not a key")
    with pytest.raises(AuditError, match="PKCS#8 PEM"):
        audit.load_signing_key(key_path)
    with pytest.raises(AuditError, match="PEM public key"):
        audit.load_public_key(pub_path)


def test_audit_error_is_a_node_error() -> None:
    assert issubclass(AuditError, NodeError)
