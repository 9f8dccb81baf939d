"""A real softphone as the agent: baresip registers, rings, is answered by hand.

SIPp agents answer by script; baresip is a phone a person would use. It
registers extension 1001 with digest authentication, rings in manual answer
mode when the platform offers it a call (``CALL_INCOMING``: the agent's
phone rang), is picked up with ``accept``, and speaks and records both
directions, so what each side heard is checked in its recording and on the
wire.
"""

from __future__ import annotations

import pytest

from tests.integration.peers import wait_for
from tests.integration.peers.fixtures import Peers
from tests.integration.server import ServerProcess
from tests.integration.test_call_flows import (
    AUDIBLE_DBOV,
    StartServer,
    assert_clean_log,
    at,
    events,
    flow_caller,
    queue_timers,
    simple_caller_vars,
    states,
    timeline,
)

pytestmark = pytest.mark.integration


async def test_baresip_agent_rings_answers_and_talks(
    start_server: StartServer, peers: Peers
) -> None:
    server: ServerProcess = await start_server(edit=queue_timers(wrap_up=1))
    registrar = f"127.0.0.1:{server.sip_port}"

    phone = await peers.baresip("agent-1001", direct=False)
    registered = await phone.register(registrar, "1001", "agent1001pw", answermode="manual")
    assert registered.type == "REGISTER_OK"
    await server.wait_log(r"extension 1001 registered")

    # A carrier call on DID 5001 (straight to the general queue); the caller
    # talks (g711a.pcap, 7 s) and hangs up after 5 s.
    caller = await flow_caller(peers, server, variables=simple_caller_vars(talk_ms=5000))
    capture = await peers.capture([caller.media_port, phone.rtp_ports])

    # The agent's phone rings: the platform's INVITE reached the registered
    # Contact, with the caller's number in From.
    incoming = await phone.wait_event("CALL_INCOMING", timeout=5)
    assert incoming.direction == "incoming", incoming
    assert incoming.peer is not None and "0600000001" in incoming.peer, incoming
    await server.wait_log(r"offering to agent 1001")
    # Manual answer mode: it rings (180 sent, "ringing" in the timeline) and
    # stays ringing until someone picks up.
    await wait_for(
        lambda: any(e.type == "ringing" for c in server.contacts() for e in c.events),
        5,
        "ringing in the timeline",
    )
    assert "CALL_ESTABLISHED" not in [e.type for e in phone.events]
    await phone.answer()
    await phone.wait_event("CALL_ESTABLISHED", timeout=5)

    # The caller's voice reaches the phone: its recording of what it hears grows.
    (recording,) = phone.recordings()
    await wait_for(
        lambda: recording.heard.stat().st_size > 2 * 8000 * 2, 8, "2 s of audio at the phone"
    )

    await caller.wait()  # the caller hangs up
    closed = await phone.wait_event("CALL_CLOSED", timeout=5)
    await capture.stop()

    # Both directions carried speech: what the phone heard (the caller's
    # voice through the relay) and what the caller heard after the answer
    # (the phone's espeak-ng speech).
    done = await phone.wait_recording()
    heard = done.heard_audio()
    assert heard.dbov > AUDIBLE_DBOV and heard.loud_seconds(AUDIBLE_DBOV) >= 1.5, heard
    sent = done.sent_audio()
    assert sent.loud_seconds(AUDIBLE_DBOV) >= 1.5, sent

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    connected = at(contact, "answered")
    (to_caller,) = capture.streams_to(caller.media_port)
    t0 = to_caller.first_time
    talk = [w for w in to_caller.windows if t0 + w.start >= connected + 0.3 and w.dbov > -40]
    assert len(talk) >= 3, to_caller.describe()
    (to_phone,) = capture.streams_to(phone.rtp_ports)
    assert to_phone.first_time >= connected - 0.05, to_phone.describe()
    assert to_phone.energy_dbov > AUDIBLE_DBOV, to_phone.describe()

    kinds = timeline(contact)
    assert kinds == [
        "arrived",
        "accepted",
        "queued",
        "offered",
        "ringing",
        "answered",
        "ended",
    ], kinds
    assert events(contact, "offered")[0].data["agent"] == "1001"
    assert contact.outcome == "answered" and contact.agent == "1001"
    assert contact.disconnect_reason == "caller", (contact.disconnect_reason, closed)
    # It rang for as long as the test took to answer, and then they talked.
    assert contact.talk_seconds is not None and contact.talk_seconds > 2.0
    assert states(server.agent_events("1001"))[:5] == [
        "registered",
        "available",
        "reserved",
        "on-call",
        "wrap-up",
    ]
    assert_clean_log(server)
