"""The node's audit log: append-only, hash-chained (BLAKE3) and signed (Ed25519) (DESIGN §5).

Every ingest, session, disclosure, screening query, key rotation and erasure appends one
entry saying who did what, when, with which peer, for what purpose, and with
what sizes and counts. Entries hold metadata only: never identifiers, elements
or the contents of labels (`append` rejects bytes and long values as a guard).

Storage
-------
The entries live in the node's SQLite store, in the table ``audit`` that the
store module creates::

    audit(seq INTEGER PRIMARY KEY, at TEXT, event TEXT, body TEXT,
          prev_hash BLOB, hash BLOB, signature BLOB)

with triggers that abort every UPDATE and DELETE. The triggers stop honest code
from rewriting history by mistake; they do not stop anyone who can write the
file (a trigger can be dropped). The chain below is what detects that.

Chain format (enough to re-implement `verify` in any language)
--------------------------------------------------------------
Entry ``seq`` (1, 2, 3, ... with no gaps) has the columns:

- ``at``: the time of the event in UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
  (always six fractional digits and a literal ``Z``).
- ``event``: a dotted lower-case name, e.g. ``session.answered`` (`EVENTS`).
- ``body``: the entry's fields as canonical JSON: UTF-8, keys sorted,
  separators ``,`` and ``:`` with no whitespace, non-ASCII characters
  written as themselves (not ``\\u`` escapes), no NaN or infinities. The top
  level is always an object.
- ``prev_hash``: the ``hash`` of entry ``seq - 1``; for entry 1, 32 zero bytes.
- ``hash``: 32 bytes, BLAKE3 (default 256-bit output, unkeyed hash mode) of::

      lp(b"blindmatch/v1 audit entry") || lp(prev_hash) || u64(seq)
          || lp(utf8(at)) || lp(utf8(event)) || lp(utf8(body))

  where ``u64(n)`` is n as 8 bytes big-endian and ``lp(x) = u64(len(x)) || x``.
- ``signature``: 64 bytes, Ed25519 (RFC 8032, pure) over the 32 ``hash`` bytes
  with the node's audit signing key (``audit.key`` in the node directory,
  PKCS#8 PEM, mode 0600; the public half is ``audit.pub``, SubjectPublicKeyInfo
  PEM).

A verifier walks the entries in ``seq`` order and checks, for each: ``seq`` is
the previous one plus one (starting at 1); ``prev_hash`` equals the previous
entry's stored ``hash`` (32 zero bytes for entry 1); ``hash`` equals the value
recomputed from the columns; ``signature`` verifies under ``audit.pub``; and
``body`` is canonical JSON of an object. Because each hash covers the previous
one, each signature commits to the whole log up to its entry.

Threat model
------------
Against anyone who can edit the database file but does not hold the signing
key, `verify` detects, and names the first entry affected by: altering any
column of an entry; deleting an entry other than the last ones; reordering
entries; inserting or appending a forged entry; re-signing entries with another
key. It cannot by itself detect **truncation**: deleting the newest entries (or
all of them) leaves a shorter log that is still a valid chain. To catch that,
record the log's `head` (``seq`` and ``hash``; ``str(head)`` is ``SEQ:HEX``)
somewhere the node cannot rewrite (a ticket, a peer, a printed report) and pass
it to `verify` as ``expected_head`` later. Whoever holds the signing key — for
instance an intruder with root on the node — can rewrite the log from any
point; recorded heads are also the defence there. The log proves the integrity
of what was written, not that every event was written.

Concurrency
-----------
`append` reads the current head and inserts the next entry inside the
**caller's** transaction and does not commit, so an audit entry is committed
with the change it records or not at all. Callers must open that transaction
with ``BEGIN IMMEDIATE``: it takes SQLite's write lock before the head is read,
so appenders in several threads or processes (one connection each) serialise
and every entry links to the one before it. (Under a deferred ``BEGIN`` two
appenders could read the same head; the second insert then fails on the
primary key or with ``SQLITE_BUSY`` rather than forking the chain.) `append`
refuses to run outside a transaction.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.errors import AuditError, NotFound

__all__ = [
    "CONTEXT",
    "EVENTS",
    "GENESIS_HASH",
    "MAX_VALUE_CHARS",
    "AuditEntry",
    "Head",
    "VerifyResult",
    "append",
    "entries",
    "entry_hash",
    "export",
    "head",
    "load_public_key",
    "load_signing_key",
    "verify",
]

CONTEXT = b"blindmatch/v1 audit entry"
"""Domain-separation string, the first length-prefixed field of every hashed entry."""

GENESIS_HASH = bytes(32)
"""The ``prev_hash`` of entry 1."""

MAX_VALUE_CHARS = 1_000
"""Longest canonical JSON one field value may have; anything longer is payload, not metadata."""

EVENTS = frozenset(
    {
        "ingest",
        "session.initiated",
        "session.answered",
        "session.refused",
        "session.failed",
        "screen.refused",
        "disclosure",
        "screen.query",
        "screen.answered",
        "epoch.rotated",
        "hits.viewed",
        "hit.acknowledged",
        "record.removed",
        "list.dropped",
        "records.expired",
        "config.set",
        "peer.added",
        "peer.changed",
        "peer.removed",
        "audit.exported",
        "cert.installed",
        "crl.installed",
        "record.added",
        "record.replaced",
        "user.added",
        "user.removed",
        "api.request",
    }
)
"""The events the node records; `append` accepts any name of the same shape."""

_HASH_LEN = 32
_SIGNATURE_LEN = 64
_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_EVENT_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*\Z")
_FIELD_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_NAME_MAX = 64
_COLUMNS = "seq, at, event, body, prev_hash, hash, signature"


class Head(NamedTuple):
    """The newest entry's seq and hash; (0, `GENESIS_HASH`) for an empty log."""

    seq: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash.hex()}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """Reads a head written as ``SEQ:HEX`` (the form `str` gives)."""
        seq_text, sep, hex_text = text.strip().partition(":")
        try:
            seq, digest = int(seq_text), bytes.fromhex(hex_text)
        except ValueError:
            seq, digest = -1, b""
        if not sep or seq < 0 or len(digest) != _HASH_LEN:
            raise AuditError(
                f"{text!r} is not an audit head; expected SEQ:HASH, e.g. '42:' followed by "
                f"the {2 * _HASH_LEN} hex digits that `blindmatch audit verify` prints"
            )
        return cls(seq, digest)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry as read back for display."""

    seq: int
    at: datetime
    event: str
    fields: dict[str, object]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `verify`: ok with the number of entries, or the first entry that fails."""

    ok: bool
    entries: int
    """Entries checked and found valid (all of them when ``ok``)."""
    head: Head
    """The last valid entry's head."""
    failed_seq: int | None = None
    reason: str | None = None
    """One line naming the failing entry and why, e.g. ``entry 17 (...): hash does not ...``."""
    since: datetime | None = None
    """The time the check started from, if not the log's start (`verify`'s `since`)."""
    first_seq: int = 1
    """The first entry checked."""

    def __str__(self) -> str:
        if not self.ok:
            return f"audit log FAILED verification: {self.reason}"
        if self.since is None:
            return f"audit log intact: {self.entries} entries, head {self.head}"
        return (
            f"audit log intact: {self.entries} entries checked from entry {self.first_seq} "
            f"(those at or after {_format_at(self.since)}), head {self.head}"
        )


