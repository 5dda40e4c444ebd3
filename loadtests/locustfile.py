"""Locust users that load a node with real sessions (gRPC, mTLS, real crypto) and through its API.

Each `NodeUser` is the load-generator node (LOAD_NODE_DIR, e.g. customs-nl):
it opens one mTLS channel with that node's certificate and, in a closed loop,
runs sessions against the target node (locust's ``--host``, ``HOST:PORT``
with an optional ``grpcs://``) through `loadtests.driver`, a synchronous
initiator built on the same crypto parties, request types and wire mapping as
``blindmatch match``, minus the store: it records nothing. The user's set is
the first LOAD_SET_SIZE points of the generator's list LOAD_LIST, read once at
start; the crypto runs in-process, so keep sets small: it blocks this locust
process while it runs.

Screening tasks go through the driver the same way: on a user's first one it
fetches the target's encoded list into memory (reported once as ``"screen
fetch"``, response length = entries), then each query (blinding, Screen
batches over the user's channel, proof checks, lookups, labels opened) is one
request. The query's elements are the first LOAD_SET_SIZE distinct elements of
the same list. A query refused because the epoch rotated makes the user fetch
again on its next one.

Each session or query fires one locust request event: type ``grpc``, name
``"<mode> <set size>"`` (``mutual 1000``, ``count 1000``, ``screen 1000``),
response time in ms from hello to summary (or from blinding to the last
batch's lookup), response length = matches found, and the error if it failed
(or matched a different number than LOAD_EXPECT_MATCHES, when set).

A `StalledUser` is another agency (LOAD_STALLED_NODE_DIR, its own node
directory and certificate): once a second it opens a Session stream, sends a
valid hello for LOAD_SET_SIZE elements and then nothing. Each stream is one
request named ``"stalled"``: it succeeds if the target refused it at once
with RESOURCE_EXHAUSTED (beyond that peer's max_concurrent; response length 0)
or aborted it with ABORTED after its idle_seconds (response length 1); any
other status, an answered session or no end within LOAD_STALLED_TIMEOUT is a
failure.

An `AgencyUser` (`loadtests.agency_user`, imported here) is the target's own
agency: with an analyst's bearer token (LOAD_API_TOKEN) it screens one
identifier or a batch of up to 20 through ``POST /v1/screen`` on the target's
local HTTP API (LOAD_API_URL: ``--host`` here is the gRPC address), which the
target answers from its ``[[screen.target]]`` partner's encoded set in memory;
each query is one request ``"api screen 1"`` or ``"api screen 2-20"``, its
answer checked. It needs no gRPC; without LOAD_API_TOKEN it is off. Its own
LOAD_API_* variables are in its module.

Environment (weights are relative; 0 turns a scenario off):

    LOAD_NODE_DIR          the generator's node directory (required)
    LOAD_PEER              target agency id (default police-nl)
    LOAD_LIST              generator's list (default load); LOAD_PEER_LIST the target's
                           (default: the same name)
    LOAD_SET_SIZE          elements per session (default 1000)
    LOAD_WEIGHT_MUTUAL     weight of mutual sessions (default 3)
    LOAD_WEIGHT_COUNT      weight of count sessions (default 1)
    LOAD_WEIGHT_SCREEN     weight of screening queries (default 1)
    LOAD_EXPECT_MATCHES    expected match count per session or query (optional check)
    LOAD_TIMEOUT           seconds per session (default 120)
    LOAD_STALLED_NODE_DIR  the stalling agency's node directory (optional)
    LOAD_WEIGHT_STALLED    weight of stalled users against the sum of the three above
                           (default 2 with LOAD_STALLED_NODE_DIR, else 0)
    LOAD_STALLED_TIMEOUT   seconds a stalled stream waits for the target to end it
                           (default 60; keep it above the target's idle_seconds)
    LOAD_WEIGHT_API        weight of agency API users (default 2 with LOAD_API_TOKEN, else 0)
"""

from __future__ import annotations

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC object exists in this process

import dataclasses  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import TypeVar  # noqa: E402

from locust import User, constant, task  # noqa: E402
from locust.exception import StopUser  # noqa: E402

from crypto.batch import BatchRunner  # noqa: E402
from crypto.groups import ELEMENT_SIZE  # noqa: E402
from loadtests import driver  # noqa: E402
from loadtests.agency_user import AgencyUser  # noqa: E402, F401 (a user class locust runs)
from node.errors import PeerError, StaleEpoch  # noqa: E402
from node.sessions.screen_initiator import OwnList, own_list  # noqa: E402
from node.setup.config import NodeConfig  # noqa: E402
from node.setup.context import NodeContext  # noqa: E402

PURPOSE = "load test of a node before deployment"
SCREEN_FETCH = "screen fetch"
STALLED = "stalled"
T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


