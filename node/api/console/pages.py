"""The console's pages: each reads what the API's endpoint of the same topic reads, and renders it.

GET pages only read (the inbox's consultation is audited as `hits.viewed`, like
`GET /v1/hits`); the forms that change something (acknowledge, sign out) are
POSTs carrying the CSRF token (`checked_form`) and answer with a redirect, so a
reload never repeats them. Every request is also audited by the gate.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from node.api.auth import Analyst
from node.api.console import (
    CONSOLE_PATH,
    COOKIE_NAME,
    LOGIN_PATH,
    cookie_of,
    csrf_token,
)
from node.api.console.chart import activity_chart
from node.api.errors import ApiError
from node.api.reads import activity_blocking, peers_with_health, verify_audit_blocking
from node.api.routes.common import AGENCY, node_of, off_loop
from node.data import users
from node.data.users import LOGIN_HOURS, MAX_TOKEN_CHARS
from node.rpc.node_status import node_status
from node.sessions.hits import HitFilters, acknowledge_hit, view_hits

__all__ = ["error_page", "router"]

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(moment: str | None) -> str:
    """A stored UTC time as a person reads it: `2026-11-24 20:01`."""
    return moment[:16].replace("T", " ") if moment else ""


templates.env.filters["when"] = _when

INBOX_LIMIT = 200
"""Most hits the inbox shows at once (new first); filters narrow the rest."""
SESSIONS_LIMIT = 100
CHART_DAYS = 14
MAX_NOTE_CHARS = 1000
_HEADERS = {
    # Our own files only; no inline script or style, no framing, no form posted elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def render(request: Request, template: str, http_status: int = 200, **context: Any) -> Response:
    """A page of the console, with what every page shows (agency, user, CSRF token)."""
    cookie = cookie_of(request.scope)
    node = node_of(request)
    common = {
        "agency": node.config.agency,
        "user": request.scope.get("state", {}).get("user"),
        "csrf": csrf_token(cookie) if cookie else "",
        "page": template.removesuffix(".html"),
    }
    return templates.TemplateResponse(
        request, template, {**common, **context}, status_code=http_status, headers=_HEADERS
    )


def error_page(
    request: Request, status: int, kind: str, message: str, headers: Any = None
) -> Response:
    """An error, for a person in a browser: what went wrong and the way back."""
    response = render(request, "error.html", status, status_code=status, kind=kind, message=message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _same_origin(request: Request) -> None:
    """Refuses a form posted from another site (the browser says where it comes from)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    foreign = site not in (None, "same-origin", "none")
    if origin is not None and origin != "null":
        foreign = foreign or urlsplit(origin).netloc != request.headers.get("host")
    if foreign:
        raise ApiError(403, "forbidden", "a form of the console was sent from another site")


def checked_form(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> None:
    """Refuses a form without this sign-in's CSRF token, or sent from another site."""
    _same_origin(request)
    cookie = cookie_of(request.scope)
    if cookie is None or not hmac.compare_digest(csrf.encode(), csrf_token(cookie).encode()):
        raise ApiError(
            403,
            "forbidden",
            "this form is out of date or did not come from this console: reload the page and "
            "try again",
        )


CheckedForm = Annotated[None, Depends(checked_form)]


# -- signing in and out -------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form (a signed-in user goes on to the inbox)."""
    if request.scope.get("state", {}).get("user") is not None:
        return RedirectResponse(f"{CONSOLE_PATH}/", status_code=303)
    return render(request, "login.html")


@router.post("/login")
async def login(
    request: Request, token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)] = ""
) -> Response:
    """Signs the token's user in: a session cookie for `LOGIN_HOURS`, then the inbox."""
    _same_origin(request)
    node = node_of(request)

    def sign_in() -> tuple[users.User, str] | None:
        with node.store().transaction() as conn:
            return users.open_login(conn, token.strip(), node.now())

    found = await off_loop(sign_in) if token.strip() else None
    if found is None:
        message = "that token is not valid: it is mistyped, or its user was removed"
        return render(request, "login.html", 401, error=message)
    user, cookie = found
    request.state.user = user  # the gate's audit entry names who signed in
    response = RedirectResponse(f"{CONSOLE_PATH}/", status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=LOGIN_HOURS * 3600,
        path=CONSOLE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, who: Analyst, _: CheckedForm) -> Response:
    """Signs out: the cookie stops working at once, here and in any copy of it."""
    node = node_of(request)
    cookie = cookie_of(request.scope) or ""

    def sign_out() -> None:
        with node.store().transaction() as conn:
            users.close_login(conn, cookie)

    await off_loop(sign_out)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE_NAME, path=CONSOLE_PATH)
    return response


