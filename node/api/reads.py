"""What the API's endpoints and the console's pages both show, built once for both."""

from __future__ import annotations

import datetime as dt
from typing import Any

from node.data import audit
from node.data.store import Store
from node.rpc.node_status import peer_reports
from node.setup.context import NodeContext

__all__ = ["PEER_CHECK_SECONDS", "activity_blocking", "peers_with_health", "verify_audit_blocking"]

PEER_CHECK_SECONDS = 3.0
"""How long a peer's health check may take before it counts as unreachable."""


async def peers_with_health(node: NodeContext) -> list[dict[str, Any]]:
    """Each peer's policy as `peer list --json` prints it, whether it answers a health check
    over mTLS now, and the certificate it presents."""
    config = node.config
    health = {
        report["agency"]: report
        for report in await peer_reports(config, node.now(), timeout=PEER_CHECK_SECONDS)
    }
    return [
        {
            **policy.to_json(),
            "reachable": health[agency]["reachable"],
            "error": health[agency]["error"],
            "certificate": health[agency]["certificate"],
        }
        for agency, policy in sorted(config.peers.items())
        if agency in health
    ]


def verify_audit_blocking(node: NodeContext, expected: audit.Head | None = None) -> dict[str, Any]:
    """Re-checks the audit log's chain and signatures, as `audit verify` does."""
    key = audit.load_public_key(node.config.node_dir / "audit.pub")
    with Store.open(node.config.store_path) as store:
        result = audit.verify(store.conn, key, expected_head=expected)
    return {
        "ok": result.ok,
        "entries": result.entries,
        "head": str(result.head),
        "failed_seq": result.failed_seq,
        "reason": result.reason,
    }


def activity_blocking(node: NodeContext, days: int) -> list[dict[str, Any]]:
    """Per UTC day of the last `days` (oldest first, today last): sessions completed and failed,
    and hits first seen."""
    today = node.now().astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    counts = node.store().activity(first.isoformat())
    return [
        {"day": day.isoformat(), **counts.get(day.isoformat(), _NOTHING)}
        for day in (first + dt.timedelta(days=n) for n in range(days))
    ]


_NOTHING = {"completed": 0, "failed": 0, "hits": 0}
