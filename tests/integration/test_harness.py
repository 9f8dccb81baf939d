"""The harness proves itself without the platform: SIPp against SIPp, baresip
against baresip and SIPp, each call observed on the wire by a dumpcap capture.

If these fail, a failing platform test says nothing about the platform.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .peers import wait_for
from .peers.baresip import BaresipError, make_speech_wav
from .peers.capture import read_udp_datagrams, summarize
from .peers.fixtures import Peers, peers_fixture, speech_wav_fixture  # noqa: F401
from .peers.sipp import PCAP_DIR, SippError, SippProcess, render_digits, scenario_path

pytestmark = pytest.mark.integration

#: Speech louder than this is "audio with energy"; G.711 silence decodes to
#: about -70 dBov or lower, espeak-ng speech sits near -20 dBov.
AUDIBLE_DBOV = -40.0


# -- capture reading -------------------------------------------------------------


def test_reads_sipp_pcap_captures() -> None:
    """The pcap reader and RTP analysis on SIPp's own captures (pcap format)."""
    (voice,) = summarize(read_udp_datagrams(PCAP_DIR / "g711a.pcap"))
    assert voice.packets == voice.audio_packets == 236
    assert voice.codecs == ["PCMA"]
    assert voice.energy_dbov > AUDIBLE_DBOV, voice.describe()
    assert 6.9 < voice.duration < 7.2

    (key,) = summarize(read_udp_datagrams(PCAP_DIR / "dtmf_2833_pound.pcap"))
    assert key.keys == "#"
    (event,) = key.dtmf
    assert event.ended and event.packets == 10 and event.duration == 2240


def test_renders_one_play_per_digit(tmp_path: Path) -> None:
    rendered = render_digits(scenario_path("caller_dtmf.xml"), "1#", tmp_path).read_text()
    assert rendered.count("dtmf_2833_1.pcap") == 1
    assert rendered.count("dtmf_2833_pound.pcap") == 1
    assert rendered.count("<exec play_pcap_audio") == 3  # two keys, then the voice
    with pytest.raises(ValueError, match="repeat"):
        render_digits(scenario_path("caller_dtmf.xml"), "11", tmp_path)


# -- SIPp ----------------------------------------------------------------------------


async def test_sipp_caller_against_builtin_uas(peers: Peers) -> None:
    """caller_dtmf.xml against `sipp -sn uas -rtp_echo`: keys and voice reach the
    UAS, and come back from its echo."""
    uas = await peers.uas()
    caller = SippProcess.caller(uas.contact, peers.workdir, digits="1#", greet_ms=300, talk_ms=1500)
    capture = await peers.capture([uas.media_port, caller.media_port], pcap=True)
    await peers.sipp(caller)

    result = await caller.wait(timeout=20)
    await capture.stop()

    assert result.stats is not None and result.stats.successful == 1, caller.diagnostics()
    statuses = [m.status for m in caller.messages() if not m.sent]
    assert statuses == [180, 200, 200], statuses
    (to_uas,) = capture.streams_to(uas.media_port)
    (echoed,) = capture.streams_to(caller.media_port)
    for stream in (to_uas, echoed):
        assert stream.keys == "1#", stream.describe()
        assert stream.payload_types.keys() == {8, 101}, stream.describe()
        assert stream.audio_packets > 40, stream.describe()
        assert stream.energy_dbov > AUDIBLE_DBOV, stream.describe()
    # The caller is silent until its first key: the stream starts with it.
    assert to_uas.dtmf[0].time == to_uas.first_time