SET_SIZE = _env_int("LOAD_SET_SIZE", 1000)
WEIGHTS = {
    "mutual": _env_int("LOAD_WEIGHT_MUTUAL", 3),
    "count": _env_int("LOAD_WEIGHT_COUNT", 1),
    "screen": _env_int("LOAD_WEIGHT_SCREEN", 1),
}
STALLED_DIR = os.environ.get("LOAD_STALLED_NODE_DIR", "")
STALLED_WEIGHT = _env_int("LOAD_WEIGHT_STALLED", 2 if STALLED_DIR else 0)
LIST = os.environ.get("LOAD_LIST", "load")
TARGET = driver.Target(
    peer=os.environ.get("LOAD_PEER", "police-nl"),
    list=LIST,
    peer_list=os.environ.get("LOAD_PEER_LIST", LIST),
    purpose=PURPOSE,
    timeout=float(_env_int("LOAD_TIMEOUT", 120)),
)
STALLED_TARGET = dataclasses.replace(TARGET, timeout=float(_env_int("LOAD_STALLED_TIMEOUT", 60)))
EXPECT_MATCHES = os.environ.get("LOAD_EXPECT_MATCHES", "").strip()


def _load_generator() -> tuple[NodeConfig, bytes, OwnList]:
    """The generator's config, its first SET_SIZE list points and screening elements."""
    node_dir = os.environ.get("LOAD_NODE_DIR")
    if not node_dir:
        raise SystemExit("set LOAD_NODE_DIR to the load generator's node directory")
    node = NodeContext.load(node_dir, BatchRunner())
    try:
        points = node.store().list_points(LIST, node.config.suite)
        own = own_list(node, LIST)
    finally:
        node.store().close()
    m = min(SET_SIZE, len(own.elements))
    screened = OwnList(own.elements[:m], own.points[: m * ELEMENT_SIZE], own.rows[:m])
    return node.config, points.packed[: SET_SIZE * ELEMENT_SIZE], screened


CONFIG, POINTS, SCREENED = _load_generator()
if STALLED_WEIGHT > 0 and not STALLED_DIR:
    raise SystemExit("set LOAD_STALLED_NODE_DIR to the stalling agency's node directory")
STALLED_CONFIG = NodeConfig.load(STALLED_DIR) if STALLED_WEIGHT > 0 else None


class _Partner(User):
    """A partner agency on its own mTLS channel to the target, reporting each call to locust."""

    abstract = True
    config: NodeConfig | None = None

    def on_start(self) -> None:
        address = (self.host or "").removeprefix("grpcs://").rstrip("/")
        if not address:
            raise StopUser("pass the target node's HOST:PORT as --host")
        assert self.config is not None
        self.channel = driver.open_channel(self.config, TARGET.peer, address)

    def on_stop(self) -> None:
        self.channel.close()

    def _timed(
        self, name: str, call: Callable[[], T], found: Callable[[T], int], expect: str = ""
    ) -> T | None:
        """Runs `call` as one locust request `name`; returns its result, or None if it failed.

        The response length is `found(result)`; a result whose length differs from
        `expect` (when given) fails.
        """
        exception: Exception | None = None
        result: T | None = None
        length = 0
        start = time.perf_counter()
        try:
            result = call()
            length = found(result)
            if expect and length != int(expect):
                exception = PeerError(f"{length} matches, expected {expect}")
        except Exception as exc:  # reported to locust as a failed request
            exception = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )
        return None if exception else result


class NodeUser(_Partner):
    """The generator agency running sessions and queries back to back."""

    wait_time = constant(0)
    config = CONFIG
    weight = sum(WEIGHTS.values())
    abstract = weight == 0
    fetched: driver.EncodedList | None = None

    def mutual(self) -> None:
        self._session("mutual")

    def count(self) -> None:
        self._session("count")

    def screen(self) -> None:
        if self.fetched is None:
            self.fetched = self._timed(
                SCREEN_FETCH, lambda: driver.fetch(self.channel, TARGET), lambda e: e.entries
            )
            if self.fetched is None:
                return
        fetched = self.fetched

        def query() -> int:
            try:
                return driver.query(self.channel, TARGET, fetched, SCREENED)
            except StaleEpoch:
                self.fetched = None  # fetch again before the next query
                raise

        self._timed(f"screen {len(SCREENED.elements)}", query, int, EXPECT_MATCHES)

    tasks = {
        fn: w
        for fn, w in (
            (mutual, WEIGHTS["mutual"]),
            (count, WEIGHTS["count"]),
            (screen, WEIGHTS["screen"]),
        )
        if w > 0
    }

    def _session(self, mode: str) -> None:
        """Runs one session and reports it to locust."""
        size = len(POINTS) // ELEMENT_SIZE
        self._timed(
            f"{mode} {size}",
            lambda: driver.session(self.channel, TARGET, CONFIG.suite, POINTS, mode),
            int,
            EXPECT_MATCHES,
        )


class StalledUser(_Partner):
    """Another agency that says hello and stalls, once a second."""

    wait_time = constant(1)
    config = STALLED_CONFIG
    weight = STALLED_WEIGHT
    abstract = STALLED_CONFIG is None

    @task
    def stalled(self) -> None:
        assert self.config is not None
        suite = self.config.suite
        self._timed(
            STALLED,
            lambda: driver.stall(self.channel, STALLED_TARGET, suite, SET_SIZE),
            lambda outcome: int(outcome == "aborted"),
        )
