"""Calls placed for software, end to end: click-to-call from the AMI and the REST
API, blind transfers from the API, live queue membership from the AMI.

The peers are real: SIPp agent phones that register with digest auth, SIPp's
UAS on 127.0.0.2 as the carrier behind the trunk's outbound route (it echoes
the RTP it receives), panoramisk as an unmodified Asterisk AMI client, aiohttp
for the API, dumpcap on loopback for the order of the INVITEs and the audio.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ccserver.storage.models import Contact
from tests.integration.peers import wait_for
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_tcp_port
from tests.integration.peers.sipp import SippProcess, scenario_path
from tests.integration.server import ServerProcess, outbound_to
from tests.integration.test_acd_routing import acd_agent, caller, closed_contact, edits
from tests.integration.test_ami import Client, enable_ami
from tests.integration.test_call_flows import (
    AUDIBLE_DBOV,
    assert_clean_log,
    events,
    queue_timers,
    sipp_agent,
    states,
    summary_between,
    timeline,
)
from tests.integration.test_cti_api import AGENT_1001, SUPERVISOR, bearer, events_until

pytestmark = pytest.mark.integration

StartServer = Callable[..., Any]
CARRIER_IP = "127.0.0.2"
NUMBER = "0600000009"  # Eleanor Whitfield in config/customers.csv


def no_outbound_route(cfg: Path) -> None:
    """A config edit: the demo trunk has no outbound route."""
    trunks = cfg / "trunks.toml"
    text, n = re.subn(r"(?m)^outbound = .*\n", "", trunks.read_text())
    assert n == 1, "the demo trunk lost its outbound route"
    trunks.write_text(text)


def invite_times(capture: Any, sip_port: int) -> list[float]:
    """When INVITEs reached ``sip_port`` on the wire."""
    return [d.time for d in capture.datagrams() if d.dport == sip_port
            and d.payload.startswith(b"INVITE ")]  # fmt: skip


def order(contact: Contact, kinds: list[str]) -> list[float]:
    return [events(contact, k)[0].at.timestamp() for k in kinds]


async def closed_outbound(server: ServerProcess, agent: str, timeout: float = 15.0) -> Contact:
    def closed() -> Contact | None:
        found = [
            c
            for c in server.contacts()
            if c.direction == "outbound" and c.caller_number == agent and c.ended_at
        ]
        return found[-1] if found else None

    result: Contact = await wait_for(closed, timeout, "the click-to-call contact closed",
                                     diagnose=server.log_tail)  # fmt: skip
    return result


async def test_ami_originate_rings_the_agent_then_the_carrier(
    start_server: StartServer, peers: Peers
) -> None:
    """panoramisk sends an async Originate for PJSIP/1001: the agent's phone rings
    and answers, then the carrier's; the two talk (audio both ways), the
    OriginateResponse names the agent's channel and the contact is outbound."""
    carrier = await peers.uas(local_ip=CARRIER_IP)
    port = free_tcp_port()
    server: ServerProcess = await start_server(
        edit=edits(enable_ami(port), outbound_to(carrier.contact))
    )
    await server.wait_log(rf"ami: manager interface on 127\.0\.0\.1:{port}")
    agent = await sipp_agent(peers, server, "1001", "answer_hangup", ring_ms=300, talk_ms=4000)
    capture = await peers.capture(
        [agent.local_port, carrier.local_port, agent.media_port, carrier.media_port]
    )
    client = Client(port)
    try:
        await client.login()
        answer = await asyncio.wait_for(
            client.manager.send_action({
                "Action": "Originate", "Channel": "PJSIP/1001", "Exten": NUMBER,
                "Context": "from-internal", "Priority": "1", "Async": "true",
                "CallerID": "Click <1001>", "Timeout": "20000",
            }),
            20,
        )  # fmt: skip
        assert isinstance(answer, list), answer  # Success, then OriginateResponse
        await agent.wait(timeout=20)
        contact = await closed_outbound(server, "1001")
        await client.wait_event("Hangup", 5)
    finally:
        client.close()
    await capture.stop()

    queued, response = answer
    assert queued.response == "Success" and queued.message == "Originate successfully queued"
    assert response.event == "OriginateResponse" and response.response == "Success", response
    assert response.reason == "4"
    new = next(e for e in client.events if e.event == "Newchannel")
    assert new.channel.startswith("PJSIP/1001-") and response.uniqueid == new.uniqueid
    names = client.names()
    for expected in ("Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave", "Hangup"):
        assert expected in names, (expected, names)
    dial = next(e for e in client.events if e.event == "DialBegin")
    assert dial.destchannel.startswith("PJSIP/trunk-") and dial.dialstring == NUMBER
    assert dial.destlinkedid == new.uniqueid
    assert "AgentComplete" not in names

    # The contact: outbound, the agent and the number, its timeline in order.
    assert contact.direction == "outbound" and contact.initiation == "click-to-call"
    assert contact.entry_point == "ami" and contact.agent == "1001"
    assert contact.caller_number == "1001" and contact.dialed_number == NUMBER
    assert contact.outcome == "answered" and contact.disconnect_reason == "agent"
    assert contact.customer_id == "C0009", timeline(contact)  # who the agent called
    steps = ["originated", "agent_rung", "agent_answered", "customer_dialed", "connected"]
    times = order(contact, steps)
    assert times == sorted(times), timeline(contact)
    assert contact.talk_seconds is not None and 2.5 <= contact.talk_seconds <= 6, contact

    # The phones rang in order: the agent's INVITE first, the carrier's after the answer.
    (to_agent,) = invite_times(capture, agent.local_port)
    (to_carrier,) = invite_times(capture, carrier.local_port)
    assert to_agent < times[2] <= to_carrier + 0.05, (to_agent, times, to_carrier)
    (invite,) = [m for m in carrier.messages() if not m.sent and m.method == "INVITE"]
    assert invite.first_line.startswith(f"INVITE sip:{NUMBER}@{carrier.contact}")
    assert "sip:1001@" in (invite.header("From") or "")
    (ring,) = [m for m in agent.messages() if not m.sent and m.method == "INVITE"]
    assert f"sip:{NUMBER}@" in (ring.header("From") or "")

    # Audio both ways once connected: the agent's voice reaches the carrier,
    # and what the carrier sends (its echo) reaches the agent.
    (to_far,) = capture.streams_to(carrier.media_port)
    assert to_far.loud_seconds(AUDIBLE_DBOV) >= 1.5, to_far.describe()
    (to_near,) = capture.streams_to(agent.media_port)
    assert to_near.loud_seconds(AUDIBLE_DBOV) >= 1.5, to_near.describe()

    # The agent was on a call in the ACD for the whole click-to-call, then wrapped up.
    evs = server.agent_events("1001")
    assert states(evs)[:4] == ["registered", "available", "on-call", "wrap-up"], states(evs)
    assert_clean_log(server)


