"""The ACD end to end: real callers and real agent phones, routed by `ccserver run`.

The router's decisions are unit-tested without sockets (tests/unit); here the
same decisions are carried out on real SIP legs and observed where an admin
would look: SIPp's message logs, the RTP on the wire (dumpcap), and the
contact timelines and agent state log in the platform's database. Callers
come from the trunk address on DID 5001 (queue "general") or on a DID added
for a test. Agents register with digest auth: SIPp phones that answer every
call offered until they have taken their share (scenarios/acd_agent_call.xml),
a SIPp phone that never answers, and a baresip softphone picked up by hand.
"""

from __future__ import annotations

import itertools
import re
import wave
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ccserver.storage.models import AgentEvent, Contact
from tests.integration.peers import wait_for
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_port_block
from tests.integration.peers.sipp import SippProcess, scenario_path
from tests.integration.server import ServerProcess
from tests.integration.test_call_flows import (
    AUDIBLE_DBOV,
    TRUNK_IP,
    assert_clean_log,
    events,
    lingering_agent,
    simple_caller_vars,
    states,
    summary_between,
    timeline,
)

pytestmark = pytest.mark.integration

StartServer = Callable[..., Any]
ConfigEdit = Callable[[Path], None]

_agents = itertools.count(1)
_callers = itertools.count(1)


# -- configuration edits ---------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    raise TypeError(f"no TOML rendering for {value!r}")


def queue_settings(queue: str, **values: object) -> ConfigEdit:
    """A config edit: set (or, with None, remove) keys of ``[queues.QUEUE]``."""

    def edit(cfg: Path) -> None:
        path = cfg / "queues.toml"
        lines = path.read_text().splitlines()
        header = f"[queues.{queue}]"
        start = lines.index(header) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
        for key, value in values.items():
            rx = re.compile(rf"^{re.escape(key)}\s*=")
            found = next((i for i in range(start, end) if rx.match(lines[i])), None)
            if found is not None:
                del lines[found]
                end -= 1
            if value is not None:
                lines.insert(start, f"{key} = {_toml_value(value)}")
                end += 1
        path.write_text("\n".join(lines) + "\n")

    return edit


def add_did(number: str, queue: str) -> ConfigEdit:
    """A config edit: DID ``number`` goes straight into ``queue``."""

    def edit(cfg: Path) -> None:
        path = cfg / "dids.toml"
        path.write_text(path.read_text() + f'\n[dids."{number}"]\nqueue = "{queue}"\n')

    return edit


def silent_hold_music(cfg: Path) -> None:
    """A config edit: hold music is one second of digital silence, so that any
    energy a waiting caller receives is the platform speaking to it."""
    path = cfg / "silence.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 8000)
    toml = cfg / "ccserver.toml"
    toml.write_text(re.sub(r'(?m)^moh = "tone"', 'moh = "silence.wav"', toml.read_text()))


def edits(*steps: ConfigEdit) -> ConfigEdit:
    def edit(cfg: Path) -> None:
        for step in steps:
            step(cfg)

    return edit


# -- peers ---------------------------------------------------------------------------


async def acd_agent(
    peers: Peers,
    server: ServerProcess,
    extension: str,
    *,
    calls: int = 1,
    ring_ms: int = 300,
    hangup_ms: int = 60000,
    wait_ms: int = 20000,
    linger_ms: int = 500,
    media_port: int | None = None,
) -> SippProcess:
    """A SIPp agent phone that registers ``extension`` and answers every call
    offered (acd_agent_call.xml under flow_agent_register.xml).

    Each call ends with the caller's BYE or, after ``hangup_ms``, the agent's
    own. After ``calls`` calls it stays registered ``linger_ms`` more, then
    unregisters; with fewer calls within ``wait_ms`` it fails.
    """
    name = f"acd-agent{extension}-{next(_agents)}"
    template = scenario_path("acd_agent_call.xml").read_text(encoding="latin-1")
    rendered, n = re.subn(
        r'(<recv request="BYE" timeout=")\d+(")', rf"\g<1>{hangup_ms}\g<2>", template
    )
    assert n == 1, "acd_agent_call.xml lost its BYE wait"
    ooc = peers.workdir / f"{name}.acd_agent_call.xml"
    ooc.write_text(rendered, encoding="latin-1")
    process = SippProcess(
        scenario_path("flow_agent_register.xml"),
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=name,
        ooc_scenario=ooc,
        service=extension,
        auth_user=extension,
        auth_password=f"agent{extension}pw",
        keys={"expires": 300},
        variables={
            "wait_ms": wait_ms,
            "expect_call": 1,
            "linger_ms": linger_ms,
            "ring_ms": ring_ms,
            "calls": calls,
        },
        timeout=(wait_ms + linger_ms) / 1000 + 10,
        default_behaviors="all,-bye",
        media_port=media_port,
    )
    mark = len(server.lines)
    await peers.sipp(process)
    await process.wait_registered()
    await server.wait_log(rf"extension {extension} registered", start=mark)
    return process


