"""`POST /v1/screen`: identifiers screened now against partners' encoded lists (DESIGN §7).

The route checks the request (types known, sizes bounded, a purpose), records
the purpose for the request's audit entry and hands the identifiers to the
serving process's `ScreeningService` (`node.rpc.live_screening.LiveScreening`),
which canonicalises them like ingest, screens them against the partners'
encoded sets it keeps in memory, and audits the query. A partner that cannot
answer is one entry in `errors`; the others' hits still come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Request

from node.api import metrics
from node.api.auth import Analyst
from node.api.errors import ApiError
from node.api.models import ScreenRequest, ScreenResponse
from node.errors import InvalidIdentifier, InvalidInput

__all__ = ["ScreeningService", "router"]

router = APIRouter(prefix="/v1", tags=["screening"])


class _Hit(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def list(self) -> str: ...
    @property
    def peer_label(self) -> str | None: ...


class _TargetError(Protocol):
    @property
    def peer(self) -> str: ...
    @property
    def list(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def message(self) -> str: ...


class _Outcome(Protocol):
    @property
    def hits(self) -> Sequence[_Hit]: ...
    @property
    def errors(self) -> Sequence[_TargetError]: ...


class ScreeningService(Protocol):
    """What the route needs of `node.rpc.live_screening.LiveScreening`."""

    async def screen(
        self,
        identifiers: list[dict[str, Any]],
        targets: list[tuple[str, str]] | None,
        purpose: str,
        operator: str,
    ) -> _Outcome: ...


@router.post(
    "/screen",
    response_model=ScreenResponse,
    summary="Screen identifiers against partners' lists now (audited)",
    responses={503: {"description": "screening is not available on this node"}},
)
async def screen(
    request: Request, body: Annotated[ScreenRequest, Body()], who: Analyst
) -> dict[str, Any]:
    """Screens each identifier against the partner lists in `targets` (default: node.toml's
    `[[screen.target]]` entries); `hits[].index` points into `identifiers`."""
    live: ScreeningService | None = request.app.state.live
    if live is None:
        raise ApiError(
            503,
            "unavailable",
            "real-time screening is not available on this node (this build has no screening "
            "service); use 'blindmatch match --mode screen'",
        )
    request.state.purpose = body.purpose  # for the request's audit entry
    targets = [(t.peer, t.list) for t in body.targets] if body.targets else None
    try:
        outcome = await live.screen(
            [identifier.fields() for identifier in body.identifiers],
            targets,
            body.purpose,
            who.name,
        )
    except (InvalidInput, InvalidIdentifier):
        metrics.screen_done("invalid")
        raise
    except Exception:
        metrics.screen_done("failed")
        raise
    metrics.screen_done("ok", len(body.identifiers), len(outcome.hits))
    for error in outcome.errors:
        metrics.screen_target_failed(error.peer, error.kind)
    return {
        "hits": [
            {
                "index": hit.index,
                "type": hit.type,
                "peer": hit.peer,
                "list": hit.list,
                "peer_label": hit.peer_label,
            }
            for hit in outcome.hits
        ],
        "errors": [
            {"peer": e.peer, "list": e.list, "error": {"kind": e.kind, "message": e.message}}
            for e in outcome.errors
        ],
    }
