"""Call flows beyond the first call, end to end with real peers on loopback.

Each test runs `ccserver run` (queue timers shortened in a copy of the demo
config), SIPp callers on the trunk address and SIPp agents that register
with digest auth, and reads the outcome where it is observable: the SIP
messages SIPp exchanged, the RTP dumpcap saw on the wire, the contact, its
timeline and the agent state log in the platform's SQLite database.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

from ccserver.media.rtp import RtpPacket, is_rtcp
from ccserver.sip.message import Request, parse_message
from ccserver.storage.models import AgentEvent, Contact, ContactEvent
from tests.integration.peers import wait_for
from tests.integration.peers.capture import RtpCapture, StreamSummary, UdpDatagram, summarize
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_port
from tests.integration.peers.sipp import SippProcess, scenario_path
from tests.integration.server import ServerProcess
from tests.integration.test_sip_bad_input import udp_peer
from tests.integration.test_sip_registration import Phone

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"  # the demo config trusts this address as a carrier
#: Speech or music louder than this is "audio with energy"; G.711 silence
#: decodes to about -70 dBov or lower.
AUDIBLE_DBOV = -40.0

StartServer = Callable[..., Any]

_callers = itertools.count(1)


# -- helpers -----------------------------------------------------------------------


def queue_timers(
    ring_timeout: float | None = None, wrap_up: float | None = None
) -> Callable[[Path], None]:
    """A config edit: every queue's ring_timeout and wrap_up, for fast tests."""

    def edit(cfg: Path) -> None:
        path = cfg / "queues.toml"
        text = path.read_text()
        if ring_timeout is not None:
            text = re.sub(r"(?m)^ring_timeout = .*$", f"ring_timeout = {ring_timeout}", text)
        if wrap_up is not None:
            text = re.sub(r"(?m)^wrap_up = .*$", f"wrap_up = {wrap_up}", text)
        path.write_text(text)

    return edit


async def flow_caller(
    peers: Peers,
    server: ServerProcess,
    scenario: str = "flow_caller.xml",
    *,
    service: str = "5001",
    transport: Literal["udp", "tcp"] = "udp",
    keys: Mapping[str, str | int] | None = None,
    variables: Mapping[str, str | int] | None = None,
    caller_id: str = "0600000001",
    timeout: float = 20.0,
) -> SippProcess:
    """Start a SIPp caller from one of the flow_*.xml scenarios, on the trunk address.

    ``transport="tcp"`` runs SIPp with ``-t t1``: one TCP connection to the
    platform carries every message of the call, both ways.
    """
    tcp = transport == "tcp"
    process = SippProcess(
        scenario_path(scenario),
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=f"{Path(scenario).stem}-{transport}-{next(_callers)}",
        service=service,
        keys={"caller": caller_id, **(keys or {})},
        variables=dict(variables or {}),
        timeout=timeout,
        local_ip=TRUNK_IP,
        local_port=free_port(udp=True, tcp=True) if tcp else None,
        extra_args=["-t", "t1"] if tcp else (),
    )
    return await peers.sipp(process)


def simple_caller_vars(
    *, talk_ms: int = 3000, wait_bye: bool = False, silent: bool = False
) -> dict[str, str | int]:
    return {"talk_ms": talk_ms, "wait_bye": int(wait_bye), "silent": int(silent)}


async def lingering_agent(
    peers: Peers,
    server: ServerProcess,
    *,
    extension: str = "1001",
    behaviour: Literal["answer", "answer_hangup", "noanswer"] = "answer_hangup",
    ring_ms: int = 300,
    talk_ms: int = 1500,
    linger_ms: int = 4000,
    wait_ms: int = 15000,
) -> SippProcess:
    """A SIPp agent (flow_agent_register.xml) that stays registered ``linger_ms``
    after its call, so its state after the call (wrap-up, available) can be
    observed before it logs out."""
    variables: dict[str, str | int] = {
        "wait_ms": wait_ms,
        "expect_call": 1,
        "linger_ms": linger_ms,
    }
    if behaviour != "noanswer":
        variables["ring_ms"] = ring_ms
    if behaviour == "answer_hangup":
        variables["talk_ms"] = talk_ms
    process = SippProcess(
        scenario_path("flow_agent_register.xml"),
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=f"agent{extension}-{behaviour}-lingering",
        ooc_scenario=scenario_path(f"agent_{behaviour}.xml"),
        service=extension,
        auth_user=extension,
        auth_password=f"agent{extension}pw",
        keys={"expires": 300},
        variables=variables,
        timeout=(wait_ms + linger_ms) / 1000 + 10,
        default_behaviors="all,-bye",
    )
    await peers.sipp(process)
    await process.wait_registered()
    return process