# -- the pages ----------------------------------------------------------------------------------


@router.get("/")
async def inbox(
    request: Request,
    who: Analyst,
    show: Annotated[str, Query(pattern="^(all|new)$")] = "all",
    peer: Annotated[str | None, Query(pattern=f"({AGENCY})|^$")] = None,
    acknowledged: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The hits inbox: new first, each with its acknowledgement form; the activity chart."""
    node = node_of(request)
    filters = HitFilters(new_only=show == "new", peer=peer or None)

    def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        hits = view_hits(
            node.store(), node.audit_key, who.name, filters, INBOX_LIMIT, with_acknowledgement=True
        )
        return hits, activity_blocking(node, CHART_DAYS), node.store().new_hit_count()

    hits, activity, new_count = await off_loop(read)
    return render(
        request,
        "inbox.html",
        hits=hits,
        new_count=new_count,
        show=show,
        peer=peer or "",
        peers=sorted(node.config.peers),
        limit=INBOX_LIMIT,
        acknowledged=acknowledged,
        chart=activity_chart(activity),
    )


@router.post("/hits/{hit_id}/ack")
async def acknowledge(
    request: Request,
    who: Analyst,
    _: CheckedForm,
    hit_id: Annotated[int, PathParam(gt=0, le=2**62)],
    note: Annotated[str, Form(max_length=MAX_NOTE_CHARS)] = "",
) -> Response:
    """Acknowledges a hit in the signed-in user's name, with the note; back to the inbox."""
    node = node_of(request)

    def ack() -> dict[str, Any]:
        return acknowledge_hit(
            node.store(), node.audit_key, who.name, hit_id, who.name, note.strip() or None
        )

    await off_loop(ack)
    return RedirectResponse(f"{CONSOLE_PATH}/?acknowledged={hit_id}", status_code=303)


@router.get("/peers")
async def peers(request: Request, who: Analyst) -> Response:
    """Each peer's health now, its certificate and the policy this node applies to it."""
    return render(request, "peers.html", peers=await peers_with_health(node_of(request)))


@router.get("/lists")
async def lists(request: Request, who: Analyst) -> Response:
    """The node's lists: kind, records, elements, version, last change."""
    node = node_of(request)
    infos = await off_loop(lambda: node.store().lists())
    return render(request, "lists.html", lists=infos)


@router.get("/sessions")
async def sessions(
    request: Request,
    who: Analyst,
    status: Annotated[str | None, Query(pattern="^(running|completed|failed|)$")] = None,
) -> Response:
    """The most recent sessions, either side, newest first."""
    node = node_of(request)
    rows = await off_loop(
        lambda: node.store().recent_sessions(SESSIONS_LIMIT, None, status or None)
    )
    return render(
        request, "sessions.html", sessions=rows, status=status or "", limit=SESSIONS_LIMIT
    )


@router.get("/audit")
async def audit_state(request: Request, who: Analyst) -> Response:
    """The audit log re-verified, and the node's state with what to act on."""
    node = node_of(request)
    verified = await off_loop(verify_audit_blocking, node)
    status = await node_status(node.config, node.now())
    return render(request, "audit.html", verified=verified, status=status)