def entry_hash(prev_hash: bytes, seq: int, at: str, event: str, body: str) -> bytes:
    """Computes an entry's chain hash as the module docstring specifies."""
    h = blake3.blake3()
    for part in (CONTEXT, prev_hash):
        h.update(len(part).to_bytes(8, "big") + part)
    h.update(seq.to_bytes(8, "big"))
    for text in (at, event, body):
        part = text.encode()
        h.update(len(part).to_bytes(8, "big") + part)
    return h.digest()


def append(
    conn: sqlite3.Connection,
    signing_key: Ed25519PrivateKey,
    event: str,
    fields: Mapping[str, object],
    now: datetime | None = None,
) -> int:
    """Appends one signed entry in the caller's ``BEGIN IMMEDIATE`` transaction; returns its seq.

    Does not commit. Raises `ValueError` for an event name or fields that an
    audit entry cannot hold (bytes, long values, non-JSON types), and
    `AuditError` if called outside a transaction or if the last stored entry is
    malformed.
    """
    if not isinstance(event, str) or len(event) > _NAME_MAX or not _EVENT_RE.match(event):
        raise ValueError(
            f"audit event {event!r} is not a dotted lower-case name such as 'session.answered'"
        )
    body = _canonical_body(fields)
    at = _format_at(datetime.now(UTC) if now is None else now)
    if not conn.in_transaction:
        raise AuditError(
            "audit entries must be appended inside the caller's transaction: "
            "execute 'BEGIN IMMEDIATE' first so concurrent appenders serialise"
        )
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        seq, prev_hash = 1, GENESIS_HASH
    else:
        last_seq, prev_hash = last
        if not isinstance(prev_hash, bytes) or len(prev_hash) != _HASH_LEN:
            raise AuditError(
                f"the last audit entry ({last_seq}) has a malformed hash, so nothing can be "
                "chained to it; run `blindmatch audit verify` to see what was altered"
            )
        seq = last_seq + 1
    digest = entry_hash(prev_hash, seq, at, event, body)
    conn.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, at, event, body, prev_hash, digest, signing_key.sign(digest)),
    )
    return seq


