"""Retention without an operator: a serving node erases records kept past their list's retention.

`purge_expired` runs `node.sessions.erasure.expire_records` in a thread when the node
starts, then every `PURGE_SECONDS`, within seconds of a change of node.toml's
`retain_days` (reloaded by `config_watch`), and within `CHECK_SECONDS` of the moment a
record's validity window opens or closes (an operations list's next window edge, read
again whenever a list's version changes). Each list it purges is audited
(`records.expired`, with the counts) and gets a new screening key epoch, as a removal
does. The window edges matter for screening: a peer's cached encoded set keeps a
record's tag, and its queries are answered under the same key, until the epoch rotates;
erasing the record when its window closes rotates it then (the peer's next query is
refused as stale and it fetches a set without the record), and a window that opens
gives the list a new version so the peer fetches a set with it. Mutual sessions need no
pass: they read the list as of their start. With `serve --workers N` every serving
process runs this job: the purge is idempotent (which records expired is decided inside
each list's write transaction), so a record is erased and audited once, by whichever
process comes first; the others find nothing and write nothing. A pass that fails (the
store busy for longer than its timeout) is logged and tried again after `RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging

from node.data.store import stored_time
from node.errors import NodeError
from node.sessions.erasure import Erasure, expire_records
from node.setup.context import NodeContext

__all__ = ["CHECK_SECONDS", "PURGE_SECONDS", "RETRY_SECONDS", "purge_expired"]

PURGE_SECONDS = 3600.0
"""How often a serving node looks for expired records."""
CHECK_SECONDS = 1.0
"""How often the job looks whether retain_days changed (no I/O), a list's version changed
(the lists table only) or a validity window's edge has come."""
RETRY_SECONDS = 60.0
"""When a pass that failed is tried again (at the latest: an edge or a change comes first)."""

log = logging.getLogger(__name__)


async def purge_expired(
    node: NodeContext, interval: float = PURGE_SECONDS, check: float = CHECK_SECONDS
) -> None:
    """Erases expired records now, then every `interval` s, when retain_days changes and
    when a record's validity window opens or closes."""
    loop = asyncio.get_running_loop()
    edges = _WindowEdges(node)
    while True:
        default = node.config.retain_days
        done = await _pass(node)
        due = loop.time() + (interval if done else min(interval, RETRY_SECONDS))
        edges.forget()  # the pass may have changed lists; and the edge it met is behind it
        while loop.time() < due and node.config.retain_days == default:
            if await edges.reached():
                break
            await asyncio.sleep(min(check, due - loop.time()))


class _WindowEdges:
    """When the next validity window of any operations list opens or closes, read again when a
    list's version changes (an ingest can bring an earlier one)."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.versions: dict[str, tuple[str, int]] | None = None
        self.edge: str | None = None

    def forget(self) -> None:
        """Reads the lists again at the next look."""
        self.versions = None

    async def reached(self) -> bool:
        """Whether the next edge has come (looks at the lists' versions; off the loop)."""
        now = stored_time(self.node.now())
        try:
            self.edge = await asyncio.to_thread(self._edge_blocking, now)
        except NodeError as exc:  # the store busy: the hourly pass is still due
            log.warning("retention: cannot read the lists' validity windows: %s", exc)
            return False
        return self.edge is not None and self.edge <= now

    def _edge_blocking(self, now: str) -> str | None:
        store = self.node.store()
        versions = store.list_versions()
        if versions != self.versions:
            self.versions = versions
            edges = store.window_edges(now).values()
            return min(edges, default=None)
        return self.edge


async def _pass(node: NodeContext) -> bool:
    """One purge of every list with a retention or a window, logged; whether it ran."""
    try:
        done: list[Erasure] = await asyncio.to_thread(lambda: expire_records(node, node.store()))
    except NodeError as exc:
        log.error("retention pass failed, tried again in %.0f s: %s", RETRY_SECONDS, exc)
        return False
    except Exception:
        log.exception("retention pass failed unexpectedly, tried again in %.0f s", RETRY_SECONDS)
        return False
    for e in done:
        log.info(
            "retention: list %s: %d record(s) not stored for %d days erased, with %d "
            "element(s) and %d hit(s)%s",
            e.list,
            e.erased.records,
            e.retain_days,
            e.erased.elements,
            e.erased.hits,
            f"; screening key epoch {e.epoch} started" if e.epoch is not None else "",
        )
    log.info("retention pass: %s", f"{len(done)} list(s) purged" if done else "nothing expired")
    return True