async def test_api_click_to_call_to_an_extension_and_its_refusals(
    start_server: StartServer, peers: Peers
) -> None:
    """The agent's own token dials extension 1005 (a SIPp phone): 1001 rings,
    answers, 1005 rings, answers, 1001 hangs up. An agent may not dial for
    another; an agent without a phone cannot dial at all."""
    server: ServerProcess = await start_server(edit=no_outbound_route)
    base = f"http://127.0.0.1:{server.http_port}"
    agent = await sipp_agent(peers, server, "1001", "answer_hangup", ring_ms=300, talk_ms=2000)
    far = await sipp_agent(peers, server, "1005", "answer", ring_ms=300)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/api/events?token={AGENT_1001}")
        async with http.post(f"{base}/api/calls", headers=bearer(AGENT_1001),
                             json={"agent": "1002", "number": "1005"}) as r:  # fmt: skip
            assert r.status == 403 and (await r.json())["error_id"] == "forbidden"
        async with http.post(f"{base}/api/calls", headers=bearer(SUPERVISOR),
                             json={"agent": "1002", "number": "1005"}) as r:  # fmt: skip
            body = await r.json()
            assert r.status == 409 and body["error_id"] == "agent-not-logged-in", body
        async with http.post(f"{base}/api/calls", headers=bearer(SUPERVISOR),
                             json={"agent": "1001", "number": "1006"}) as r:  # fmt: skip
            body = await r.json()
            assert r.status == 409 and body["error_id"] == "destination-not-registered", body
        async with http.post(f"{base}/api/calls", headers=bearer(SUPERVISOR),
                             json={"agent": "1001", "number": NUMBER}) as r:  # fmt: skip
            body = await r.json()  # this trunk has no outbound route
            assert r.status == 409 and body["error_id"] == "no-outbound-route", body
        async with http.post(f"{base}/api/calls", headers=bearer(AGENT_1001),
                             json={"number": "1005"}) as r:  # fmt: skip
            view = await r.json()
            assert r.status == 200, view
        assert view["direction"] == "outbound" and view["state"] == "dialing-agent"
        assert view["ringing"] == ["1001"] and view["dialed"] == "1005"
        seen = await events_until(ws, "call.ended", 20)
        await ws.close()
        await agent.wait(timeout=15)
        await far.wait(timeout=15)
        contact = await closed_outbound(server, "1001")
        async with http.get(f"{base}/api/contacts/{contact.id}",
                            headers=bearer(AGENT_1001)) as r:  # fmt: skip
            stored = await r.json()
            assert r.status == 200, stored
    kinds = [e["type"] for e in seen if e.get("contact_id") == view["contact_id"]]
    expected = ["call.originated", "call.agent_rung", "call.agent_answered",
                "call.customer_dialed", "call.connected", "call.ended"]  # fmt: skip
    assert [k for k in kinds if k in expected] == expected, kinds
    assert contact.entry_point == "api" and contact.outcome == "answered"
    assert [e["type"] for e in stored["timeline"]][-1] == "ended"
    dialed = events(contact, "customer_dialed")[0]
    assert dialed.data["destination"] == "extension" and dialed.data["number"] == "1005"
    assert_clean_log(server)