def verify(
    conn: sqlite3.Connection,
    public_key: Ed25519PublicKey,
    expected_head: Head | None = None,
    since: datetime | None = None,
) -> VerifyResult:
    """Re-checks every entry in seq order and, if given, that the log reaches `expected_head`.

    With `since`, checks the entries from the first one at or after that time on, the
    first against the stored hash of the entry before it (which is itself not checked),
    as a third party holding an export from `since` would.
    """
    first, prev = _start(conn, since)
    count = 0
    recorded_hash: bytes | None = None
    if expected_head is not None and 0 < expected_head.seq <= prev.seq:
        row = conn.execute("SELECT hash FROM audit WHERE seq = ?", (expected_head.seq,)).fetchone()
        recorded_hash = None if row is None else row[0]  # before `since`: as stored
    query = f"SELECT {_COLUMNS} FROM audit WHERE seq >= ? ORDER BY seq"
    for row in conn.execute(query, (first,)):
        problem = _check_row(row, prev, public_key)
        if problem is not None:
            failed_seq, reason = problem
            return VerifyResult(False, count, prev, failed_seq, reason, since, first)
        count, prev = count + 1, Head(row[0], row[5])
        if expected_head is not None and prev.seq == expected_head.seq:
            recorded_hash = prev.hash
    if expected_head is not None and expected_head.seq > 0:
        if recorded_hash is None:
            return VerifyResult(
                False,
                count,
                prev,
                prev.seq + 1,
                f"the log ends at entry {prev.seq} but a head at entry {expected_head.seq} "
                f"was recorded — entries {prev.seq + 1} to {expected_head.seq} were removed",
                since,
                first,
            )
        if recorded_hash != expected_head.hash:
            return VerifyResult(
                False,
                count,
                prev,
                expected_head.seq,
                f"entry {expected_head.seq} does not match the recorded head {expected_head} — "
                "the log was rewritten up to that entry by someone holding the signing key",
                since,
                first,
            )
    return VerifyResult(True, count, prev, since=since, first_seq=first)


def _start(conn: sqlite3.Connection, since: datetime | None) -> tuple[int, Head]:
    """The first seq `verify` checks, and the head it must link to: the entry before it as
    stored (its seq and hash, unchecked), or (0, `GENESIS_HASH`) at the log's start."""
    if since is None:
        return 1, Head(0, GENESIS_HASH)
    (first,) = conn.execute(
        "SELECT min(seq) FROM audit WHERE at >= ?", (_format_at(since),)
    ).fetchone()
    if first is None:  # nothing that recent: nothing to check after the head
        last = head(conn)
        return last.seq + 1, last
    before = conn.execute(
        "SELECT seq, hash FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT 1", (first,)
    ).fetchone()
    return first, Head(0, GENESIS_HASH) if before is None else Head(before[0], before[1])


