"""The web console in headless Chromium against the real server, with SIPp phones.

An agent signs in through the sign-in page, goes not ready, and a supervisor's
wallboard (in another browser context, in Chinese first) shows it. A carrier
call from the demo VIP's number waits in the general queue and the wallboard
counts it. The agent goes available with the keyboard shortcut; the platform
rings the agent's SIPp phone, and the screen pop naming the customer must be
on the page within one second of the phone receiving the INVITE. The agent
hangs up from the page, picks a disposition and writes a note in the wrap-up
form; the contact in SQLite carries both. Screenshots of both pages with live
data go to ``artifacts/console/`` (``$CCSERVER_TEST_ARTIFACTS``).

The security rules are checked over plain HTTP against the same kind of
server: roles on every request, CSRF on state-changing ones, sockets without
credentials closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from acd.erlang import agents_required, offered_load
from tests.integration.peers import wait_for
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.sipp import SippMessage, SippProcess
from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; no browser is downloaded
TRUNK_IP = "127.0.0.2"
VIP_NUMBER = "0600000009"  # Eleanor Whitfield, VIP, in config/customers.csv
ARTIFACTS = Path(
    os.environ.get("CCSERVER_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")
)
VIEWPORT = {"width": 1366, "height": 768}
POP_DEADLINE = 1.0  # seconds from the phone's INVITE to the pop on the page


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def shot_path(name: str) -> Path:
    folder = ARTIFACTS / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


async def sign_in(page: Page, base: str, user: str, password: str, page_path: str) -> None:
    await page.goto(f"{base}{page_path}")
    await expect(page).to_have_url(f"{base}/console/login?next={page_path}")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await expect(page).to_have_url(f"{base}{page_path}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "online")


def invite_received(agent: SippProcess) -> SippMessage | None:
    for message in agent.messages():
        if not message.sent and message.first_line.startswith("INVITE "):
            return message
    return None


def answer_sent(agent: SippProcess) -> SippMessage | None:
    for message in agent.messages():
        if message.sent and message.status == 200 and message.method == "INVITE":
            return message
    return None


# A line whose short flow only notes what the caller wants (as an IVR that
# recognised it would) and queues the call: the pop carries the intent.
INTENT_FLOW = """
[flow]
start = "lost"
attach = ["intent"]

[nodes.lost]
kind = "set"
values = { intent = "card-lost" }
next = "agent"

