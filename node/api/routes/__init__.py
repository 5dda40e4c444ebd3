"""The endpoints under `/v1`, one module per topic; `ROUTERS` in the order `/docs` shows them."""

from __future__ import annotations

from node.api.routes import hits, node, records, screen

__all__ = ["ROUTERS"]

ROUTERS = (screen.router, hits.router, records.router, node.router)
