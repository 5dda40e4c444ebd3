"""What the endpoints share: the serving node, and blocking work run off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from node.sessions.blocking import settled, submit
from node.setup.context import NodeContext

__all__ = ["AGENCY", "node_of", "off_loop"]

T = TypeVar("T")
AGENCY = r"^[a-z0-9][a-z0-9-]{1,62}$"
"""An agency id (`node.setup.config.check_agency`)."""


def node_of(request: Request) -> NodeContext:
    """The serving node."""
    node: NodeContext = request.app.state.node
    return node


async def off_loop(blocking: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs `blocking` in the loop's thread pool and waits for it to end, even if cancelled."""
    return await settled(submit(blocking, *args, **kwargs))
