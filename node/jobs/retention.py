"""Retention without an operator: a serving node erases records kept past their list's retention.

`purge_expired` runs `node.sessions.erasure.expire_records` in a thread when the node
starts, then every `PURGE_SECONDS`, and within seconds of a change of node.toml's
`retain_days` (reloaded by `config_watch`). Each list it purges is audited
(`records.expired`, with the counts) and gets a new screening key epoch, as a removal
does. With `serve --workers N` every serving process runs this job: the purge is
idempotent (which records expired is decided inside each list's write transaction), so a
record is erased and audited once, by whichever process comes first; the others find
nothing and write nothing. A pass that fails (the store busy for longer than its timeout)
is logged and tried again at the next one.
"""

from __future__ import annotations

import asyncio
import logging

from node.errors import NodeError
from node.sessions.erasure import Erasure, expire_records
from node.setup.context import NodeContext

__all__ = ["CHECK_SECONDS", "PURGE_SECONDS", "purge_expired"]

PURGE_SECONDS = 3600.0
"""How often a serving node looks for expired records."""
CHECK_SECONDS = 1.0
"""How often the job looks whether node.toml's retain_days changed (no I/O)."""

log = logging.getLogger(__name__)


async def purge_expired(
    node: NodeContext, interval: float = PURGE_SECONDS, check: float = CHECK_SECONDS
) -> None:
    """Erases expired records now, then every `interval` s and when retain_days changes."""
    loop = asyncio.get_running_loop()
    while True:
        default = node.config.retain_days
        await _pass(node)
        due = loop.time() + interval
        while loop.time() < due and node.config.retain_days == default:
            await asyncio.sleep(min(check, due - loop.time()))


async def _pass(node: NodeContext) -> None:
    """One purge of every list with a retention, logged; a failure waits for the next pass."""
    try:
        done: list[Erasure] = await asyncio.to_thread(lambda: expire_records(node, node.store()))
    except NodeError as exc:
        log.error("retention pass failed, tried again at the next one: %s", exc)
        return
    except Exception:
        log.exception("retention pass failed unexpectedly, tried again at the next one")
        return
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
