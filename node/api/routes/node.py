"""`/v1/peers`, `/v1/sessions`, `/v1/audit/verify`, `/v1/status`: the node's state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from node.api.auth import Analyst
from node.api.errors import ApiError
from node.api.models import AuditVerification, PeerReport, SessionRow
from node.api.reads import peers_with_health, verify_audit_blocking
from node.api.routes.common import AGENCY, node_of, off_loop
from node.data import audit
from node.errors import AuditError
from node.rpc.node_status import node_status

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["node"])
MAX_SESSIONS = 1_000


@router.get("/peers", response_model=list[PeerReport], summary="Peers: policy and live health")
async def peers(request: Request, who: Analyst) -> list[dict[str, Any]]:
    """Each peer's policy as `blindmatch peer list --json` prints it, and whether it answers a
    health check over mTLS now (within a few seconds), with the certificate it presents."""
    return await peers_with_health(node_of(request))


@router.get("/sessions", response_model=list[SessionRow], summary="Recent sessions")
async def sessions(
    request: Request,
    who: Analyst,
    limit: Annotated[
        int, Query(ge=1, le=MAX_SESSIONS, description="at most this many, newest first")
    ] = 100,
    peer: Annotated[
        str | None, Query(pattern=AGENCY, description="only sessions with this peer")
    ] = None,
    status: Annotated[
        str | None,
        Query(pattern="^(running|completed|failed)$", description="running, completed or failed"),
    ] = None,
) -> list[dict[str, Any]]:
    """The most recently started sessions, either side, newest first."""
    node = node_of(request)
    return await off_loop(lambda: node.store().recent_sessions(limit, peer, status))


@router.get("/audit/verify", response_model=AuditVerification, summary="Re-check the audit log")
async def verify_audit(
    request: Request,
    who: Analyst,
    head: Annotated[
        str | None,
        Query(
            max_length=100,
            description="a head SEQ:HASH recorded earlier: the log must still reach it",
        ),
    ] = None,
) -> dict[str, Any]:
    """Re-checks the hash chain and every signature, as `blindmatch audit verify` does; a log
    that fails is answered 200 with `ok` false and the first entry at fault."""
    node = node_of(request)
    try:
        expected = audit.Head.parse(head) if head is not None else None
    except AuditError as exc:
        raise ApiError(422, "invalid_input", f"query.head: {exc}") from None
    return await off_loop(verify_audit_blocking, node, expected)


@router.get("/status", summary="The node's status, as 'blindmatch status --json'")
async def status(request: Request, who: Analyst) -> dict[str, Any]:
    """Serving, answering, peers' health and certificates, the CRL, lists, new hits,
    notifications, and what to act on (`warnings`)."""
    node = node_of(request)
    return await node_status(node.config, node.now())
