"""`/docs`: the API's OpenAPI description in Swagger UI, served from the node itself.

FastAPI's default page loads Swagger UI from a public CDN, which an agency's
network (and this one) does not reach: the page stays blank. The
`swagger-ui-bundle` package ships Swagger UI's files; they are served under
`DOCS_STATIC_PATH`, open like the documentation itself.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

__all__ = ["DOCS_PATH", "DOCS_STATIC_PATH", "install_docs"]

DOCS_PATH = "/docs"
DOCS_STATIC_PATH = "/docs/static"


def install_docs(app: FastAPI) -> None:
    """Serves Swagger UI at `DOCS_PATH` for `app.openapi_url`, with its files from the node."""
    app.mount(DOCS_STATIC_PATH, StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title}: API",
            swagger_js_url=f"{DOCS_STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC_PATH}/favicon-32x32.png",
        )