async def caller(
    peers: Peers,
    server: ServerProcess,
    caller_id: str,
    *,
    service: str = "5001",
    talk_ms: int = 3000,
    wait_bye: bool = False,
    silent: bool = False,
    media_port: int | None = None,
    scenario: str = "flow_caller.xml",
    variables: Mapping[str, str | int] | None = None,
    timeout: float = 25.0,
) -> SippProcess:
    """A SIPp caller from the trunk address (flow_caller.xml, or ``scenario``
    with its ``variables``); returns once the platform has put it in a queue
    (its `queued in` log line)."""
    if variables is None:
        variables = simple_caller_vars(talk_ms=talk_ms, wait_bye=wait_bye, silent=silent)
    mark = len(server.lines)
    process = SippProcess(
        scenario_path(scenario),
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=f"acd-caller-{caller_id}-{next(_callers)}",
        service=service,
        keys={"caller": caller_id},
        variables=variables,
        timeout=timeout,
        local_ip=TRUNK_IP,
        media_port=media_port,
    )
    await peers.sipp(process)
    accepted = await server.wait_log(
        rf"\[(\w+)\] call from {caller_id} to {service} accepted", start=mark
    )
    await server.wait_log(rf"\[{accepted[1]}\] queued in ", start=mark)
    return process


# -- reading the outcome ----------------------------------------------------------------


def contact_of(server: ServerProcess, caller_id: str) -> Contact:
    """The (only) contact from ``caller_id``."""
    (found,) = [c for c in server.contacts() if c.caller_number == caller_id]
    return found


async def closed_contact(server: ServerProcess, caller_id: str, timeout: float = 10.0) -> Contact:
    def closed() -> Contact | None:
        if not server.db_path.exists():
            return None
        try:
            rows = server.contacts()
        except Exception:
            return None  # tables not created yet
        found = [c for c in rows if c.caller_number == caller_id and c.ended_at is not None]
        return found[0] if found else None

    result: Contact = await wait_for(
        closed, timeout, f"the contact of {caller_id} closed", diagnose=server.log_tail
    )
    return result


async def agent_reaches(
    server: ServerProcess, ext: str, state: str, after: int = 0, timeout: float = 10.0
) -> list[AgentEvent]:
    """Wait until ``ext`` has entered ``state`` after its first ``after`` logged events."""

    def reached() -> list[AgentEvent] | None:
        evs = server.agent_events(ext)
        return evs if state in states(evs)[after:] else None

    result: list[AgentEvent] = await wait_for(
        reached, timeout, f"agent {ext} {state}", diagnose=server.log_tail
    )
    return result


def when(contact: Contact, kind: str, nth: int = 0) -> datetime:
    found = events(contact, kind)
    assert len(found) > nth, f"no {kind!r} #{nth} in {timeline(contact)}"
    return found[nth].at


def ended(contact: Contact) -> datetime:
    assert contact.ended_at is not None, f"{contact} is still open"
    return contact.ended_at


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def offered_to(contact: Contact) -> list[str]:
    return [e.data["agent"] for e in events(contact, "offered")]