async def test_failures_end_the_click_to_call_and_free_the_agent(
    start_server: StartServer, peers: Peers
) -> None:
    """Nobody answers 1002's phone: the Originate fails with Reason 3 after its
    Timeout (the phone got a CANCEL). The carrier rings 1001's call (1001 hears
    the ringing tone) and answers 486: the contact ends as failed (busy), 1001
    is hung up and wraps up."""
    busy = SippProcess(scenario_path("carrier_ringing_busy.xml"), workdir=peers.workdir,
                       name="carrier-busy", local_ip=CARRIER_IP, timeout=30)  # fmt: skip
    await peers.sipp(busy, ready=True)
    port = free_tcp_port()
    server: ServerProcess = await start_server(
        edit=edits(enable_ami(port), outbound_to(busy.contact), queue_timers(wrap_up=1))
    )
    await server.wait_log(rf"ami: manager interface on 127\.0\.0\.1:{port}")
    ringing = await sipp_agent(peers, server, "1002", "noanswer")
    agent = await sipp_agent(peers, server, "1001", "answer", ring_ms=200)
    client = Client(port)
    try:
        await client.login()
        queued, response = await asyncio.wait_for(
            client.manager.send_action({
                "Action": "Originate", "Channel": "PJSIP/1002", "Exten": NUMBER,
                "Async": "true", "Timeout": "2000",
            }),
            10,
        )  # fmt: skip
    finally:
        client.close()
    assert queued.response == "Success"
    assert response.response == "Failure" and response.reason == "3", response
    await ringing.wait(timeout=10)  # its scenario ends only with CANCEL, 487, ACK
    unanswered = await closed_outbound(server, "1002")
    assert unanswered.outcome == "failed" and unanswered.entry_point == "ami"
    (failed,) = events(unanswered, "agent_failed")
    assert failed.data["reason"] == "no-answer" and events(unanswered, "customer_dialed") == []

    base = f"http://127.0.0.1:{server.http_port}"
    capture = await peers.capture([agent.media_port])
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/calls", headers=bearer(AGENT_1001),
                             json={"number": NUMBER}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
    await busy.wait(timeout=10)
    await agent.wait(timeout=10)  # hung up by the platform
    await capture.stop()
    refused = await closed_outbound(server, "1001")
    assert refused.outcome == "failed" and refused.disconnect_reason == "system"
    (failed,) = events(refused, "customer_failed")
    assert failed.data["status"] == 486 and failed.data["reason"] == "busy"
    assert refused.answered_at is None and refused.talk_seconds is None
    alerting = events(refused, "customer_alerting")[0].at.timestamp()
    tone = summary_between(capture, agent.media_port, alerting, failed.at.timestamp())
    assert tone.loud_seconds(AUDIBLE_DBOV) >= 0.6, tone.describe()

    # Nothing is left hanging: each agent's ACD call ended (wrap-up), before its
    # phone logged it out at the end of its scenario.
    for ext in ("1002", "1001"):

        def wrapped(ext: str = ext) -> bool:
            seen = states(server.agent_events(ext))
            return "on-call" in seen and "wrap-up" in seen[seen.index("on-call") :]

        await wait_for(wrapped, 10, f"{ext} out of its call", diagnose=server.log_tail)
    assert_clean_log(server)


