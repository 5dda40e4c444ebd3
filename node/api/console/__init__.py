"""The operator console: server-rendered pages for the agency's duty officers (DESIGN §7).

Pages (`pages.py`, Jinja2 templates in `templates/`, our own `static/`
style sheet and script, nothing fetched from elsewhere): the hits inbox with
a chart of hits and sessions over time, peers with health and policy, lists,
recent sessions, and the audit and node state. Everything essential works
without JavaScript; the script only reloads the inbox while nobody types.

Signing in takes a user's API token (`blindmatch user add`) once; the console
then carries a session cookie (`COOKIE_NAME`: HttpOnly, SameSite=Strict, path
`/console`, Secure over TLS; its SHA-256 stored in `console_logins`, valid
for `node.data.users.LOGIN_HOURS` or until signed out). The gate
(`node.api.gate`) finds the user by that cookie, never by a bearer token, and
the API never by the cookie: a page cannot be driven by a script holding a
token, nor the API by a browser that was merely signed in. Every form that
changes something carries `csrf_token(cookie)` — an HMAC of the cookie a
cross-site page cannot read — and is refused unless it matches and the
request comes from the console's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from starlette.requests import cookie_parser

__all__ = [
    "CONSOLE_PATH",
    "COOKIE_NAME",
    "LOGIN_PATH",
    "STATIC_PATH",
    "cookie_of",
    "csrf_token",
    "is_console",
]

CONSOLE_PATH = "/console"
LOGIN_PATH = f"{CONSOLE_PATH}/login"
STATIC_PATH = f"{CONSOLE_PATH}/static"
COOKIE_NAME = "blindmatch_console"
_CSRF_CONTEXT = b"blindmatch console form"


def is_console(path: str) -> bool:
    """Whether a request path is one of the console's pages."""
    return path == CONSOLE_PATH or path.startswith(f"{CONSOLE_PATH}/")


def cookie_of(scope: Mapping[str, Any]) -> str | None:
    """The console's session cookie sent with a request, if any."""
    header = next((v for k, v in scope["headers"] if k == b"cookie"), None)
    if header is None:
        return None
    cookie = cookie_parser(header.decode("latin-1")).get(COOKIE_NAME)
    return cookie if cookie and len(cookie) <= 200 else None


def csrf_token(cookie: str) -> str:
    """The token a form must carry for the session `cookie` (derived, so nothing is stored)."""
    return hmac.new(cookie.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()