async def sipp_agent(
    peers: Peers,
    server: ServerProcess,
    extension: str,
    behaviour: Literal["answer", "answer_hangup", "noanswer"] = "answer",
    **options: Any,
) -> SippProcess:
    """A SIPp agent (agent_register.xml), registered and logged in."""
    agent = await peers.agent(
        f"127.0.0.1:{server.sip_port}",
        extension=extension,
        password=f"agent{extension}pw",
        behaviour=behaviour,
        **options,
    )
    await server.wait_log(rf"extension {extension} registered")
    return agent


def assert_clean_log(server: ServerProcess) -> None:
    """No traceback and no error line in the platform's log."""
    bad = [line for line in server.lines if "Traceback" in line or " ERROR " in line]
    assert not bad, "\n".join(bad) + "\n" + server.log_tail()


def timeline(contact: Contact) -> list[str]:
    return [e.type for e in contact.events]


def events(contact: Contact, kind: str) -> list[ContactEvent]:
    return [e for e in contact.events if e.type == kind]


def at(contact: Contact, kind: str) -> float:
    """Wall-clock time (epoch seconds, like the capture's) of the first ``kind`` event."""
    found = events(contact, kind)
    assert found, f"no {kind!r} event in {timeline(contact)}"
    return float(found[0].at.timestamp())


def states(agent_events: list[AgentEvent]) -> list[str]:
    return [e.state for e in agent_events]


def rtp_between(
    capture: RtpCapture, port: int, start: float, end: float
) -> list[tuple[UdpDatagram, RtpPacket]]:
    """RTP (not RTCP) datagrams sent to ``port`` with capture times in [start, end]."""
    found = []
    for d in capture.datagrams():
        if d.dport != port or not start <= d.time <= end or is_rtcp(d.payload):
            continue
        try:
            found.append((d, RtpPacket.parse(d.payload)))
        except ValueError:
            continue
    return found


def summary_between(capture: RtpCapture, port: int, start: float, end: float) -> StreamSummary:
    """The one stream to ``port`` within [start, end], analysed (energy, packets)."""
    datagrams = [d for d, _ in rtp_between(capture, port, start, end)]
    streams = summarize(datagrams)
    assert len(streams) == 1, [s.describe() for s in streams]
    return streams[0]


# -- the flows ------------------------------------------------------------------------


async def test_ring_no_answer_moves_the_call_to_the_next_agent(
    start_server: StartServer, peers: Peers
) -> None:
    """1001 (longest idle) rings 3 s without answering: CANCELled (487, ACK),
    made not ready "no answer", and the call rings 1002, who takes it."""
    server: ServerProcess = await start_server(edit=queue_timers(ring_timeout=3, wrap_up=1))
    slow = await sipp_agent(peers, server, "1001", "noanswer")
    quick = await sipp_agent(peers, server, "1002", "answer", ring_ms=300)

    caller = await flow_caller(peers, server, variables=simple_caller_vars(talk_ms=6000))
    await caller.wait()
    await slow.wait()
    await quick.wait()

    # On the wire: 1001 got a CANCEL for its INVITE, answered 487 and got the ACK.
    got = [(m.method, m.status) for m in slow.messages() if not m.sent]
    assert ("CANCEL", None) in got and ("ACK", None) in got, got
    sent = [m.status for m in slow.messages() if m.sent and m.method == "INVITE"]
    assert 487 in sent, sent
    cancel = next(m for m in slow.messages() if not m.sent and m.method == "CANCEL")
    invite = next(m for m in slow.messages() if not m.sent and m.method == "INVITE")
    assert cancel.header("Call-ID") == invite.header("Call-ID")
    # RFC 3261 §9.1: the CANCEL carries the INVITE's CSeq number.
    assert (cancel.header("CSeq") or "").split()[0] == (invite.header("CSeq") or "").split()[0]

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert timeline(contact) == [
        "arrived",
        "accepted",
        "queued",
        "offered",
        "ringing",
        "no_answer",
        "offered",
        "ringing",
        "answered",
        "ended",
    ], timeline(contact)
    offered = [e.data["agent"] for e in events(contact, "offered")]
    assert offered == ["1001", "1002"]
    assert events(contact, "no_answer")[0].data["agent"] == "1001"
    # The CANCEL left when the ring timeout expired, not before.
    rang = at(contact, "no_answer") - at(contact, "offered")
    assert 2.9 <= rang <= 4.0, rang
    assert contact.outcome == "answered" and contact.agent == "1002"

    slow_states = server.agent_events("1001")
    assert states(slow_states)[:4] == ["registered", "available", "reserved", "not-ready"], states(
        slow_states
    )
    assert slow_states[3].reason == "no answer"
    assert states(server.agent_events("1002"))[:4] == [
        "registered",
        "available",
        "reserved",
        "on-call",
    ]
    assert_clean_log(server)


