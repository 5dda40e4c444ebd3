"""The local API's users and their bearer tokens (DESIGN §7): the SQL, and the tokens' hashing.

A user is a name, a role (`analyst` or `admin`) and the SHA-256 of its bearer
token. `new_token` makes the token (256 random bits, URL-safe, prefixed so a
leaked one is recognisable in a log or a repository); `blindmatch user add`
prints it once and only its hash is stored. A plain SHA-256 is enough here and
a password hash (bcrypt, Argon2) would add nothing: the token is random, not
chosen by a person, so there is nothing to guess from its hash, and a hash that
is fast to compute lets every request find its user through the unique index
on `token_hash` instead of trying each user in turn.

The operator console signs a user in with the same token and then carries a
session cookie instead (`open_login`): 256 random bits, stored as its SHA-256
like a token, valid for `LOGIN_HOURS` or until signed out, and gone with the
user.

Functions that take a `conn` run inside the caller's transaction (or on their
own in autocommit); the caller audits the change in the same transaction. All
of them block on SQLite.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from node.data.store import stored_time
from node.errors import ConfigError, Conflict, NotFound

__all__ = [
    "MAX_NAME_CHARS",
    "MAX_TOKEN_CHARS",
    "ROLES",
    "TOKEN_PREFIX",
    "User",
    "add_user",
    "check_name",
    "LOGIN_HOURS",
    "check_role",
    "close_login",
    "find_by_login",
    "find_by_token",
    "hash_token",
    "list_users",
    "new_token",
    "open_login",
    "remove_user",
]

ROLES = ("analyst", "admin")
"""An analyst reads, screens and acknowledges hits; an admin may also change records."""
MAX_NAME_CHARS = 100
TOKEN_PREFIX = "bm_"
_TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 200
"""Longer than any token `new_token` makes; anything longer is refused unread."""
LOGIN_HOURS = 12
"""How long a console sign-in lasts: about a duty shift."""
_USER_COLUMNS = "u.name, u.role, u.created_at, u.created_by"


@dataclass(frozen=True)
class User:
    """A user of the local API, as the audit log names it."""

    name: str
    role: str
    created_at: str
    created_by: str

    @property
    def is_admin(self) -> bool:
        """Whether the user may change records (and anything else admin-only)."""
        return self.role == "admin"

    def to_json(self) -> dict[str, Any]:
        """The user as `user list --json` prints it (never its token or hash)."""
        return {
            "name": self.name,
            "role": self.role,
            "created": self.created_at,
            "created_by": self.created_by,
        }


def new_token() -> str:
    """A new bearer token: the prefix and 256 random bits, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> bytes:
    """The SHA-256 of a token, as stored and looked up."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def check_name(name: str, where: str = "--name") -> str:
    """Returns a user's name stripped, or raises ConfigError saying what a name may be."""
    text = name.strip() if isinstance(name, str) else ""
    if not text or len(text) > MAX_NAME_CHARS or not text.isprintable():
        raise ConfigError(
            f"{where} must name the person or system using the token: printable text of "
            f"1-{MAX_NAME_CHARS} characters, e.g. {where} 'J. de Vries' (the audit log names it)"
        )
    return text


def check_role(role: str) -> str:
    """Returns `role` if it is a role, or raises ConfigError naming the roles."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is unknown; use {' or '.join(ROLES)}")
    return role


def add_user(
    conn: sqlite3.Connection, name: str, role: str, token_hash: bytes, now: str, by: str
) -> User:
    """Inserts a user; raises Conflict if the name is taken (nothing changes then)."""
    try:
        conn.execute(
            "INSERT INTO users (name, role, token_hash, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?)",
            (check_name(name), check_role(role), token_hash, now, by),
        )
    except sqlite3.IntegrityError:
        raise Conflict(
            f"a user named {name!r} exists already; remove it first with 'blindmatch user "
            "remove NODE_DIR --name NAME' to give it a new token, or choose another name"
        ) from None
    return User(name, role, now, by)


def remove_user(conn: sqlite3.Connection, name: str) -> User:
    """Deletes a user (its token stops working at once); raises NotFound for an unknown name."""
    row = conn.execute(
        "SELECT name, role, created_at, created_by FROM users WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        names = ", ".join(u.name for u in list_users(conn)) or "none"
        raise NotFound(f"no user named {name!r} (users: {names}); nothing was changed")
    conn.execute("DELETE FROM users WHERE name = ?", (name,))
    return User(*row)


def list_users(conn: sqlite3.Connection) -> list[User]:
    """Every user, by name."""
    rows = conn.execute(
        "SELECT name, role, created_at, created_by FROM users ORDER BY name"
    ).fetchall()
    return [User(*row) for row in rows]


def find_by_token(conn: sqlite3.Connection, token: str) -> User | None:
    """The user whose token this is, or None (unknown, malformed or removed)."""
    row = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users u WHERE token_hash = ?", (hash_token(token),)
    ).fetchone()
    return None if row is None else User(*row)


def open_login(conn: sqlite3.Connection, token: str, now: dt.datetime) -> tuple[User, str] | None:
    """Signs in the user of `token` for `LOGIN_HOURS`: the user and a new session cookie, or
    None for a token that is not valid. Expired sign-ins are cleared on the way."""
    user = find_by_token(conn, token)
    if user is None:
        return None
    cookie = new_token()
    conn.execute("DELETE FROM console_logins WHERE expires_at <= ?", (stored_time(now),))
    conn.execute(
        "INSERT INTO console_logins (cookie_hash, user_id, created_at, expires_at) "
        "SELECT ?, id, ?, ? FROM users WHERE name = ?",
        (
            hash_token(cookie),
            stored_time(now),
            stored_time(now + dt.timedelta(hours=LOGIN_HOURS)),
            user.name,
        ),
    )
    return user, cookie


def find_by_login(conn: sqlite3.Connection, cookie: str, now: dt.datetime) -> User | None:
    """The user signed in with this session cookie, or None (unknown, expired, signed out, or
    its user removed)."""
    row = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM console_logins c JOIN users u ON u.id = c.user_id "
        "WHERE c.cookie_hash = ? AND c.expires_at > ?",
        (hash_token(cookie), stored_time(now)),
    ).fetchone()
    return None if row is None else User(*row)


def close_login(conn: sqlite3.Connection, cookie: str) -> None:
    """Signs the session cookie out (nothing happens for an unknown one)."""
    conn.execute("DELETE FROM console_logins WHERE cookie_hash = ?", (hash_token(cookie),))