async def test_sipp_agent_registers_answers_hangs_up_and_unregisters(peers: Peers) -> None:
    """agent_register.xml + agent_answer_hangup.xml: digest registration, the
    call (taken out of call), both voices on the wire, BYE from the agent,
    then Expires: 0."""
    registrar = await peers.registrar({"1001": "agent1001pw"})
    agent = await peers.agent(
        registrar.contact, behaviour="answer_hangup", ring_ms=300, talk_ms=1500, wait_ms=10000
    )
    caller = SippProcess.caller(
        agent.contact, peers.workdir, service="1001", digits="5", greet_ms=300, wait_bye=True
    )
    capture = await peers.capture([agent.media_port, caller.media_port])
    await peers.sipp(caller)

    await caller.wait(timeout=20)
    agent_result = await agent.wait(timeout=20)
    await capture.stop()

    assert agent_result.ok
    sent = [(m.method, m.status) for m in agent.messages() if m.sent]
    assert ("INVITE", 180) in sent and ("INVITE", 200) in sent and ("BYE", None) in sent, sent
    unregister = [m for m in agent.messages() if m.sent and m.header("Expires") == "0"]
    assert unregister and all(m.method == "REGISTER" for m in unregister)

    (caller_to_agent,) = capture.streams_to(agent.media_port)
    (agent_to_caller,) = capture.streams_to(caller.media_port)
    assert caller_to_agent.keys == "5", caller_to_agent.describe()
    assert caller_to_agent.energy_dbov > AUDIBLE_DBOV, caller_to_agent.describe()
    assert agent_to_caller.codecs == ["PCMA"], agent_to_caller.describe()
    assert agent_to_caller.energy_dbov > AUDIBLE_DBOV, agent_to_caller.describe()


async def test_sipp_agent_without_a_call_fails_and_says_why(peers: Peers) -> None:
    registrar = await peers.registrar()
    agent = await peers.agent(registrar.contact, wait_ms=300)
    with pytest.raises(SippError, match="NO_AGENT_CALL") as failure:
        await agent.wait(timeout=10)
    assert "exit status: 1" in str(failure.value)


async def test_bad_password_gets_403(peers: Peers) -> None:
    registrar = await peers.registrar({"1001": "agent1001pw"})
    bad = SippProcess(
        scenario_path("register_bad_password.xml"),
        workdir=peers.workdir,
        remote=registrar.contact,
        service="1001",
        auth_user="1001",
        auth_password="not-the-password",
    )
    await peers.sipp(bad)
    result = await bad.wait(timeout=10)
    assert [m.status for m in bad.messages() if not m.sent] == [401, 403]
    assert result.stats is not None and result.stats.successful == 1


@pytest.mark.parametrize(
    ("scenario", "status"), [("options_ping.xml", 200), ("malformed.xml", 400)]
)
async def test_probe_scenarios_get_their_answer(peers: Peers, scenario: str, status: int) -> None:
    """options_ping.xml and malformed.xml against a responder that checks the CSeq."""
    responder = await peers.sipp(
        SippProcess(scenario_path("harness_options.xml"), workdir=peers.workdir), ready=True
    )
    probe = SippProcess(
        scenario_path(scenario), workdir=peers.workdir, remote=responder.contact, service="5000"
    )
    await peers.sipp(probe)
    await probe.wait(timeout=10)
    (answer,) = [m for m in probe.messages() if not m.sent]
    assert answer.status == status and answer.method == "OPTIONS", answer.text


# -- baresip -------------------------------------------------------------------------


