"""Locust users that load a node with real sessions: the node's gRPC protocol, mTLS, real crypto.

Each user is the load-generator node (LOAD_NODE_DIR, e.g. customs-nl): it
opens one mTLS channel with that node's certificate and, in a closed loop,
runs sessions against the target node (locust's ``--host``, ``HOST:PORT`` with
an optional ``grpcs://``) through `node.client` — the same `Conversation` and
`Initiator` that ``blindmatch match`` uses, minus the store. The user's set is
the first LOAD_SET_SIZE points of the generator's list LOAD_LIST, read once at
start; the initiator's crypto runs in-process (`BatchRunner()` without a pool),
so keep sets small: it blocks this locust process while it runs.

Screening users go through `node.screening` the same way, minus the store: on
their first screening task they fetch the target's encoded list into memory
(`fetch_encoded_set`, reported once as ``"screen fetch"``, response length =
entries), then each query (`screen_query`: blinding, Screen batches over the
user's channel, proof checks, lookups) is one request. The query's elements
are the first LOAD_SET_SIZE distinct elements of the same list. A query refused
because the epoch rotated makes the user fetch again on its next one.

Each session or query fires one locust request event: type ``grpc``, name
``"<mode> <set size>"`` (``mutual 1000``, ``count 1000``, ``screen 1000``),
response time in ms from hello to summary (or from blinding to the last
batch's lookup), response length = matches found, and the error if it failed
(or matched a different number than LOAD_EXPECT_MATCHES, when set).

Environment (scenario weights are relative; 0 turns a scenario off):

    LOAD_NODE_DIR         the generator's node directory (required)
    LOAD_PEER             target agency id (default police-nl)
    LOAD_LIST             generator's list (default load); LOAD_PEER_LIST the target's
                          (default: the same name)
    LOAD_SET_SIZE         elements per session (default 1000)
    LOAD_WEIGHT_MUTUAL    weight of mutual sessions (default 3)
    LOAD_WEIGHT_COUNT     weight of count sessions (default 1)
    LOAD_WEIGHT_SCREEN    weight of screening queries (default 1)
    LOAD_EXPECT_MATCHES   expected match count per session (optional check)
    LOAD_TIMEOUT          seconds per session (default 120)
"""

from __future__ import annotations

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC object exists in this process

import os  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import grpc  # noqa: E402
from locust import User, constant  # noqa: E402
from locust.exception import StopUser  # noqa: E402

from crypto.batch import BatchRunner  # noqa: E402
from crypto.groups import ELEMENT_SIZE, get_suite  # noqa: E402
from crypto.psi import Initiator, Mode  # noqa: E402
from node.client import Conversation, new_hello, open_channel  # noqa: E402
from node.setup.config import NodeConfig  # noqa: E402
from node.errors import PeerError, StaleEpoch  # noqa: E402
from node.screening import (  # noqa: E402
    EncodedSet,
    GrpcTransport,
    OwnList,
    fetch_encoded_set,
    own_list,
    screen_query,
)
from node.rpc.status import error_from_rpc  # noqa: E402
from node.data.store import ListPoints, Store  # noqa: E402

PURPOSE = "load test of a node before deployment"
SCREEN_FETCH = "screen fetch"
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
PEER = os.environ.get("LOAD_PEER", "police-nl")
LIST = os.environ.get("LOAD_LIST", "load")
PEER_LIST = os.environ.get("LOAD_PEER_LIST", LIST)
TIMEOUT = float(_env_int("LOAD_TIMEOUT", 120))
EXPECT_MATCHES = os.environ.get("LOAD_EXPECT_MATCHES", "").strip()


