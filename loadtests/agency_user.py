"""A locust `HttpUser`: an agency's own system screening through its node's local HTTP API.

`AgencyUser` is a border or case system of the target node's agency. With an
analyst's bearer token it sends ``POST /v1/screen`` (docs/API.md) with a purpose
and one identifier (task ``single``) or a batch of 2 to LOAD_API_BATCH distinct
identifiers (task ``batch``), without ``targets``: the node screens them against
its ``[[screen.target]]`` partners' encoded sets, held in memory. The
identifiers, the partner's list and the checks are `loadtests.agency`'s: about
half of each query's identifiers are in the list, and an answer other than 200
with no target in ``errors`` and exactly those identifiers hit is a failure.

It needs no gRPC: it is a locustfile of its own (``locust -f
loadtests/agency_user.py --host http://HOST:PORT``, as `bench.api` runs it), and
`loadtests/locustfile.py` imports it to run beside the peer-protocol users; there
``--host`` is the gRPC target, so LOAD_API_URL names the API.

Each query is one locust request: type ``POST``, name ``"api screen 1"`` or
``"api screen 2-N"``, its response time from sending to the answer read, its
length the bytes of the answer.

Environment:

    LOAD_API_TOKEN         an analyst's bearer token (without one this user is off)
    LOAD_API_URL           the API's base URL, http(s)://HOST:PORT (default: --host)
    LOAD_API_ENTRIES       identifiers in the partner's list (default 10000)
    LOAD_API_KINDS         identifier kinds, comma-separated (default email,phone,passport)
    LOAD_API_BATCH         the largest batch (default 20)
    LOAD_API_WEIGHT_SINGLE weight of one-identifier queries (default 3)
    LOAD_API_WEIGHT_BATCH  weight of batches (default 1)
    LOAD_API_RATE          queries a second per user (default 0: back to back)
    LOAD_API_TIMEOUT       seconds per request (default 30)
    LOAD_WEIGHT_API        this user's weight beside a locustfile's other users
                           (default 2; 0 turns it off)
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, constant, constant_throughput
from locust.exception import StopUser

from loadtests.agency import kinds_from, problem, request_name, screen_request

__all__ = ["AgencyUser"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


TOKEN = os.environ.get("LOAD_API_TOKEN", "")
API_URL = os.environ.get("LOAD_API_URL", "").rstrip("/")
ENTRIES = _env_int("LOAD_API_ENTRIES", 10_000)
KINDS = kinds_from(os.environ.get("LOAD_API_KINDS"))
LARGEST = max(2, _env_int("LOAD_API_BATCH", 20))
RATE = float(os.environ.get("LOAD_API_RATE", "") or 0)
TIMEOUT = float(_env_int("LOAD_API_TIMEOUT", 30))
WEIGHT = _env_int("LOAD_WEIGHT_API", 2)


class AgencyUser(HttpUser):
    """The target agency's own system screening identifiers through its node's API."""

    host = API_URL or None
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)
    weight = WEIGHT
    abstract = not TOKEN or WEIGHT <= 0

    def on_start(self) -> None:
        base = API_URL or (self.host or "").rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise StopUser("set LOAD_API_URL (or --host) to the node's API, http(s)://HOST:PORT")
        self.url = f"{base}/v1/screen"
        self.client.headers["Authorization"] = f"Bearer {TOKEN}"

    def single(self) -> None:
        self._screen(1)

    def batch(self) -> None:
        self._screen(random.randint(2, LARGEST))

    tasks = {
        fn: w
        for fn, w in (
            (single, _env_int("LOAD_API_WEIGHT_SINGLE", 3)),
            (batch, _env_int("LOAD_API_WEIGHT_BATCH", 1)),
        )
        if w > 0
    }

    def _screen(self, size: int) -> None:
        """One query of `size` distinct identifiers, its answer checked."""
        indices = random.sample(range(2 * ENTRIES), size)
        with self.client.post(
            self.url,
            json=screen_request(indices, KINDS),
            name=request_name(size, LARGEST),
            timeout=TIMEOUT,
            catch_response=True,
        ) as response:
            if response.status_code == 0:  # no answer: locust reports why
                return
            if response.status_code != 200:
                try:
                    kind = response.json()["error"]["kind"]
                except (ValueError, KeyError, TypeError):
                    kind = "no JSON error"
                response.failure(f"HTTP {response.status_code}: {kind}")
                return
            reason = problem(response.json(), indices, ENTRIES)
            if reason is not None:
                response.failure(reason)
