"""The first call, end to end, with real peers on loopback.

A SIPp caller on the demo trunk address dials 5000, hears the greeting,
presses a key (RFC 4733 packets from Debian's sip-tester captures), waits in
the queue and talks to a SIPp agent that registered with digest auth and was
rung. dumpcap watches the RTP on the wire; the contact and its timeline are
read back from the platform's SQLite database.
"""

from __future__ import annotations

import pytest

from tests.integration.peers.fixtures import Peers
from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"  # the demo config trusts this address as a carrier


def timeline(contact: object) -> list[str]:
    return [e.type for e in contact.events]  # type: ignore[attr-defined]


def at(contact: object, kind: str) -> float:
    for e in contact.events:  # type: ignore[attr-defined]
        if e.type == kind:
            return float(e.at.timestamp())
    raise AssertionError(f"no {kind!r} event in {timeline(contact)}")


async def test_caller_presses_key_waits_and_talks_to_agent(
    server: ServerProcess, peers: Peers
) -> None:
    target = f"127.0.0.1:{server.sip_port}"
    agent = await peers.agent(target, extension="1001", password="agent1001pw", ring_ms=500)
    await server.wait_log(r"extension 1001 registered")

    caller = await peers.caller(
        target,
        service="5000",
        digits="0",
        greet_ms=2500,
        talk_ms=4000,
        caller_id="0600000001",
        local_ip=TRUNK_IP,
    )
    capture = await peers.capture([caller.media_port, agent.media_port])
    # The capture starts while the caller dials; the greeting lasts 1.7 s and
    # the menu prompt several more, so there is plenty to observe.
    result = await caller.wait(timeout=40)
    assert result.ok, result
    agent_result = await agent.wait(timeout=20)
    assert agent_result.ok, agent_result
    await capture.stop()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    # The timeline tells the call's story in order.
    expected = [
        "arrived",
        "accepted",
        "node",
        "prompt",
        "prompt_played",
        "node",
        "prompt",
        "digit",
        "branch",
        "node",
        "queued",
        "offered",
        "ringing",
        "answered",
        "ended",
    ]
    assert kinds == expected, kinds
    digit = next(e for e in contact.events if e.type == "digit")
    assert digit.data["digit"] == "0"
    assert contact.outcome == "answered"
    assert contact.disconnect_reason == "caller"
    assert contact.agent == "1001" and contact.queue == "general"
    assert contact.caller_number == "0600000001" and contact.dialed_number == "5000"
    assert contact.talk_seconds is not None and contact.talk_seconds > 2.0
    assert contact.wait_seconds is not None and contact.wait_seconds < 2.0

    connected = at(contact, "answered")
    pressed = at(contact, "digit")

    # The caller heard the greeting: audio with energy before the key press.
    to_caller = capture.streams_to(caller.media_port)
    assert to_caller, capture.diagnostics()
    (heard,) = to_caller
    t0 = heard.first_time  # window starts count from the stream's first packet
    greeting = [w for w in heard.windows if t0 + w.start + 0.5 <= pressed and w.dbov > -40]
    assert len(greeting) >= 2, heard.describe()
    # ... and the agent's voice through the relay once connected (the hold
    # music stops at connect, so loud audio after it is the agent).
    talk = [w for w in heard.windows if t0 + w.start >= connected + 0.3 and w.dbov > -40]
    assert len(talk) >= 3, heard.describe()

    # The agent's phone received the caller's voice through the relay.
    (to_agent,) = capture.streams_to(agent.media_port)
    assert to_agent.audio_packets > 50, to_agent.describe()
    agent_talk = [w for w in to_agent.windows if w.dbov > -40]
    assert len(agent_talk) >= 3, to_agent.describe()
    assert to_agent.first_time >= connected - 0.05

    # The caller's key went into the call as RFC 4733, and the IVR took it;
    # the agent's states were logged along the way.
    states = [e.state for e in server.agent_events("1001")]
    assert states[:5] == ["registered", "available", "reserved", "on-call", "wrap-up"], states
