"""The operator console in a real headless Chromium (Debian's `chromium`, driven by Playwright),
against a real `blindmatch serve` with real partners: sign in, see a new hit from a real
session, acknowledge it and see it move below the new ones — without JavaScript, as the
essentials must work — and, with JavaScript, the peers page showing a stopped partner as
unreachable, no script or policy error on any page, and a screenshot of the inbox saved under
`test-output/`. `make test` installs Chromium when it is missing; under CI=true a missing
browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.api.api_client import ConsoleWorld, add_user, api_address
from tests.node.rpc.peer_wire import federation

OUTPUT = Path(__file__).resolve().parents[3] / "test-output"
CUSTOMS = """ref,iban,phone,passport,passport_country,label
C1,NL91ABNA0417164300,,,,customs case C1
C2,,+31612345678,,,customs case C2
C3,,,X1234567,NLD,customs case C3
"""
POLICE = """ref,iban,phone,label
P1,NL91 ABNA 0417 1643 00,,police op TULIP
P2,,06-12345678,police op ROSE
"""
OFFICER = "J. de Vries"
TIMEOUT_MS = 30_000


def chromium() -> str:
    """Chromium's executable: Debian's package, installed by `make test` when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium on PATH: install it with 'apt-get install -y chromium'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def world() -> Iterator[ConsoleWorld]:
    with federation("browser") as fed:
        for agency in ("customs-nl", "police-nl", "border-guard-be"):
            fed.add_node(agency)
        fed.add_peer("customs-nl", "police-nl", "--release-labels")
        fed.add_peer("police-nl", "customs-nl", "--release-labels")
        fed.add_peer("customs-nl", "border-guard-be")
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        fed.ingest("police-nl", "targets", POLICE)
        token = add_user(fed, "customs-nl", OFFICER, "analyst")
        for agency in ("customs-nl", "police-nl", "border-guard-be"):
            fed.start(agency)
        fed.stop("border-guard-be")  # a partner that was up and went away
        yield ConsoleWorld(fed, api_address(fed, "customs-nl"), token)


@pytest.fixture(scope="module")
def browser(world: ConsoleWorld) -> Iterator[Any]:
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        pytest.fail("playwright is not installed: run 'make install'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Any, world: ConsoleWorld) -> None:
    page.goto(f"{world.base}/console/")
    assert page.url.endswith("/console/login")  # sent to sign in first
    page.fill("#token", world.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{world.base}/console/")


def hit_rows(page: Any) -> list[tuple[str, str]]:
    """The inbox's rows, top to bottom: (ref, status)."""
    rows = page.locator("tr.hit")
    return [
        (rows.nth(n).locator("strong").inner_text(), rows.nth(n).locator(".status").inner_text())
        for n in range(rows.count())
    ]


def test_an_officer_acknowledges_a_new_hit_without_javascript(
    world: ConsoleWorld, browser: Any
) -> None:
    viewport = {"width": 1366, "height": 768}
    context = browser.new_context(java_script_enabled=False, viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, world)
        assert page.locator("#new-count").inner_text() == "0 new"

        # A real session finds C1 (iban) and C2 (phone); the inbox shows them as new.
        assert world.fed.match("customs-nl", "police-nl", "seizures", "targets")["match_count"] == 2
        page.reload()
        assert page.locator("#new-count").inner_text() == "2 new"
        assert sorted(hit_rows(page)) == [("C1", "new"), ("C2", "new")]
        assert (
            "police op TULIP"
            in page.locator("tr.hit").all_inner_texts()[
                [ref for ref, _ in hit_rows(page)].index("C1")
            ]
        )

        first = hit_rows(page)[0][0]
        row = page.locator("tr.hit", has=page.locator("strong", has_text=first))
        row.locator("input[name=note]").fill("passed to the liaison officer")
        row.locator("button", has_text="Acknowledge").click()
        page.wait_for_url("**/console/?acknowledged=*")

        assert "acknowledged." in page.locator(".flash.ok").inner_text()
        assert page.locator("#new-count").inner_text() == "1 new"
        second = "C2" if first == "C1" else "C1"
        assert hit_rows(page) == [(second, "new"), (first, "acknowledged")]  # moved down
        moved = page.locator("tr.hit.acknowledged").inner_text()
        assert f"by {OFFICER}" in moved and "passed to the liaison officer" in moved
    finally:
        context.close()
    [acked] = [h for h in world.fed.hits("customs-nl") if h["ref"] == first]
    assert acked["status"] == "acknowledged"


def test_the_console_shows_peers_health_and_the_inbox_with_javascript(
    world: ConsoleWorld, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        sign_in(page, world)

        page.click("nav >> text=Peers")
        page.wait_for_url("**/console/peers")
        police = page.locator("#peer-police-nl .health").inner_text()
        border = page.locator("#peer-border-guard-be")
        assert police == "reachable" and border.locator(".health").inner_text() == "unreachable"

        for name in ("Lists", "Sessions", "Audit"):
            page.click(f"nav >> text={name}")
            page.wait_for_load_state()
            assert page.locator("h1").count() == 1
        assert "Intact:" in page.locator("#audit-state").inner_text()

        page.click("nav >> text=Hits inbox")
        page.wait_for_url(f"{world.base}/console/")
        assert page.locator("svg rect.bar").count() == 14 * 3
        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "console-inbox.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        page.click("text=Sign out")
        page.wait_for_url("**/console/login")
        page.goto(f"{world.base}/console/")
        assert page.url.endswith("/console/login")
    finally:
        context.close()
    assert problems == []
