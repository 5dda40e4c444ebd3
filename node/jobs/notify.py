"""Notification of new hits: a serving node POSTs each queued hit to its agency's webhooks.

Sessions queue every new hit for every configured `[[notify.webhook]]` in the
transaction that records it (`node.data.outbox`). This job delivers the queue:

1. One courier task per configured URL (started and stopped as node.toml changes), so a
   slow or dead webhook never holds up another. Every `POLL_SECONDS` a courier asks the
   store, in a thread, whether a row for its URL is due; if so it claims up to `BATCH`
   of them, leased for `LEASE_SECONDS` in one write transaction (with `serve --workers
   N` each row is sent by one process at a time).
2. It POSTs each (at most `PER_WEBHOOK` at once) with httpx.AsyncClient: the JSON body
   of `delivery_body`, signed by `delivery_headers`; every request has connect, read
   and write timeouts and an overall deadline (`DEADLINE_SECONDS`).
3. A 2xx answer marks the row delivered. Anything else — another status (redirects are
   not followed), a refused connection, a timeout — records the attempt, its error and
   the next attempt after `retry_delay`: `notify_retry_seconds` (node.toml, default 2)
   doubling up to `RETRY_CAP_SECONDS`, less up to a quarter at random. Rows are retried
   until delivered, across restarts: the state is in the store.
4. When serve stops, rows claimed but not answered are made due again, so the next
   start sends them at once; a process killed outright leaves them until the lease ends.

Delivery is at least once: a receiver must treat `X-Blindmatch-Delivery` (the hit id)
as an idempotency key. The event loop never waits: SQLite runs in the default executor.
Secrets go only into the signature: never into a log line, the store or `status`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from node.data import outbox
from node.data.outbox import Delivery
from node.setup.context import NodeContext

__all__ = [
    "BATCH",
    "DEADLINE_SECONDS",
    "LEASE_SECONDS",
    "PER_WEBHOOK",
    "POLL_SECONDS",
    "RETRY_CAP_SECONDS",
    "deliver_notifications",
    "delivery_body",
    "delivery_headers",
    "retry_delay",
    "signature",
]

POLL_SECONDS = 0.5
"""How often a courier looks for due rows of its webhook (one indexed read)."""
BATCH = 32
"""Rows a courier claims at once."""
PER_WEBHOOK = 4
"""Requests in flight to one webhook at once."""
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Connect, read, write and pool timeouts of every request."""
DEADLINE_SECONDS = 30.0
"""The longest one delivery may take, whatever the receiver trickles."""
LEASE_SECONDS = 120.0
"""How long a claimed row stays with the process that claimed it (beyond any deadline)."""
RETRY_CAP_SECONDS = 600.0
"""The longest wait between two attempts of one row."""
_MAX_DOUBLINGS = 30

log = logging.getLogger(__name__)


def retry_delay(
    failures: int, base: float, cap: float = RETRY_CAP_SECONDS, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the `failures`-th failed attempt: base·2^(failures−1), capped,
    less up to a quarter at random (so that rows failed together do not retry together)."""
    exponent = min(max(failures, 1) - 1, _MAX_DOUBLINGS)
    delay = min(cap, base * 2**exponent)
    return delay * (1.0 - 0.25 * (rng or random).random())


def next_step(hit: Mapping[str, Any], node_dir: Path | str) -> str:
    """What the agency does about a hit, in a sentence."""
    label = hit.get("peer_label")
    reference = (
        f"quoting their reference {label!r}"
        if label
        else f"(they released no reference: name our list {hit['list']} and the matched "
        f"{hit['type']})"
    )
    return (
        f"contact {hit['peer']} through the usual channel {reference}; acknowledge with "
        f"blindmatch hits ack {node_dir} {hit['id']} --by NAME"
    )


def delivery_body(hit: Mapping[str, Any], agency: str, node_dir: Path | str) -> bytes:
    """The JSON body notifying `hit` (a row as `node.data.outbox.claim` reads it), as bytes."""
    body = {
        "hit_id": hit["id"],
        "node": agency,
        "list": hit["list"],
        "ref": hit["ref"],
        "type": hit["type"],
        "peer": hit["peer"],
        "peer_label": hit.get("peer_label"),
        "role": hit["role"],
        "mode": hit["mode"],
        "status": hit["status"],
        "first_seen": hit["first_seen"],
        "last_seen": hit["last_seen"],
        "next_step": next_step(hit, node_dir),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of the raw body under the webhook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(body: bytes, secret: str, hit_id: int) -> dict[str, str]:
    """The headers of one delivery: content type, signature, and the idempotency key."""
    return {
        "Content-Type": "application/json",
        "X-Blindmatch-Signature": signature(secret, body),
        "X-Blindmatch-Delivery": str(hit_id),
    }


def _describe(exc: Exception) -> str:
    """Why a request got no answer, in a line (never a header or the body)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"cannot connect: no connection within {TIMEOUT.connect:.0f} s"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return (
            f"no answer within the timeouts ({TIMEOUT.read:.0f} s a read, "
            f"{DEADLINE_SECONDS:.0f} s in all)"
        )
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc or 'connection failed'}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the answer is not valid HTTP: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    return f"unexpected error ({type(exc).__name__}); see the node's log"


