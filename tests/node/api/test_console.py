"""The operator console through real HTTP (httpx) against a real `blindmatch serve`, with a real
partner and a real session: signing in and out, the cookie's attributes, the cookie and the
bearer token each good for its own side only, CSRF and cross-site refusals, acknowledging a
hit in the signed-in user's name, every page rendered (partner labels escaped), every request
audited, and the API's documentation served from the node itself.
(`test_console_browser.py` drives the same pages in a real Chromium.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.node.api.api_client import ConsoleWorld, add_user, api_address, api_entries
from tests.node.rpc.peer_wire import federation

CUSTOMS = """ref,iban,phone,label
C1,NL91ABNA0417164300,,customs case C1
C2,,+31612345678,customs case C2
"""
POLICE = """ref,iban,phone,label
P1,NL91 ABNA 0417 1643 00,,<script>alert('police')</script> op TULIP
P2,,06-12345678,police op ROSE
"""
ANALYST = "Ana Lyst"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture(scope="module")
def world() -> Iterator[ConsoleWorld]:
    with federation("console") as fed:
        fed.add_node("customs-nl")
        fed.add_node("police-nl")
        fed.add_peer("customs-nl", "police-nl", "--release-labels")
        fed.add_peer("police-nl", "customs-nl", "--release-labels")
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        fed.ingest("police-nl", "targets", POLICE)
        token = add_user(fed, "customs-nl", ANALYST, "analyst")
        fed.start("customs-nl")
        fed.start("police-nl")
        assert fed.match("customs-nl", "police-nl", "seizures", "targets")["match_count"] == 2
        yield ConsoleWorld(fed, api_address(fed, "customs-nl"), token)


def browser(world: ConsoleWorld) -> httpx.Client:
    """A client that keeps cookies, as a browser does, and does not follow redirects."""
    return httpx.Client(base_url=world.base, timeout=30.0, follow_redirects=False)


@contextmanager
def signed_in(world: ConsoleWorld, token: str | None = None) -> Iterator[httpx.Client]:
    """A browser signed in as the analyst (or the user of `token`)."""
    with browser(world) as client:
        answer = client.post("/console/login", data={"token": token or world.token})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/"
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text[:2000]
    return found.group(1)


def test_signing_in_sets_a_strict_http_only_cookie_and_only_the_cookie_opens_the_console(
    world: ConsoleWorld,
) -> None:
    with browser(world) as client:
        assert client.get("/").headers["location"] == "/console/"
        away = client.get("/console/")
        assert away.status_code == 303 and away.headers["location"] == "/console/login"
        form = client.get("/console/login")
        assert form.status_code == 200 and 'name="token"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]

        wrong = client.post("/console/login", data={"token": "bm_not-a-token"})
        assert wrong.status_code == 401 and "that token is not valid" in wrong.text
        assert "set-cookie" not in wrong.headers

        # A bearer token is for the API: it does not open the console.
        bearer = client.get("/console/", headers={"Authorization": f"Bearer {world.token}"})
        assert bearer.status_code == 303

    with signed_in(world) as client:
        [cookie] = [c for c in client.cookies.jar]
        assert cookie.name == "blindmatch_console" and cookie.path == "/console"
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
        assert not cookie.value.startswith(world.token[:10])  # a session of its own
        inbox = client.get("/console/")
        assert inbox.status_code == 200 and "Hits inbox" in inbox.text
        # ... and the cookie is for the console: the API still wants the bearer token.
        api = httpx.get(f"{world.base}/v1/hits", cookies={"blindmatch_console": cookie.value})
        assert api.status_code == 401

    entries = api_entries(world.fed.node("customs-nl"))
    logins = [(e["method"], e["status"], e["operator"]) for e in entries if "login" in e["route"]]
    assert logins[-3:] == [("GET", 200, None), ("POST", 401, None), ("POST", 303, ANALYST)]


def test_the_inbox_shows_new_hits_escaped_and_acknowledging_needs_the_form_token(
    world: ConsoleWorld,
) -> None:
    with signed_in(world) as client:
        inbox = client.get("/console/", params={"show": "new"})
        assert inbox.status_code == 200
        text = inbox.text
        assert "<script>alert" not in text and "&lt;script&gt;alert(" in text  # partner's label
        rows = re.findall(r'id="hit-(\d+)"', text)
        assert len(rows) == 2 and "2 new" in text
        hit_id = rows[0]
        token = csrf_of(inbox)

        no_token = client.post(f"/console/hits/{hit_id}/ack", data={"note": "x"})
        assert no_token.status_code == 403 and "reload the page" in no_token.text
        foreign = client.post(
            f"/console/hits/{hit_id}/ack",
            data={"note": "x", "csrf": token},
            headers={"Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert foreign.status_code == 403 and "another site" in foreign.text
        assert len(world.fed.hits("customs-nl", "--new")) == 2  # nothing acknowledged

        done = client.post(
            f"/console/hits/{hit_id}/ack", data={"note": "called the duty officer", "csrf": token}
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/?acknowledged={hit_id}"
        after = client.get(done.headers["location"])
        assert f"Hit {hit_id} acknowledged." in after.text and "1 new" in after.text
        assert "called the duty officer" in after.text and f"by {ANALYST}" in after.text

        again = client.post(f"/console/hits/{hit_id}/ack", data={"note": "y", "csrf": token})
        assert again.status_code == 409 and "already acknowledged" in again.text
        assert 'href="/console/"' in again.text  # the way back

    [acked] = [h for h in world.fed.hits("customs-nl") if str(h["id"]) == hit_id]
    assert acked["status"] == "acknowledged"
    acks = api_entries(world.fed.node("customs-nl"), "hit.acknowledged")
    assert [(a["operator"], a["by"], a["hit_id"]) for a in acks] == [
        (ANALYST, ANALYST, int(hit_id))
    ]
    views = api_entries(world.fed.node("customs-nl"), "hits.viewed")
    assert {"operator": ANALYST, "new_only": True} in [
        {"operator": v["operator"], "new_only": v["new_only"]} for v in views
    ]


def test_every_page_renders_and_is_audited_with_the_users_name(world: ConsoleWorld) -> None:
    with signed_in(world) as client:
        peers = client.get("/console/peers")
        assert peers.status_code == 200
        assert 'id="peer-police-nl"' in peers.text and "reachable" in peers.text
        lists = client.get("/console/lists")
        assert lists.status_code == 200 and "seizures" in lists.text
        sessions = client.get("/console/sessions", params={"status": "completed"})
        assert sessions.status_code == 200 and "police-nl" in sessions.text
        audit = client.get("/console/audit")
        assert audit.status_code == 200 and "Intact:" in audit.text
        chart = client.get("/console/")
        assert chart.text.count('<rect class="bar') == 14 * 3
        assert "sessions completed" in chart.text
        bad = client.get("/console/sessions", params={"status": "<b>"})
        assert bad.status_code == 422 and "query.status" in bad.text and "<b>" not in bad.text
        assert client.get("/console/static/console.css").status_code == 200

    routes = {(e["route"], e["operator"]) for e in api_entries(world.fed.node("customs-nl"))}
    for page in ("/console/peers", "/console/lists", "/console/sessions", "/console/audit"):
        assert (page, ANALYST) in routes


def test_signing_out_or_removing_the_user_ends_the_session(world: ConsoleWorld) -> None:
    with signed_in(world) as client:
        token = csrf_of(client.get("/console/"))
        stale_cookie = client.cookies["blindmatch_console"]
        out = client.post("/console/logout", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
    with browser(world) as replay:
        replay.cookies.set("blindmatch_console", stale_cookie, path="/console")
        assert replay.get("/console/").status_code == 303  # the copy stopped working too

    other = add_user(world.fed, "customs-nl", "Tem Porary", "analyst")
    with signed_in(world, other) as client:
        assert client.get("/console/lists").status_code == 200
        world.fed.cli("user", "remove", world.fed.node("customs-nl"), "--name", "Tem Porary")
        assert client.get("/console/lists").status_code == 303


def test_the_api_documentation_is_served_by_the_node_itself(world: ConsoleWorld) -> None:
    with browser(world) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()
        script = client.get("/docs/static/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        paths = client.get("/openapi.json").json()["paths"]
        assert "/v1/screen" in paths and not any(p.startswith("/console") for p in paths)
