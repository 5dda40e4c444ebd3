"""What every request passes through: its token, its body's size, the audit log and metrics.

`Gate` is the outermost layer of the app (pure ASGI). For each request but the
open documentation and the console's style sheet and script (`OPEN_PATHS`,
`OPEN_PREFIXES`) it

1. finds the user (`node.data.users`; in a thread) — under `/v1` and `/metrics`
   by bearer token, or answers 401 with ``WWW-Authenticate: Bearer``; in the
   console (`/console`) by its session cookie only, or sends the browser to the
   sign-in page (303), which alone is served to nobody in particular — before
   anything of the request is read;
2. reads the body, at most `MAX_BODY_BYTES` (413 beyond, without reading on),
   and hands it to the app;
3. when the app starts its answer, appends one ``api.request`` audit entry —
   the user's name and role, the method, the route's *template* (never the raw
   path, which may hold a ref), the status, the client's address and, for a
   screening request, its purpose; never identifiers, refs, labels or tokens —
   and only then lets the answer go out: a request whose audit entry cannot be
   written is answered 503 instead;
4. counts the request for `/metrics`;
5. turns anything the app let escape (a bug) into a logged 500 JSON error.

Audit entries are written by `AccessLog` through the serving process's
`GroupWriter`, the one that also writes its screening sessions: the entries and
records queued while one transaction is being written go together in the next
one, so a busy API costs one transaction per group, not per request, and still
never answers before its entry is committed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match

from node.api import console, metrics
from node.api.docs import DOCS_STATIC_PATH
from node.api.errors import MAX_BODY_BYTES, ApiError, error_body, status_of
from node.data import audit, users
from node.data.users import MAX_TOKEN_CHARS, User
from node.errors import NodeError
from node.sessions.blocking import GroupWriter, settled, submit
from node.setup.context import NodeContext

__all__ = ["OPEN_PATHS", "OPEN_PREFIXES", "AccessLog", "Gate"]

log = logging.getLogger("blindmatch.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
"""The API's own documentation and the way to the console: no data, so no token and no audit
entry."""
OPEN_PREFIXES = (f"{console.STATIC_PATH}/", f"{DOCS_STATIC_PATH}/")
"""Style sheets, scripts and images of the console and the documentation."""
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="blindmatch"'}


class AccessLog:
    """Appends `api.request` audit entries through `writer` (its own if none is given)."""

    def __init__(self, node: NodeContext, writer: GroupWriter | None = None) -> None:
        self.node = node
        self.writer = writer or GroupWriter(node)

    async def write(self, fields: dict[str, Any]) -> None:
        """Returns once the entry is committed; raises what kept it from being written."""
        await settled(self.writer.submit(self._append_blocking, fields))

    def _append_blocking(self, fields: dict[str, Any]) -> None:
        store = self.node.store()
        with store.transaction() as conn:
            audit.append(conn, self.node.audit_key, "api.request", fields)


class Gate:
    """Authentication, body limit, audit, metrics and the last-resort 500, around the app."""

    def __init__(
        self, app: App, node: NodeContext, access: AccessLog, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.node = node
        self.access = access
        self.routes = routes

    def template(self, scope: Scope) -> str:
        """The template of the route that answers (or would answer) the request, or `unmatched`."""
        route = scope.get("route")
        if route is None:  # refused before routing: find the route it was meant for
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        return str(getattr(route, "path", None) or "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, send)
        try:
            user = await self._user(scope)
            if user is not None:
                scope.setdefault("state", {})["user"] = user
            exchange.user = user
            body = await _read_body(scope, receive)
        except ApiError as exc:
            await exchange.refuse(exc.status, exc.kind, exc.message, exc.headers)
            return
        except NodeError as exc:  # the store, while looking the token up
            await exchange.refuse(status_of(exc), "unavailable", str(exc))
            return
        replay = _replay(body, receive)
        try:
            await self.app(scope, replay, exchange.send)
        except Exception:
            log.exception("request %s %s failed unexpectedly", scope["method"], exchange.route)
            if exchange.started:
                raise  # the answer is half sent: the server drops the connection
            await exchange.refuse(
                500,
                "internal_error",
                "internal error: the node's operator can see it in the node's log",
            )

    async def _user(self, scope: Scope) -> User | None:
        """The request's user by its bearer token, or ApiError 401; in the console by its
        cookie, or ApiError 303 to the sign-in page (None on that page itself)."""
        if console.is_console(scope["path"]):
            cookie = console.cookie_of(scope)
            user = await settled(submit(self._signed_in_blocking, cookie)) if cookie else None
            if user is None and scope["path"] != console.LOGIN_PATH:
                raise ApiError(
                    303, "unauthenticated", "sign in first", {"Location": console.LOGIN_PATH}
                )
            return user
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None:
            raise ApiError(
                401,
                "unauthenticated",
                "no bearer token: send 'Authorization: Bearer TOKEN' with the token 'blindmatch "
                "user add' printed",
                _CHALLENGE,
            )
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
        token = token.strip()
        user = None
        if scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_CHARS:
            user = await settled(submit(self._find_blocking, token))
        if user is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the bearer token is not valid: it is malformed, unknown, or its user was removed",
                {"WWW-Authenticate": 'Bearer realm="blindmatch", error="invalid_token"'},
            )
        return user

    def _find_blocking(self, token: str) -> User | None:
        return users.find_by_token(self.node.store().conn, token)

    def _signed_in_blocking(self, cookie: str) -> User | None:
        return users.find_by_login(self.node.store().conn, cookie, self.node.now())


class _Exchange:
    """One request's answer as it goes out: audited and counted when it starts."""

    def __init__(self, gate: Gate, scope: Scope, send: Send) -> None:
        self.gate = gate
        self.scope = scope
        self.downstream = send
        self.user: User | None = None
        self.started = False
        self.suppressed = False
        self.begun = time.perf_counter()

    @property
    def route(self) -> str:
        """The template of the route that answered (never the raw path), or `unmatched`."""
        return self.gate.template(self.scope)

    async def send(self, message: Message) -> None:
        if self.suppressed:
            return
        if message["type"] == "http.response.start":
            self.started = True
            status = int(message["status"])
            if not await self._audited(status):
                self.suppressed = True
                await _send_error(
                    self.downstream,
                    503,
                    "unavailable",
                    "the request could not be recorded in the audit log, so it is not "
                    "answered; retry, and tell the node's operator if it lasts",
                    {},
                )
                return
        await self.downstream(message)

    async def refuse(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answers an error from the gate itself (audited and counted like any answer)."""
        body = error_body(kind, message)
        self.started = True
        if not await self._audited(status):
            status, body = 503, error_body("unavailable", "the audit log cannot be written")
            headers = {}
        await _send_json(self.downstream, status, body, headers or {})

    async def _audited(self, status: int) -> bool:
        """Audits and counts the answer about to start; False if the entry cannot be written."""
        route = self.route
        seconds = time.perf_counter() - self.begun
        metrics.request_done(self.scope["method"], route, status, seconds)
        state = self.scope.get("state") or {}
        user = self.user or state.get("user")  # or the one the console's sign-in page found
        fields: dict[str, Any] = {
            "operator": user.name if user else None,
            "role": user.role if user else None,
            "method": self.scope["method"],
            "route": route,
            "status": status,
            "client": (self.scope.get("client") or ("", 0))[0],
        }
        if state.get("purpose"):
            fields["purpose"] = state["purpose"]
        try:
            await self.gate.access.write(fields)
        except Exception:
            log.exception("an api.request audit entry could not be written")
            return False
        return True


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The request's whole body, or ApiError 413 beyond `MAX_BODY_BYTES` (read no further)."""
    limit = MAX_BODY_BYTES
    too_large = ApiError(
        413,
        "payload_too_large",
        f"the body is over the API's limit of {limit // 1024:,} KiB; send fewer identifiers "
        "or records in one request",
    )
    length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then what the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _send_error(
    send: Send, status: int, kind: str, message: str, headers: dict[str, str]
) -> None:
    await _send_json(send, status, error_body(kind, message), headers)
