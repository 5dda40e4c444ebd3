"""The one place where errors become HTTP answers: `{"error": {"kind", "message"}}` and a status.

`STATUSES` maps the node's exception tree (`node.errors`, `crypto.errors`) to
HTTP statuses once, as `node.rpc.status` does for gRPC and `node.cli.main` for
exit codes; the kind is the class name in snake_case, as the CLI's `--json`
errors name it. What the HTTP layer itself refuses has its own kinds:

    unauthenticated      401  no bearer token, or one that is unknown, malformed or removed
    forbidden            403  the user's role does not allow the request
    not_found            404  no such endpoint (unknown ids are the node's `not_found` too)
    method_not_allowed   405
    payload_too_large    413  a body over `MAX_BODY_BYTES`
    invalid_json         400  a body that is not JSON
    invalid_input        422  a field missing, unknown or with an invalid value (each named)
    internal_error       500  a bug: logged with its traceback, answered without detail

Validation errors name each offending field as a path into the request
(``identifiers[2].type``, ``purpose``, ``query.limit``), so a caller can fix
the request without reading the server's log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crypto.errors import CryptoError
from node import errors
from node.api.console import is_console

__all__ = [
    "MAX_BODY_BYTES",
    "ApiError",
    "error_body",
    "error_response",
    "install_handlers",
    "status_of",
]

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body the API reads (a 1,000-identifier screening batch is ~100 KB)."""

STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (errors.Conflict, 409),
    (errors.NotFound, 404),
    (errors.InvalidInput, 422),  # InvalidIdentifier's sibling; IngestRejected too
    (errors.InvalidIdentifier, 422),
    (errors.ConfigError, 422),  # an option or value that cannot be used as given
    (errors.PolicyDenied, 403),
    (errors.UnknownPeer, 403),
    (errors.LimitExceeded, 429),
    (errors.StaleEpoch, 503),
    (errors.Incompatible, 409),  # e.g. a list that must be reloaded first
    (errors.PeerError, 502),
    (errors.Stalled, 504),
    (errors.StoreBusy, 503),
    (errors.Interrupted, 503),
    # The node's own trouble (its store, its audit key): the caller can only retry.
    (errors.NodeError, 503),
    (CryptoError, 422),
)
_HTTP_KINDS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_input",
    500: "internal_error",
}


class ApiError(Exception):
    """A refusal of the HTTP layer: status, kind and a message for the caller."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


def status_of(exc: BaseException) -> int:
    """The HTTP status of a node or crypto error (503 for any other NodeError)."""
    return next((status for kind, status in STATUSES if isinstance(exc, kind)), 500)


def _kind(exc: BaseException) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_body(kind: str, message: str) -> dict[str, Any]:
    """The JSON every error answers: `{"error": {"kind", "message"}}`."""
    return {"error": {"kind": kind, "message": _one_line(message)}}


def error_response(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer."""
    return JSONResponse(error_body(kind, message), status_code=status, headers=dict(headers or {}))


def _node_error_parts(exc: errors.NodeError | CryptoError) -> tuple[int, str, str, dict[str, str]]:
    """The status, kind, message and headers (`Retry-After` when it says when) of an error."""
    headers = {}
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(max(1, round(retry)))
    return status_of(exc), _kind(exc), str(exc) or type(exc).__name__, headers


def field_path(location: Sequence[Any]) -> str:
    """A pydantic error location as a path into the request: ``identifiers[2].type``."""
    parts = list(location)
    prefix = ""
    if parts and parts[0] in ("body", "query", "path", "header"):
        source = parts.pop(0)
        if source != "body":
            prefix = f"{source}."
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return prefix + (text or "body")


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field; see the request's schema at /docs"
    if kind == "missing":
        return "required"
    text = str(error.get("msg", "invalid value"))
    return text.removeprefix("Value error, ")


def validation_message(problems: Iterable[Mapping[str, Any]], limit: int = 10) -> str:
    """One line naming each offending field and why (at most `limit` of them)."""
    items = [f"{field_path(p.get('loc', ()))}: {_message(p)}" for p in problems]
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _validation_parts(exc: RequestValidationError) -> tuple[int, str, str]:
    problems = list(exc.errors())
    for problem in problems:
        if problem.get("type") == "json_invalid":
            ctx = problem.get("ctx") or {}
            why = ctx.get("error", "not valid JSON")
            return 400, "invalid_json", f"the body is not valid JSON: {why}"
    return 422, "invalid_input", validation_message(problems)


ErrorPage = Callable[[Request, int, str, str, Mapping[str, str]], Response]
"""Renders an error for a person in a browser: request, status, kind, message, headers."""


def install_handlers(app: FastAPI, page: ErrorPage) -> None:
    """Makes every error the app raises answer the JSON error shape with its status, or in the
    console (`node.api.console`) the `page` of that error."""

    def answer(
        request: Request, status: int, kind: str, message: str, headers: Mapping[str, str]
    ) -> Response:
        if is_console(request.url.path):
            return page(request, status, kind, _one_line(message), headers)
        return error_response(status, kind, message, headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return answer(request, exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(errors.NodeError)
    async def _node_error(request: Request, exc: errors.NodeError) -> Response:
        return answer(request, *_node_error_parts(exc))

    @app.exception_handler(CryptoError)
    async def _crypto_error(request: Request, exc: CryptoError) -> Response:
        return answer(request, *_node_error_parts(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, *_validation_parts(exc), {})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        if exc.status_code == 404:
            message = f"no endpoint {request.url.path}; the API's endpoints are listed at /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        else:
            message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return answer(request, exc.status_code, kind, message, exc.headers or {})