async def test_caller_hangs_up_while_the_agent_rings(
    start_server: StartServer, peers: Peers
) -> None:
    """The caller leaves while the agent's phone rings: the agent's INVITE is
    CANCELled, the contact is abandoned and the agent is available again."""
    server: ServerProcess = await start_server()  # 15 s ring timeout: never reached
    agent = await lingering_agent(peers, server, behaviour="noanswer", linger_ms=1000)

    caller = await flow_caller(peers, server, variables=simple_caller_vars(talk_ms=1500))
    await caller.wait()
    await agent.wait()  # its scenario completes only with CANCEL, 487 and ACK

    got = [m.method for m in agent.messages() if not m.sent and m.method != "REGISTER"]
    assert "CANCEL" in got and "ACK" in got, got
    assert 487 in [m.status for m in agent.messages() if m.sent and m.method == "INVITE"]

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert timeline(contact) == [
        "arrived",
        "accepted",
        "queued",
        "offered",
        "ringing",
        "abandoned",
        "ended",
    ], timeline(contact)
    assert contact.outcome == "abandoned" and contact.disconnect_reason == "caller"
    assert contact.answered_at is None
    # Withdrawn, the agent is free again at once (the phone then logs out
    # when its scenario ends, after a linger).
    evs = await wait_for(
        lambda: (evs := server.agent_events("1001")) and "logged-out" in states(evs) and evs,
        5,
        "1001's states through its logout",
    )
    assert states(evs) == [
        "registered",
        "available",
        "reserved",
        "available",
        "unregistered",
        "logged-out",
    ], states(evs)
    assert (evs[4].at - evs[3].at).total_seconds() >= 0.9  # available during the linger
    assert_clean_log(server)


async def test_caller_holds_and_resumes(start_server: StartServer, peers: Peers) -> None:
    """The caller holds with a sendonly re-INVITE (RFC 3264 §8.4), is answered
    recvonly and then sent nothing, while the agent hears the platform's hold
    music and not the holder's own audio; sendrecv resumes the conversation."""
    server: ServerProcess = await start_server()
    agent = await sipp_agent(peers, server, "1001", "answer", ring_ms=300)

    caller = await flow_caller(
        peers,
        server,
        "flow_caller_hold.xml",
        variables={"bridge_ms": 2000, "hold_ms": 2500, "after_ms": 1500},
    )
    capture = await peers.capture([caller.media_port, agent.media_port])
    await caller.wait()  # its 200s were checked: recvonly to the hold, sendrecv to the resume
    await agent.wait()
    await capture.stop()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert timeline(contact) == [
        "arrived",
        "accepted",
        "queued",
        "offered",
        "ringing",
        "answered",
        "hold",
        "resume",
        "ended",
    ], timeline(contact)
    assert events(contact, "hold")[0].data["by"] == "caller"
    assert contact.holds == 1
    assert contact.hold_seconds is not None and 2.0 <= contact.hold_seconds <= 3.5
    assert contact.outcome == "answered"

    connected, held, resumed = at(contact, "answered"), at(contact, "hold"), at(contact, "resume")

    # The caller heard the agent before the hold and after it, and during the
    # hold nothing at all (it said sendonly: we answered recvonly).
    before = rtp_between(capture, caller.media_port, connected + 0.2, held - 0.1)
    during = rtp_between(capture, caller.media_port, held + 0.1, resumed - 0.1)
    after = rtp_between(capture, caller.media_port, resumed + 0.2, resumed + 1.2)
    # (the agent's g711a.pcap: 30 ms packets, about 33 a second)
    assert len(before) > 20, len(before)
    assert during == [], f"{len(during)} RTP packets sent to the holding caller"
    assert len(after) > 20, len(after)

    # The agent heard the platform's hold music: 20 ms frames (160 octets)
    # with energy, about 50 a second, and none of the holder's own audio
    # (SIPp's g711a.pcap is 30 ms frames, 240 octets).
    moh = rtp_between(capture, agent.media_port, held + 0.1, resumed - 0.1)
    sizes = {len(p.payload) for _, p in moh}
    assert sizes == {160}, sizes
    span = resumed - held - 0.2
    assert 40 * span <= len(moh) <= 60 * span, (len(moh), span)
    music = summary_between(capture, agent.media_port, held + 0.1, resumed - 0.1)
    assert music.energy_dbov > AUDIBLE_DBOV, music.describe()
    # After the resume, the caller's voice is relayed to the agent again.
    voice = rtp_between(capture, agent.media_port, resumed + 0.2, resumed + 1.2)
    assert voice and {len(p.payload) for _, p in voice} == {240}, {len(p.payload) for _, p in voice}
    assert_clean_log(server)


