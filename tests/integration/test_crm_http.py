"""A CRM over HTTP tells the running server who is calling; a CRM that hangs does not hold
the call up.

The platform runs with ``[cti] provider = "http"`` pointing at a CRM served by
this test over real loopback TCP. It knows one number the demo database does
not (0611223344, Margaret Okafor) and hangs on another (0622334455). SIPp
carrier calls from those numbers reach the general queue and a SIPp agent
(1001) whose software holds the agent's event stream:

- the known caller's screen pop, before the agent answers, carries the CRM's
  customer (mapped from the CRM's field names), and the CRM was asked with
  its token;
- the hanging CRM's caller is taken within the lookup timeout, while the
  CRM's request is still unanswered: the pop says unknown caller, the call
  is answered as any other, and the server logs why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration.peers.fixtures import Peers
from tests.integration.peers.http import HttpPeer
from tests.integration.server import ServerProcess
from tests.integration.test_cti_api import AGENT_1001, events_until, next_event

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"
KNOWN, KNOWN_E164 = "0611223344", "+33611223344"
HANGS, HANGS_E164 = "0622334455", "+33622334455"
CRM_TOKEN = "crm-integration-token"
LOOKUP_TIMEOUT = 0.5

MARGARET = {
    "id": "CRM-4711",
    "display_name": "Margaret Okafor",
    "level": "gold",
    "email": "m.okafor@example.com",
    "phones": [{"number": KNOWN, "label": "mobile", "primary": True}],
    "accounts": [{"number": "PB-4711", "kind": "private"}],
    "complaints": [{"opened_on": "2026-03-04", "summary": "Fee charged twice", "status": "open"}],
}


@dataclass
class Crm:
    """The CRM: its customers by E.164 number; one number on which it never answers."""

    requests: list[tuple[str, str | None, float]] = field(default_factory=list)
    """(number asked, Authorization header, wall-clock time)."""
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def customers(self, request: web.Request) -> web.Response:
        number = request.query.get("phone", "")
        self.requests.append((number, request.headers.get("Authorization"), time.time()))
        if number == HANGS_E164:
            await self.release.wait()  # set when the test ends
        found = [MARGARET] if number == KNOWN_E164 else []
        return web.json_response({"customers": found})


def crm_provider(url: str) -> Callable[[Path], None]:
    def edit(cfg: Path) -> None:
        toml = cfg / "ccserver.toml"
        toml.write_text(
            toml.read_text()
            + f'\n[cti]\nprovider = "http"\nlookup_timeout = {LOOKUP_TIMEOUT}\n'
            + f'\n[cti.crm]\nurl = "{url}?phone={{number}}"\ntoken = "{CRM_TOKEN}"\n'
            + 'timeout = 0.4\nresult = "customers"\n'
            + 'fields = { name = "display_name", tier = "level" }\n'
        )
        queues = cfg / "queues.toml"
        # The same agent takes both calls: a short wrap-up between them.
        queues.write_text(queues.read_text().replace("wrap_up = 5\n", "wrap_up = 0.5\n", 1))

    return edit


async def one_call(
    server: ServerProcess,
    peers: Peers,
    ws: aiohttp.ClientWebSocketResponse,
    caller_id: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A carrier call from ``caller_id`` answered by a fresh SIPp 1001: its pop and events."""
    target = f"127.0.0.1:{server.sip_port}"
    seen_lines = len(server.lines)
    agent = await peers.agent(target, extension="1001", password="agent1001pw", ring_ms=400)
    await server.wait_log(r"extension 1001 registered", start=seen_lines)
    caller = await peers.caller(
        target, service="5001", digits="0", greet_ms=300, talk_ms=800,
        caller_id=caller_id, local_ip=TRUNK_IP, timeout=20,
    )  # fmt: skip
    try:
        seen = await events_until(ws, "call.ended", 20)
    except (AssertionError, TimeoutError):
        print(server.log_tail(80))
        raise
    kinds = [e["type"] for e in seen]
    assert "screen.pop" in kinds and "call.answered" in kinds, kinds
    assert kinds.index("screen.pop") < kinds.index("call.answered"), kinds
    assert (await caller.wait(timeout=15)).ok
    await agent.wait(timeout=20)
    return seen[kinds.index("screen.pop")], seen


async def test_the_crm_names_the_caller_and_a_hanging_crm_holds_nothing_up(
    start_server: Callable[..., Any], peers: Peers
) -> None:
    crm = Crm()
    app = web.Application()
    app.router.add_get("/api/customers", crm.customers)
    http = HttpPeer(app)
    await http.start()
    try:
        server: ServerProcess = await start_server(edit=crm_provider(http.url("/api/customers")))
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{base}/api/events?token={AGENT_1001}")
            assert (await next_event(ws, 5))["type"] == "stream.ready"

            # A caller only the CRM knows.
            pop, _ = await one_call(server, peers, ws, KNOWN)
            customer = pop["data"]["customer"]
            assert pop["agent"] == "1001" and customer is not None
            assert (customer["id"], customer["name"]) == ("CRM-4711", "Margaret Okafor")
            assert customer["tier"] == "gold" and pop["data"]["tier"] == "gold"
            assert customer["open_complaints"][0]["summary"] == "Fee charged twice"
            assert crm.requests[0][:2] == (KNOWN_E164, f"Bearer {CRM_TOKEN}")

            # A CRM that never answers: the call goes on within the lookup timeout.
            pop, seen = await one_call(server, peers, ws, HANGS)
            assert pop["data"]["customer"] is None and pop["data"]["tier"] is None
            assert pop["data"]["caller"] == HANGS
            assert not crm.release.is_set()  # the CRM was still "thinking" all along
            await ws.close()
        # The CRM's own deadline ([cti.crm] timeout) fired first, and said so.
        await server.wait_log(
            rf"lookup by number \{HANGS_E164} failed \(http provider\): CrmError: no answer"
        )
    finally:
        crm.release.set()
        await http.stop()

    assert [n for n, _, _ in crm.requests] == [KNOWN_E164, HANGS_E164]
    asked_at = crm.requests[1][2]
    closed = await server.wait_contact_closed(2, timeout=10)
    known, unknown = sorted(closed, key=lambda c: c.arrived_at)
    assert known.customer_id == "CRM-4711" and known.caller_name == "Margaret Okafor"
    assert unknown.customer_id is None and unknown.outcome == "answered"
    # The contact opens once the lookup gave up: within its bound of the CRM request.
    waited = unknown.arrived_at.timestamp() - asked_at
    assert 0 <= waited < LOOKUP_TIMEOUT + 1.0, waited
    assert [e["type"] for e in seen].count("call.answered") == 1