async def test_api_blind_transfer_to_an_agent_then_a_number(
    start_server: StartServer, peers: Peers
) -> None:
    """A queue call answered by 1001 is sent to 1005's phone, and from there to an
    external number through the carrier; the caller is heard at the carrier."""
    carrier = await peers.uas(local_ip=CARRIER_IP)
    server: ServerProcess = await start_server(
        edit=edits(outbound_to(carrier.contact), queue_timers(wrap_up=1))
    )
    base = f"http://127.0.0.1:{server.http_port}"
    first = await sipp_agent(peers, server, "1001", "answer", ring_ms=300)
    second = await sipp_agent(peers, server, "1005", "answer", ring_ms=300)
    capture = await peers.capture([carrier.media_port])
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/api/events?token={SUPERVISOR}")
        call = await caller(peers, server, "0600000001", talk_ms=10000, timeout=30)
        answered = (await events_until(ws, "call.answered", 15))[-1]
        cid = answered["contact_id"]
        assert answered["agent"] == "1001"
        async with http.post(f"{base}/api/calls/{cid}/transfer", headers=bearer(AGENT_1001),
                             json={"agent": "1001"}) as r:  # fmt: skip
            assert r.status == 409 and (await r.json())["error_id"] == "same-agent"
        async with http.post(f"{base}/api/calls/{cid}/transfer", headers=bearer(AGENT_1001),
                             json={"agent": "1005"}) as r:  # fmt: skip
            view = await r.json()
            assert r.status == 200 and view["state"] == "transferring", view
        to_agent = (await events_until(ws, "call.answered", 10))[-1]
        assert to_agent["data"]["extension"] == "1005"
        async with http.get(f"{base}/api/calls/{cid}", headers=bearer(SUPERVISOR)) as r:
            assert (await r.json())["agent"] == "1005"
        async with http.post(f"{base}/api/calls/{cid}/transfer", headers=bearer(SUPERVISOR),
                             json={"number": NUMBER}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
        to_number = (await events_until(ws, "call.answered", 10))[-1]
        assert to_number["data"]["extension"] == NUMBER
        await ws.close()
    await call.wait(timeout=20)
    await first.wait(timeout=10)
    await second.wait(timeout=10)
    contact = await closed_contact(server, "0600000001")
    await capture.stop()

    moves = [e.data for e in events(contact, "transferred")]
    assert moves == [{"from_agent": "1001", "to_agent": "1005"},
                     {"from_agent": "1005", "to_number": NUMBER}], timeline(contact)  # fmt: skip
    assert contact.outcome == "answered" and contact.disconnect_reason == "caller"
    # Answered once, by 1001: the transfers do not restart the talk time.
    first_answer = events(contact, "answered")[0].at
    assert contact.answered_at is not None and contact.answered_at <= first_answer
    assert contact.talk_seconds is not None and contact.talk_seconds >= 8, contact
    (invite,) = [m for m in carrier.messages() if not m.sent and m.method == "INVITE"]
    assert invite.first_line.startswith(f"INVITE sip:{NUMBER}@")
    # 1005 was on this call in the ACD from the first ring (before it answered), then
    # wrapped up when the caller went on to the number.
    evs = server.agent_events("1005")
    assert states(evs)[:4] == ["registered", "available", "on-call", "wrap-up"], states(evs)
    transfer_answered = [e for e in events(contact, "answered") if e.data.get("transfer")]
    assert evs[2].at < transfer_answered[0].at, (evs[2].at, transfer_answered[0].at)
    (heard,) = capture.streams_to(carrier.media_port)
    assert heard.loud_seconds(AUDIBLE_DBOV) >= 1.0, heard.describe()
    assert_clean_log(server)


async def test_ami_queue_add_and_remove_change_who_gets_queue_calls(
    start_server: StartServer, peers: Peers
) -> None:
    """1006 (a cards agent) is added to the general queue over the AMI and takes
    a general call; once removed, a general caller waits while 1006 is free."""
    port = free_tcp_port()
    server: ServerProcess = await start_server(edit=edits(enable_ami(port), queue_timers(
        wrap_up=0.5)))  # fmt: skip
    await server.wait_log(rf"ami: manager interface on 127\.0\.0\.1:{port}")
    phone = await acd_agent(peers, server, "1006", calls=1, hangup_ms=1500, linger_ms=7000)
    client = Client(port)
    try:
        await client.login()
        # as_list=False: panoramisk takes Asterisk's "Added interface to queue"
        # for the start of a list otherwise.
        added = await asyncio.wait_for(client.manager.send_action({
            "Action": "QueueAdd", "Queue": "general", "Interface": "PJSIP/1006",
            "Penalty": "2", "MemberName": "Cards helper",
        }, as_list=False), 5)  # fmt: skip
        assert added.response == "Success", added
        event = await client.wait_event("QueueMemberAdded", 5)
        assert event.queue == "general" and event.interface == "PJSIP/1006"
        status = await asyncio.wait_for(client.manager.send_action(
            {"Action": "QueueStatus", "Queue": "general"}), 5)  # fmt: skip
        (member,) = [m for m in status if m.event == "QueueMember" and m.location == "PJSIP/1006"]
        assert member.membership == "dynamic" and member.penalty == "2", member
        # Pausing the new member is reported for its new queue too, and undone.
        for paused in ("true", "false"):
            resp = await asyncio.wait_for(client.manager.send_action({
                "Action": "QueuePause", "Interface": "PJSIP/1006", "Paused": paused,
                "Reason": "break"}), 5)  # fmt: skip
            assert resp.response == "Success", resp
        pauses = [e for e in client.events if e.event == "QueueMemberPause"]
        assert {(e.queue, e.paused) for e in pauses} >= {("general", "1"), ("general", "0")}

        await caller(peers, server, "0600000001", talk_ms=1500)
        taken = await closed_contact(server, "0600000001")
        assert taken.agent == "1006" and taken.queue == "general", timeline(taken)

        remove = {"Action": "QueueRemove", "Queue": "general", "Interface": "PJSIP/1006"}
        removed = await asyncio.wait_for(client.manager.send_action(dict(remove)), 5)
        assert removed.response == "Success", removed
        again = await asyncio.wait_for(client.manager.send_action(dict(remove)), 5)
        assert again.response == "Error", again
        assert again.message == "Unable to remove interface: Not there"
        status = await asyncio.wait_for(client.manager.send_action(
            {"Action": "QueueStatus", "Queue": "general"}), 5)  # fmt: skip
        assert "PJSIP/1006" not in [m.location for m in status if m.event == "QueueMember"]
    finally:
        client.close()

    # 1006 is free again, still registered, and not offered the next general call.
    def free_again() -> bool:
        seen = states(server.agent_events("1006"))
        return "on-call" in seen and "available" in seen[seen.index("on-call") :]

    await wait_for(free_again, 10, "1006 available after its call", diagnose=server.log_tail)
    waiting = await caller(peers, server, "0600000002", talk_ms=2000)
    await waiting.wait(timeout=10)
    left = await closed_contact(server, "0600000002")
    assert left.outcome == "abandoned" and events(left, "offered") == [], timeline(left)
    assert states(server.agent_events("1006"))[-1] == "available"
    await phone.wait(timeout=15)
    assert_clean_log(server)
