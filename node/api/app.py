"""The FastAPI application of one serving process: `/v1`, `/metrics`, `/docs`, `/openapi.json`."""

from __future__ import annotations

from importlib import metadata

from fastapi import Depends, FastAPI, Request, Response

from node.api import metrics
from node.api.auth import Analyst, known_query
from node.api.errors import install_handlers
from node.api.gate import AccessLog, Gate
from node.api.models import ErrorResponse
from node.api.routes import ROUTERS
from node.api.routes.common import node_of, off_loop
from node.api.routes.screen import ScreeningService
from node.setup.context import NodeContext

__all__ = ["create_app"]

DESCRIPTION = """\
The local API of a blindmatch node, for the agency's own systems and people.

Every request but this documentation carries a bearer token made with
`blindmatch user add NODE_DIR --name NAME --role analyst|admin`:
`Authorization: Bearer TOKEN`. An analyst reads, screens and acknowledges hits;
an admin may also add, replace and remove records. Every request is recorded in
the node's audit log with the user's name. Errors are JSON,
`{"error": {"kind": ..., "message": ...}}`, with the HTTP status that fits.
"""


def _version() -> str:
    try:
        return metadata.version("blindmatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def create_app(node: NodeContext, live: ScreeningService | None = None) -> FastAPI:
    """The app serving `node`; `live` screens in real time (None: `/v1/screen` answers 503)."""
    app = FastAPI(
        title=f"blindmatch node {node.config.agency}",
        description=DESCRIPTION,
        version=_version(),
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        responses={
            400: {"model": ErrorResponse, "description": "the body is not JSON"},
            401: {"model": ErrorResponse, "description": "no valid bearer token"},
            403: {"model": ErrorResponse, "description": "the user's role does not allow it"},
            413: {"model": ErrorResponse, "description": "the body is too large"},
            422: {"model": ErrorResponse, "description": "a field is missing, unknown or invalid"},
            503: {"model": ErrorResponse, "description": "the node cannot answer now; retry"},
        },
    )
    app.state.node = node
    app.state.live = live
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(known_query)])

    @app.get(
        "/metrics",
        tags=["metrics"],
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=[Depends(known_query)],
    )
    async def metrics_text(request: Request, who: Analyst) -> Response:
        """Counters and gauges in Prometheus's text format (docs/API.md lists them)."""
        served = node_of(request)
        text = await off_loop(metrics.render_blocking, served)
        return Response(text, media_type=metrics.CONTENT_TYPE_LATEST)

    routes = [*(route for router in ROUTERS for route in router.routes), *app.router.routes]
    app.add_middleware(Gate, node=node, access=AccessLog(node), routes=routes)
    return app