def received(process: SippProcess, method: str) -> int:
    return sum(
        1 for m in process.messages() if not m.sent and m.status is None and m.method == method
    )


def first(evs: list[AgentEvent], state: str, after: datetime | None = None) -> AgentEvent:
    for e in evs:
        if e.state == state and (after is None or e.at >= after):
            return e
    raise AssertionError(f"no {state!r} after {after} in {states(evs)}")


# -- the tests ---------------------------------------------------------------------------


async def test_longest_idle_spreads_calls_over_the_agents(
    start_server: StartServer, peers: Peers
) -> None:
    """1001, 1002 and 1003 log in in that order and stay logged in. Three calls
    one after the other go to 1001, 1002, 1003: 1001 is free again (wrap-up
    done) when the second call comes, but it has been idle for a shorter time
    than 1002, who has waited since its login."""
    server: ServerProcess = await start_server(edit=queue_settings("general", wrap_up=0.5))
    # Each phone stays registered long after its call (it is stopped with the test).
    phones = {
        ext: await acd_agent(peers, server, ext, calls=1, linger_ms=20000)
        for ext in ("1001", "1002", "1003")
    }

    numbers = ("0600000001", "0600000004", "0600000005")
    served: list[str] = []
    for number in numbers:
        call = await caller(peers, server, number, talk_ms=1200)
        await call.wait()
        contact = await closed_contact(server, number)
        assert contact.outcome == "answered", timeline(contact)
        assert contact.agent is not None
        served.append(contact.agent)
        # Wait until the agent who took it is free again: it then competes for
        # the next call with the agents who have not had one.
        await agent_reaches(server, contact.agent, "available", after=3)

    assert served == ["1001", "1002", "1003"], served
    contacts = [contact_of(server, number) for number in numbers]
    for contact, ext in zip(contacts, served, strict=True):
        assert offered_to(contact) == [ext], timeline(contact)
        assert timeline(contact) == [
            "arrived", "accepted", "queued", "offered", "ringing", "answered", "ended",
        ], timeline(contact)  # fmt: skip

    # Logins in order, and each agent was reserved exactly once.
    logins = {ext: first(server.agent_events(ext), "available").at for ext in served}
    assert logins["1001"] < logins["1002"] < logins["1003"], logins
    for ext in served:
        kinds = states(server.agent_events(ext))
        assert kinds.count("reserved") == 1 and kinds.count("on-call") == 1, (ext, kinds)
        assert received(phones[ext], "INVITE") == 1, ext
    # When the 2nd and 3rd calls were offered, the earlier agents were free
    # again, so the choice was by idle time and not by who happened to be free.
    for k in (1, 2):
        offered = when(contacts[k], "offered")
        for earlier in served[:k]:
            evs = server.agent_events(earlier)
            back = first(evs, "available", after=first(evs, "wrap-up").at)
            assert back.at < offered, (earlier, back.at, offered)
            idle_for = seconds(offered, back.at)
            chosen_idle = seconds(offered, logins[served[k]])
            assert chosen_idle > idle_for, (served[k], chosen_idle, earlier, idle_for)
    assert_clean_log(server)


