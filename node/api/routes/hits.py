"""`/v1/hits`: list hits (the filters of `blindmatch hits`), acknowledge one. Both audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from node.api.auth import Analyst
from node.api.models import AcknowledgedHit, AckRequest, Hit
from node.api.routes.common import AGENCY, node_of, off_loop
from node.data.store import LIST_NAME
from node.sessions.hits import HitFilters, acknowledge_hit, view_hits

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["hits"])
MAX_ID = 2**62


@router.get("/hits", response_model=list[Hit], summary="List hits, new first (audited)")
async def list_hits(
    request: Request,
    who: Analyst,
    new: Annotated[bool, Query(description="only hits not yet acknowledged")] = False,
    since: Annotated[
        dt.datetime | None,
        Query(description="only hits last seen at or after this time (UTC unless an offset)"),
    ] = None,
    peer: Annotated[
        str | None, Query(pattern=AGENCY, description="only hits found with this peer")
    ] = None,
    list_name: Annotated[
        str | None,
        Query(
            alias="list",
            pattern=rf"^({LIST_NAME.pattern}|\(live\))$",
            description="only hits of this list ('(live)': of real-time screening)",
        ),
    ] = None,
) -> list[dict[str, Any]]:
    """Hits as `blindmatch hits --json` lists them; the consultation is audited (`hits.viewed`)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    filters = HitFilters(new_only=new, since=since, peer=peer, list_name=list_name)
    node = node_of(request)

    def view() -> list[dict[str, Any]]:
        return view_hits(node.store(), node.audit_key, who.name, filters)

    return await off_loop(view)


@router.post(
    "/hits/{hit_id}/ack",
    response_model=AcknowledgedHit,
    summary="Acknowledge a new hit (audited)",
    responses={404: {"description": "no such hit"}, 409: {"description": "acknowledged already"}},
)
async def ack_hit(
    request: Request,
    hit_id: Annotated[int, Path(gt=0, le=MAX_ID)],
    body: Annotated[AckRequest, Body()],
    who: Analyst,
) -> dict[str, Any]:
    """Moves a hit from new to acknowledged, by `by` (default: the API user) with a note."""
    node = node_of(request)
    by = body.by or who.name

    def ack() -> dict[str, Any]:
        return acknowledge_hit(node.store(), node.audit_key, who.name, hit_id, by, body.note)

    return await off_loop(ack)