@pytest.mark.parametrize("hangs_up", ["caller", "agent"])
async def test_caller_over_tcp(start_server: StartServer, peers: Peers, hangs_up: str) -> None:
    """A trunk that sends over TCP: the call reaches the agent, and the BYE
    (the caller's, or the platform's for the agent's) travels over the same
    TCP connection."""
    server: ServerProcess = await start_server(edit=queue_timers(wrap_up=1))
    if hangs_up == "agent":
        agent = await sipp_agent(peers, server, "1001", "answer_hangup", ring_ms=300, talk_ms=1500)
    else:
        agent = await sipp_agent(peers, server, "1001", "answer", ring_ms=300)
    caller = await flow_caller(
        peers,
        server,
        transport="tcp",
        variables=simple_caller_vars(talk_ms=3000, wait_bye=hangs_up == "agent"),
    )
    await caller.wait()
    await agent.wait()

    messages = caller.messages()
    byes = [m for m in messages if m.method == "BYE" and m.status is None]
    assert len(byes) == 1 and byes[0].sent == (hangs_up == "caller"), [m.first_line for m in byes]
    for m in messages:
        via = m.header("Via") or ""
        assert via.startswith("SIP/2.0/TCP"), (m.first_line, via)
    ok = [m for m in messages if m.status == 200 and m.method == "BYE"]
    assert len(ok) == 1 and ok[0].sent == (hangs_up == "agent")

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert "answered" in timeline(contact), timeline(contact)
    assert contact.outcome == "answered" and contact.agent == "1001"
    assert contact.disconnect_reason == hangs_up
    assert_clean_log(server)


async def test_sip_info_dtmf_drives_the_ivr(start_server: StartServer, peers: Peers) -> None:
    """A phone without RFC 4733 sends its key as SIP INFO (dtmf-relay
    Signal=0): the IVR takes it and the caller joins the general queue."""
    server: ServerProcess = await start_server()
    caller = await flow_caller(
        peers,
        server,
        "flow_caller_info.xml",
        service="5000",
        keys={"digit": "0"},
        variables={"greet_ms": 1000, "talk_ms": 1500},
    )
    await caller.wait()
    info_ok = [m for m in caller.messages() if not m.sent and m.method == "INFO"]
    assert [m.status for m in info_ok] == [200]

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    (digit,) = events(contact, "digit")
    assert digit.data["digit"] == "0" and digit.data["method"] == "sip-info", digit.data
    branch = events(contact, "branch")
    assert branch and branch[-1].data["to"] == "agent", [e.data for e in branch]
    (queued,) = events(contact, "queued")
    assert queued.data["queue"] == "general"
    assert kinds.index("digit") < kinds.index("branch") < kinds.index("queued"), kinds
    assert contact.queue == "general"
    assert contact.outcome == "abandoned"  # nobody was logged in to take it
    assert_clean_log(server)


async def test_agent_hangs_up_first_then_wraps_up(start_server: StartServer, peers: Peers) -> None:
    """The agent ends the call: the caller gets our BYE, the contact is
    answered and disconnected by the agent, who is in wrap-up for the queue's
    wrap-up time and then available."""
    wrap_up = 2.0
    server: ServerProcess = await start_server(edit=queue_timers(wrap_up=wrap_up))
    agent = await lingering_agent(
        peers, server, behaviour="answer_hangup", talk_ms=1500, linger_ms=int(wrap_up * 1000) + 2000
    )
    await server.wait_log(r"extension 1001 registered")
    caller = await peers.caller(
        f"127.0.0.1:{server.sip_port}",
        service="5001",  # straight to the queue: no flow, so no survey after the agent
        digits="0",
        greet_ms=500,
        wait_bye=True,
        local_ip=TRUNK_IP,
        timeout=20,
    )
    await caller.wait()
    received_bye = [m for m in caller.messages() if not m.sent and m.method == "BYE"]
    assert len(received_bye) >= 1

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert contact.outcome == "answered" and contact.disconnect_reason == "agent"
    assert contact.agent == "1001"

    def wrapped() -> list[AgentEvent] | None:
        evs = server.agent_events("1001")
        kinds = states(evs)
        if "wrap-up" in kinds and "available" in kinds[kinds.index("wrap-up") :]:
            return evs
        return None

    evs = await wait_for(wrapped, wrap_up + 5, "1001 available after wrap-up")
    kinds = states(evs)
    assert kinds[:5] == ["registered", "available", "reserved", "on-call", "wrap-up"], kinds
    wrap = evs[kinds.index("wrap-up")]
    free = next(e for e in evs[kinds.index("wrap-up") :] if e.state == "available")
    took = (free.at - wrap.at).total_seconds()
    assert abs(took - wrap_up) < 0.5, took
    await agent.wait()
    assert_clean_log(server)