async def test_vip_caller_overtakes_standard_callers(
    start_server: StartServer, peers: Peers
) -> None:
    """1001 is on a call while two standard customers queue, then a VIP
    customer. When 1001 is free again, the VIP's call is offered first
    (tier vip = priority 30), then the standard callers in arrival order."""
    server: ServerProcess = await start_server(edit=queue_settings("general", wrap_up=0.5))
    agent = await acd_agent(peers, server, "1001", calls=4, hangup_ms=2500, wait_ms=25000)

    busy, first_std, second_std, vip = "0600000010", "0600000001", "0600000004", "0600000009"
    mark = len(server.lines)
    callers = [await caller(peers, server, busy, wait_bye=True)]
    await server.wait_log(r"agent 1001 answered", start=mark)
    for number in (first_std, second_std, vip):
        callers.append(await caller(peers, server, number, wait_bye=True))
    for process in callers:
        await process.wait()
    await agent.wait()

    contacts = {n: await closed_contact(server, n) for n in (busy, first_std, second_std, vip)}
    for number, contact in contacts.items():
        assert contact.outcome == "answered", (number, timeline(contact))
        assert offered_to(contact) == ["1001"], (number, timeline(contact))
    # All three were waiting when the agent came free (the busy call's end
    # plus the wrap-up), and the VIP joined last.
    queued = {n: when(c, "queued") for n, c in contacts.items()}
    assert queued[first_std] < queued[second_std] < queued[vip] < when(contacts[busy], "ended")
    # ... and was offered first.
    offered = {n: when(c, "offered") for n, c in contacts.items()}
    assert offered[busy] < offered[vip] < offered[first_std] < offered[second_std], offered

    # Each was told its place on joining: the VIP went straight to the head.
    places = {n: events(contacts[n], "announced")[0].data["position"] for n in queued if n != busy}
    assert places == {first_std: 1, second_std: 2, vip: 1}, places

    # The customer directory knew the VIP: its tier reached the queue and its
    # name the contact record.
    (vip_queued,) = events(contacts[vip], "queued")
    assert vip_queued.data["tier"] == "vip", vip_queued.data
    assert contacts[vip].caller_name == "Eleanor Whitfield"
    assert contacts[vip].customer_id == "C0009"
    for number in (first_std, second_std):
        (std_queued,) = events(contacts[number], "queued")
        assert std_queued.data["tier"] == "standard", std_queued.data
    kinds = states(server.agent_events("1001"))
    assert kinds.count("reserved") == 4 and kinds.count("wrap-up") == 4, kinds
    assert_clean_log(server)


async def test_wrap_up_delays_the_next_offer(start_server: StartServer, peers: Peers) -> None:
    """A caller waits while 1001 talks to another; when that call ends, 1001
    is in wrap-up for the queue's 2 s and only then is offered the waiting call."""
    wrap_up = 2.0
    server: ServerProcess = await start_server(edit=queue_settings("general", wrap_up=wrap_up))
    agent = await acd_agent(peers, server, "1001", calls=2, hangup_ms=1500)

    mark = len(server.lines)
    first_call = await caller(peers, server, "0600000001", wait_bye=True)
    await server.wait_log(r"agent 1001 answered", start=mark)
    second_call = await caller(peers, server, "0600000004", wait_bye=True)
    await first_call.wait()
    await second_call.wait()
    await agent.wait()

    done = await closed_contact(server, "0600000001")
    waiting = await closed_contact(server, "0600000004")
    assert done.outcome == "answered" and done.disconnect_reason == "agent", timeline(done)
    assert waiting.outcome == "answered" and offered_to(waiting) == ["1001"], timeline(waiting)
    assert when(waiting, "queued") < when(done, "ended")
    delay = seconds(when(waiting, "offered"), when(done, "ended"))
    assert abs(delay - wrap_up) <= 0.5, delay

    evs = server.agent_events("1001")
    wrap = first(evs, "wrap-up")
    free = first(evs, "available", after=wrap.at)
    assert abs(seconds(free.at, wrap.at) - wrap_up) <= 0.5
    assert states(evs)[states(evs).index("wrap-up") :][:3] == ["wrap-up", "available", "reserved"]
    assert_clean_log(server)


async def test_max_wait_overflows_to_another_queue(start_server: StartServer, peers: Peers) -> None:
    """DID 5002 goes to queue "cards" (max_wait 2 s, overflow to "general").
    No card agent is logged in: after 2 s the caller moves to "general",
    whose agent 1001 takes it."""
    server: ServerProcess = await start_server(
        edit=edits(add_did("5002", "cards"), queue_settings("cards", max_wait=2))
    )
    agent = await acd_agent(peers, server, "1001", calls=1, hangup_ms=1000)
    call = await caller(peers, server, "0600000001", service="5002", wait_bye=True)
    await call.wait()
    await agent.wait()

    contact = await closed_contact(server, "0600000001")
    kinds = timeline(contact)
    assert kinds.index("queued") < kinds.index("overflow") < kinds.index("offered"), kinds
    assert events(contact, "queued")[0].data["queue"] == "cards"
    (overflow,) = events(contact, "overflow")
    assert overflow.data["from"] == "cards" and overflow.data["to"] == "general", overflow.data
    assert overflow.data["kind"] == "queue" and overflow.data["reason"] == "max-wait"
    assert abs(overflow.data["waited"] - 2.0) <= 0.5, overflow.data
    assert abs(seconds(overflow.at, when(contact, "queued")) - 2.0) <= 0.5
    (offer,) = events(contact, "offered")
    assert offer.data["agent"] == "1001" and offer.data["queue"] == "general", offer.data
    assert contact.outcome == "answered" and contact.agent == "1001"
    assert contact.queue == "general"
    assert_clean_log(server)


