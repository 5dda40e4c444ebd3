"""The local API end to end (issue 14): real HTTP (httpx) to a real `blindmatch serve` of
customs-nl, with a real partner (police-nl) and real sessions between them.

Hits listed and acknowledged as the CLI does; records added, replaced and erased by an
admin only, checked as ingest checks a row and erased as `records remove` erases; tokens
(none, wrong, removed) refused with 401; every request audited with its user's name and
route template, before it is answered, never with a ref, label or token; malformed input
of every kind answered 4xx with a JSON error naming the field, never 500; peers with live
health (a stopped partner shown unreachable); metrics that parse; OpenAPI served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.api.errors import MAX_BODY_BYTES
from tests.federation import Federation
from tests.node.api.api_client import Api, add_user, api_address, api_entries, error_of
from tests.node.rpc.peer_wire import federation

CUSTOMS = """ref,iban,phone,label
C1,NL91ABNA0417164300,,customs case C1
C2,,+31612345678,customs case C2
C3,DE89370400440532013000,,customs case C3
"""
POLICE = """ref,iban,phone,label
P1,NL91 ABNA 0417 1643 00,06-12345678,police op TULIP
P9,GB82WEST12345698765432,,police other
"""
ANALYST, ADMIN = "Ana Lyst", "Ad Min"
# What no api.request audit entry may hold: refs, labels, identifiers.
NEVER_IN_ACCESS_LOG = ["C1", "C2", "C9", "customs case", "TULIP", "NL91", "DEU:"]


@dataclass
class World:
    fed: Federation
    analyst: Api
    admin: Api
    tokens: dict[str, str]

    @property
    def customs(self) -> Any:
        return self.fed.node("customs-nl")


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with federation("api") as fed:
        fed.add_node("customs-nl")
        fed.add_node("police-nl")
        fed.add_node("border-guard-be")  # configured, never started: a partner that is down
        screening = ("--release-labels", "--modes", "mutual,count,screen")
        fed.add_peer("customs-nl", "police-nl", *screening)
        fed.add_peer("police-nl", "customs-nl", *screening)
        fed.add_peer("customs-nl", "border-guard-be", *screening)
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        fed.ingest("police-nl", "targets", POLICE)
        tokens = {
            ANALYST: add_user(fed, "customs-nl", ANALYST, "analyst"),
            ADMIN: add_user(fed, "customs-nl", ADMIN, "admin"),
        }
        fed.start("customs-nl")
        fed.start("police-nl")
        base = api_address(fed, "customs-nl")
        assert base.startswith("http://127.0.0.1:")
        # customs-nl asks (its hits: C1 iban, C2 phone); police-nl asks (customs-nl's serve
        # answers: a responder session its metrics count).
        assert fed.match("customs-nl", "police-nl", "seizures", "targets")["match_count"] == 2
        assert fed.match("police-nl", "customs-nl", "targets", "seizures")["match_count"] == 2
        yield World(fed, Api(base, tokens[ANALYST]), Api(base, tokens[ADMIN]), tokens)


def test_hits_are_listed_as_the_cli_lists_them_and_acknowledged(world: World) -> None:
    api = world.analyst
    listed = api.get("/v1/hits", params={"new": "true"})
    assert listed.status_code == 200, listed.text
    assert listed.json() == world.fed.hits("customs-nl", "--new")  # same rows, same shape
    assert {(h["ref"], h["type"]) for h in listed.json()} == {("C1", "iban"), ("C2", "phone")}
    c1 = next(h for h in listed.json() if h["ref"] == "C1")

    acked = api.post(f"/v1/hits/{c1['id']}/ack", json={"note": "passed to liaison officer"})
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == ANALYST
    assert body["note"] == "passed to liaison officer"
    again = api.post(f"/v1/hits/{c1['id']}/ack", json={"by": "J. de Vries", "note": "again"})
    assert again.status_code == 409 and error_of(again)["kind"] == "conflict"
    assert f"hit {c1['id']} was already acknowledged by {ANALYST}" in error_of(again)["message"]
    missing = api.post("/v1/hits/999999/ack", json={"note": "x"})
    assert missing.status_code == 404 and error_of(missing)["kind"] == "not_found"

    new_now = api.get("/v1/hits", params={"new": "true"}).json()
    assert [h["ref"] for h in new_now] == ["C2"]
    filtered = api.get(
        "/v1/hits", params={"peer": "police-nl", "list": "seizures", "since": "2000-01-01"}
    )
    assert {h["ref"] for h in filtered.json()} == {"C1", "C2"}
    assert api.get("/v1/hits", params={"peer": "nobody-else", "since": "2000-01-01"}).json() == []

    acks = api_entries(world.customs, "hit.acknowledged")
    assert [(a["operator"], a["by"], a["hit_id"]) for a in acks] == [(ANALYST, ANALYST, c1["id"])]
    views = [v for v in api_entries(world.customs, "hits.viewed") if v["operator"] == ANALYST]
    assert views[-1] == {
        "operator": ANALYST,
        "new_only": False,
        "since": "2000-01-01T00:00:00+00:00",
        "peer": "nobody-else",
        "list": None,
        "count": 0,
    }


def test_records_are_changed_by_an_admin_only_and_checked_as_ingest_checks(
    world: World,
) -> None:
    admin, analyst = world.admin, world.analyst
    row = {"ref": "C9", "passport": "DEU:C01X00T47", "label": "customs case C9"}

    refused = analyst.post("/v1/lists/seizures/records", json=row)
    assert refused.status_code == 403 and error_of(refused)["kind"] == "forbidden"
    assert "analyst" in error_of(refused)["message"]
    added = admin.post("/v1/lists/seizures/records", json=row)
    assert added.status_code == 201, added.text
    assert added.json() == {"list": "seizures", "ref": "C9", "elements": 2}  # + passport_number
    twice = admin.post("/v1/lists/seizures/records", json=row)
    assert twice.status_code == 409 and error_of(twice)["kind"] == "conflict"
    lists = analyst.get("/v1/lists").json()
    assert lists == json.loads(world.fed.cli("lists", world.customs, "--json").stdout)
    assert next(i for i in lists if i["list"] == "seizures")["records"] == 4

    replaced = admin.put("/v1/lists/seizures/records/C9", json={"iban": "GB82WEST12345698765432"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {"list": "seizures", "ref": "C9", "elements": 1}
    for path, body, status, says in [
        ("/v1/lists/seizures/records/C404", {"iban": "GB82WEST12345698765432"}, 404, "C404"),
        ("/v1/lists/nolist/records/C9", {"iban": "GB82WEST12345698765432"}, 404, "nolist"),
        ("/v1/lists/seizures/records/C9", {"ref": "C8", "iban": "x"}, 422, "ref"),
    ]:
        answer = admin.put(path, json=body)
        assert answer.status_code == status and says in error_of(answer)["message"], answer.text
    for body, says in [
        ({"ref": "C10", "iban": "NL00ABNA0417164300"}, "iban:"),  # check digits
        ({"ref": "C11", "pasport": "DEU:C01X00T47"}, "'pasport'"),  # unknown column, named
        ({"ref": "C12", "iban": "GB82WEST12345698765432", "lat": "52.1"}, "'lat'"),  # watchlist
        ({"iban": "GB82WEST12345698765432"}, "ref"),
        ({"ref": "C13"}, "no identifiers"),
        ({"ref": "C14", "iban": {"nested": 1}}, "iban"),
        ({"ref": "C15", "phone": "+31612345678", "label": "bell\x07"}, "label"),
    ]:
        answer = admin.post("/v1/lists/seizures/records", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert says in error_of(answer)["message"], (body, answer.text)
    assert admin.post("/v1/lists/nolist/records", json=row).status_code == 404

    # Erasure, as `records remove`: the record, its elements and its hit go, audited.
    assert any(h["ref"] == "C2" for h in analyst.get("/v1/hits").json())
    no_reason = admin.delete("/v1/lists/seizures/records/C2")
    assert no_reason.status_code == 422 and "reason" in error_of(no_reason)["message"]
    by_analyst = analyst.delete("/v1/lists/seizures/records/C2", params={"reason": "court order"})
    assert by_analyst.status_code == 403
    erased = admin.delete("/v1/lists/seizures/records/C2", params={"reason": "court order 7"})
    assert erased.status_code == 200, erased.text
    assert erased.json() == {
        "list": "seizures",
        "records": 1,
        "elements": 1,
        "hits": 1,
        "epoch": None,
    }
    assert not any(h["ref"] == "C2" for h in analyst.get("/v1/hits").json())
    assert not any(h["ref"] == "C2" for h in world.fed.hits("customs-nl"))
    gone = admin.delete("/v1/lists/seizures/records/C2", params={"reason": "court order 7"})
    assert gone.status_code == 404

    removed = api_entries(world.customs, "record.removed")
    assert removed[-1] == {
        "operator": ADMIN,
        "list": "seizures",
        "reason": "court order 7",
        "records": 1,
        "elements": 1,
        "hits": 1,
    }
    changes = api_entries(world.customs, "record.added") + api_entries(
        world.customs, "record.replaced"
    )
    assert {(c["operator"], c["list"], c["elements"]) for c in changes} == {
        (ADMIN, "seizures", 2),
        (ADMIN, "seizures", 1),
    }


def test_requests_without_a_valid_token_are_refused_401(world: World) -> None:
    anonymous = world.analyst.as_user(None)
    for api, says in [
        (anonymous, "no bearer token"),
        (world.analyst.as_user("bm_not-a-token"), "not valid"),
        (world.analyst.as_user("x" * 5000), "not valid"),
    ]:
        answer = api.get("/v1/hits")
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert error_of(answer)["kind"] == "unauthenticated" and says in error_of(answer)["message"]
    basic = anonymous.get("/v1/hits", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert basic.status_code == 401
    assert anonymous.post("/v1/screen", content=b"{not json").status_code == 401  # token first

    # Users are managed at the node only: no endpoint adds one, whoever asks.
    for api in (world.analyst, world.admin):
        made = api.post("/v1/users", json={"name": "eve", "role": "admin"})
        assert made.status_code in (404, 405) and error_of(made)["kind"] in (
            "not_found",
            "method_not_allowed",
        )
    token = add_user(world.fed, "customs-nl", "Temp Orary", "analyst")
    temporary = world.analyst.as_user(token)
    assert temporary.get("/v1/lists").status_code == 200
    world.fed.cli("user", "remove", world.customs, "--name", "Temp Orary")
    after = temporary.get("/v1/lists")
    assert after.status_code == 401 and error_of(after)["kind"] == "unauthenticated"
    refusals = [e for e in api_entries(world.customs) if e["status"] == 401]
    assert refusals[-1]["operator"] is None and refusals[-1]["route"] == "/v1/lists"


def test_every_request_is_audited_with_its_user_before_it_is_answered(world: World) -> None:
    calls = [
        (world.analyst, "GET", "/v1/lists", {}, 200),
        (world.analyst, "GET", "/v1/hits", {"params": {"list": "seizures"}}, 200),
        (world.admin, "GET", "/v1/sessions", {}, 200),
        (
            world.analyst,
            "DELETE",
            "/v1/lists/seizures/records/C1",
            {"params": {"reason": "x"}},
            403,
        ),
        (world.analyst, "GET", "/v1/nowhere/C1", {}, 404),
        (world.analyst.as_user(None), "GET", "/v1/hits", {}, 401),
        (world.analyst, "GET", "/metrics", {}, 200),
    ]
    for api, method, path, kwargs, status in calls:
        before = len(api_entries(world.customs))
        answer = api.request(method, path, **kwargs)
        assert answer.status_code == status, (path, answer.text)
        entries = api_entries(world.customs)  # committed before the answer went out
        assert len(entries) == before + 1, path
        entry = entries[-1]
        assert entry["method"] == method and entry["status"] == status
        assert entry["operator"] == {world.analyst.token: ANALYST, world.admin.token: ADMIN}.get(
            api.token
        )
        assert entry["route"] == {
            "/v1/lists/seizures/records/C1": "/v1/lists/{name}/records/{ref:path}",
            "/v1/nowhere/C1": "unmatched",
        }.get(path, path)
    text = json.dumps(api_entries(world.customs))
    for secret in [*NEVER_IN_ACCESS_LOG, *world.tokens.values()]:
        assert secret not in text, secret


MALFORMED: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "POST",
        "/v1/hits/1/ack",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        400,
        "JSON",
    ),
    (
        "POST",
        "/v1/hits/1/ack",
        {"json": {"note": "x", "colour": "red"}},
        422,
        "colour: unknown field",
    ),
    ("POST", "/v1/hits/1/ack", {"json": {"note": 5}}, 422, "note:"),
    ("POST", "/v1/hits/1/ack", {"json": {}}, 422, "note: required"),
    ("POST", "/v1/hits/1/ack", {"json": {"note": "bell\x07"}}, 422, "note:"),
    ("POST", "/v1/hits/1/ack", {"json": {"note": "x", "by": ""}}, 422, "by:"),
    ("POST", "/v1/hits/1/ack", {"json": {"note": "n" * 1001}}, 422, "note:"),
    ("POST", "/v1/hits/1/ack", {"json": ["note"]}, 422, "body"),
    ("POST", "/v1/hits/abc/ack", {"json": {"note": "x"}}, 422, "path.hit_id"),
    ("POST", "/v1/hits/99999999999999999999999/ack", {"json": {"note": "x"}}, 422, "path.hit_id"),
    ("POST", "/v1/hits/-1/ack", {"json": {"note": "x"}}, 422, "path.hit_id"),
    ("GET", "/v1/hits", {"params": {"since": "yesterday"}}, 422, "query.since"),
    ("GET", "/v1/hits", {"params": {"peer": "NOT AN AGENCY"}}, 422, "query.peer"),
    ("GET", "/v1/hits", {"params": {"list": "../etc"}}, 422, "query.list"),
    ("GET", "/v1/hits", {"params": {"new": "perhaps"}}, 422, "query.new"),
    ("GET", "/v1/hits", {"params": {"colour": "red"}}, 422, "query.colour"),
    ("GET", "/v1/sessions", {"params": {"limit": "0"}}, 422, "query.limit"),
    ("GET", "/v1/sessions", {"params": {"status": "odd"}}, 422, "query.status"),
    ("GET", "/v1/audit/verify", {"params": {"head": "xyz"}}, 422, "query.head"),
    (
        "POST",
        "/v1/screen",
        {"json": {"identifiers": [{"type": "passport", "value": "X1234"}]}},
        422,
        "purpose: required",
    ),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p", "identifiers": [{"type": "shoe_size", "value": "42"}]}},
        422,
        "identifiers[0].type: unknown identifier type",
    ),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p", "identifiers": [{"value": "x"}]}},
        422,
        "identifiers[0].type: required",
    ),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p", "identifiers": [{"type": "phone", "value": "1"}] * 1001}},
        422,
        "identifiers:",
    ),
    ("POST", "/v1/screen", {"json": {"purpose": "p", "identifiers": []}}, 422, "identifiers:"),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p", "identifiers": "passport"}},
        422,
        "identifiers:",
    ),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p", "identifiers": [{"type": "phone", "value": ["1"]}]}},
        422,
        "identifiers[0].value must be text",
    ),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p\nq", "identifiers": [{"type": "phone", "value": "1"}]}},
        422,
        "purpose:",
    ),
    (
        "POST",
        "/v1/screen",
        {
            "json": {
                "purpose": "p",
                "identifiers": [{"type": "phone", "value": "1"}],
                "targets": [{"peer": "Bad Peer", "list": "x"}],
            }
        },
        422,
        "targets[0].peer",
    ),
    (
        "POST",
        "/v1/screen",
        {
            "json": {
                "purpose": "p",
                "identifiers": [{"type": "phone", "value": "1"}],
                "targets": [{"peer": "police-nl"}],
            }
        },
        422,
        "targets[0].list: required",
    ),
    (
        "POST",
        "/v1/screen",
        {"json": {"purpose": "p", "identifiers": [{"type": "phone", "value": "1"}], "extra": 1}},
        422,
        "extra: unknown field",
    ),
    ("POST", "/v1/screen", {"json": [1, 2, 3]}, 422, "body"),
    (
        "POST",
        "/v1/screen",
        {"content": b"\xff\xfe garbage", "headers": {"content-type": "application/json"}},
        400,
        "JSON",
    ),
    ("POST", "/v1/screen", {"content": b"x" * (MAX_BODY_BYTES + 1)}, 413, "limit"),
    ("POST", "/v1/screen", {"content": iter([b"x" * 65536] * 17)}, 413, "limit"),  # chunked
    ("POST", "/v1/lists/bad name!/records", {"json": {"ref": "Z1", "iban": "x"}}, 422, "path.name"),
    (
        "POST",
        "/v1/lists/seizures/records",
        {"json": {f"c{i}": "x" for i in range(100)}},
        422,
        "body",
    ),
    ("DELETE", "/v1/lists/seizures/records/C1", {"params": {"reason": ""}}, 422, "query.reason"),
    ("DELETE", "/v1/lists/seizures/records/C1", {"params": {"reason": "a\x00b"}}, 422, "reason"),
    ("GET", "/v1/nowhere", {}, 404, "/docs"),
    ("PATCH", "/v1/hits", {}, 405, "PATCH"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "says"), MALFORMED)
def test_malformed_requests_get_a_4xx_json_error_naming_the_field(
    world: World, method: str, path: str, kwargs: dict[str, Any], status: int, says: str
) -> None:
    answer = world.admin.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert says in error_of(answer)["message"], answer.text


def test_screening_answers_hits_with_labels_and_a_down_partner_as_its_error(
    world: World,
) -> None:
    request = {
        "purpose": "manifest screening, flight KL1234",
        "identifiers": [
            {"type": "iban", "value": "NL91 ABNA 0417 1643 00"},  # police-nl holds it (P1)
            {"type": "phone", "value": "+44 20 7946 0958"},  # nobody does
            {"type": "phone", "value": "06-12345678", "ref": "booking 7"},  # P1 again
        ],
        "targets": [
            {"peer": "police-nl", "list": "targets"},
            {"peer": "border-guard-be", "list": "watchlist"},
        ],
    }
    answer = world.analyst.post("/v1/screen", json=request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["hits"] == [
        {"index": 0, "type": "iban", "peer": "police-nl", "list": "targets",
         "peer_label": "police op TULIP"},
        {"index": 2, "type": "phone", "peer": "police-nl", "list": "targets",
         "peer_label": "police op TULIP"},
    ]  # fmt: skip
    [down] = body["errors"]
    assert (down["peer"], down["list"]) == ("border-guard-be", "watchlist")
    assert down["error"]["kind"] == "peer_error" and down["error"]["message"]
    entry = api_entries(world.customs)[-1]
    assert entry["route"] == "/v1/screen" and entry["operator"] == ANALYST
    assert entry["purpose"] == request["purpose"] and entry["status"] == 200
    queries = api_entries(world.customs, "screen.query")
    assert queries[-1]["operator"] == ANALYST and queries[-1]["purpose"] == request["purpose"]

    bad_value = dict(request, identifiers=[{"type": "iban", "value": "NL00 0000"}])
    refused = world.analyst.post("/v1/screen", json=bad_value)
    assert refused.status_code == 422 and "identifiers[0].value" in error_of(refused)["message"]
    no_such_peer = dict(request, targets=[{"peer": "nobody-here", "list": "x"}])
    answered = world.analyst.post("/v1/screen", json=no_such_peer)
    assert answered.status_code == 200, answered.text
    assert [e["peer"] for e in answered.json()["errors"]] == ["nobody-here"]
    audited = json.dumps(api_entries(world.customs) + api_entries(world.customs, "screen.query"))
    assert "NL91" not in audited and "booking 7" not in audited and "TULIP" not in audited

    # The hits of real-time screening are listed under the list name "(live)", both ways.
    live = world.analyst.get("/v1/hits", params={"list": "(live)"})
    assert live.status_code == 200, live.text
    assert {(h["type"], h["peer_label"]) for h in live.json()} == {
        ("iban", "police op TULIP"),
        ("phone", "police op TULIP"),
    }
    assert world.fed.hits("customs-nl", "--list", "(live)") == live.json()


def test_sessions_status_and_audit_verification(world: World) -> None:
    api = world.analyst
    recent = api.get("/v1/sessions", params={"peer": "police-nl", "status": "completed"})
    assert recent.status_code == 200, recent.text
    mutual = [s for s in recent.json() if s["mode"] == "mutual"]
    assert [s["role"] for s in mutual] == ["responder", "initiator"]  # newest first
    assert all(s["match_count"] == 2 for s in mutual)
    assert len(api.get("/v1/sessions", params={"limit": 1}).json()) == 1
    failed = api.get("/v1/sessions", params={"status": "failed"}).json()
    assert {s["peer"] for s in failed} <= {"border-guard-be", "nobody-here"}

    status = api.get("/v1/status").json()
    assert status["agency"] == "customs-nl" and status["serving"]["answering"] is True
    assert [p["agency"] for p in status["peers"]] == ["border-guard-be", "police-nl"]

    verified = api.get("/v1/audit/verify").json()
    assert verified["ok"] is True and verified["failed_seq"] is None
    cli = world.fed.cli("audit", "verify", world.customs).stdout
    seq = int(verified["head"].split(":")[0])
    assert "intact" in cli and seq <= int(cli.split("head ")[1].split(":")[0])
    reached = api.get("/v1/audit/verify", params={"head": verified["head"]}).json()
    assert reached["ok"] is True


def test_metrics_parse_and_count_requests_sessions_and_hits(world: World) -> None:
    answer = world.analyst.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    for expected in [
        "blindmatch_api_requests_total",
        "blindmatch_api_request_duration_seconds_bucket",
        "blindmatch_sessions_total",
        "blindmatch_session_duration_seconds_count",
        "blindmatch_hits_new",
        "blindmatch_screen_budget_items",
        "blindmatch_screen_budget_used_items",
    ]:
        assert expected in names, expected
    responder = (
        ("mode", "mutual"),
        ("outcome", "completed"),
        ("peer", "police-nl"),
        ("role", "responder"),
    )
    assert samples[("blindmatch_sessions_total", responder)] >= 1
    lists = (("method", "GET"), ("route", "/v1/lists"), ("status", "200"))
    assert samples[("blindmatch_api_requests_total", lists)] >= 1
    assert samples[("blindmatch_hits_new", ())] == len(
        world.analyst.get("/v1/hits?new=true").json()
    )
    assert world.analyst.as_user(None).get("/metrics").status_code == 401


def test_openapi_and_docs_are_served_without_a_token(world: World) -> None:
    spec = httpx.get(world.analyst.base + "/openapi.json", timeout=30)
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in [
        "/v1/screen",
        "/v1/hits",
        "/v1/hits/{hit_id}/ack",
        "/v1/lists",
        "/v1/lists/{name}/records",
        "/v1/lists/{name}/records/{ref}",
        "/v1/peers",
        "/v1/sessions",
        "/v1/audit/verify",
        "/v1/status",
        "/metrics",
    ]:
        assert path in paths, path
    assert "HTTPBearer" in spec.json()["components"]["securitySchemes"]
    docs = httpx.get(world.analyst.base + "/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_peers_show_policy_and_live_health_a_stopped_peer_unreachable(world: World) -> None:
    policy = json.loads(world.fed.cli("peer", "list", world.customs, "--json").stdout)
    up = world.analyst.get("/v1/peers")
    assert up.status_code == 200, up.text
    border, police = up.json()
    assert [{k: v for k, v in p.items() if k in policy[0]} for p in (border, police)] == policy
    assert police["reachable"] is True and police["error"] is None and police["certificate"]
    assert border["reachable"] is False and border["error"] and border["certificate"] is None

    world.fed.stop("police-nl")
    started = time.monotonic()
    _, down = world.analyst.get("/v1/peers").json()
    assert time.monotonic() - started < 10
    assert down["agency"] == "police-nl" and down["reachable"] is False and down["error"]