def _load_generator() -> tuple[NodeConfig, ListPoints, OwnList]:
    """The generator node's config, its first SET_SIZE list points and screening elements."""
    node_dir = os.environ.get("LOAD_NODE_DIR")
    if not node_dir:
        raise SystemExit("set LOAD_NODE_DIR to the load generator's node directory")
    config = NodeConfig.load(node_dir)
    with Store.open(node_dir) as store:
        points = store.list_points(LIST, config.suite)
        own = own_list(store, LIST)
    n = min(SET_SIZE, len(points))
    m = min(SET_SIZE, len(own.elements))
    screened = OwnList(own.elements[:m], own.points[: m * 32], own.rows[:m])
    return (
        config,
        ListPoints(
            points.name,
            points.suite,
            points.packed[: n * ELEMENT_SIZE],
            points.refs[:n],
            points.types[:n],
            points.labels[:n],
        ),
        screened,
    )


CONFIG, POINTS, SCREENED = _load_generator()
RUNNER = BatchRunner()  # in-process: no pool inside a gevent locust process


class NodeUser(User):
    """One partner agency running sessions back to back on its own mTLS channel."""

    wait_time = constant(0)

    def on_start(self) -> None:
        address = (self.host or "").removeprefix("grpcs://").rstrip("/")
        if not address:
            raise StopUser("pass the target node's HOST:PORT as --host")
        self.channel = open_channel(CONFIG, PEER, address)
        self.transport = GrpcTransport(self.channel, PEER, TIMEOUT)
        self.fetched: EncodedSet | None = None

    def on_stop(self) -> None:
        self.channel.close()

    def mutual(self) -> None:
        self._session(Mode.MUTUAL)

    def count(self) -> None:
        self._session(Mode.COUNT)

    def screen(self) -> None:
        if self.fetched is None:
            self.fetched = self._timed(
                SCREEN_FETCH,
                lambda: fetch_encoded_set(self.transport, PEER, PEER_LIST, PURPOSE),
                lambda fetched: fetched.entries,
            )
            if self.fetched is None:
                return
        fetched = self.fetched

        def query() -> dict[int, list[str]]:
            try:
                return screen_query(
                    RUNNER, self.transport, PEER, PEER_LIST, PURPOSE, secrets.token_hex(16),
                    fetched, SCREENED,
                )  # fmt: skip
            except StaleEpoch:
                self.fetched = None  # fetch again before the next query
                raise

        self._timed(f"screen {len(SCREENED.elements)}", query, len)

    tasks = {
        fn: w
        for fn, w in (
            (mutual, WEIGHTS["mutual"]),
            (count, WEIGHTS["count"]),
            (screen, WEIGHTS["screen"]),
        )
        if w > 0
    }

    def _session(self, mode: Mode) -> None:
        """Runs one session and reports it to locust."""
        group = get_suite(CONFIG.suite)
        party = Initiator.with_new_key(group, POINTS.packed, mode)
        talk = Conversation(party, POINTS, release_labels=False, progress=False)
        hello = new_hello(party, LIST, PEER_LIST, PURPOSE)

        def run() -> Initiator:
            talk.run(self.channel, hello, TIMEOUT)
            return party

        self._timed(f"{mode} {len(POINTS)}", run, Initiator.match_count)

    def _timed(self, name: str, call: Callable[[], T], found: Callable[[T], int]) -> T | None:
        """Runs `call` as one locust request `name`; returns its result, or None if it failed.

        The response length is `found(result)`; a query or session (not the fetch) whose
        count differs from LOAD_EXPECT_MATCHES fails.
        """
        exception: Exception | None = None
        result: T | None = None
        length = 0
        start = time.perf_counter()
        try:
            result = call()
            length = found(result)
            if name != SCREEN_FETCH and EXPECT_MATCHES and length != int(EXPECT_MATCHES):
                exception = PeerError(f"{length} matches, expected {EXPECT_MATCHES}")
        except grpc.RpcError as exc:
            exception = error_from_rpc(exc, PEER)
        except Exception as exc:  # reported to locust as a failed request
            exception = exc
        elapsed_ms = (time.perf_counter() - start) * 1000
        request: dict[str, Any] = {
            "request_type": "grpc",
            "name": name,
            "response_time": elapsed_ms,
            "response_length": length,
            "exception": exception,
            "context": {},
        }
        self.environment.events.request.fire(**request)
        return None if exception else result