async def deliver_notifications(
    node: NodeContext, poll: float = POLL_SECONDS, rng: random.Random | None = None
) -> None:
    """Delivers the outbox to the webhooks in node.toml until cancelled (a serve job)."""
    node_dir = await asyncio.to_thread(node.config.node_dir.resolve)
    couriers: dict[str, asyncio.Task[None]] = {}
    stopping: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        try:
            while True:
                wanted = [w.url for w in node.config.webhooks]
                for url in [u for u in couriers if u not in wanted]:
                    task = couriers.pop(url)
                    task.cancel()
                    stopping.add(task)
                    task.add_done_callback(stopping.discard)
                    log.info(
                        "webhook %s is no longer in node.toml: its pending notifications wait "
                        "until it is configured again",
                        url,
                    )
                for url in wanted:
                    running = couriers.get(url)
                    if running is not None and not running.done():
                        continue
                    if running is not None and not running.cancelled() and running.exception():
                        log.error(
                            "notifications to %s stopped unexpectedly; restarted",
                            url,
                            exc_info=running.exception(),
                        )
                    courier = _Courier(node, client, url, node_dir, poll, rng or random.Random())
                    couriers[url] = asyncio.create_task(courier.run(), name=f"notify {url}")
                await asyncio.sleep(poll)
        finally:
            tasks = [*couriers.values(), *stopping]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class _Courier:
    """Delivers the due rows of one webhook URL, batch by batch, until cancelled."""

    def __init__(
        self,
        node: NodeContext,
        client: httpx.AsyncClient,
        url: str,
        node_dir: Path,
        poll: float,
        rng: random.Random,
    ) -> None:
        self.node = node
        self.client = client
        self.url = url
        self.node_dir = node_dir
        self.poll = poll
        self.rng = rng

    async def run(self) -> None:
        while True:
            try:
                batch = await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store busy past its timeout, or worse: try again
                log.error(
                    "notifications to %s: cannot read the outbox, trying again: %s",
                    self.url,
                    exc,
                )
                batch = []
            if batch:
                await self._send(batch)
            else:
                await asyncio.sleep(self.poll)

    # -- the store, in threads -------------------------------------------------------------

    def _claim_blocking(self) -> list[Delivery]:
        store, now = self.node.store(), self.node.now()
        if not outbox.has_due(store.conn, self.url, now):
            return []
        return outbox.claim(store, self.url, now, LEASE_SECONDS, BATCH)

    def _settle_blocking(self, delivery: Delivery, error: str | None) -> float | None:
        """Records the outcome; returns the delay before the next attempt (None: delivered)."""
        conn, now = self.node.store().conn, self.node.now()
        if error is None:
            outbox.mark_delivered(conn, delivery.outbox_id, now)
            return None
        delay = retry_delay(
            delivery.attempts + 1, self.node.config.notify_retry_seconds, rng=self.rng
        )
        outbox.record_failure(conn, delivery.outbox_id, error, now + dt.timedelta(seconds=delay))
        return delay

    def _release_blocking(self, outbox_ids: set[int]) -> None:
        outbox.release(self.node.store().conn, outbox_ids, self.node.now())

    async def _claim(self) -> list[Delivery]:
        """Claims due rows; if cancelled meanwhile, gives back what the thread claimed."""
        claiming = asyncio.ensure_future(asyncio.to_thread(self._claim_blocking))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            try:
                claimed = await claiming
                await asyncio.to_thread(self._release_blocking, {d.outbox_id for d in claimed})
            except Exception:
                log.exception("notifications to %s: claimed rows wait for their lease", self.url)
            raise

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, batch: list[Delivery]) -> None:
        """Sends a claimed batch, settling each row as its answer comes; logs the outcome."""
        unsent = {d.outbox_id for d in batch}
        slots = asyncio.Semaphore(PER_WEBHOOK)
        failures: list[tuple[Delivery, str, float]] = []
        delivered = 0

        async def one(delivery: Delivery) -> None:
            nonlocal delivered
            async with slots:
                secrets = {w.url: w.secret for w in self.node.config.webhooks}
                if self.url not in secrets:  # removed from node.toml meanwhile: give it back
                    return
                error = await self._post(delivery, secrets[self.url])
            try:
                delay = await asyncio.to_thread(self._settle_blocking, delivery, error)
            except Exception as exc:
                log.error(
                    "notifications to %s: the outcome of hit %d was not recorded (%s); it is "
                    "sent again when its lease ends",
                    self.url,
                    delivery.hit_id,
                    exc,
                )
                unsent.discard(delivery.outbox_id)
                return
            unsent.discard(delivery.outbox_id)
            if delay is None:
                delivered += 1
            else:
                failures.append((delivery, error or "", delay))

        try:
            await asyncio.gather(*(one(d) for d in batch))
        finally:
            if unsent:
                await asyncio.to_thread(self._release_blocking, set(unsent))
        if delivered:
            log.info("notifications to %s: %d hit(s) delivered", self.url, delivered)
        if failures:
            first, error, delay = failures[0]
            log.warning(
                "notifications to %s: %d delivery(ies) failed, e.g. hit %d (attempt %d): %s; "
                "next attempt in %.0f s; retried until the receiver answers 2xx "
                "(see 'blindmatch status')",
                self.url,
                len(failures),
                first.hit_id,
                first.attempts + 1,
                error,
                delay,
            )

    async def _post(self, delivery: Delivery, secret: str) -> str | None:
        """POSTs one delivery; None on a 2xx answer, else why not."""
        body = delivery_body(delivery.hit, self.node.config.agency, self.node_dir)
        headers = delivery_headers(body, secret, delivery.hit_id)
        try:
            async with asyncio.timeout(DEADLINE_SECONDS):
                response = await self.client.post(self.url, content=body, headers=headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, httpx.HTTPError | TimeoutError):
                log.exception("notifications to %s: unexpected error", self.url)
            return _describe(exc)
        if response.is_success:
            return None
        text = f"answered HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.is_redirect:
            text += " (redirects are not followed: configure the final URL)"
        return text