async def test_baresip_calls_baresip_directly(peers: Peers) -> None:
    """B dials A by URI (no registrar); A rings and is answered by command; keys
    and speech flow both ways, on the wire and in both phones' recordings."""
    a = await peers.baresip("phone-a", answermode="manual")
    b = await peers.baresip("phone-b")
    capture = await peers.capture([a.rtp_ports, b.rtp_ports])

    await b.dial(a.uri)
    incoming = await a.wait_event("CALL_INCOMING")
    assert incoming.peer == b.uri and incoming.direction == "incoming"
    await b.wait_event("CALL_RINGING")
    await a.answer()
    await a.wait_event("CALL_ESTABLISHED")
    await b.wait_event("CALL_ESTABLISHED")

    await b.send_dtmf("12")
    pressed = [(await a.wait_event("CALL_DTMF_START")).param for _ in range(2)]
    assert pressed == ["1", "2"]

    # Let 2 s of speech arrive: A's recording of what it hears grows as it does.
    (heard_file,) = [r.heard for r in a.recordings()]
    await wait_for(lambda: heard_file.stat().st_size > 2 * 8000 * 2, 10, "2 s of audio at A")

    await b.hangup()
    await a.wait_event("CALL_CLOSED")
    await b.wait_event("CALL_CLOSED")
    await capture.stop()

    for phone in (a, b):
        heard = (await phone.wait_recording()).heard_audio()
        assert heard.rate == 8000 and heard.duration > 1.5, heard
        assert heard.dbov > AUDIBLE_DBOV, heard
        assert heard.loud_seconds(AUDIBLE_DBOV) >= 1.0, heard

    (b_to_a,) = capture.streams_to(a.rtp_ports)
    (a_to_b,) = capture.streams_to(b.rtp_ports)
    assert b_to_a.keys == "12", b_to_a.describe()
    for stream in (b_to_a, a_to_b):
        assert stream.audio_packets > 50, stream.describe()
        assert stream.energy_dbov > AUDIBLE_DBOV, stream.describe()


async def test_baresip_hangs_up_when_its_audio_ends(peers: Peers) -> None:
    """A documented baresip 1.0.0 behaviour the suite depends on: the call
    ends with the audio file."""
    short = make_speech_wav(peers.workdir / "short.wav", "one, two")
    a = await peers.baresip("phone-a", audio_source=short)
    b = await peers.baresip("phone-b")
    await b.dial(a.uri)
    await a.wait_event("AUDIO_ERROR")
    closed = await a.wait_event("CALL_CLOSED")
    assert closed.param == "end of file"
    await b.wait_event("CALL_CLOSED")


async def test_baresip_registers_and_reports_a_refusal(peers: Peers) -> None:
    registrar = await peers.registrar({"1001": "agent1001pw"})
    phone = await peers.baresip(direct=False)
    ok = await phone.register(registrar.contact, "1001", "agent1001pw")
    assert ok.param == "200 OK"
    with pytest.raises(BaresipError, match="403 Forbidden"):
        await phone.register(registrar.contact, "1002", "wrong")
    await phone.stop()
    assert any(e.type == "UNREGISTERING" for e in phone.events)


async def test_baresip_hears_a_sipp_agent_that_hangs_up(peers: Peers) -> None:
    registrar = await peers.registrar()
    agent = await peers.agent(
        registrar.contact, behaviour="answer_hangup", ring_ms=200, talk_ms=2000
    )
    phone = await peers.baresip()
    await phone.dial(f"sip:1001@{agent.contact}")
    await phone.wait_event("CALL_RINGING")
    await phone.wait_event("CALL_ESTABLISHED")
    closed = await phone.wait_event("CALL_CLOSED")
    assert closed.param is not None
    await agent.wait(timeout=10)
    heard = (await phone.wait_recording()).heard_audio()
    assert heard.dbov > AUDIBLE_DBOV and heard.loud_seconds(AUDIBLE_DBOV) >= 1.0, heard


async def test_sipp_agent_rings_until_cancelled(peers: Peers) -> None:
    registrar = await peers.registrar()
    agent = await peers.agent(registrar.contact, behaviour="noanswer")
    phone = await peers.baresip()
    await phone.dial(f"sip:1001@{agent.contact}")
    await phone.wait_event("CALL_RINGING")
    await phone.hangup()
    await phone.wait_event("CALL_CLOSED")
    await agent.wait(timeout=10)
    sent = [(m.method, m.status) for m in agent.messages() if m.sent]
    assert ("CANCEL", 200) in sent and ("INVITE", 487) in sent, sent