async def test_unreachable_phone_is_skipped_at_ring_timeout(
    start_server: StartServer, peers: Peers
) -> None:
    """1001's registered contact never answers anything, not even 100 Trying.
    No CANCEL may be sent before a provisional response (RFC 3261 §9.1), but the
    caller must not wait for Timer B (32 s): at the ring timeout 1001 is made not
    ready and the call rings 1002."""
    server: ServerProcess = await start_server(edit=queue_timers(ring_timeout=3, wrap_up=1))
    async with udp_peer() as dead:
        phone = Phone(dead, server, "1001")
        challenge = await phone.challenge()
        ok = await phone.send(phone.register(300, phone.credentials(challenge, "agent1001pw")))
        assert ok.status == 200
        quick = await sipp_agent(peers, server, "1002", "answer", ring_ms=300)

        caller = await flow_caller(peers, server, variables=simple_caller_vars(talk_ms=5000))
        await caller.wait()
        await quick.wait()

        (contact,) = await server.wait_contact_closed(1, timeout=10)
        offered = [e.data["agent"] for e in events(contact, "offered")]
        assert offered == ["1001", "1002"], timeline(contact)
        skipped = at(contact, "no_answer") - events(contact, "offered")[0].at.timestamp()
        assert 2.9 <= skipped <= 4.0, skipped
        assert contact.outcome == "answered" and contact.agent == "1002"
        # The dead phone got INVITE retransmissions and no CANCEL.
        got = []
        while not dead.inbox.empty():
            got.append(parse_message(dead.inbox.get_nowait()))
        methods = [m.method for m in got if isinstance(m, Request)]
        assert "INVITE" in methods and "CANCEL" not in methods, methods
    assert states(server.agent_events("1001"))[:4] == [
        "registered",
        "available",
        "reserved",
        "not-ready",
    ]
    assert_clean_log(server)


async def test_late_offer_caller_hears_the_greeting(
    start_server: StartServer, peers: Peers
) -> None:
    """An INVITE without SDP (late offer): the platform offers in its 200 OK,
    takes the answer from the ACK, and only then plays the greeting to the
    address that answer names."""
    server: ServerProcess = await start_server()
    caller = await flow_caller(
        peers, server, "flow_caller_late_offer.xml", service="5000",
        variables={"listen_ms": 3000},
    )  # fmt: skip
    capture = await peers.capture([caller.media_port])
    await caller.wait()
    await capture.stop()
    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert timeline(contact)[:4] == ["arrived", "accepted", "node", "prompt"], timeline(contact)
    (heard,) = capture.streams_to(caller.media_port)
    assert heard.codecs == ["PCMA"], heard.describe()  # the codec of the ACK's answer
    assert heard.loud_seconds(-40) >= 1.0, heard.describe()
    assert_clean_log(server)


async def test_survey_after_the_agent_hangs_up(start_server: StartServer, peers: Peers) -> None:
    """The demo flow keeps the caller after the agent's BYE for a 1-5 survey: the
    caller presses 5 during the question (barge-in), hears thanks and gets our BYE;
    the score is on the contact, which the agent ended."""
    server: ServerProcess = await start_server(edit=queue_timers(wrap_up=1))
    agent = await lingering_agent(
        peers, server, behaviour="answer_hangup", talk_ms=1500, linger_ms=3000
    )
    await server.wait_log(r"extension 1001 registered")
    caller = await peers.caller(
        f"127.0.0.1:{server.sip_port}",
        service="5000",
        digits="05",
        gap_ms=5000,  # 0 queues the call; 5 comes once the agent has hung up
        greet_ms=500,
        wait_bye=True,
        local_ip=TRUNK_IP,
        timeout=30,
    )
    await caller.wait()
    assert [m for m in caller.messages() if not m.sent and m.method == "BYE"]
    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    assert kinds.index("answered") < kinds.index("agent_hung_up") < len(kinds) - 1, kinds
    assert contact.survey_score == 5, kinds
    assert contact.outcome == "answered" and contact.disconnect_reason == "agent"
    await agent.wait()
    assert_clean_log(server)
