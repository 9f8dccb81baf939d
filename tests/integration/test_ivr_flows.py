"""The demo bank's IVR (DID 5000) walked end to end by SIPp callers on the trunk address.

* keys sent as tones in the audio, by a phone whose SDP offers no telephone-event;
* barge-in: a key over the main menu stops that prompt at once;
* three unknown account numbers hand the caller to an agent;
* after hours: the closed message, the callback offer, a callback booked.

Each test reads the contact's timeline from the platform's SQLite database;
the barge-in test also reads the RTP the caller received, as dumpcap saw it.
Prompt lengths come from the platform's own prompt cache (`ivr.tts`), so the
callers' pauses follow the prompts rather than guesses.
"""

from __future__ import annotations

import itertools
import re
import struct
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ccserver.media import g711
from ccserver.media.player import EncodedAudio
from ccserver.storage.models import Contact, ContactEvent
from ivr.tts import PromptRenderer
from tests.integration.peers.capture import UdpDatagram
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.sipp import PCAP_DIR, SippProcess, scenario_path
from tests.integration.server import ServerProcess
from tests.integration.test_call_flows import TRUNK_IP, assert_clean_log, events, timeline
from tests.integration.test_ivr_speech import always_open, rtp_capture

pytestmark = pytest.mark.integration

StartServer = Callable[..., Any]

SAMPLE_RATE = 8000
FRAME = 160  # samples in 20 ms
#: Q.23 tone pairs (low group, high group) in Hz.
DTMF_TONES = {
    "1": (697.0, 1209.0), "2": (697.0, 1336.0), "3": (697.0, 1477.0),
    "4": (770.0, 1209.0), "5": (770.0, 1336.0), "6": (770.0, 1477.0),
    "7": (852.0, 1209.0), "8": (852.0, 1336.0), "9": (852.0, 1477.0),
    "*": (941.0, 1209.0), "0": (941.0, 1336.0), "#": (941.0, 1477.0),
}  # fmt: skip
#: A full-scale sine in A-law is +3.14 dBm0 (ITU-T G.711).
FULL_SCALE_SINE_DBM0 = 3.14
#: Audio above this is a prompt speaking; G.711 silence decodes far below it.
AUDIBLE_DBOV = -40.0
#: How late after the key the interrupted prompt may still be heard.
BARGE_IN_LIMIT = 0.3

_calls = itertools.count(1)


# -- prompts, as the platform renders them ----------------------------------------------


def bank_flow(server: ServerProcess) -> dict[str, Any]:
    with (server.config_dir / "flows" / "bank.toml").open("rb") as stream:
        return tomllib.load(stream)


def prompt_text(flow: dict[str, Any], node: str, language: str = "en") -> list[str]:
    """The texts a node says in ``language``, one per segment."""
    prompt = flow["nodes"][node]["prompt"]
    if isinstance(prompt, str):
        return [prompt]
    segments = prompt if isinstance(prompt, list) else [prompt]
    return [s[language] for s in segments if language in s]


async def rendered(server: ServerProcess, texts: Sequence[str], voice: str = "en") -> EncodedAudio:
    """The audio the platform plays for ``texts``: read from the prompt cache it
    filled at start (the same PCM, hence the same A-law frames on the wire)."""
    renderer = PromptRenderer(server.data_dir / "tts-cache")
    try:
        parts = [(await renderer.render(text, voice)).pcm for text in texts]
    finally:
        await renderer.close()
    return EncodedAudio(np.concatenate(parts), " / ".join(texts))


def loud_frames(audio: EncodedAudio) -> list[bytes]:
    """The prompt's 20 ms PCMA payloads that carry speech, in order."""
    return [
        f
        for f in audio.frames("PCMA")
        if len(f) == FRAME and g711.rms_dbov(g711.alaw_decode(f)) > AUDIBLE_DBOV
    ]


def matching_times(
    datagrams: Sequence[UdpDatagram], frames: set[bytes], run: int = 5
) -> list[float]:
    """Capture times of the packets whose payload is one of ``frames``, counting
    only runs of ``run`` such packets in a row: a lone frame of one prompt can
    happen to equal a frame of another."""
    hits = [len(d.payload) > 12 and d.payload[12:] in frames for d in datagrams]
    return [
        d.time
        for i, d in enumerate(datagrams)
        if any(
            all(hits[j : j + run]) and len(hits[j : j + run]) == run
            for j in range(i - run + 1, i + 1)
            if j >= 0
        )
    ]