async def test_max_wait_with_nowhere_left_hangs_up(start_server: StartServer, peers: Peers) -> None:
    """Queue "general" overflows to "cards" after 2 s, "cards" back to "general"
    after 2 s more; a queue already visited is no destination, so with nobody
    logged in the platform ends the call: outcome "overflowed"."""
    server: ServerProcess = await start_server(
        edit=edits(
            queue_settings("general", max_wait=2, overflow="queue:cards"),
            queue_settings("cards", max_wait=2),
        )
    )
    call = await caller(peers, server, "0600000001", wait_bye=True)
    await call.wait()  # it ends with the platform's BYE

    contact = await closed_contact(server, "0600000001")
    hops = [(e.data["from"], e.data["kind"], e.data["to"]) for e in events(contact, "overflow")]
    assert hops == [("general", "queue", "cards"), ("cards", "hangup", "")], hops
    assert {e.data["reason"] for e in events(contact, "overflow")} == {"max-wait"}
    assert contact.outcome == "overflowed" and contact.disconnect_reason == "system"
    assert "abandoned" not in timeline(contact), timeline(contact)
    assert abs(seconds(ended(contact), when(contact, "queued")) - 4.0) <= 0.6
    got = [m.method for m in call.messages() if not m.sent and m.status is None]
    assert got == ["BYE"], got
    assert_clean_log(server)


async def test_waiting_caller_hears_its_position_and_wait(
    start_server: StartServer, peers: Peers
) -> None:
    """A caller waits while the only agent is busy: on joining and again every
    10 s it is told its place (1) and the estimated wait (one recent handled
    call of about a second: "about 1 minute"), spoken between bars of hold
    music. Hold music is silence here, so every loud stretch on the caller's
    RTP port is the platform speaking."""
    server: ServerProcess = await start_server(
        edit=edits(silent_hold_music, queue_settings("general", wrap_up=0.5, announce_every=10))
    )
    agent = await acd_agent(peers, server, "1001", calls=2)

    # One handled call gives the queue a handle time to estimate from.
    await caller(peers, server, "0600000001", talk_ms=1000)
    await closed_contact(server, "0600000001")
    await agent_reaches(server, "1001", "available", after=3)
    # 1001 takes a long call; the next caller has to wait.
    mark = len(server.lines)
    busy = await caller(peers, server, "0600000004", talk_ms=14000)
    await server.wait_log(r"agent 1001 answered", start=mark)

    port = free_port_block(4)
    capture = await peers.capture([port])
    waiting = await caller(peers, server, "0600000005", talk_ms=11500, silent=True, media_port=port)
    await waiting.wait()
    await capture.stop()
    await busy.wait()
    await agent.wait()

    contact = await closed_contact(server, "0600000005")
    assert contact.outcome == "abandoned" and offered_to(contact) == [], timeline(contact)
    told = events(contact, "announced")
    assert len(told) == 2, timeline(contact)
    for event in told:
        assert event.data["queue"] == "general" and event.data["position"] == 1, event.data
        estimate = event.data["estimated_wait"]
        assert estimate is not None and 0.5 <= estimate <= 3.0, event.data
    assert seconds(told[0].at, when(contact, "queued")) < 0.2
    assert abs(seconds(told[1].at, told[0].at) - 10.0) <= 0.5

    # On the wire: speech right after each announcement, silence between
    # them, and RTP all along (the hold music resumed after each).
    first_at, second_at = (e.at.timestamp() for e in told)
    for start in (first_at, second_at):
        speech = summary_between(capture, port, start, start + 2.0)
        assert speech.energy_dbov > AUDIBLE_DBOV, speech.describe()
    quiet = summary_between(capture, port, first_at + 7.0, second_at - 0.3)
    assert quiet.energy_dbov < -60.0, quiet.describe()
    span = second_at - 0.3 - (first_at + 7.0)
    assert quiet.rtp_packets >= 40 * span, (quiet.describe(), span)
    assert_clean_log(server)


