"""The REST and WebSocket API against the real server, with SIPp phones on loopback.

A SIPp agent registers 1001; its software opens the event stream with the
agent token of the demo config; a carrier call from the demo VIP's number
reaches the general queue on DID 5001. The agent's socket gets the screen pop
naming the customer while the phone rings (before ``call.answered``), the
agent sets a disposition during the call, holds the caller and takes them
back, holds them again and blind-transfers them, on hold, to the cards queue,
where a second SIPp agent (1006) answers and later hangs up. The stored
contact shows all of it: the disposition, two holds and their seconds (the
transfer ends the second), the transfer, and a timeline in the order it
happened. A second call is held by the caller's phone and by the API at
overlapping times: one hold, for the union of the two.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.peers.fixtures import Peers
from tests.integration.server import ServerProcess
from tests.integration.test_call_flows import flow_caller, sipp_agent

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"  # the demo config trusts this address as a carrier
VIP_NUMBER = "0600000009"  # Eleanor Whitfield in config/customers.csv
SUPERVISOR = "demo-supervisor-token-change-me"
AGENT_1001 = "demo-agent-1001-token-change-me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def next_event(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    event: dict[str, Any] = json.loads(msg.data)
    return event


async def events_until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float
) -> list[dict[str, Any]]:
    """Every event received up to and including the first of type ``kind``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await next_event(ws, timeout)
            seen.append(event)
            if event["type"] == kind:
                return seen