def lead_seconds(audio: EncodedAudio) -> float:
    """Silence at the start of a prompt, before its first loud frame."""
    for i, f in enumerate(audio.frames("PCMA")):
        if g711.rms_dbov(g711.alaw_decode(f)) > AUDIBLE_DBOV:
            return i * FRAME / SAMPLE_RATE
    return audio.duration


# -- callers ---------------------------------------------------------------------------------


def dtmf_tones(
    plan: Sequence[tuple[float, str]], total: float, *, level_dbm0: float = -10.0
) -> bytes:
    """A-law audio of ``total`` seconds: silence, with each (start, key) of ``plan``
    as 100 ms of its two Q.23 tones, each tone at ``level_dbm0``."""
    pcm = np.zeros(int(total * SAMPLE_RATE), dtype=np.float64)
    amplitude = 32767 * 10 ** ((level_dbm0 - FULL_SCALE_SINE_DBM0) / 20)
    t = np.arange(int(0.1 * SAMPLE_RATE)) / SAMPLE_RATE
    for start, key in plan:
        low, high = DTMF_TONES[key]
        tone = amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
        first = int(start * SAMPLE_RATE)
        pcm[first : first + len(tone)] += tone
    return g711.alaw_encode(np.round(pcm).astype(np.int16))


async def inband_caller(
    peers: Peers, server: ServerProcess, tones: Path, *, talk_ms: int, caller_id: str
) -> SippProcess:
    """A PCMA-only caller on the trunk address whose RTP stream is ``tones``."""
    name = f"ivr-inband-{next(_calls)}"
    out_dir = peers.workdir / f"{name}.scenario"
    out_dir.mkdir(parents=True)
    text = scenario_path("ivr_inband_caller.xml").read_text(encoding="latin-1")
    assert text.count("TONES_PCAP") == 2  # the header's mention and the play
    scenario = out_dir / "ivr_inband_caller.xml"
    scenario.write_text(text.replace('"TONES_PCAP"', f'"{tones}"'), encoding="latin-1")
    process = SippProcess(
        scenario,
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=name,
        service="5000",
        keys={"caller": caller_id},
        variables={"talk_ms": talk_ms},
        timeout=30,
        local_ip=TRUNK_IP,
    )
    return await peers.sipp(process)


_KEYS_BLOCK = re.compile(r"(?P<indent>[ \t]*)<!-- KEYS-BEGIN.*?<!-- KEYS-END -->", re.DOTALL)
_DTMF_NAMES = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}


def shifted_dtmf(key: str, shift: int, out_dir: Path) -> Path:
    """sip-tester's capture of ``key`` with every RTP timestamp ``shift`` units later.

    Its captures of one key are byte-identical; two presses of a key in a row
    would share a timestamp and the second would be a repeat of the first
    (RFC 4733 section 2.5.1.2). The UDP checksum is zeroed (RFC 768: none).
    """
    data = (PCAP_DIR / f"dtmf_2833_{_DTMF_NAMES[key]}.pcap").read_bytes()
    (magic,) = struct.unpack_from("<I", data)
    assert magic == 0xA1B2C3D4, f"{key}: not a little-endian microsecond pcap"
    (linktype,) = struct.unpack_from("<I", data, 20)
    assert linktype == 1, f"{key}: link type {linktype}, Ethernet expected"
    out = bytearray(data)
    offset = 24
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset + 8)
        frame = offset + 16
        ip = frame + 14
        udp = ip + (data[ip] & 0x0F) * 4
        rtp = udp + 8
        (timestamp,) = struct.unpack_from("!I", data, rtp + 4)
        struct.pack_into("!I", out, rtp + 4, (timestamp + shift) & 0xFFFFFFFF)
        struct.pack_into("!H", out, udp + 6, 0)
        offset = frame + length
    path = out_dir / f"dtmf_{_DTMF_NAMES[key]}_shift{shift}.pcap"
    path.write_bytes(bytes(out))
    return path


