"""Queue callback and overflow to voicemail, end to end on real SIP and RTP.

A SIPp caller from the trunk address (127.0.0.2) waits in the demo's general
queue with nobody logged in and presses * (RFC 4733): it is told where it will
be called back and hung up, and its call keeps its place. A SIPp agent then
registers, is offered the call, answers; the platform dials the customer
through the trunk's outbound route, where a SIPp UAS bound to 127.0.0.2 plays
the carrier and answers (or is busy, for a callback booked by the queue's
callback overflow instead of the key). The proof is on the wire (RTP energy
both ways through the bridge, dumpcap) and in the contact row and its
timeline. The voicemail test lets a caller overflow after its max wait and
checks the message the platform recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers import wait_for
from tests.integration.peers.baresip import wav_summary
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_port_block
from tests.integration.peers.sipp import SippProcess, scenario_path
from tests.integration.server import ServerProcess, outbound_to
from tests.integration.test_acd_routing import (
    acd_agent,
    agent_reaches,
    closed_contact,
    edits,
    queue_settings,
    when,
)
from tests.integration.test_call_flows import (
    AUDIBLE_DBOV,
    TRUNK_IP,
    assert_clean_log,
    events,
    summary_between,
    timeline,
)

pytestmark = pytest.mark.integration

StartServer = Callable[..., Any]

CUSTOMER = "0600000004"


async def carrier(peers: Peers, scenario: str, **variables: int) -> SippProcess:
    """A SIPp UAS on the carrier's address, 127.0.0.2, taking one call."""
    process = SippProcess(
        scenario_path(scenario),
        workdir=peers.workdir,
        name=Path(scenario).stem,
        variables=variables,
        timeout=40.0,
        local_ip=TRUNK_IP,
    )
    return await peers.sipp(process, ready=True)


async def callback_caller(
    peers: Peers, server: ServerProcess, number: str, key: str = "*", *, hang_up_ms: int = 0
) -> SippProcess:
    """A caller on DID 5001 (queue general) that presses ``key``, then waits to be
    hung up or, with ``hang_up_ms``, hangs up itself that long after the key."""
    process = SippProcess.caller(
        f"127.0.0.1:{server.sip_port}",
        peers.workdir,
        service="5001",
        caller_id=number,
        digits=key,
        greet_ms=1000,
        talk_ms=hang_up_ms,
        wait_bye=not hang_up_ms,
        timeout=20.0,
        local_ip=TRUNK_IP,
    )
    await peers.sipp(process)
    return process


async def caller_off_the_line(server: ServerProcess, caller: SippProcess, by: str) -> None:
    """The caller hung up (``by`` "caller") or was hung up after the confirmation
    (``by`` "system"), and its call still waits."""
    await caller.wait()
    received_bye = [
        m for m in caller.messages() if not m.sent and m.status is None and m.method == "BYE"
    ]
    assert len(received_bye) == (1 if by == "system" else 0), caller.diagnostics()

    def left() -> Any:
        rows = server.contacts()
        return rows and events(rows[0], "caller_left")

    (event,) = await wait_for(left, 5, "the caller's leg released", diagnose=server.log_tail)
    assert event.data == {"by": by, "callback": CUSTOMER}, event.data
    (row,) = server.contacts()
    assert row.ended_at is None, timeline(row)


def in_order(kinds: list[str], wanted: list[str]) -> bool:
    """Whether ``wanted`` appears in ``kinds`` in this order (others may come between)."""
    rest = iter(kinds)
    return all(kind in rest for kind in wanted)


async def test_callback_keeps_the_place_then_bridges_agent_and_customer(
    start_server: StartServer, peers: Peers
) -> None:
    """Press *, hang up during the confirmation; an agent logs in, answers, the customer is called
    through the carrier and both hear each other, all on one contact."""
    # The customer's phone rings 1.2 s: time for the agent's whisper to be heard.
    customer = await carrier(peers, "carrier_answer.xml", ring_ms=1200)
    server: ServerProcess = await start_server(
        edit=edits(
            queue_settings("general", wrap_up=1, callback_key="*"), outbound_to(customer.contact)
        )
    )
    # It does not wait for the whole confirmation: it hangs up 1 s after the key.
    caller = await callback_caller(peers, server, CUSTOMER, hang_up_ms=1000)
    await caller_off_the_line(server, caller, "caller")

    agent_port = free_port_block(4)
    capture = await peers.capture([agent_port, customer.media_port])
    agent = await acd_agent(
        peers, server, "1001", calls=1, hangup_ms=4500, ring_ms=300, media_port=agent_port
    )
    await agent.wait()
    await customer.wait()
    await capture.stop()

    contact = await closed_contact(server, CUSTOMER)
    kinds = timeline(contact)
    assert in_order(kinds, [
        "queued", "callback_requested", "caller_left", "offered", "ringing", "answered",
        "customer_dialed", "customer_ringing", "connected", "ended",
    ]), kinds  # fmt: skip
    assert contact.initiation == "callback" and contact.outcome == "answered", kinds
    assert contact.agent == "1001" and contact.disconnect_reason == "agent"
    assert contact.attributes["callback_number"] == CUSTOMER
    (requested,) = events(contact, "callback_requested")
    assert requested.data == {"queue": "general", "number": CUSTOMER, "by": "key"}
    (offered,) = events(contact, "offered")
    assert offered.data["callback"] == CUSTOMER and offered.data["agent"] == "1001"
    # Talk time counts from the customer's answer, not the agent's.
    answered = contact.answered_at
    assert answered is not None, kinds
    assert when(contact, "customer_ringing") <= answered <= when(contact, "connected"), kinds

    # The carrier got one INVITE for the customer's number, from the DID.
    (invite,) = [m for m in customer.messages() if not m.sent and m.method == "INVITE"]
    assert invite.first_line.startswith(f"INVITE sip:{CUSTOMER}@{TRUNK_IP}:"), invite.first_line
    assert "sip:5001@" in (invite.header("From") or ""), invite.header("From")

    # Bridged: the agent's voice reaches the customer, the customer's the agent.
    connected = when(contact, "connected").timestamp()
    to_customer = summary_between(capture, customer.media_port, connected + 0.3, connected + 2.5)
    assert to_customer.energy_dbov > AUDIBLE_DBOV, to_customer.describe()
    to_agent = summary_between(capture, agent_port, connected + 0.3, connected + 2.5)
    assert to_agent.energy_dbov > AUDIBLE_DBOV, to_agent.describe()
    # The agent heard the whisper while the customer's phone rang.
    dialed = when(contact, "customer_dialed").timestamp()
    whisper = summary_between(capture, agent_port, dialed, connected)
    assert whisper.energy_dbov > AUDIBLE_DBOV, whisper.describe()

    evs = await agent_reaches(server, "1001", "wrap-up")
    assert [e.state for e in evs if e.state in ("reserved", "on-call", "wrap-up")] == [
        "reserved", "on-call", "wrap-up",
    ]  # fmt: skip
    assert_clean_log(server)