async def test_screen_pop_disposition_and_access_rules(server: ServerProcess, peers: Peers) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    target = f"127.0.0.1:{server.sip_port}"
    agent = await peers.agent(target, extension="1001", password="agent1001pw", ring_ms=500)
    await server.wait_log(r"extension 1001 registered")
    # The cards queue's agent, for the transfer; not a member of general.
    cards_agent = await peers.agent(
        target, extension="1006", password="agent1006pw", behaviour="answer_hangup",
        ring_ms=300, talk_ms=1500,
    )  # fmt: skip
    await server.wait_log(r"extension 1006 registered")

    async with aiohttp.ClientSession() as http:
        # Authentication and the error shape.
        async with http.get(f"{base}/api/agents") as r:
            assert r.status == 401
            body = await r.json()
            assert body["status"] == 401 and body["error_id"] == "unauthorized"
            assert set(body) == {"status", "error_id", "message", "details"}
        async with http.post(f"{base}/api/agents/1002/login", headers=bearer(AGENT_1001)) as r:
            assert r.status == 403, await r.text()
            assert (await r.json())["error_id"] == "forbidden"
        async with http.post(
            f"{base}/api/agents/1001/not-ready", headers=bearer(AGENT_1001), data=b"{oops"
        ) as r:
            assert r.status == 400
            body = await r.json()
            assert body["error_id"] == "invalid-json" and body["status"] == 400
            assert set(body) == {"status", "error_id", "message", "details"}

        # A socket without a token is closed after the handshake.
        async with http.ws_connect(f"{base}/api/events") as anon:
            msg = await asyncio.wait_for(anon.receive(), 5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg

        ws = await http.ws_connect(f"{base}/api/events?token={AGENT_1001}")
        ready = await next_event(ws, 5)
        assert ready["type"] == "stream.ready" and ready["agent"] == "1001"

        caller = await peers.caller(
            target,
            service="5001",  # straight into the general queue
            digits="0",
            greet_ms=500,
            wait_bye=True,  # the cards agent hangs up in the end
            caller_id=VIP_NUMBER,
            local_ip=TRUNK_IP,
            timeout=20,
        )

        try:
            seen = await events_until(ws, "call.answered", 15)
        except AssertionError:
            print(server.log_tail(80))
            raise
        kinds = [e["type"] for e in seen]
        assert "screen.pop" in kinds, kinds
        assert kinds.index("screen.pop") < kinds.index("call.answered"), kinds
        assert kinds.index("call.offered") < kinds.index("screen.pop"), kinds
        pop = seen[kinds.index("screen.pop")]
        contact_id = pop["contact_id"]
        assert pop["agent"] == "1001" and pop["queue"] == "general"
        data = pop["data"]
        assert data["customer"]["name"] == "Eleanor Whitfield"
        assert data["tier"].lower() == "vip" and data["customer"]["tier"].lower() == "vip"
        assert data["caller"] == VIP_NUMBER
        assert [s["step"] for s in data["ivr_path"]] == ["queued"], data["ivr_path"]
        assert data["wait_seconds"] is not None and 0 <= data["wait_seconds"] < 5
        assert isinstance(data["recent_contacts"], list)
        # Only 1001's own events reach its socket.
        assert all(e["agent"] in (None, "1001") or e["contact_id"] == contact_id for e in seen)

        # While connected: the call is the agent's, the supervisor sees the agent on it.
        async with http.get(f"{base}/api/calls", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200
            calls = await r.json()
            assert [c["contact_id"] for c in calls] == [contact_id]
        async with http.get(f"{base}/api/agents", headers=bearer(SUPERVISOR)) as r:
            assert r.status == 200
            states = {a["agent"]: a["state"] for a in await r.json()}
            assert states["1001"] == "on-call" and states["1002"] == "logged-out", states
        async with http.put(
            f"{base}/api/contacts/{contact_id}/disposition",
            headers=bearer(AGENT_1001),
            json={"disposition": "resolved", "notes": "wire released"},
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["disposition"] == "resolved"

        # Hold and resume from the agent's software.
        call_url = f"{base}/api/calls/{contact_id}"
        held_at = time.monotonic()
        async with http.post(f"{call_url}/hold", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["on_hold"] is True
        async with http.post(f"{call_url}/hold", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200  # holding a held call changes nothing
        async with http.get(call_url, headers=bearer(AGENT_1001)) as r:
            assert (await r.json())["on_hold"] is True
        await events_until(ws, "call.hold", 5)
        async with http.post(f"{call_url}/resume", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["on_hold"] is False
        held_for = time.monotonic() - held_at
        async with http.post(f"{call_url}/resume", headers=bearer(AGENT_1001)) as r:
            assert r.status == 409 and (await r.json())["error_id"] == "not-held"
        await events_until(ws, "call.resume", 5)

        # On hold again, then a blind transfer to the cards queue: the transfer ends
        # the hold; 1001 is released, 1006 rings and answers.
        second_hold_at = time.monotonic()
        async with http.post(f"{call_url}/hold", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200, await r.text()
        async with http.post(
            f"{call_url}/transfer", headers=bearer(AGENT_1001), json={"queue": "cards"}
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["queue"] == "cards"
        held_for += time.monotonic() - second_hold_at
        await agent.wait(timeout=10)  # 1001's phone got its BYE
        after = await events_until(ws, "call.ended", 20)
        answered = [e for e in after if e["type"] == "call.answered"]
        assert [e["agent"] for e in answered] == ["1006"], [e["type"] for e in after]
        pops = [e for e in after if e["type"] == "screen.pop"]
        assert [p["agent"] for p in pops] == ["1006"]
        assert pops[0]["data"]["customer"]["name"] == "Eleanor Whitfield"
        await ws.close()
        assert (await caller.wait(timeout=15)).ok
        await cards_agent.wait(timeout=15)

        await server.wait_contact_closed(1, timeout=10)
        async with http.get(f"{base}/api/contacts/{contact_id}", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200, await r.text()
            contact = await r.json()
        assert contact["disposition"] == "resolved" and contact["notes"] == "wire released"
        assert contact["agent"] == "1006" and contact["queue"] == "cards"
        assert contact["outcome"] == "answered" and contact["disconnect_reason"] == "agent"
        assert contact["customer_id"] == "C0009"
        assert contact["holds"] == 2
        # The server's clock is the loop's, in whole milliseconds, read once per loop pass.
        assert 0 < contact["hold_seconds"] <= held_for + 0.02, (contact["hold_seconds"], held_for)
        timeline = contact["timeline"]
        assert [e["seq"] for e in timeline] == sorted(e["seq"] for e in timeline)
        assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
        key_steps = {"queued", "offered", "answered", "disposition", "hold", "resume",
                     "transferred", "ended"}  # fmt: skip
        steps = [
            (e["type"], e["data"].get("agent") or e["data"].get("queue"))
            for e in timeline
            if e["type"] in key_steps
        ]
        assert steps == [
            ("queued", "general"), ("offered", "1001"), ("answered", "1001"),
            ("disposition", None), ("hold", None), ("resume", None), ("hold", None),
            ("transferred", None),
            ("queued", "cards"), ("offered", "1006"), ("answered", "1006"), ("ended", None),
        ], steps  # fmt: skip
        transferred = next(e for e in timeline if e["type"] == "transferred")
        assert transferred["data"] == {"from_agent": "1001", "to_queue": "cards"}
        async with http.get(f"{base}/api/contacts/nope", headers=bearer(SUPERVISOR)) as r:
            assert r.status == 404 and (await r.json())["error_id"] == "contact-not-found"


async def test_phone_and_api_holds_overlapping_count_once(
    server: ServerProcess, peers: Peers
) -> None:
    """The caller's phone holds (a sendonly re-INVITE) for 3 s; while it does, the
    agent's software holds too, and resumes only after the phone has resumed.
    The contact was on hold once, for the union of the two periods: one hold,
    and its seconds no more than the time from the phone's hold to the API's
    resume (counting both periods apart would give two holds and more)."""
    base = f"http://127.0.0.1:{server.http_port}"
    agent = await sipp_agent(peers, server, "1001", "answer", ring_ms=300)
    mark = len(server.lines)
    caller = await flow_caller(
        peers,
        server,
        "flow_caller_hold.xml",
        variables={"bridge_ms": 1500, "hold_ms": 3000, "after_ms": 3000},
    )
    held = await server.wait_log(r"\[(\w+)\] caller holds", start=mark, timeout=15)
    phone_held_by = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/calls", headers=bearer(AGENT_1001)) as r:
            (call,) = await r.json()
        contact_id = call["contact_id"]
        assert contact_id.startswith(held[1]) and call["on_hold"] is True, call
        call_url = f"{base}/api/calls/{contact_id}"
        async with http.post(f"{call_url}/hold", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200, await r.text()
        await server.wait_log(r"caller resumes", start=mark, timeout=10)
        async with http.get(call_url, headers=bearer(AGENT_1001)) as r:
            assert (await r.json())["on_hold"] is True  # the API's hold goes on
        async with http.post(f"{call_url}/resume", headers=bearer(AGENT_1001)) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["on_hold"] is False
        api_resumed_by = time.monotonic()
    assert (await caller.wait(timeout=15)).ok
    await agent.wait(timeout=15)

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    steps = [(e.type, e.data.get("by"), e.data.get("via")) for e in contact.events
             if e.type in ("hold", "resume")]  # fmt: skip
    assert steps == [
        ("hold", "caller", None), ("hold", "agent", "control"),
        ("resume", "caller", None), ("resume", "agent", "control"),
    ], steps  # fmt: skip
    assert contact.holds == 1
    assert contact.hold_seconds is not None
    # From the phone's hold to the API's resume, as the timeline has them (the
    # overlap counted once); at least the phone's own 3 s.
    marks = [e.at for e in contact.events if e.type in ("hold", "resume")]
    union = (marks[-1] - marks[0]).total_seconds()
    assert abs(contact.hold_seconds - union) < 0.05, (contact.hold_seconds, union)
    assert 2.9 <= contact.hold_seconds <= api_resumed_by - phone_held_by + 0.5
    assert contact.outcome == "answered"