async def keys_caller(
    peers: Peers,
    server: ServerProcess,
    presses: Sequence[tuple[int, str]],
    *,
    caller_id: str,
    talk_ms: int = 1000,
    wait_bye: bool = False,
    timeout: float = 30.0,
) -> SippProcess:
    """A caller (ivr_keys_caller.xml) on the trunk address that, after the ACK,
    waits then presses, for each (pause_ms, key) of ``presses``."""
    name = f"ivr-keys-{next(_calls)}"
    out_dir = peers.workdir / f"{name}.scenario"
    out_dir.mkdir(parents=True)
    source = scenario_path("ivr_keys_caller.xml").read_text(encoding="latin-1")
    match = _KEYS_BLOCK.search(source)
    assert match is not None
    indent = match.group("indent")
    lines = [f"{indent}<!-- KEYS-BEGIN: {''.join(k for _, k in presses)} -->"]
    seen: dict[str, int] = {}
    for pause, key in presses:
        n = seen[key] = seen.get(key, -1) + 1
        # Each later press of a key starts 10 s of RTP time after the previous.
        pcap = (
            PCAP_DIR / f"dtmf_2833_{_DTMF_NAMES[key]}.pcap"
            if n == 0
            else shifted_dtmf(key, n * 80_000, out_dir)
        )
        lines += [
            f'{indent}<pause milliseconds="{pause}" />',
            f"{indent}<nop>",
            f"{indent}  <action>",
            f'{indent}    <exec play_pcap_audio="{pcap}" />',
            f"{indent}  </action>",
            f"{indent}</nop>",
        ]
    lines.append(f"{indent}<!-- KEYS-END -->")
    scenario = out_dir / "ivr_keys_caller.xml"
    scenario.write_text(
        source[: match.start()] + "\n".join(lines) + source[match.end() :], encoding="latin-1"
    )
    process = SippProcess(
        scenario,
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=name,
        service="5000",
        keys={"caller": caller_id},
        variables={"talk_ms": talk_ms, "wait_bye": int(wait_bye)},
        timeout=timeout,
        local_ip=TRUNK_IP,
    )
    return await peers.sipp(process)


# -- config edits -----------------------------------------------------------------------------


def always_closed(cfg: Path) -> None:
    """A config edit: the bank's hours never open (a day not listed is closed)."""
    path = cfg / "flows" / "bank.toml"
    text = path.read_text()
    hours = 'hours = { "mon-fri" = "08:00-20:00", sat = "09:00-13:00" }'
    assert hours in text
    path.write_text(text.replace(hours, 'hours = { sun = "closed" }'))


CLOSED_LINE = "5009"


def closed_line(cfg: Path) -> None:
    """A config edit: DID 5009 runs a flow whose first node hangs up (a line that
    is out of service), so the platform ends the call the moment it answers."""
    (cfg / "flows" / "closed_line.toml").write_text(
        '[flow]\nlanguage = "en"\nstart = "bye"\n\n'
        '[nodes.bye]\nkind = "hangup"\nreason = "closed"\n'
    )
    dids = cfg / "dids.toml"
    dids.write_text(dids.read_text() + f'\n[dids."{CLOSED_LINE}"]\nflow = "closed_line"\n')


# -- the timeline -------------------------------------------------------------------------------


def node_events(contact: Contact, kind: str, node: str) -> list[ContactEvent]:
    return [e for e in events(contact, kind) if e.data.get("node") == node]


def when(event: ContactEvent) -> float:
    return float(event.at.timestamp())


def index(contact: Contact, event: ContactEvent) -> int:
    return contact.events.index(event)


# -- tests ----------------------------------------------------------------------------------------


async def test_inband_tone_key_takes_the_caller_to_an_agent(
    server: ServerProcess, peers: Peers, tmp_path: Path
) -> None:
    """A PCMA-only caller presses 0 as tones during the language menu: the
    platform hears the key in the audio and queues the caller for an agent."""
    # Greeting (about 1.7 s), then 0 as 941 + 1336 Hz for 100 ms, then silence.
    alaw = dtmf_tones([(2.5, "0")], total=4.5)
    tones = rtp_capture(alaw, tmp_path / "tones.pcap", ssrc=0x70E5)
    caller = await inband_caller(peers, server, tones, talk_ms=5000, caller_id="0699990001")
    await caller.wait()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    (digit,) = events(contact, "digit")
    assert digit.data["digit"] == "0" and digit.data["method"] == "inband", digit.data
    assert digit.data["node"] == "language", digit.data
    (branch,) = node_events(contact, "branch", "language")
    assert branch.data["to"] == "agent" and branch.data["digit"] == "0", branch.data
    (queued,) = events(contact, "queued")
    assert queued.data["queue"] == "general", queued.data
    assert index(contact, digit) < index(contact, branch) < index(contact, queued), kinds
    assert "no_input" not in kinds and "no_match" not in kinds, kinds
    assert contact.queue == "general"
    assert contact.outcome == "abandoned"  # nobody logged in to take it
    assert_clean_log(server)