async def test_ring_all_rings_every_agent_and_cancels_the_losers(
    start_server: StartServer, peers: Peers
) -> None:
    """In a ring-all queue both free agents ring at once: 1001 is a baresip
    softphone picked up by hand, 1002 a SIPp phone nobody answers. When 1001
    answers, 1002's INVITE is CANCELled (200, 487, ACK), 1002 is free again
    (not "no answer"), and the caller is bridged to 1001 and hears it."""
    server: ServerProcess = await start_server(
        edit=queue_settings("general", strategy="ring-all", wrap_up=0.5)
    )
    mark = len(server.lines)
    phone = await peers.baresip("agent-1001", direct=False)
    await phone.register(f"127.0.0.1:{server.sip_port}", "1001", "agent1001pw", answermode="manual")
    await server.wait_log(r"extension 1001 registered", start=mark)
    mark = len(server.lines)
    loser = await lingering_agent(
        peers, server, extension="1002", behaviour="noanswer", linger_ms=500
    )
    await server.wait_log(r"extension 1002 registered", start=mark)

    port = free_port_block(4)
    capture = await peers.capture([port])
    call = await caller(peers, server, "0600000001", talk_ms=4000, media_port=port)
    await phone.wait_event("CALL_INCOMING", timeout=5)

    def both_ringing() -> bool:
        rows = server.contacts()
        return bool(rows) and len(events(rows[0], "ringing")) == 2

    await wait_for(both_ringing, 5, "both phones ringing", diagnose=server.log_tail)
    await phone.answer()
    await phone.wait_event("CALL_ESTABLISHED", timeout=5)
    await loser.wait()  # its scenario completes only with CANCEL, 487 and ACK
    await call.wait()
    await phone.wait_event("CALL_CLOSED", timeout=5)
    await capture.stop()

    contact = await closed_contact(server, "0600000001")
    offers = events(contact, "offered")
    assert sorted(e.data["agent"] for e in offers) == ["1001", "1002"], timeline(contact)
    assert all(e.data["ring_all"] for e in offers), [e.data for e in offers]
    assert abs(seconds(offers[1].at, offers[0].at)) < 0.2
    (answered,) = events(contact, "answered")
    assert answered.data["agent"] == "1001"
    assert contact.outcome == "answered" and contact.agent == "1001"

    got = [m.method for m in loser.messages() if not m.sent and m.status is None]
    assert [m for m in got if m != "REGISTER"] == ["INVITE", "CANCEL", "ACK"], got
    assert 487 in [m.status for m in loser.messages() if m.sent and m.method == "INVITE"]
    # 1002 was released by the answer, not made "not ready" for not answering.
    evs = server.agent_events("1002")
    assert states(evs)[:4] == ["registered", "available", "reserved", "available"], states(evs)
    assert evs[3].reason == "answered elsewhere"
    assert abs(seconds(evs[3].at, answered.at)) < 0.1
    # The caller hears the winner: the softphone's speech, once answered.
    voice = summary_between(
        capture, port, answered.at.timestamp() + 0.3, ended(contact).timestamp()
    )
    assert voice.loud_seconds(AUDIBLE_DBOV) >= 1.0, voice.describe()
    assert_clean_log(server)


