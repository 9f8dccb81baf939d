"""Spoken answers in the IVR, end to end: a caller on the trunk says its choice as RTP.

The demo bank (DID 5000) asks for a language; a SIPp caller presses 3 for
Korean, then answers the Korean main menu by voice. The voice is made when
the test runs: espeak-ng's Korean voice says "상담원 연결" ("connect me to an
agent"), sox turns it into 8 kHz A-law with silence before and after (the
recogniser needs trailing silence to end the utterance), and the A-law bytes
become a capture of 20 ms PCMA RTP packets that SIPp replays with
``play_pcap_audio``, the way it sends its RFC 4733 keys. The platform loads
the Korean vosk model (``[speech]`` in ccserver.toml) after it is ready; the
caller dials only once the log says ``speech input ready: ko``.

The demo flow checks opening hours before the main menu; the config copy
sends closed hours to the main menu too, so the tests run at any hour.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers.fixtures import Peers
from tests.integration.peers.sipp import SippProcess, render_digits, scenario_path
from tests.integration.server import ServerProcess
from tests.integration.test_call_flows import TRUNK_IP, assert_clean_log, events, timeline

pytestmark = pytest.mark.integration

StartServer = Callable[..., Any]

AGENT_PHRASE = "상담원 연결"
SAMPLE_RATE = 8000
FRAME = 160  # samples (and A-law bytes) in 20 ms
PCMA = 8
#: A-law code of a zero sample (0x00 XOR 0x55).
ALAW_SILENCE = b"\xd5"

MODEL_LOAD_TIMEOUT = 30.0  # the Korean model takes about 2.5 s on an idle machine


# -- the caller's voice -----------------------------------------------------------------


def spoken_alaw(text: str, out: Path, *, lead: float, tail: float) -> bytes:
    """``text`` in espeak-ng's Korean voice as raw 8 kHz mono A-law, padded with
    ``lead`` and ``tail`` seconds of silence."""
    wav = out.with_suffix(".wav")
    subprocess.run(
        ["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True, capture_output=True, timeout=30
    )
    subprocess.run(
        ["sox", str(wav), "-r", str(SAMPLE_RATE), "-c", "1", "-e", "a-law", "-t", "raw",
         str(out), "pad", f"{lead:g}", f"{tail:g}"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    audio = out.read_bytes()
    assert len(audio) > (lead + tail) * SAMPLE_RATE, "espeak-ng produced no speech"
    return audio


def rtp_capture(alaw: bytes, path: Path, *, ssrc: int = 0x5EEC4, seq: int = 1000) -> Path:
    """A pcap (Ethernet/IPv4/UDP) of ``alaw`` as PCMA RTP, one 20 ms packet every 20 ms.

    SIPp takes the packets' payload and timing from the capture and sends them
    from its media port to the address in the platform's SDP; the addresses
    and ports written here are placeholders.
    """
    alaw += ALAW_SILENCE * (-len(alaw) % FRAME)
    records = []
    for i in range(len(alaw) // FRAME):
        marker = 0x80 if i == 0 else 0  # the start of a talkspurt (RFC 3551 §4.1)
        head = struct.pack("!BBHII", 0x80, marker | PCMA, (seq + i) & 0xFFFF, i * FRAME, ssrc)
        rtp = head + alaw[i * FRAME : (i + 1) * FRAME]
        udp = struct.pack("!HHHH", 4000, 5000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
            bytes([127, 0, 0, 2]), bytes([127, 0, 0, 1]),
        )  # fmt: skip
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
        micros = i * 20_000
        records.append(
            struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
            + frame
        )
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # link type: Ethernet
    path.write_bytes(header + b"".join(records))
    return path


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- config and caller --------------------------------------------------------------------


def always_open(main_menu_timeout: float | None = None) -> Callable[[Path], None]:
    """A config edit: the bank's closed hours lead to the main menu too; optionally a
    shorter wait for an answer there."""

    def edit(cfg: Path) -> None:
        path = cfg / "flows" / "bank.toml"
        text = path.read_text()
        assert 'closed = "after_hours"' in text and "[nodes.main_menu]\n" in text
        text = text.replace('closed = "after_hours"', 'closed = "main_menu"')
        if main_menu_timeout is not None:
            text = text.replace(
                "[nodes.main_menu]\n", f"[nodes.main_menu]\ntimeout = {main_menu_timeout:g}\n"
            )
        path.write_text(text)

    return edit


async def speech_server(start_server: StartServer, edit: Callable[[Path], None]) -> ServerProcess:
    server: ServerProcess = await start_server(edit=edit, speech=True)
    await server.wait_log(r"speech input ready: .*\bko\b", timeout=MODEL_LOAD_TIMEOUT)
    return server


async def korean_caller(
    peers: Peers, server: ServerProcess, voice: Path, *, talk_ms: int, name: str
) -> SippProcess:
    """A caller on the trunk address: dials 5000, presses 3 (Korean) during the
    language menu, then sends ``voice`` and hangs up ``talk_ms`` after it starts."""
    out_dir = peers.workdir / f"{name}.scenario"
    scenario = render_digits(scenario_path("speech_caller.xml"), "3", out_dir)
    text = scenario.read_text(encoding="latin-1")
    assert text.count('play_pcap_audio="VOICE_PCAP"') == 1
    scenario.write_text(text.replace("VOICE_PCAP", str(voice)), encoding="latin-1")
    process = SippProcess(
        scenario,
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=name,
        service="5000",
        keys={"caller": "0611111111"},
        variables={"greet_ms": 1500, "talk_ms": talk_ms},
        timeout=30,
        local_ip=TRUNK_IP,
    )
    return await peers.sipp(process)


def node_events(contact: Any, kind: str, node: str) -> list[Any]:
    return [e for e in events(contact, kind) if e.data.get("node") == node]


# -- tests ----------------------------------------------------------------------------------


async def test_korean_caller_asks_for_an_agent_by_voice(
    start_server: StartServer, peers: Peers, tmp_path: Path
) -> None:
    """Saying "상담원 연결" over the Korean main menu (barge-in) takes the caller to
    the general queue; the timeline keeps what was recognised, and how surely."""
    server = await speech_server(start_server, always_open())
    alaw = spoken_alaw(AGENT_PHRASE, tmp_path / "agent.al", lead=1.0, tail=1.5)
    voice = rtp_capture(alaw, tmp_path / "agent.pcap")
    seconds = len(alaw) / SAMPLE_RATE
    caller = await korean_caller(
        peers, server, voice, talk_ms=int(seconds * 1000) + 2500, name="speech-agent"
    )
    await caller.wait()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    (digit,) = events(contact, "digit")
    assert digit.data["digit"] == "3" and digit.data["method"] == "rfc4733", digit.data
    (speech,) = node_events(contact, "speech", "main_menu")
    assert speech.data["outcome"] == "match", speech.data
    assert speech.data["phrase"] == AGENT_PHRASE, speech.data
    assert 0.0 < speech.data["confidence"] <= 1.0, speech.data
    assert not speech.data.get("low_confidence"), speech.data
    (branch,) = node_events(contact, "branch", "main_menu")
    assert branch.data["to"] == "agent" and branch.data["phrase"] == AGENT_PHRASE, branch.data
    (queued,) = events(contact, "queued")
    assert queued.data["queue"] == "general"
    order = [contact.events.index(e) for e in (digit, speech, branch, queued)]
    assert order == sorted(order), kinds
    assert "no_input" not in kinds and "no_match" not in kinds, kinds
    assert contact.queue == "general"
    assert contact.outcome == "abandoned"  # nobody was logged in to take it
    assert_clean_log(server)


async def test_silent_korean_caller_gets_the_no_input_path(
    start_server: StartServer, peers: Peers, tmp_path: Path
) -> None:
    """A caller who chooses Korean and then says nothing (its phone still sends
    silence) gets the menu's no-input handling, not a recognition."""
    server = await speech_server(start_server, always_open(main_menu_timeout=2))
    # Long enough for the Korean menu (about 12 s), the 2 s wait and the
    # "did not hear anything" prompt to begin.
    silence = ALAW_SILENCE * (SAMPLE_RATE * 18)
    voice = rtp_capture(silence, tmp_path / "silence.pcap")
    caller = await korean_caller(peers, server, voice, talk_ms=18_000, name="speech-silent")
    await caller.wait()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    no_input = node_events(contact, "no_input", "main_menu")
    assert no_input, kinds
    assert no_input[0].data["attempt"] == 1, no_input[0].data
    assert not events(contact, "speech") and "speech_started" not in kinds, kinds
    assert "queued" not in kinds, kinds
    assert_clean_log(server)