async def test_key_over_the_main_menu_cuts_the_prompt_short(
    start_server: StartServer, peers: Peers
) -> None:
    """1 (English), then 3 a few seconds into the English main menu: the menu
    stops within BARGE_IN_LIMIT of the key and the opening hours follow."""
    server = await start_server(edit=always_open())
    flow = bank_flow(server)
    menu = await rendered(server, prompt_text(flow, "main_menu"))
    hours = await rendered(server, prompt_text(flow, "opening_hours"))
    assert menu.duration > 6.0, menu.duration
    into_menu_ms = 3000
    caller = await keys_caller(
        peers, server, [(2500, "1"), (into_menu_ms, "3")], caller_id="0699990002", talk_ms=2500
    )
    capture = await peers.capture([caller.media_port])
    await caller.wait()
    await capture.stop()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    (menu_prompt,) = node_events(contact, "prompt", "main_menu")
    (key,) = node_events(contact, "digit", "main_menu")
    assert key.data["digit"] == "3" and key.data["method"] == "rfc4733", key.data
    assert not key.data.get("ignored"), key.data
    assert not node_events(contact, "prompt_played", "main_menu"), kinds
    (branch,) = node_events(contact, "branch", "main_menu")
    assert branch.data["to"] == "opening_hours", branch.data
    (hours_prompt,) = node_events(contact, "prompt", "opening_hours")
    assert index(contact, menu_prompt) < index(contact, key) < index(contact, branch)
    assert index(contact, branch) < index(contact, hours_prompt), kinds
    # The key came well before the menu would have ended.
    heard = when(key) - when(menu_prompt)
    assert heard < menu.duration - 2.0, (heard, menu.duration)

    # On the wire: the key as the caller sent it, and the prompts it received.
    (sent,) = capture.streams_from(caller.media_port)
    pressed = [e.time for e in sent.dtmf if e.key == "3"]
    assert pressed, sent.describe()
    t_key = pressed[0]
    menu_set, hours_set = set(loud_frames(menu)), set(loud_frames(hours))
    received = sorted(
        (d for d in capture.datagrams() if d.dport == caller.media_port), key=lambda d: d.time
    )
    menu_times = matching_times(received, menu_set)
    hours_times = matching_times(received, hours_set)
    assert menu_times and hours_times, (len(menu_times), len(hours_times))
    menu_stop = max(menu_times) - t_key
    hours_start = min(hours_times) - t_key
    print(
        f"menu {menu.duration:.2f} s, key {heard:.2f} s into it; menu frames heard "
        f"{len(menu_times)}/{len(menu_set)}, last {menu_stop * 1000:+.0f} ms from the key; "
        f"hours' first speech {hours_start * 1000:+.0f} ms (its lead {lead_seconds(hours):.2f} s)"
    )
    assert menu_stop < BARGE_IN_LIMIT, menu_stop
    assert len(menu_times) < 0.8 * len(menu_set), (len(menu_times), len(menu_set))
    assert 0 < hours_start < BARGE_IN_LIMIT + lead_seconds(hours), hours_start
    assert_clean_log(server)


async def test_three_unknown_accounts_go_to_an_agent(
    start_server: StartServer, peers: Peers
) -> None:
    """English, balance, then three account numbers the directory does not know:
    three lookups not found, then the fallback to the general queue."""
    server = await start_server(edit=always_open())
    flow = bank_flow(server)
    ask = await rendered(server, prompt_text(flow, "ask_account"))
    to_agent = await rendered(server, prompt_text(flow, "balance_to_agent"))
    presses: list[tuple[int, str]] = [(2500, "1"), (1500, "1")]
    accounts = ["987654", "876543", "765432"]
    for account in accounts:
        # Into the "enter your account" prompt (barge-in), then 300 ms a key.
        # Keys that come while the lookup runs or "not found" plays wait for
        # the next prompt (type-ahead), so the pause only needs to be enough.
        first_pause = int(ask.duration * 1000 * 0.5) + (0 if account == accounts[0] else 1000)
        presses += [(first_pause if i == 0 else 300, k) for i, k in enumerate(account)]
    caller = await keys_caller(
        peers, server, presses, caller_id="0699990003", talk_ms=int(to_agent.duration * 1000) + 3000
    )
    await caller.wait()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    digits = "".join(e.data["digit"] for e in events(contact, "digit"))
    assert digits == "11" + "".join(accounts), (digits, kinds)
    assert all(e.data["method"] == "rfc4733" for e in events(contact, "digit"))
    collected = node_events(contact, "collected", "ask_account")
    assert [c.data["value"] for c in collected] == accounts, [c.data for c in collected]
    lookups = node_events(contact, "lookup", "find_account")
    assert [lk.data["found"] for lk in lookups] == [False, False, False], [
        lk.data for lk in lookups
    ]
    not_found = node_events(contact, "branch", "too_many_wrong")
    assert [b.data["to"] for b in not_found] == [
        "account_not_found",
        "account_not_found",
        "balance_to_agent",
    ], [b.data for b in not_found]
    (queued,) = events(contact, "queued")
    assert queued.data["queue"] == "general", queued.data
    assert index(contact, lookups[-1]) < index(contact, not_found[-1]) < index(contact, queued)
    assert contact.queue == "general"
    assert "no_input" not in kinds and "no_match" not in kinds, kinds
    assert_clean_log(server)


