"""`/metrics`: what a serving node counts, in Prometheus's text format (prometheus-client).

Two sources:

- **Counted as it happens**, in each serving process: the API's requests (by
  method, route template and status) and their durations; real-time screening
  through the API (queries by outcome, identifiers, hits, per-partner errors);
  and, through the hooks of `node.sessions.observe`, sessions of either side by
  mode, role, peer and outcome with their durations, peers' calls refused or
  failed by gRPC status, streams aborted for stalling (`idle_seconds`), and
  screening queries answered for partners (items, by peer).
- **Read from the store at scrape time**, so every process reports the same:
  new hits, the notification outbox per webhook URL (pending, failing), and each
  peer's screening budget and what it used today (UTC).

With `serve --workers N`, N processes count, and a scrape reaches any one of
them: the counters use prometheus-client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set by `serve` to a directory of its own under
the node directory, see `node.api.metrics_dir`), so every scrape sums all the
processes. Without that variable (tests in one process) the process's own
registry is reported.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from node.data import outbox
from node.data import screening as tables
from node.sessions import observe
from node.setup.context import NodeContext

__all__ = [
    "CONTENT_TYPE_LATEST",
    "install_observer",
    "render_blocking",
    "request_done",
    "screen_done",
    "screen_target_failed",
]

API_REQUESTS = Counter(
    "blindmatch_api_requests",
    "Requests to the local API, by method, route template and status",
    ["method", "route", "status"],
)
API_SECONDS = Histogram(
    "blindmatch_api_request_duration_seconds",
    "Time from a request's arrival to its answer starting, by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SCREEN_QUERIES = Counter(
    "blindmatch_screen_queries",
    "Real-time screening requests through the API, by outcome (ok, invalid, failed)",
    ["outcome"],
)
SCREEN_IDENTIFIERS = Counter(
    "blindmatch_screen_identifiers", "Identifiers screened through the API"
)
SCREEN_HITS = Counter("blindmatch_screen_hits", "Hits found by screening through the API")
SCREEN_TARGET_ERRORS = Counter(
    "blindmatch_screen_target_errors",
    "Partner lists a screening request could not be answered against, by peer and error kind",
    ["peer", "kind"],
)
SESSIONS = Counter(
    "blindmatch_sessions",
    "Sessions ended, either side, by mode, role, peer and outcome (completed, failed)",
    ["mode", "role", "peer", "outcome"],
)
SESSION_SECONDS = Histogram(
    "blindmatch_session_duration_seconds",
    "Session durations, by mode, role and outcome",
    ["mode", "role", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
CALLS_FAILED = Counter(
    "blindmatch_peer_calls_failed",
    "Peers' calls this node refused or that failed, by gRPC status",
    ["status"],
)
STALLED = Counter(
    "blindmatch_stalled_streams_aborted",
    "Peers' streams aborted because they made no progress for idle_seconds",
)
SCREEN_ANSWERED = Counter(
    "blindmatch_screen_answered_items",
    "Screening items evaluated for partners (charged to their daily budget), by peer",
    ["peer"],
)


def request_done(method: str, route: str, status: int, seconds: float) -> None:
    """Counts one API request."""
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_SECONDS.labels(route).observe(seconds)


def screen_done(outcome: str, identifiers: int = 0, hits: int = 0) -> None:
    """Counts one screening request through the API."""
    SCREEN_QUERIES.labels(outcome).inc()
    if identifiers:
        SCREEN_IDENTIFIERS.inc(identifiers)
    if hits:
        SCREEN_HITS.inc(hits)


def screen_target_failed(peer: str, kind: str) -> None:
    """Counts one partner list a screening request could not be answered against."""
    SCREEN_TARGET_ERRORS.labels(peer, kind).inc()


class _Observer:
    """`node.sessions.observe.Observer`, counting into the metrics above."""

    def session_ended(self, role: str, mode: str, peer: str, outcome: str, seconds: float) -> None:
        SESSIONS.labels(mode, role, peer, outcome).inc()
        SESSION_SECONDS.labels(mode, role, outcome).observe(seconds)

    def call_failed(self, status: str) -> None:
        CALLS_FAILED.labels(status).inc()
        if status == "ABORTED":  # only a stall is ABORTED (node.rpc.status)
            STALLED.inc()

    def screen_answered(self, peer: str, items: int) -> None:
        SCREEN_ANSWERED.labels(peer).inc(items)


def install_observer() -> None:
    """Makes this process's sessions, calls and screening answers count here."""
    observe.set_observer(_Observer())


class _StoreCollector(Collector):
    """Gauges read from the store at scrape time (blocking)."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self.node.store()
        config = self.node.config
        new_hits = GaugeMetricFamily("blindmatch_hits_new", "Hits not yet acknowledged")
        new_hits.add_metric([], store.new_hit_count())
        yield new_hits
        pending = GaugeMetricFamily(
            "blindmatch_outbox_pending",
            "Notifications of new hits waiting to be delivered, by webhook URL",
            labels=["url"],
        )
        failing = GaugeMetricFamily(
            "blindmatch_outbox_failing",
            "Pending notifications whose last delivery attempt failed, by webhook URL",
            labels=["url"],
        )
        for entry in outbox.summary(store.conn, [w.url for w in config.webhooks]):
            pending.add_metric([entry["url"]], entry["pending"])
            failing.add_metric([entry["url"]], entry["failing"])
        yield pending
        yield failing
        day = self.node.now().astimezone(dt.UTC).date().isoformat()
        budget = GaugeMetricFamily(
            "blindmatch_screen_budget_items",
            "Screening items each peer may have evaluated per UTC day (its policy)",
            labels=["peer"],
        )
        used = GaugeMetricFamily(
            "blindmatch_screen_budget_used_items",
            "Screening items evaluated for each peer today (UTC)",
            labels=["peer"],
        )
        for agency, policy in sorted(config.peers.items()):
            budget.add_metric([agency], policy.screen_budget_per_day)
            used.add_metric([agency], tables.usage(store, agency, day))
        yield budget
        yield used


def render_blocking(node: NodeContext) -> bytes:
    """The exposition text of every metric (all serving processes' counters; blocking)."""
    stored = CollectorRegistry()
    stored.register(_StoreCollector(node))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    return generate_latest(counted) + generate_latest(stored)
