"""sessions_per_hour counts each direction on its own, and a refusal names a future retry time.

Two served nodes, each allowing the other LIMIT sessions an hour. customs-nl
initiates LIMIT sessions to police-nl; it can still answer LIMIT sessions from
police-nl (sessions it initiated are not sessions it answered); the next one is
refused with RESOURCE_EXHAUSTED and a retry time within the coming hour.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest

from tests.conftest import wait_until
from tests.federation import Federation

LIMIT = 2
CUSTOMS = """ref,iban,label
C1,NL91 ABNA 0417 1643 00,customs case C1
C2,DE89 3704 0044 0532 0130 00,customs case C2
"""
POLICE = """ref,iban,label
P1,NL91ABNA0417164300,police op DELTA
"""
RETRY = re.compile(r"retry at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("rates"))
    try:
        fed.add_node("customs-nl")
        fed.add_node("police-nl")
        fed.add_peer("customs-nl", "police-nl", "--sessions-per-hour", str(LIMIT))
        fed.add_peer("police-nl", "customs-nl", "--sessions-per-hour", str(LIMIT))
        fed.ingest("customs-nl", "wl", CUSTOMS)
        fed.ingest("police-nl", "wl", POLICE)
        fed.start("customs-nl")
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def test_sessions_per_hour_are_counted_per_direction(fed: Federation) -> None:
    for _ in range(LIMIT):
        assert fed.match("customs-nl", "police-nl", "wl")["match_count"] == 1
    for _ in range(LIMIT):  # customs-nl answers as many as it initiated
        assert fed.match("police-nl", "customs-nl", "wl")["match_count"] == 1

    asked = dt.datetime.now(dt.UTC).replace(microsecond=0)
    refused = fed.match("police-nl", "customs-nl", "wl", check=False)
    assert refused.returncode == 1
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, refused.stderr
    assert "peer customs-nl refused: RESOURCE_EXHAUSTED" in line, line
    assert f"its {LIMIT} sessions per hour" in line, line
    found = RETRY.search(line)
    assert found, line
    retry = dt.datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))
    assert asked < retry <= asked + dt.timedelta(hours=1, seconds=5), (asked, retry)


def _set_on_serving_node(fed: Federation, agency: str, *options: str) -> None:
    """Runs `peer set` on `agency`'s node and waits until its `serve` says it reloaded."""
    log = fed.log(agency)
    reloads = log.read_text().count("node.toml reloaded")
    fed.cli("peer", "set", fed.node(agency), *options)
    reloaded = lambda: log.read_text().count("node.toml reloaded") > reloads  # noqa: E731
    assert wait_until(reloaded, 30, interval=0.1), f"{agency}'s serve did not reload node.toml"


def test_peer_set_applies_to_a_serving_node_without_a_restart(fed: Federation) -> None:
    serving = fed.servers["police-nl"]
    before = json.loads(fed.cli("peer", "list", fed.node("police-nl"), "--json").stdout)
    try:
        _set_on_serving_node(
            fed, "police-nl", "--agency", "customs-nl", "--sessions-per-hour", "100"
        )
        assert fed.match("customs-nl", "police-nl", "wl")["match_count"] == 1
        _set_on_serving_node(fed, "police-nl", "--agency", "customs-nl", "--sessions-per-hour", "1")
        refused = fed.match("customs-nl", "police-nl", "wl", check=False)
        assert (
            "RESOURCE_EXHAUSTED" in refused.stderr and "its 1 sessions per hour" in refused.stderr
        )
        after = json.loads(fed.cli("peer", "list", fed.node("police-nl"), "--json").stdout)
        assert after == [{**before[0], "sessions_per_hour": 1}]  # nothing else changed
        assert fed.servers["police-nl"] is serving and serving.poll() is None  # no restart
    finally:
        _set_on_serving_node(
            fed, "police-nl", "--agency", "customs-nl", "--sessions-per-hour", str(LIMIT)
        )