async def test_after_hours_caller_books_a_callback(start_server: StartServer, peers: Peers) -> None:
    """Hours that never open: the caller hears the closed message and the
    callback offer, presses 1, and the call ends as a callback."""
    server = await start_server(edit=always_closed)
    flow = bank_flow(server)
    closed = await rendered(server, prompt_text(flow, "after_hours"))
    offer = await rendered(server, prompt_text(flow, "offer_callback"))
    # 1 for English over the language menu, then 1 a second into the offer.
    into_offer_ms = int(closed.duration * 1000) + 1000
    caller = await keys_caller(
        peers,
        server,
        [(2500, "1"), (into_offer_ms, "1")],
        caller_id="0699990004",
        wait_bye=True,
        timeout=40,
    )
    await caller.wait()

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    (schedule,) = events(contact, "schedule")
    assert schedule.data["open"] is False and schedule.data["to"] == "after_hours", schedule.data
    assert node_events(contact, "prompt_played", "after_hours"), kinds
    (offer_prompt,) = node_events(contact, "prompt", "offer_callback")
    (key,) = node_events(contact, "digit", "offer_callback")
    assert key.data["digit"] == "1", key.data
    assert when(key) - when(offer_prompt) < offer.duration, (when(key), when(offer_prompt))
    (branch,) = node_events(contact, "branch", "offer_callback")
    assert branch.data["to"] == "callback", branch.data
    (callback,) = events(contact, "callback")
    assert callback.data["number"] == "0699990004" and callback.data["queue"] == "general"
    assert not callback.data.get("error"), callback.data
    order = [index(contact, e) for e in (schedule, offer_prompt, key, branch, callback)]
    assert order == sorted(order), kinds
    assert "queued" not in kinds, kinds
    assert contact.outcome == "callback", contact.outcome
    assert contact.disconnect_reason == "system", contact.disconnect_reason
    assert_clean_log(server)


async def test_a_flow_that_hangs_up_at_once_waits_for_the_ack(
    start_server: StartServer, peers: Peers
) -> None:
    """The flow's first node hangs up. The caller takes 300 ms to ACK our 200 and
    the BYE waits for that ACK (RFC 3261 §15): SIPp fails the call on a BYE that
    comes while it still holds its ACK back, and its message log shows the order
    and times on the wire. The contact does not wait: it closes as the flow ends."""
    server = await start_server(edit=closed_line)
    ack_delay = 0.3
    process = SippProcess(
        scenario_path("acd_caller_refused.xml"),
        workdir=peers.workdir,
        remote=f"127.0.0.1:{server.sip_port}",
        name=f"closed-line-{next(_calls)}",
        service=CLOSED_LINE,
        keys={"caller": "0699990005"},
        variables={"ack_delay_ms": int(ack_delay * 1000)},
        timeout=15,
        local_ip=TRUNK_IP,
    )
    await peers.sipp(process)
    await process.wait()

    wire = [(m.sent, m.status or m.method, m.at) for m in process.messages()]
    steps = [(sent, what) for sent, what, _ in wire if what != 100]
    assert steps == [(True, "INVITE"), (False, 200), (True, "ACK"), (False, "BYE"), (True, 200)]
    at = {(sent, what): t for sent, what, t in wire}
    ok, ack, bye = at[(False, 200)], at[(True, "ACK")], at[(False, "BYE")]
    assert ok is not None and ack is not None and bye is not None
    assert ack - ok >= ack_delay - 0.01, (ok, ack)
    assert 0 <= bye - ack < 0.25, (ack, bye)  # sent as the ACK arrived

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    assert timeline(contact)[-1] == "ended", timeline(contact)
    assert contact.outcome == "completed-ivr" and contact.disconnect_reason == "system"
    assert contact.ended_at is not None
    assert contact.ended_at.timestamp() < ack, (contact.ended_at, ack)
    assert_clean_log(server)
