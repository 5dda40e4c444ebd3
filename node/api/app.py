"""The FastAPI application of one serving process: `/v1`, `/metrics`, `/console`, `/docs`,
`/openapi.json`."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from node.api import metrics
from node.api.auth import Analyst, known_query
from node.api.console import CONSOLE_PATH, STATIC_PATH
from node.api.console import pages as console
from node.api.docs import install_docs
from node.api.errors import install_handlers
from node.api.gate import AccessLog, Gate
from node.api.models import ErrorResponse
from node.api.routes import ROUTERS
from node.api.routes.common import node_of, off_loop
from node.api.routes.screen import ScreeningService
from node.sessions.blocking import GroupWriter
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

People use the operator console at `/console` (sign in with the same token).
"""


def _version() -> str:
    try:
        return metadata.version("blindmatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def create_app(
    node: NodeContext, live: ScreeningService | None = None, writer: GroupWriter | None = None
) -> FastAPI:
    """The app serving `node`; `live` screens in real time (None: `/v1/screen` answers 503);
    `writer` writes its audit entries (None: one of its own)."""
    app = FastAPI(
        title=f"blindmatch node {node.config.agency}",
        description=DESCRIPTION,
        version=_version(),
        docs_url=None,  # served by install_docs, from the node rather than a CDN
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
    install_handlers(app, page=console.error_page)
    install_docs(app)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(known_query)])
    app.include_router(console.router)
    static = StaticFiles(directory=Path(console.__file__).parent / "static")
    app.mount(STATIC_PATH, static, name="console-static")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PATH}/", status_code=303)

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

    routes = [
        *(route for router in (*ROUTERS, console.router) for route in router.routes),
        *app.router.routes,
    ]
    app.add_middleware(Gate, node=node, access=AccessLog(node, writer), routes=routes)
    return app
