"""Who may do what: the request's user (found by `node.api.gate`) and the role checks.

Roles: an **analyst** reads (hits, lists, peers, sessions, audit state, status,
metrics), screens and acknowledges hits; an **admin** may also add, replace
and remove records. Users and tokens are managed at the node only (`blindmatch
user add|list|remove`), never through the API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from node.api.errors import ApiError
from node.data.users import User

__all__ = ["BEARER", "Admin", "Analyst", "admin", "known_query", "user"]

BEARER = HTTPBearer(
    auto_error=False,
    description="a token from 'blindmatch user add NODE_DIR --name NAME --role ROLE'",
)
"""Declares the bearer token in the OpenAPI description; `node.api.gate` checks it."""


def user(request: Request, _: Annotated[object, Depends(BEARER)]) -> User:
    """The user whose token authenticated the request."""
    found = request.scope.get("state", {}).get("user")
    if not isinstance(found, User):  # the gate lets no request through without one
        raise ApiError(401, "unauthenticated", "no bearer token")
    return found


def admin(request: Request, who: Annotated[User, Depends(user)]) -> User:
    """The request's user if it is an admin, else 403."""
    if not who.is_admin:
        raise ApiError(
            403,
            "forbidden",
            f"user {who.name} is an analyst: only an admin may {request.method} "
            f"{_template(request)}",
        )
    return who


def known_query(request: Request) -> None:
    """Refuses a query parameter the endpoint does not take (422 naming it)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _query_names(route)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        names = ", ".join(f"query.{name[:40]}" for name in unknown)
        hint = f"known: {', '.join(sorted(known))}" if known else "it takes none"
        raise ApiError(422, "invalid_input", f"{names}: unknown query parameter; {hint}")


Analyst = Annotated[User, Depends(user)]
"""Any user: an analyst or an admin."""
Admin = Annotated[User, Depends(admin)]
"""An admin only."""
_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters of a route and its dependencies (computed once per route)."""
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        found: set[str] = set()
        pending: list[Any] = [route.dependant]
        while pending:
            dependant = pending.pop()
            found.update(param.alias for param in dependant.query_params)
            pending.extend(dependant.dependencies)
        names = _QUERY_NAMES[id(route)] = frozenset(found)
    return names


def _template(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))
