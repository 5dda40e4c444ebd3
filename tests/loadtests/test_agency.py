"""The agency API user of the load test: its identifiers and list, its checks, and a real run.

The user's expectations rest on one fact: identifier ``i`` sent to the API and row
``i`` of the partner's list canonicalise to the same elements, with the node's own
code on both sides (different regions, as in the harness). The end-to-end run
(marked slow) is the harness's: a served partner, the target served with its API,
the token from the real CLI, locust with only the API user.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.agency import (
    KINDS,
    identifier,
    kinds_from,
    list_row,
    problem,
    request_name,
    screen_request,
)
from loadtests.run import (
    API,
    PARTNER,
    add_screening_partner,
    api_url,
    first_screening,
    make_federation,
    run_locust,
    scenarios,
    serve,
    stop,
    verdict,
)
from node.data.identifiers import CanonContext, canonical_elements, identifier_elements
from node.setup.config import NodeConfig

ENTRIES = 300


@pytest.mark.parametrize("kinds", [KINDS, ("email",)])
def test_identifier_and_list_row_canonicalise_to_the_same_distinct_elements(
    kinds: tuple[str, ...],
) -> None:
    partner, screener = CanonContext(region="BE"), CanonContext(region="NL")
    seen: set[bytes] = set()
    for i in [*range(60), 9_999_999, 89_999_999]:
        row = {k: v for k, v in list_row(i, kinds).items() if k not in ("ref", "label")}
        stored, rejected = canonical_elements(row, partner)
        assert not rejected
        asked = identifier_elements(identifier(i, kinds), screener)
        assert sorted(stored) == sorted(asked)
        elements = {element for _, element in asked}
        assert not elements & seen  # every identifier is its own
        seen |= elements
    assert {identifier(i)["type"] for i in range(3)} == set(KINDS)


def test_screen_request_and_the_check_of_its_answer() -> None:
    indices = [ENTRIES + 5, 3, 7]  # the first is not in a list of ENTRIES
    body = screen_request(indices)
    assert body["purpose"] and "targets" not in body
    assert body["identifiers"] == [identifier(i) for i in indices]
    hit = {"type": "email", "peer": PARTNER, "list": "watchlist", "peer_label": "x"}
    right = {"hits": [{**hit, "index": 1}, {**hit, "index": 2}], "errors": []}
    assert problem(right, indices, ENTRIES) is None
    extra = {"hits": [*right["hits"], {**hit, "index": 0}], "errors": []}
    assert "does not hold" in (problem(extra, indices, ENTRIES) or "")
    short = {"hits": right["hits"][:1], "errors": []}
    assert "not reported" in (problem(short, indices, ENTRIES) or "")
    error = {"kind": "peer_error", "message": "down"}
    failed = {**right, "errors": [{"peer": PARTNER, "list": "watchlist", "error": error}]}
    assert "peer_error" in (problem(failed, indices, ENTRIES) or "")
    assert [request_name(1, 20), request_name(7, 20)] == ["api screen 1", "api screen 2-20"]
    assert kinds_from("") == KINDS and kinds_from(" email ,phone") == ("email", "phone")
    with pytest.raises(SystemExit, match="iban"):
        kinds_from("email,iban")


@pytest.mark.slow
def test_locust_screens_through_the_served_api(tmp_path: Path) -> None:
    federation = make_federation(tmp_path / "fed", set_size=10, target_records=10)
    federation = add_screening_partner(federation, ENTRIES)
    assert federation.partner is not None and federation.api_token.startswith("bm_")
    targets = NodeConfig.load(federation.target).screen_targets
    assert [(t.peer, t.list) for t in targets] == [(PARTNER, "watchlist")]
    partner = serve(federation.partner, 1, tmp_path / "partner.log")
    try:
        log = tmp_path / "target.log"
        target = serve(federation.target, 1, log)
        try:
            api = api_url(log, target)
            first_screening(api, federation.api_token, timeout=60)
            prefix = tmp_path / "report"
            only_api = {
                "LOAD_WEIGHT_MUTUAL": "0",
                "LOAD_WEIGHT_COUNT": "0",
                "LOAD_WEIGHT_SCREEN": "0",
                "LOAD_WEIGHT_API": "1",
            }
            code = run_locust(federation, 2, 4, prefix, extra_env=only_api, api=api)
        finally:
            stop(target)
    finally:
        stop(partner)
    assert target.returncode == 0 and partner.returncode == 0
    stats = Path(f"{prefix}.json")
    ok, summary = verdict(stats, p95_ms=30_000, expected=(API,))
    assert ok, summary
    assert code == 0
    rows = scenarios(stats)
    assert rows["api screen 1"].requests > 0, summary
    assert not verdict(stats, p95_ms=30_000)[0]  # no peer-protocol request ran