async def test_overflow_books_a_callback_and_a_busy_customer_fails_it(
    start_server: StartServer, peers: Peers
) -> None:
    """The caller presses nothing useful; after its 1 s max wait the queue's
    callback overflow books the call back. The carrier then answers 486: the
    contact ends as callback-failed, the agent is hung up and wraps up."""
    customer = await carrier(peers, "carrier_busy.xml")
    server: ServerProcess = await start_server(
        edit=edits(
            queue_settings("general", wrap_up=1, max_wait=1, overflow="callback"),
            outbound_to(customer.contact),
        )
    )
    caller = await callback_caller(peers, server, CUSTOMER, key="1")
    await caller_off_the_line(server, caller, "system")
    agent = await acd_agent(peers, server, "1001", calls=1, ring_ms=300)
    await customer.wait()
    contact = await closed_contact(server, CUSTOMER)
    await agent.wait()

    kinds = timeline(contact)
    assert in_order(kinds, [
        "queued", "overflow", "callback_requested", "caller_left", "offered", "answered",
        "customer_dialed", "callback_failed", "ended",
    ]), kinds  # fmt: skip
    (overflow,) = events(contact, "overflow")
    assert overflow.data["kind"] == "callback" and overflow.data["reason"] == "max-wait"
    (requested,) = events(contact, "callback_requested")
    assert requested.data == {"queue": "general", "number": CUSTOMER, "by": "overflow"}
    assert "connected" not in kinds, kinds
    (failed,) = events(contact, "callback_failed")
    assert failed.data["status"] == 486 and failed.data["number"] == CUSTOMER, failed.data
    assert contact.outcome == "callback-failed" and contact.initiation == "callback"
    assert contact.answered_at is None and contact.disconnect_reason == "system"
    # The platform hung up the agent (its phone got our BYE) and it wraps up.
    byes = [m for m in agent.messages() if not m.sent and m.status is None and m.method == "BYE"]
    assert len(byes) == 1, agent.diagnostics()
    await agent_reaches(server, "1001", "wrap-up")
    assert_clean_log(server)


async def test_max_wait_overflows_to_voicemail(start_server: StartServer, peers: Peers) -> None:
    """Nobody is logged in: after its 1 s max wait the caller hears the
    greeting and the beep, talks, and the platform hangs up after the queue's
    3 s voicemail limit. The message is on disk, with the caller's voice."""
    server: ServerProcess = await start_server(
        edit=queue_settings("general", max_wait=1, overflow="voicemail:sales", voicemail_seconds=3)
    )
    caller = SippProcess.caller(
        f"127.0.0.1:{server.sip_port}",
        peers.workdir,
        service="5001",
        caller_id=CUSTOMER,
        digits="1",
        greet_ms=2000,  # its voice (7 s) then covers the whole recording
        wait_bye=True,
        timeout=20.0,
        local_ip=TRUNK_IP,
    )
    await peers.sipp(caller)
    await caller.wait()  # it ends with the platform's BYE
    contact = await closed_contact(server, CUSTOMER)

    kinds = timeline(contact)
    wanted = ["queued", "overflow", "voicemail", "record", "recorded", "ended"]
    assert in_order(kinds, wanted), kinds
    (overflow,) = events(contact, "overflow")
    assert overflow.data["kind"] == "voicemail" and overflow.data["reason"] == "max-wait"
    assert contact.outcome == "voicemail" and contact.disconnect_reason == "system"
    assert contact.attributes["voicemail_box"] == "sales"
    assert contact.recording is not None, kinds
    path = Path(contact.recording)
    if not path.is_absolute():
        path = server.data_dir.parent / path
    message = wav_summary(path)
    assert 2.5 <= message.duration <= 3.2, message
    assert message.loud_seconds(AUDIBLE_DBOV) >= 1.5, message
    assert_clean_log(server)