def head(conn: sqlite3.Connection) -> Head:
    """Returns the newest entry's seq and hash, to be recorded outside the node."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return Head(0, GENESIS_HASH) if row is None else Head(row[0], row[1])


def entries(conn: sqlite3.Connection, since_seq: int = 0) -> Iterator[AuditEntry]:
    """Yields the entries after `since_seq` in order, for display; does not verify them."""
    query = "SELECT seq, at, event, body FROM audit WHERE seq > ? ORDER BY seq"
    for seq, at, event, body in conn.execute(query, (since_seq,)):
        try:
            fields = json.loads(body)
            when = datetime.strptime(at, _AT_FORMAT).replace(tzinfo=UTC)
        except (TypeError, ValueError):
            fields, when = None, None
        if not isinstance(fields, dict) or when is None:
            raise AuditError(
                f"audit entry {seq} cannot be read (malformed time or body); "
                "run `blindmatch audit verify` to see what was altered"
            )
        yield AuditEntry(seq, when, event, fields)


def export(conn: sqlite3.Connection, since: datetime | None = None) -> Iterator[dict[str, object]]:
    """Yields the entries at or after `since`, in order, with every chain column (hex bytes).

    Each line carries what the module docstring's verifier needs, so a third
    party holding ``audit.pub`` can check the entries it was given, and that the
    first follows on from the entry whose hash is its ``prev_hash``.
    """
    start = _format_at(since) if since else ""
    query = f"SELECT {_COLUMNS} FROM audit WHERE at >= ? ORDER BY seq"
    for seq, at, event, body, prev_hash, digest, signature in conn.execute(query, (start,)):
        yield {
            "seq": seq,
            "at": at,
            "event": event,
            "body": body,
            "prev_hash": bytes(prev_hash).hex(),
            "hash": bytes(digest).hex(),
            "signature": bytes(signature).hex(),
        }


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Loads the node's audit signing key (``audit.key``: unencrypted PKCS#8 PEM, mode 0600)."""
    path = Path(path)
    data = _read_key_file(path, "signing key")
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise AuditError(
                f"audit signing key {path} is readable by other users (mode {mode:04o}); "
                f"restrict it with `chmod 600 {path}`"
            )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as exc:
        raise AuditError(
            f"audit signing key {path} is not an unencrypted PKCS#8 PEM private key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"audit signing key {path} is not an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Loads the node's audit public key (``audit.pub``: SubjectPublicKeyInfo PEM)."""
    path = Path(path)
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuditError(f"audit public key {path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"audit public key {path} is not an Ed25519 key")
    return key


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(
            f"audit {what} {path} does not exist; a node directory made by "
            "`blindmatch init` has audit.key and audit.pub"
        ) from exc
    except OSError as exc:
        raise AuditError(f"audit {what} {path} cannot be read: {exc.strerror}") from exc


def _format_at(now: datetime) -> str:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("audit time must be timezone-aware, e.g. datetime.now(UTC)")
    return now.astimezone(UTC).strftime(_AT_FORMAT)


def _canonical_json(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _canonical_body(fields: Mapping[str, object]) -> str:
    """Checks that `fields` is metadata and returns its canonical JSON."""
    body: dict[str, object] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or len(name) > _NAME_MAX or not _FIELD_RE.match(name):
            raise ValueError(f"audit field name {name!r} is not a short snake_case name")
        _check_value(name, value)
        try:
            text = _canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"audit field {name!r} is not JSON data (str, int, float, bool, None, "
                f"list, dict): {exc}"
            ) from exc
        if len(text) > MAX_VALUE_CHARS:
            raise ValueError(
                f"audit field {name!r} is {len(text)} characters long; audit entries hold "
                f"metadata only (at most {MAX_VALUE_CHARS} characters a field), "
                "never identifiers, elements or labels"
            )
        body[name] = value
    return _canonical_json(body)


def _check_value(name: str, value: object) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(
            f"audit field {name!r} holds bytes; audit entries hold metadata only, "
            "never identifiers, elements or labels"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"audit field {name!r} is {value}, which JSON cannot hold")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"audit field {name!r} has a non-string key {key!r}")
            _check_value(name, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value(name, item)


def _check_row(
    row: tuple[object, ...], prev: Head, public_key: Ed25519PublicKey
) -> tuple[int, str] | None:
    """Returns (seq, reason) for the first problem with one stored entry, or None."""
    seq, at, event, body, prev_hash, digest, signature = row
    expected = prev.seq + 1
    if not isinstance(seq, int) or seq != expected:
        if isinstance(seq, int) and seq > expected:
            gap = f"entry {expected}" if seq == expected + 1 else f"entries {expected} to {seq - 1}"
            return expected, (
                f"{gap} missing: the log goes from entry {prev.seq} to entry {seq} — "
                "entries were deleted"
            )
        return expected, f"entry {expected}: malformed seq {seq!r}"
    where = f"entry {seq} ({event} at {at})"
    if not (isinstance(at, str) and isinstance(event, str) and isinstance(body, str)):
        return seq, f"{where}: at, event or body is not text — the entry was altered"
    if not (
        isinstance(prev_hash, bytes)
        and len(prev_hash) == _HASH_LEN
        and isinstance(digest, bytes)
        and len(digest) == _HASH_LEN
        and isinstance(signature, bytes)
        and len(signature) == _SIGNATURE_LEN
    ):
        return seq, f"{where}: prev_hash, hash or signature is malformed — the entry was altered"
    if prev_hash != prev.hash:
        before = "the start of the log" if prev.seq == 0 else f"entry {prev.seq}"
        return seq, (
            f"{where}: prev_hash does not link to {before} — entries were removed, "
            "reordered or inserted here"
        )
    if entry_hash(prev_hash, seq, at, event, body) != digest:
        return seq, f"{where}: hash does not match its content — the entry was altered"
    try:
        public_key.verify(signature, digest)
    except InvalidSignature:
        return seq, (
            f"{where}: signature is not valid under this node's audit key — "
            "the entry was forged or re-signed with another key"
        )
    try:
        canonical = _canonical_json(json.loads(body)) == body and body.startswith("{")
    except ValueError:
        canonical = False
    if not canonical:
        return seq, f"{where}: body is not canonical JSON of an object"
    try:
        datetime.strptime(at, _AT_FORMAT)
    except ValueError:
        return seq, f"{where}: time is not in the form YYYY-MM-DDTHH:MM:SS.ffffffZ"
    return None
