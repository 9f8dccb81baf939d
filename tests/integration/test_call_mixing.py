"""Three-party media with real phones: supervision, conference and consult transfer.

Every SIPp phone talks with its own pure tone (a capture file written here:
PCMA RTP packets of 20 ms), so what each phone is sent can be taken apart by
frequency: dumpcap records the platform's RTP to every phone, and the level
of each tone in a time window says who heard whom while the REST API changed
the call. Phases are timed by wall clock on both sides (dumpcap stamps its
packets with it); the windows leave a margin after each change.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from ccserver.media import g711
from ccserver.media.rtp import RtpPacket
from tests.integration.peers import wait_for
from tests.integration.peers.capture import RtpCapture
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.sipp import SippProcess, scenario_path
from tests.integration.server import ServerProcess, outbound_to
from tests.integration.test_call_flows import StartServer, assert_clean_log, events, timeline

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"  # the demo config trusts this address as a carrier
SUPERVISOR = {"Authorization": "Bearer demo-supervisor-token-change-me"}
AGENT = {"Authorization": "Bearer demo-agent-1001-token-change-me"}
G711A = "/usr/share/sip-tester/g711a.pcap"

# One tone per party, away from each other and from the hold music's notes
# (523-784 Hz, ccserver.app.hold_music).
CALLER, AGENT_TONE, SUPER_TONE, THIRD, TARGET = 400.0, 1000.0, 1400.0, 1800.0, 2200.0
HEARD_DB = -40.0  # a tone sent at -15 dBFS arrives well above this
SILENT_DB = -55.0  # an absent tone is down in the G.711 noise floor
SETTLE = 0.4  # seconds after a change before its window starts


# -- tones as SIPp captures ------------------------------------------------------------


def tone_pcap(path: Path, freq: float, seconds: float = 40.0) -> Path:
    """A pcap of PCMA RTP packets (20 ms) carrying one tone, for play_pcap_audio."""
    n = np.arange(int(seconds * 8000))
    pcm = (6000 * np.sin(2 * np.pi * freq * n / 8000)).astype(np.int16)
    payload = g711.alaw_encode(pcm)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # Ethernet
    ssrc = int(freq) * 1000 + 7
    for i in range(len(payload) // 160):
        rtp = (
            struct.pack("!BBHII", 0x80, 8, i & 0xFFFF, i * 160, ssrc)
            + payload[i * 160 : (i + 1) * 160]
        )
        udp = struct.pack("!HHHH", 40000, 40002, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
        ) + udp  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        t = i * 0.020
        out.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def with_tone(template: str, pcap: Path, out: Path) -> Path:
    """A copy of a scenario whose voice (g711a.pcap) is the given tone."""
    text = scenario_path(template).read_text(encoding="latin-1")
    assert G711A in text, template
    out.mkdir(parents=True, exist_ok=True)
    path = out / template
    path.write_text(text.replace(G711A, str(pcap)), encoding="latin-1")
    return path


def phone(
    peers: Peers, server: ServerProcess, ext: str, password: str, freq: float,
    *, hangup_ms: int | None = None,
) -> SippProcess:  # fmt: skip
    """A phone that registers, answers one call and talks with `freq` (hangs up after
    `hangup_ms`, or waits for the platform's BYE). Not started yet: its media port is
    known, so a capture can watch it first."""
    name = f"phone{ext}"
    pcap = tone_pcap(peers.workdir / f"{name}.pcap", freq)
    template = "agent_answer_hangup.xml" if hangup_ms else "agent_answer.xml"
    variables: dict[str, str | int] = {"wait_ms": 60000, "expect_call": 1, "ring_ms": 100}
    if hangup_ms:
        variables["talk_ms"] = hangup_ms
    return SippProcess(
        scenario_path("agent_register.xml"),
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=name,
        ooc_scenario=with_tone(template, pcap, peers.workdir / f"{name}.scenario"),
        service=ext,
        auth_user=ext,
        auth_password=password,
        keys={"expires": 300},
        variables=variables,
        timeout=75,
        default_behaviors="all,-bye",
    )


async def registered(peers: Peers, process: SippProcess) -> SippProcess:
    await peers.sipp(process)
    await process.wait_registered()
    return process


def caller(peers: Peers, server: ServerProcess) -> SippProcess:
    """A carrier caller on DID 5001 (the general queue) talking with the caller's tone
    (not started yet: its media port is known, so a capture can watch it first)."""
    pcap = tone_pcap(peers.workdir / "caller.pcap", CALLER)
    scenario = with_tone("caller_wait_bye.xml", pcap, peers.workdir / "caller.scenario")
    return SippProcess(
        scenario,
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name="caller",
        service="5001",
        keys={"caller": "0600000001"},
        variables={"greet_ms": 200},
        timeout=75,
        local_ip=TRUNK_IP,
    )


# -- what each phone heard -----------------------------------------------------------------


class Heard:
    """The platform's audio to each phone, by capture time, taken apart by frequency."""

    def __init__(self, capture: RtpCapture) -> None:
        self.datagrams = capture.datagrams()

    def levels(
        self, phone: SippProcess, start: float, end: float, freqs: list[float]
    ) -> dict[float, float]:
        """dBFS of each tone in what `phone` was sent between `start` and `end`."""
        chunks = []
        for d in self.datagrams:
            if d.dport != phone.media_port or not start <= d.time <= end:
                continue
            try:
                packet = RtpPacket.parse(d.payload)
            except ValueError:
                continue
            if packet.payload_type in (0, 8):
                decode = g711.ulaw_decode if packet.payload_type == 0 else g711.alaw_decode
                chunks.append(decode(packet.payload))
        assert len(chunks) > 25, f"{phone.name}: only {len(chunks)} packets in the window"
        pcm = np.concatenate(chunks).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
        hz = np.fft.rfftfreq(len(pcm), 1 / 8000)
        out = {}
        for f in freqs:
            band = spectrum[(hz > f - 15) & (hz < f + 15)]
            amplitude = 4 * float(band.max()) / len(pcm)
            out[f] = 20 * np.log10(max(amplitude, 1e-3) / 32768)
        return out

    def loudness(self, phone: SippProcess, start: float, end: float) -> float:
        """dBFS (RMS) of everything `phone` was sent between `start` and `end`."""
        chunks = [
            g711.alaw_decode(RtpPacket.parse(d.payload).payload)
            for d in self.datagrams
            if d.dport == phone.media_port and start <= d.time <= end and d.payload[1] & 0x7F == 8
        ]
        return g711.rms_dbov(np.concatenate(chunks)) if chunks else -120.0

    def check(
        self, phone: SippProcess, window: tuple[float, float], hears: set[float], not_: set[float]
    ) -> None:
        levels = self.levels(phone, *window, sorted(hears | not_))
        shown = {f"{f:g} Hz": round(v, 1) for f, v in levels.items()}
        for f in hears:
            assert levels[f] > HEARD_DB, f"{phone.name} should hear {f:g} Hz: {shown}"
        for f in not_:
            assert levels[f] < SILENT_DB, f"{phone.name} should not hear {f:g} Hz: {shown}"


# -- the API ---------------------------------------------------------------------------------


class Api:
    def __init__(self, http: aiohttp.ClientSession, server: ServerProcess) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{server.http_port}"
        self.server = server

    async def call(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.json()
            assert r.status == 200, (r.status, body)
            return body

    async def error(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.json()
            assert r.status >= 400, body
            return body

    async def until(self, what: str, check: Callable[[dict[str, Any]], bool]) -> float:
        """Poll the live calls until `check` holds for the one call; the wall time then."""

        async def holds() -> bool:
            calls = await self.call("GET", "/api/calls", SUPERVISOR)
            return len(calls) == 1 and check(calls[0])

        await wait_for(holds, 15, what, diagnose=lambda: self.server.log_tail(40))
        return time.time()

    async def contact_id(self) -> str:
        await self.until("the call to be connected", lambda c: c["state"] == "bridged")
        calls = await self.call("GET", "/api/calls", SUPERVISOR)
        return str(calls[0]["contact_id"])


async def talk(seconds: float) -> float:
    """Let the phones talk for a measurement window (audio needs time on the wire)."""
    await asyncio.sleep(seconds)
    return time.time()


# -- the scenarios ------------------------------------------------------------------------------


async def test_supervisor_listens_whispers_barges_then_hangs_up(
    server: ServerProcess, peers: Peers
) -> None:
    agent = phone(peers, server, "1001", "agent1001pw", AGENT_TONE)
    boss = phone(peers, server, "1900", "super1900pw", SUPER_TONE, hangup_ms=6500)
    customer = caller(peers, server)
    cap = await peers.capture([agent.media_port, boss.media_port, customer.media_port])
    await registered(peers, agent)
    await registered(peers, boss)
    await peers.sipp(customer)

    async with aiohttp.ClientSession() as http:
        api = Api(http, server)
        cid = await api.contact_id()
        path = f"/api/calls/{cid}/monitor"
        # Only a supervisor may monitor; an unknown mode is refused with the one error shape.
        assert (await api.error("POST", path, AGENT, json={"extension": "1900"}))["status"] == 403
        bad = await api.error("POST", path, SUPERVISOR, json={"extension": "1900", "mode": "spy"})
        assert bad["error_id"] == "invalid-data"
        view = await api.call("POST", path, SUPERVISOR, json={"extension": "1900"})
        assert view["monitor"] == {"target": "1900", "connected": False, "mode": "listen"}
        t_listen = await api.until("the supervisor", lambda c: c["monitor"]["connected"])
        t_listen_end = await talk(1.5)
        await api.call("POST", path, SUPERVISOR, json={"extension": "1900", "mode": "whisper"})
        t_whisper = time.time()
        t_whisper_end = await talk(1.5)
        await api.call("POST", path, SUPERVISOR, json={"extension": "1900", "mode": "barge"})
        t_barge = time.time()
        # The supervisor's phone hangs up by itself: back to two parties.
        t_back = await api.until("the supervisor to leave", lambda c: c["monitor"] is None)
        assert not (await api.call("GET", f"/api/calls/{cid}", SUPERVISOR))["mixing"]
        t_end = await talk(1.5)
        await api.call("POST", f"/api/calls/{cid}/hangup", SUPERVISOR)
    await customer.wait()
    await agent.wait()
    await boss.wait()
    await cap.stop()

    heard = Heard(cap)
    listen, whisper = (t_listen + SETTLE, t_listen_end), (t_whisper + SETTLE, t_whisper_end)
    barge, after = (t_barge + SETTLE, t_back - 0.3), (t_back + SETTLE, t_end)
    both = {CALLER, AGENT_TONE}
    heard.check(boss, listen, both, set())
    heard.check(customer, listen, {AGENT_TONE}, {SUPER_TONE})
    heard.check(agent, listen, {CALLER}, {SUPER_TONE})
    heard.check(boss, whisper, both, set())
    heard.check(customer, whisper, {AGENT_TONE}, {SUPER_TONE})
    heard.check(agent, whisper, {CALLER, SUPER_TONE}, set())
    heard.check(customer, barge, {AGENT_TONE, SUPER_TONE}, set())
    heard.check(agent, barge, {CALLER, SUPER_TONE}, set())
    heard.check(boss, barge, both, set())
    heard.check(customer, after, {AGENT_TONE}, {SUPER_TONE})
    heard.check(agent, after, {CALLER}, {SUPER_TONE})

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    (started,) = events(contact, "monitor_started")
    assert started.data == {"supervisor": "1900", "mode": "listen"}
    modes = [e.data["mode"] for e in events(contact, "monitor_mode")]
    assert modes == ["whisper", "barge"], timeline(contact)
    (stopped,) = events(contact, "monitor_stopped")
    assert stopped.data == {"supervisor": "1900", "mode": "barge", "by": "supervisor"}
    assert contact.outcome == "answered" and contact.agent == "1001"
    assert_clean_log(server)


async def test_conference_then_consult_transfer_to_a_number(
    start_server: StartServer, peers: Peers
) -> None:
    """1005 joins a conference and leaves; then the agent consults an outside number (a
    SIPp phone standing in for the carrier, reached through the trunk's outbound route)
    and hands the caller over."""
    pcap = tone_pcap(peers.workdir / "carrier.pcap", TARGET)
    target = SippProcess(
        with_tone("agent_answer.xml", pcap, peers.workdir / "carrier.scenario"),
        workdir=peers.workdir,
        name="carrier",
        variables={"ring_ms": 100},
        timeout=75,
    )

    server: ServerProcess = await start_server(edit=outbound_to(f"127.0.0.1:{target.local_port}"))
    agent = phone(peers, server, "1001", "agent1001pw", AGENT_TONE)
    third = phone(peers, server, "1005", "agent1005pw", THIRD, hangup_ms=3500)
    customer = caller(peers, server)
    ports = [p.media_port for p in (agent, third, target, customer)]
    cap = await peers.capture(ports)
    await peers.sipp(target, ready=True)
    await registered(peers, agent)
    await peers.sipp(customer)

    async with aiohttp.ClientSession() as http:
        api = Api(http, server)
        cid = await api.contact_id()
        # The third party registers once the caller is with 1001 (it is an agent too).
        await registered(peers, third)
        calls = f"/api/calls/{cid}"
        refused = await api.error("POST", f"{calls}/conference", AGENT, json={"extension": "1007"})
        assert refused["error_id"] == "phone-not-registered", refused
        refused = await api.error("POST", f"{calls}/consult/complete", AGENT)
        assert refused["error_id"] == "no-consult", refused

        # Conference: 1005 joins, all three hear each other; 1005 hangs up by itself.
        await api.call("POST", f"{calls}/conference", AGENT, json={"extension": "1005"})
        t_conf = await api.until(
            "1005 to join", lambda c: bool((c["conference"] or {}).get("connected"))
        )
        t_conf_end = await talk(1.5)
        t_left = await api.until("1005 to leave", lambda c: c["conference"] is None)
        t_left_end = await talk(1.0)

        # Consult: the caller waits with music while 1001 talks to the number, then hands over.
        await api.call("POST", f"{calls}/consult", AGENT, json={"number": "0612345678"})
        t_cons = await api.until(
            "the number to answer", lambda c: bool((c["consult"] or {}).get("connected"))
        )
        t_cons_end = await talk(1.5)
        view = await api.call("POST", f"{calls}/consult/complete", AGENT)
        t_done = time.time()
        assert view["consult"] is None and view["agent"] is None, view
        t_done_end = await talk(1.5)
        state = (await api.call("GET", "/api/agents/1001", SUPERVISOR))["state"]
        assert state != "on-call", state  # the agent is released (wrap-up)
        await api.call("POST", f"{calls}/hangup", SUPERVISOR)
    for process in (customer, agent, third, target):
        await process.wait()
    await cap.stop()

    heard = Heard(cap)
    conf, left = (t_conf + SETTLE, t_conf_end), (t_left + SETTLE, t_left_end)
    heard.check(customer, conf, {AGENT_TONE, THIRD}, set())
    heard.check(agent, conf, {CALLER, THIRD}, set())
    heard.check(third, conf, {CALLER, AGENT_TONE}, set())
    heard.check(customer, left, {AGENT_TONE}, {THIRD})
    heard.check(agent, left, {CALLER}, {THIRD})
    consult, done = (t_cons + SETTLE, t_cons_end), (t_done + SETTLE, t_done_end)
    heard.check(customer, consult, set(), {AGENT_TONE, TARGET})
    assert heard.loudness(customer, *consult) > -30, "the caller should hear hold music"
    heard.check(agent, consult, {TARGET}, {CALLER})
    heard.check(target, consult, {AGENT_TONE}, {CALLER})
    heard.check(customer, done, {TARGET}, {AGENT_TONE})
    heard.check(target, done, {CALLER}, {AGENT_TONE})

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    (joined,) = events(contact, "conference_joined")
    assert joined.data == {"target": "1005", "kind": "extension"}
    (left_event,) = events(contact, "conference_left")
    assert left_event.data["who"] == "third-party"
    (transfer,) = events(contact, "transfer")
    assert transfer.data["kind"] == "consult" and transfer.data["from_agent"] == "1001"
    assert transfer.data["to"] == "0612345678"
    (invite,) = [m for m in target.messages() if not m.sent and m.method == "INVITE"]
    assert invite.first_line.startswith("INVITE sip:0612345678@127.0.0.1:"), invite.first_line
    order = [k for k in kinds if k in ("conference_joined", "hold", "consult_answered", "transfer")]
    assert order == ["conference_joined", "hold", "consult_answered", "transfer"], kinds
    assert contact.outcome == "answered" and contact.holds == 1 and contact.hold_seconds > 1
    assert_clean_log(server)