async def test_join_empty_sends_the_caller_on_at_once(
    start_server: StartServer, peers: Peers
) -> None:
    """Queue "general" refuses callers while none of its agents is logged in
    (join_empty = false) and sends them to "cards", where 1006 takes the call."""
    server: ServerProcess = await start_server(
        edit=queue_settings("general", join_empty=False, overflow="queue:cards")
    )
    agent = await acd_agent(peers, server, "1006", calls=1, hangup_ms=1000)
    call = await caller(peers, server, "0600000001", wait_bye=True)
    await call.wait()
    await agent.wait()

    contact = await closed_contact(server, "0600000001")
    (overflow,) = events(contact, "overflow")
    assert overflow.data["from"] == "general" and overflow.data["to"] == "cards", overflow.data
    assert overflow.data["reason"] == "join-empty" and overflow.data["waited"] == 0.0
    assert seconds(overflow.at, when(contact, "queued")) < 0.2
    (offer,) = events(contact, "offered")
    assert offer.data["agent"] == "1006" and offer.data["queue"] == "cards", offer.data
    assert contact.outcome == "answered" and contact.queue == "cards"
    assert_clean_log(server)


async def test_join_empty_without_destination_ends_the_call(
    start_server: StartServer, peers: Peers
) -> None:
    """With join_empty = false and no overflow destination, a caller of an
    unstaffed queue is sent away at once: outcome "overflowed". The caller
    takes 300 ms to ACK the 200; the platform's BYE waits for that ACK
    (RFC 3261 §15), or SIPp would fail the call on an unexpected BYE."""
    server: ServerProcess = await start_server(
        edit=queue_settings("general", join_empty=False, overflow=None, max_wait=None)
    )
    call = await caller(
        peers,
        server,
        "0600000001",
        scenario="acd_caller_refused.xml",
        variables={"ack_delay_ms": 300},
    )
    await call.wait()

    contact = await closed_contact(server, "0600000001")
    (overflow,) = events(contact, "overflow")
    assert overflow.data["kind"] == "hangup" and overflow.data["reason"] == "join-empty"
    assert contact.outcome == "overflowed" and contact.disconnect_reason == "system"
    assert timeline(contact) == [
        "arrived", "accepted", "queued", "overflow", "ended",
    ], timeline(contact)  # fmt: skip
    assert seconds(ended(contact), when(contact, "queued")) < 1.0
    order = [(m.sent, m.method) for m in call.messages() if m.status is None]
    assert order == [(True, "INVITE"), (True, "ACK"), (False, "BYE")], order
    assert_clean_log(server)


async def test_leave_empty_moves_waiting_callers_on(
    start_server: StartServer, peers: Peers
) -> None:
    """Queue "general" sends its waiting callers to "cards" when its last agent logs
    out (leave_empty = true): 1001 ends a call and its phone unregisters
    during the wrap-up, and the caller who was waiting for it reaches 1006."""
    server: ServerProcess = await start_server(
        edit=queue_settings("general", leave_empty=True, overflow="queue:cards")
    )
    card_agent = await acd_agent(peers, server, "1006", calls=1, hangup_ms=1000)
    leaving = await acd_agent(peers, server, "1001", calls=1, hangup_ms=2000, linger_ms=300)
    mark = len(server.lines)
    talking = await caller(peers, server, "0600000001", wait_bye=True)
    await server.wait_log(r"agent 1001 answered", start=mark)
    waiting = await caller(peers, server, "0600000004", wait_bye=True)
    for process in (talking, leaving, waiting, card_agent):
        await process.wait()

    contact = await closed_contact(server, "0600000004")
    (overflow,) = events(contact, "overflow")
    assert overflow.data["from"] == "general" and overflow.data["to"] == "cards", overflow.data
    assert overflow.data["reason"] == "leave-empty", overflow.data
    evs = server.agent_events("1001")
    gone = first(evs, "logged-out")
    assert gone.reason == "unregistered"
    assert states(evs)[states(evs).index("logged-out") - 2 :] == [
        "wrap-up", "unregistered", "logged-out",
    ], states(evs)  # fmt: skip
    assert 0 <= seconds(overflow.at, gone.at) < 0.2
    (offer,) = events(contact, "offered")
    assert offer.data["agent"] == "1006" and offer.data["queue"] == "cards", offer.data
    assert contact.outcome == "answered" and contact.agent == "1006"
    assert_clean_log(server)