[nodes.agent]
kind = "queue"
queue = "general"
"""


def add_intent_line(cfg: Path) -> None:
    (cfg / "flows" / "lostcard.toml").write_text(INTENT_FLOW)
    with (cfg / "dids.toml").open("a") as dids:
        dids.write('\n[dids."5002"]\nflow = "lostcard"\n')


async def test_agent_console_pop_wrapup_and_wallboard(
    start_server: Callable[..., Awaitable[ServerProcess]], peers: Peers, browser: Browser
) -> None:
    server = await start_server(add_intent_line)
    base = f"http://127.0.0.1:{server.http_port}"
    target = f"127.0.0.1:{server.sip_port}"
    phone = await peers.agent(
        target, extension="1001", password="agent1001pw", ring_ms=2000, wait_ms=40000
    )
    await server.wait_log(r"extension 1001 registered")

    agent_ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    sup_ctx = await browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    agent_page = await agent_ctx.new_page()
    board = await sup_ctx.new_page()
    problems: list[str] = []
    for page in (agent_page, board):
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
        )

    # The agent signs in; the registered phone has logged the agent in already.
    await sign_in(agent_page, base, "agent1001", "console1001", "/console/agent")
    await expect(agent_page.locator("#whoami")).to_contain_text("Alice · 1001")
    await expect(agent_page.locator("#state")).to_have_attribute("data-state", "available")
    await agent_page.select_option("#reason", "break")
    await agent_page.click("#btn-notready")
    await expect(agent_page.locator("#state")).to_have_attribute("data-state", "not-ready")
    await expect(agent_page.locator("#state-reason")).to_have_text("Break")

    # The supervisor's wallboard follows the browser's language, and switches.
    await sign_in(board, base, "supervisor", "console-supervisor", "/console/wallboard")
    await expect(board.locator("header strong")).to_have_text("监控大屏")
    row = board.locator('#agents tr[data-agent="1001"]')
    await expect(row).to_have_attribute("data-state", "not-ready")
    await board.select_option("#lang", "en")
    await expect(board.locator("header strong")).to_have_text("Wallboard")

    # A VIP calls while the only logged-in agent is on a break: the call waits.
    caller = await peers.caller(
        target,
        service="5002",
        digits="0",
        greet_ms=500,
        wait_bye=True,
        caller_id=VIP_NUMBER,
        local_ip=TRUNK_IP,
        timeout=40,
    )
    waiting = board.locator('[data-queue="general"] [data-figure="waiting"] .value')
    await expect(waiting).to_have_text("1", timeout=10_000)
    await board.screenshot(path=shot_path("wallboard.png"))

    # Alt+R: available. The ACD rings the phone and the pop must follow at once.
    await agent_page.keyboard.press("Alt+r")
    pop_name = agent_page.locator("#pop-name")
    await expect(pop_name).to_have_text("Eleanor Whitfield", timeout=10_000)
    seen_at = time.time()
    shown_at = int(await agent_page.locator("#pop").get_attribute("data-shown-at") or 0) / 1000
    invite = await wait_for(lambda: invite_received(phone), 5, "the phone's INVITE")
    assert invite.at is not None
    await agent_page.screenshot(path=shot_path("agent-console.png"))
    answered = answer_sent(phone)
    # Shown while the phone rings: before the phone answered (ring_ms = 2 s).
    assert answered is None or (answered.at is not None and answered.at > shown_at), (
        answered,
        shown_at,
    )
    latency = shown_at - invite.at
    print(
        f"\npop on the page {latency * 1000:+.0f} ms after the phone got the INVITE "
        f"(seen by the test {(seen_at - invite.at) * 1000:+.0f} ms)"
    )
    assert seen_at - invite.at < POP_DEADLINE, (seen_at, invite.at)
    await expect(agent_page.locator("#pop-tier")).to_have_text("VIP")
    await expect(agent_page.locator("#pop-phones")).to_contain_text("+33600000009 (mobile)")
    await expect(agent_page.locator("#pop-complaints")).to_contain_text("International wire")
    await expect(agent_page.locator("#pop-ivr")).to_contain_text("queued")
    await expect(agent_page.locator("#call-status")).to_have_attribute("data-phase", "ringing")
    # The knowledge base suggests the article for what the IVR recognised.
    suggested = agent_page.locator('#kb-suggested li[data-article="card-lost"]')
    await expect(suggested).to_contain_text("Lost or stolen card")
    await expect(agent_page.locator("#kb-suggested li")).to_have_count(1)

    # The phone answers: connected on both pages.
    await expect(agent_page.locator("#call-status")).to_have_attribute(
        "data-phase", "connected", timeout=10_000
    )
    await expect(row).to_have_attribute("data-state", "on-call")
    await expect(waiting).to_have_text("0")

    # A consult transfer to a colleague's phone, then cancelled: the caller is back.
    colleague = await peers.agent(
        target, extension="1002", password="agent1002pw", ring_ms=300, wait_ms=30000
    )
    await expect(agent_page.locator("#side-controls")).to_be_visible()
    await agent_page.fill("#side-target", "1002")
    await agent_page.click("#btn-consult")
    consult_bar = agent_page.locator("#consult-bar")
    await expect(consult_bar).to_have_attribute("data-connected", "true", timeout=10_000)
    await expect(agent_page.locator("#consult-status")).to_have_text("Talking to 1002")
    await expect(agent_page.locator("#call-status")).to_have_attribute("data-phase", "held")
    await agent_page.click("#btn-consult-cancel")
    await expect(consult_bar).to_be_hidden()
    await expect(agent_page.locator("#call-status")).to_have_attribute("data-phase", "connected")
    await colleague.wait(timeout=15)  # the colleague's phone was hung up

    # A conference with the colleague's phone, then the third party dropped.
    colleague = await peers.agent(
        target, extension="1002", password="agent1002pw", ring_ms=300, wait_ms=30000
    )
    await agent_page.fill("#side-target", "1002")
    await agent_page.click("#btn-conference")
    conference_bar = agent_page.locator("#conference-bar")
    await expect(conference_bar).to_have_attribute("data-connected", "true", timeout=10_000)
    await expect(agent_page.locator("#conference-status")).to_have_text("Conference with 1002")
    await agent_page.click("#btn-conference-drop")
    await expect(conference_bar).to_be_hidden()
    await expect(agent_page.locator("#side-controls")).to_be_visible()
    await colleague.wait(timeout=15)

    # The supervisor listens in from the wallboard with the phone of extension 1900,
    # switches to whisper, and stops; the extension is remembered by the browser.
    sup_phone = await peers.agent(
        target, extension="1900", password="super1900pw", ring_ms=300, wait_ms=30000
    )
    await board.fill("#mon-ext", "1900")
    await board.press("#mon-ext", "Tab")
    await row.locator('button[data-monitor="listen"]').click()
    await expect(row).to_have_attribute("data-monitor-connected", "true", timeout=10_000)
    await expect(row).to_have_attribute("data-monitor", "listen")
    await board.screenshot(path=shot_path("wallboard-listen.png"))
    await row.locator('button[data-monitor="whisper"]').click()
    await expect(row).to_have_attribute("data-monitor", "whisper")
    await row.locator('button[data-monitor="stop"]').click()
    await expect(row).to_have_attribute("data-monitor", "")
    await sup_phone.wait(timeout=15)  # its call ended with the BYE
    assert await board.evaluate("localStorage.getItem('ccserver.monitorExt')") == "1900"

    # Hold from the button, resume from the keyboard.
    await agent_page.click("#btn-hold")
    await expect(agent_page.locator("#call-status")).to_have_attribute("data-phase", "held")
    await agent_page.keyboard.press("Alt+h")
    await expect(agent_page.locator("#call-status")).to_have_attribute("data-phase", "connected")

    # The agent hangs up from the page and wraps up.
    await agent_page.click("#btn-hangup")
    await expect(agent_page.locator("#wrapup")).to_be_visible()
    countdown = agent_page.locator("#wrap-countdown")
    await expect(countdown).to_have_text(re.compile(r"^[1-5] s left$"))
    started = await countdown.inner_text()
    # Wrap-up lasts until the phone unregisters (at once, here): the change list keeps it.
    await expect(
        board.locator('#changes li[data-agent="1001"][data-state="wrap-up"]')
    ).to_have_count(1)
    await agent_page.select_option("#wrap-disposition", "resolved")
    await agent_page.fill("#wrap-notes", "Wire traced; customer called back by Emma.")
    due = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    await agent_page.fill("#wrap-followup", due)
    await agent_page.click("#btn-wrap-save")
    await expect(agent_page.locator("#wrap-saved")).to_be_visible()
    # The follow-up: in my list and in the customer's, with the customer's name.
    await expect(agent_page.locator("#followup-saved")).to_be_visible()
    await expect(agent_page.locator(f'#fu-mine li[data-due="{due}"]')).to_contain_text(
        "Eleanor Whitfield"
    )
    await expect(agent_page.locator(f'#pop-followups li[data-due="{due}"]')).to_contain_text(
        "Wire traced"
    )
    await expect(countdown).not_to_have_text(started)  # it counts down

    # Customer search: the VIP by phone number, spelt another way.
    await agent_page.fill("#cs-q", "06 00 00 00 09")
    await agent_page.press("#cs-q", "Enter")
    await expect(agent_page.locator('#cs-results li[data-customer="C0009"]')).to_contain_text(
        "Eleanor Whitfield"
    )
    await expect(agent_page.locator("#cs-results li")).to_have_count(1)
    # And by words typed in the search box.
    await agent_page.fill("#kb-q", "opening hours")
    await agent_page.press("#kb-q", "Enter")
    await expect(agent_page.locator("#kb-results li").first).to_have_attribute(
        "data-article", "opening-hours"
    )

    assert (await caller.wait(timeout=20)).ok
    await phone.wait(timeout=30)

    def stored() -> Any:
        rows = [c for c in server.contacts() if c.ended_at is not None and c.notes]
        return rows[0] if rows else None

    contact = await wait_for(stored, 10, "the contact with its wrap-up in SQLite")
    assert contact.disposition == "resolved"
    assert contact.notes == "Wire traced; customer called back by Emma."
    assert contact.agent == "1001" and contact.caller_number == VIP_NUMBER
    assert contact.disconnect_reason == "agent", contact.disconnect_reason
    steps = [e.type for e in contact.events]
    assert "disposition" in steps, steps
    assert {"consult_answered", "consult_ended"} <= set(steps), steps
    assert {"conference_joined", "conference_left"} <= set(steps), steps
    assert {"monitor_started", "monitor_mode", "monitor_stopped"} <= set(steps), steps
    with sqlite3.connect(server.db_path) as db:
        follow_ups = db.execute(
            "SELECT agent, due, customer_id, contact_id, note, done_at FROM follow_ups"
        ).fetchall()
    assert follow_ups == [
        ("1001", due, "C0009", contact.id, "Wire traced; customer called back by Emma.", None)
    ], follow_ups
    assert not problems, problems

    # The wallboard's figures count the answered call.
    answered_figure = board.locator('[data-queue="general"] [data-figure="answered"] .value')
    await expect(answered_figure).to_have_text("1")
    await expect(board.locator('[data-queue="general"] [data-figure="sl"] .value')).to_have_text(
        "100%"
    )
    await board.screenshot(path=shot_path("wallboard-after-call.png"))

    # Reports, from the wallboard's link: the call is counted and drawn.
    link = await board.locator("nav a").get_attribute("href")
    assert link == "/reports"
    reports = await sup_ctx.new_page()
    reports.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    await reports.goto(f"{base}{link}")
    general = reports.locator('#queue-rows tr[data-queue="general"]')
    await expect(general).to_have_count(1)
    await expect(general.locator('[data-col="offered"]')).to_have_text("1")
    await expect(general.locator('[data-col="answered"]')).to_have_text("1")
    await expect(general.locator('[data-col="abandoned"]')).to_have_text("0")
    await expect(reports.locator('#queue-chart rect.bar.s-answered[data-value="1"]')).to_have_count(
        1
    )
    await expect(reports.locator("#queue-chart circle.point")).to_have_count(1)
    await expect(reports.locator('#agent-chart rect.bar.s-answered[data-value="1"]')).to_have_count(
        1
    )
    csv_href = await reports.locator("#csv-queues").get_attribute("href")
    assert csv_href is not None and "format=csv" in csv_href
    download = await reports.request.get(f"{base}{csv_href}")
    assert download.ok and download.headers["content-type"].startswith("text/csv")
    csv_rows = [line.split(",") for line in (await download.text()).splitlines()]
    header = csv_rows[0]
    offered = [r[header.index("offered")] for r in csv_rows[1:] if r[0] == "general"]
    assert sorted(offered, reverse=True)[0] == "1", offered

    # Erlang C: the page shows what acd.erlang says for the same forecast.
    forecast = {"#st-calls": "120", "#st-interval": "900", "#st-aht": "180", "#st-sl": "80"}
    for field, value in forecast.items():
        await reports.fill(field, value)
    await reports.fill("#st-threshold", "20")
    await reports.click("#st-go")
    need = agents_required(offered_load(120, 900, 180), 180, target=0.8, threshold=20)
    await expect(reports.locator("#st-required")).to_have_text(str(need.agents))
    await expect(reports.locator("#st-logged")).to_have_text(re.compile(r"^\d+$"))
    await reports.screenshot(path=shot_path("reports.png"), full_page=True)
    await reports.select_option("#lang", "zh")
    await reports.evaluate("window.scrollTo(0, 0)")
    await expect(reports.locator("header strong")).to_have_text("报表")
    await reports.screenshot(path=shot_path("reports-zh.png"))
    assert not problems, problems

    # The VIP calls again while the agent is available: the phone rings at once, so
    # the pop may go out before the history is read ("pending") and screen.history
    # follows; either way the page ends up showing the first call among the
    # previous contacts.
    # (The phone rings 1.5 s: by then the caller has pressed its key and waits for the BYE.)
    phone2 = await peers.agent(
        target, extension="1001", password="agent1001pw", ring_ms=1500, wait_ms=20000
    )
    await expect(agent_page.locator("#state")).to_have_attribute("data-state", "available")
    caller2 = await peers.caller(
        target,
        service="5001",
        digits="0",
        greet_ms=300,
        wait_bye=True,
        caller_id=VIP_NUMBER,
        local_ip=TRUNK_IP,
        timeout=30,
    )
    first = agent_page.locator(f'#pop-history tr[data-contact="{contact.id}"]')
    await expect(first).to_contain_text("Wire traced", timeout=10_000)
    await expect(agent_page.locator("#pop-history")).to_have_attribute("data-history", "complete")
    followed = await agent_page.locator("#pop-history").get_attribute("data-followed")
    print(f"second pop: history {'followed the pop' if followed else 'came with the pop'}")
    await expect(agent_page.locator("#call-status")).to_have_attribute(
        "data-phase", "connected", timeout=10_000
    )
    # This time the consult transfer is completed: the caller goes on with the
    # colleague (who hangs up a second later) and the agent wraps up.
    colleague = await peers.agent(
        target,
        extension="1002",
        password="agent1002pw",
        behaviour="answer_hangup",
        ring_ms=300,
        talk_ms=1000,
        wait_ms=30000,
    )
    await agent_page.fill("#side-target", "1002")
    await agent_page.click("#btn-consult")
    await expect(consult_bar).to_have_attribute("data-connected", "true", timeout=10_000)
    await agent_page.click("#btn-consult-complete")
    await expect(agent_page.locator("#call-status")).to_have_attribute("data-phase", "idle")
    await expect(agent_page.locator("#wrapup")).to_be_visible()
    await phone2.wait(timeout=30)  # the agent's phone was hung up by the platform
    assert (await caller2.wait(timeout=20)).ok  # the colleague hung up on the caller
    await colleague.wait(timeout=15)
    second = await server.wait_contact_closed(2)
    transfers = [
        e.data for c in second if c.id != contact.id for e in c.events if e.type == "transfer"
    ]
    assert transfers and transfers[0]["kind"] == "consult" and transfers[0]["to"] == "1002"
    assert not problems, problems

    # The labels switch to Simplified Chinese on the spot (CJK fonts installed).
    await agent_page.select_option("#lang", "zh")
    await expect(agent_page.locator("#btn-wrap-save")).to_contain_text("保存")
    await expect(agent_page.locator("#state")).to_have_text("已登出")
    await agent_page.screenshot(path=shot_path("agent-console-zh.png"))

    # The server goes away: both pages say they are offline (and keep trying).
    await server.stop()
    for page in (agent_page, board):
        await expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    await expect(agent_page.locator("#conn")).to_have_text("离线：正在重新连接…")
    await agent_ctx.close()
    await sup_ctx.close()


async def test_click_to_call_from_the_console_when_the_server_has_it(
    server: ServerProcess, peers: Peers, browser: Browser
) -> None:
    """The dialer shows only when the API lists ``POST /api/calls``; then it dials, and
    the call is handed on to a colleague with a blind transfer."""
    base = f"http://127.0.0.1:{server.http_port}"
    target = f"127.0.0.1:{server.sip_port}"
    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/openapi.json") as r:
        paths = (await r.json())["paths"]
    context = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    page = await context.new_page()
    if "post" not in paths.get("/api/calls", {}):
        await sign_in(page, base, "agent1001", "console1001", "/console/agent")
        await expect(page.locator("#dialer")).to_be_hidden()
        await context.close()
        pytest.skip("this server has no click-to-call route: the dialer stays hidden")
    phone = await peers.agent(
        target, extension="1001", password="agent1001pw", ring_ms=300, wait_ms=30000
    )
    callee = await peers.agent(
        target, extension="1002", password="agent1002pw", ring_ms=300, wait_ms=30000
    )
    await sign_in(page, base, "agent1001", "console1001", "/console/agent")
    await expect(page.locator("#state")).to_have_attribute("data-state", "available")
    await expect(page.locator("#dialer")).to_be_visible()
    await page.fill("#dial-number", "1002")
    await page.click("#btn-dial")
    status = page.locator("#call-status")
    await expect(status).to_have_attribute("data-phase", "connected", timeout=10_000)
    await expect(page.locator("#call-dialed")).to_have_text("1002")
    # The agent hands the person it called to a colleague, blind: its own phone is
    # released and it wraps up while the colleague's phone rings and answers.
    colleague = await peers.agent(
        target,
        extension="1003",
        password="agent1003pw",
        behaviour="answer_hangup",
        ring_ms=300,
        talk_ms=1000,
        wait_ms=30000,
    )
    await page.fill("#side-target", "1003")
    await page.click("#btn-blind")
    await expect(page.locator("#wrapup")).to_be_visible(timeout=10_000)
    await expect(page.locator("#wrap-disposition option[value=resolved]")).to_have_count(1)
    await phone.wait(timeout=20)
    await colleague.wait(timeout=20)
    await callee.wait(timeout=20)
    (contact,) = await server.wait_contact_closed(1)
    assert (contact.initiation, contact.dialed_number) == ("click-to-call", "1002"), contact
    steps = [e.type for e in contact.events]
    assert "connected" in steps and "transferred" in steps, steps
    assert contact.agent == "1003", contact.agent
    await context.close()


# -- security over plain HTTP ----------------------------------------------------------------


async def login(http: aiohttp.ClientSession, base: str, user: str, password: str) -> Any:
    async with http.post(
        f"{base}/console/api/login", json={"username": user, "password": password}
    ) as r:
        assert r.status == 200, await r.text()
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
        return await r.json()


async def test_console_sessions_roles_csrf_and_sockets(server: ServerProcess) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        # Only JSON signs in (a cross-site form cannot send it), and only the right password.
        async with http.post(
            f"{base}/console/api/login", data={"username": "agent1001", "password": "x"}
        ) as r:
            assert r.status == 415
        async with http.post(
            f"{base}/console/api/login", json={"username": "agent1001", "password": "wrong"}
        ) as r:
            assert r.status == 401 and (await r.json())["error_id"] == "sign-in-failed"
        async with http.get(f"{base}/console/agent", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/console/login")

        me = await login(http, base, "agent1001", "console1001")
        assert me["agent"] == "1001" and me["roles"] == ["agent"] and me["csrf"]
        csrf = {"X-CSRF-Token": me["csrf"]}

        # The session reaches /api as agent 1001.
        async with http.get(f"{base}/api/agents") as r:
            assert r.status == 200
            assert [a["agent"] for a in await r.json()] == ["1001"]
        # A supervisor's action: refused to an agent, by the API and by the page.
        async with http.post(f"{base}/api/agents/1002/logout", headers=csrf, json={}) as r:
            assert r.status == 403 and (await r.json())["error_id"] == "forbidden"
        async with http.get(f"{base}/console/wallboard") as r:
            assert r.status == 403
        async with http.get(f"{base}/reports") as r:
            assert r.status == 403
        # Changing state without the CSRF token, or with another one: refused.
        async with http.post(f"{base}/api/agents/1001/not-ready", json={"reason": "break"}) as r:
            assert r.status == 403 and (await r.json())["error_id"] == "csrf-failed"
        bad = {"X-CSRF-Token": "not-the-token"}
        async with http.post(
            f"{base}/api/agents/1001/not-ready", headers=bad, json={"reason": "break"}
        ) as r:
            assert r.status == 403 and (await r.json())["error_id"] == "csrf-failed"
        # With it, the request reaches the call model (no phone registered: 409).
        async with http.post(
            f"{base}/api/agents/1001/not-ready", headers=csrf, json={"reason": "break"}
        ) as r:
            assert r.status == 409, await r.text()

        # Sockets: with the session, from our own origin, the stream opens.
        async with http.ws_connect(f"{base}/api/events", origin=base) as ws:
            ready = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert ready["type"] == "stream.ready" and ready["agent"] == "1001"
            assert ready["data"]["principal"] == "agent1001"
        # From another site's page (the browser would send our cookie): closed.
        async with http.ws_connect(f"{base}/api/events", origin="http://evil.example") as ws:
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg

        # Signing out needs the token too, ends the session for good, and closes
        # the event streams opened with it.
        stream = await http.ws_connect(f"{base}/api/events", origin=base)
        assert json.loads((await asyncio.wait_for(stream.receive(), 5)).data)["agent"] == "1001"
        async with http.post(f"{base}/console/api/logout") as r:
            assert r.status == 403
        async with http.post(f"{base}/console/api/logout", headers=csrf) as r:
            assert r.status == 200
        msg = await asyncio.wait_for(stream.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg
        await stream.close()
        async with http.get(f"{base}/api/agents") as r:
            assert r.status == 401

    # No session, no token: the socket is closed at once.
    async with aiohttp.ClientSession() as anon, anon.ws_connect(f"{base}/api/events") as ws:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg

    # A supervisor session sees every agent and may act on any.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as sup:
        me = await login(sup, base, "supervisor", "console-supervisor")
        assert me["home"] == "/console/wallboard"
        async with sup.get(f"{base}/api/agents") as r:
            assert r.status == 200 and len(await r.json()) == 10
        async with sup.post(
            f"{base}/api/agents/1002/logout", headers={"X-CSRF-Token": me["csrf"]}, json={}
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["agent"] == "1002"
        async with sup.get(f"{base}/console/wallboard") as r:
            assert r.status == 200 and "Content-Security-Policy" in r.headers
        async with sup.get(f"{base}/reports") as r:
            assert r.status == 200 and "Content-Security-Policy" in r.headers

        # Guessing passwords: after [console].max_login_failures, the address is locked out.
        statuses = []
        for _ in range(6):
            async with sup.post(
                f"{base}/console/api/login", json={"username": "admin", "password": "guess"}
            ) as r:
                statuses.append(r.status)
        assert statuses == [401] * 5 + [429], statuses
