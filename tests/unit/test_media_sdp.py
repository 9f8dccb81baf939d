"""SDP parsing and serialising, and RFC 3264 offer/answer for one audio stream."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import pytest

from ccserver.media.sdp import (
    MediaDescription,
    NegotiatedAudio,
    NotAcceptable,
    Origin,
    SessionDescription,
    answer,
    negotiate_answer,
    offer,
)

# SIPp's built-in uac scenario (sipp -sn uac), addresses filled in.
SIPP_DEFAULT = """v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

# SIPp's uac_pcap scenario: A-law and events, for play_pcap_audio.
SIPP_PCAP = """v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-11,16
"""

# baresip-style: wideband codecs first, events on PT 101, extra attributes.
BARESIP = (
    "v=0\r\n"
    "o=- 1966512290 2573411453 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "a=tool:baresip 1.0.0\r\n"
    "m=audio 10134 RTP/AVP 96 9 10 0 8 101\r\n"
    "b=AS:128\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:10 L16/44100/2\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=rtcp-rsize\r\n"
    "a=ssrc:3287428441 cname:d0e6b3b6-4f8b-4b2a-9d34-5c2a17e1c0a4\r\n"
    "a=sendrecv\r\n"
    "a=label:1\r\n"
    "a=ptime:20\r\n"
)

# Linphone-style: session attributes, telephone-event at three clock rates,
# a static G.729 with fmtp only, and a video stream.
LINPHONE = """v=0
o=agent1 3458 1123 IN IP4 192.168.1.20
s=Talk
c=IN IP4 192.168.1.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:96 nack pli
"""

SAMPLES = [SIPP_DEFAULT, SIPP_PCAP, BARESIP, LINPHONE]


def make_offer(media_lines: str, session: str = "c=IN IP4 203.0.113.5\n") -> str:
    head = "v=0\no=- 1 1 IN IP4 203.0.113.5\ns=-\n"
    return head + session + "t=0 0\n" + media_lines


def do_answer(
    text: str, *, codecs: Sequence[str] = ("PCMU", "PCMA"), hold: bool = False
) -> tuple[SessionDescription, NegotiatedAudio]:
    return answer(
        SessionDescription.parse(text),
        local_ip="10.0.0.1",
        local_port=20000,
        codecs=codecs,
        session_id=4242,
        hold=hold,
    )


# -------------------------------------------------------------------- parsing


def test_parse_sipp_default() -> None:
    sdp = SessionDescription.parse(SIPP_DEFAULT)
    assert sdp.version == 0
    assert sdp.origin == Origin("user1", 53655765, 2353687637, "IN", "IP4", "127.0.0.1")
    assert (sdp.name, sdp.connection, sdp.timing) == ("-", "127.0.0.1", (0, 0))
    audio = sdp.audio
    assert audio is not None
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        6000,
        "RTP/AVP",
        ["0"],
    )
    assert audio.connection is None
    assert sdp.connection_for(audio) == "127.0.0.1"
    assert audio.rtpmap == {0: ("PCMU", 8000, None)}
    assert audio.direction == "sendrecv"  # RFC 3264 §5.1 default
    assert audio.ptime is None


def test_parse_baresip() -> None:
    sdp = SessionDescription.parse(BARESIP.encode())
    assert sdp.attributes == [("tool", "baresip 1.0.0")]
    audio = sdp.media[0]
    assert audio.payload_types == [96, 9, 10, 0, 8, 101]
    assert audio.rtpmap[96] == ("opus", 48000, 2)
    assert audio.fmtp == {96: "stereo=1;sprop-stereo=1", 101: "0-15"}
    assert audio.ptime == 20
    assert audio.extra_lines == [("b", "AS:128")]
    assert audio.attribute("rtcp-rsize") == ""
    assert audio.attribute("label") == "1"
    assert audio.attribute("missing") is None
    assert audio.attributes[1] == ("ssrc", "3287428441 cname:d0e6b3b6-4f8b-4b2a-9d34-5c2a17e1c0a4")


def test_parse_linphone() -> None:
    sdp = SessionDescription.parse(LINPHONE)
    assert sdp.name == "Talk"
    assert [name for name, _ in sdp.attributes] == ["rtcp-xr", "record"]
    audio, video = sdp.media
    assert audio.codec(18) == ("G729", 8000, 1)  # static, only an fmtp given
    assert audio.fmtp[18] == "annexb=yes"
    assert audio.codec(100) == ("telephone-event", 8000, None)
    assert audio.codec(42) is None
    assert (video.media, video.port, video.formats) == ("video", 9078, ["96", "97"])
    assert video.attributes == [("rtcp-fb", "96 nack pli")]


def test_static_payload_types_without_rtpmap() -> None:
    sdp = SessionDescription.parse(make_offer("m=audio 4000 RTP/AVP 8 0\n"))
    audio = sdp.media[0]
    assert audio.rtpmap == {}
    assert [audio.codec(pt) for pt in audio.payload_types] == [
        ("PCMA", 8000, 1),
        ("PCMU", 8000, 1),
    ]


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(text: str) -> None:
    parsed = SessionDescription.parse(text)
    rendered = str(parsed)
    assert rendered.endswith("\r\n") and "\n" not in rendered.replace("\r\n", "")
    again = SessionDescription.parse(rendered)
    assert again == parsed
    assert str(again) == rendered
    assert again.to_bytes() == rendered.encode()


def test_our_own_sdp_is_byte_exact() -> None:
    text = str(offer(local_ip="10.0.0.1", local_port=20000, session_id=7, session_version=3))
    assert text == (
        "v=0\r\n"
        "o=- 7 3 IN IP4 10.0.0.1\r\n"
        "s=-\r\n"
        "c=IN IP4 10.0.0.1\r\n"
        "t=0 0\r\n"
        "m=audio 20000 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )
    assert str(SessionDescription.parse(text)) == text


def test_session_level_direction_applies_to_media() -> None:
    text = make_offer("m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=recvonly\n")
    sdp = SessionDescription.parse(text.replace("t=0 0\n", "t=0 0\na=sendonly\n"))
    assert sdp.direction == "sendonly"
    assert [m.direction for m in sdp.media] == ["sendonly", "recvonly"]
    assert SessionDescription.parse(str(sdp)) == sdp


def test_other_lines_are_kept_in_grammar_order() -> None:
    text = (
        "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=A call\ni=info\nu=http://example.com\n"
        "e=ops@example.com\nc=IN IP6 2001:db8::1\nb=CT:64\nt=0 0\nr=7d 1h 0 25h\n"
        "m=audio 4000/2 RTP/AVP 0\ni=voice\nc=IN IP4 224.2.1.1/127\nb=AS:64\n"
        "a=ptime:20.0\na=maxptime:40\n"
    )
    sdp = SessionDescription.parse(text)
    assert sdp.connection == "2001:db8::1"
    assert sdp.extra_lines == [
        ("i", "info"),
        ("u", "http://example.com"),
        ("e", "ops@example.com"),
        ("b", "CT:64"),
        ("r", "7d 1h 0 25h"),
    ]
    audio = sdp.media[0]
    assert (audio.port, audio.port_count, audio.connection, audio.ptime) == (
        4000,
        2,
        "224.2.1.1/127",
        20,
    )
    rendered = str(sdp)
    assert "c=IN IP6 2001:db8::1\r\nb=CT:64\r\nt=0 0\r\nr=7d 1h 0 25h\r\n" in rendered
    assert "m=audio 4000/2 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 224.2.1.1/127\r\nb=AS:64\r\n" in (
        rendered
    )
    assert SessionDescription.parse(rendered) == sdp


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "SDP is empty"),
        ("o=- 1 1 IN IP4 1.2.3.4\n", "line 1: an SDP must start with v="),
        ("v=1\n", "line 1: unsupported SDP version"),
        ("v=0\ns=-\nt=0 0\n", "SDP has no o= line"),
        ("v=0\no=- 1 1 IN IP4\n", "line 2: o= needs 6 fields, got 5"),
        ("v=0\no=- x 1 IN IP4 1.2.3.4\n", "line 2: o= session id and version must be numeric"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nhello\n", "line 3: expected <type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nx=1\n", "line 3: unknown line type x="),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4\n", "line 3: c= needs 3 fields"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=ATM NSAP x\n", "line 3: unsupported network type"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IPX x\n", "line 3: unsupported address type"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nt=now\n", "line 3: t= needs two numbers"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio\n", "line 3: m= needs media"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0\n", "line 3: bad port"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1/x RTP/AVP 0\n", "line 3: bad port count"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP pcmu\n", "bad RTP payload type"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 128\n", "bad RTP payload type"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\ns=x\n", "line 4: s= is not allowed"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:0\n", "line 4: rtpmap"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:0 PCMU\n", "<clock rate>"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:x PCMU/8000\n", "0..127"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=ptime:soon\n", "line 4: ptime"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionDescription.parse(text)


def test_lenient_input() -> None:
    # LF line ends, blank lines, missing s= and t=, non-RTP formats.
    sdp = SessionDescription.parse(
        "v=0\n\no=- 1 1 IN IP4 1.2.3.4\nm=application 5000 UDP/BFCP *\na=fmtp:x y\n\n"
    )
    assert (sdp.name, sdp.timing) == ("-", (0, 0))
    assert sdp.media[0].formats == ["*"]
    assert sdp.media[0].attributes == [("fmtp", "x y")]
    assert sdp.audio is None


# --------------------------------------------------------------- the answerer


def test_answer_sipp_default_offer() -> None:
    sdp, audio = do_answer(SIPP_DEFAULT)
    assert audio == NegotiatedAudio(
        remote_addr=("127.0.0.1", 6000),
        codec="PCMU",
        payload_type=0,
        dtmf_payload_type=None,
        ptime=20,
        direction="sendrecv",
        remote_direction="sendrecv",
        on_hold=False,
    )
    assert str(sdp) == (
        "v=0\r\no=- 4242 0 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def test_answer_picks_pcma_when_offered_first() -> None:
    # RFC 3264 §6.1: the offerer's order wins over ours.
    sdp, audio = do_answer(SIPP_PCAP, codecs=("PCMU", "PCMA"))
    assert (audio.codec, audio.payload_type, audio.dtmf_payload_type) == ("PCMA", 8, 101)
    media = sdp.media[0]
    assert media.formats == ["8", "101"]
    assert media.rtpmap == {8: ("PCMA", 8000, None), 101: ("telephone-event", 8000, None)}
    assert media.fmtp == {101: "0-15"}


def test_answer_respects_our_codec_list() -> None:
    _, audio = do_answer(SIPP_PCAP.replace("RTP/AVP 8 101", "RTP/AVP 8 0 101"), codecs=["PCMU"])
    assert audio.codec == "PCMU"
    with pytest.raises(NotAcceptable):
        do_answer(SIPP_PCAP, codecs=["PCMU"])
    with pytest.raises(ValueError, match="unsupported local codec 'G729'"):
        do_answer(SIPP_PCAP, codecs=["G729"])


def test_answer_baresip_skips_wideband_codecs() -> None:
    sdp, audio = do_answer(BARESIP)
    assert (audio.codec, audio.payload_type, audio.dtmf_payload_type) == ("PCMU", 0, 101)
    assert audio.remote_addr == ("127.0.0.1", 10134)
    assert sdp.media[0].formats == ["0", "101"]


def test_answer_linphone_rejects_video_and_keeps_8k_events() -> None:
    sdp, audio = do_answer(LINPHONE)
    assert (audio.codec, audio.dtmf_payload_type) == ("PCMU", 100)  # not the 48 kHz one
    assert len(sdp.media) == 2  # one answer m= line per offered one (RFC 3264 §6)
    video = sdp.media[1]
    assert (video.media, video.port, video.proto, video.formats) == (
        "video",
        0,
        "RTP/AVP",
        ["96", "97"],
    )
    assert "m=video 0 RTP/AVP 96 97\r\n" in str(sdp)
    assert str(sdp).endswith("m=video 0 RTP/AVP 96 97\r\n")  # no attributes on a rejected stream


def test_answer_keeps_dynamic_event_payload_type_96() -> None:
    text = make_offer(
        "m=audio 4000 RTP/AVP 8 96\na=rtpmap:8 PCMA/8000\na=rtpmap:96 telephone-event/8000\n"
        "a=fmtp:96 0-16\na=ptime:30\n"
    )
    sdp, audio = do_answer(text)
    assert (audio.codec, audio.dtmf_payload_type, audio.ptime) == ("PCMA", 96, 30)
    assert sdp.media[0].formats == ["8", "96"]
    assert sdp.media[0].ptime == 20  # what we want to receive


@pytest.mark.parametrize(
    "media_lines",
    [
        "m=audio 4000 RTP/AVP 18\na=rtpmap:18 G729/8000\n",
        "m=audio 4000 RTP/AVP 111 101\na=rtpmap:111 opus/48000/2\n"
        "a=rtpmap:101 telephone-event/8000\n",
        "m=audio 4000 RTP/AVP 96\na=rtpmap:96 PCMU/16000\n",  # wrong clock rate
        "m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n",  # SRTP
        "m=audio 0 RTP/AVP 0\n",  # disabled stream
        "m=video 4000 RTP/AVP 96\na=rtpmap:96 VP8/90000\n",
    ],
)
def test_answer_not_acceptable(media_lines: str) -> None:
    with pytest.raises(NotAcceptable, match="no acceptable audio stream") as caught:
        do_answer(make_offer(media_lines))
    assert caught.value.status_code == 488
    assert isinstance(caught.value, ValueError)


def test_not_acceptable_names_what_was_offered() -> None:
    text = make_offer("m=audio 4000 RTP/AVP 18 111 120\na=rtpmap:111 opus/48000/2\n")
    with pytest.raises(NotAcceptable, match="offered G729/8000, opus/48000, 120, we support PCMU"):
        do_answer(text)


def test_answer_accepts_only_the_first_usable_audio_stream() -> None:
    text = make_offer(
        "m=audio 4000 RTP/AVP 18\n"  # no common codec: rejected
        "m=audio 4002 RTP/AVP 8\n"  # accepted
        "m=audio 4004 RTP/AVP 0\n"  # a second audio stream: rejected
    )
    sdp, audio = do_answer(text)
    assert [m.port for m in sdp.media] == [0, 20000, 0]
    assert [m.formats for m in sdp.media] == [["18"], ["8"], ["0"]]
    assert audio.remote_addr == ("203.0.113.5", 4002)


def test_answer_media_level_connection_wins() -> None:
    text = make_offer("m=audio 4000 RTP/AVP 0\nc=IN IP4 198.51.100.7\n")
    assert do_answer(text)[1].remote_addr == ("198.51.100.7", 4000)
    no_connection = make_offer("m=audio 4000 RTP/AVP 0\n", session="")
    with pytest.raises(NotAcceptable):
        do_answer(no_connection)


@pytest.mark.parametrize(
    ("offered", "hold", "ours", "on_hold"),
    [
        ("sendrecv", False, "sendrecv", False),
        ("sendonly", False, "recvonly", True),  # they put us on hold (RFC 3264 §8.4)
        ("inactive", False, "inactive", True),
        ("recvonly", False, "sendonly", False),  # they hold... nothing from us to them
        ("sendrecv", True, "sendonly", False),  # we put them on hold
        ("sendonly", True, "inactive", True),
        ("recvonly", True, "sendonly", False),
        ("inactive", True, "inactive", True),
    ],
)
def test_answer_directions(offered: str, hold: bool, ours: str, on_hold: bool) -> None:
    sdp, audio = do_answer(make_offer(f"m=audio 4000 RTP/AVP 0\na={offered}\n"), hold=hold)
    assert (audio.direction, audio.remote_direction, audio.on_hold) == (ours, offered, on_hold)
    assert sdp.media[0].direction == ours
    assert f"a={ours}\r\n" in str(sdp)


def test_answer_legacy_hold_with_null_address() -> None:
    # RFC 3264 §8.4: c=0.0.0.0 is how RFC 2543 endpoints put a call on hold.
    _, audio = do_answer(make_offer("m=audio 4000 RTP/AVP 0\n", session="c=IN IP4 0.0.0.0\n"))
    assert audio.on_hold
    assert audio.direction == "recvonly"
    assert not audio.may_send and audio.may_receive
    _, audio = do_answer(make_offer("m=audio 4000 RTP/AVP 0\nc=IN IP6 ::\n"))
    assert audio.on_hold


def test_answer_session_level_sendonly() -> None:
    text = make_offer("m=audio 4000 RTP/AVP 0\n").replace("t=0 0\n", "t=0 0\na=sendonly\n")
    _, audio = do_answer(text)
    assert (audio.remote_direction, audio.direction, audio.on_hold) == (
        "sendonly",
        "recvonly",
        True,
    )


def test_answer_versions_and_ipv6() -> None:
    sdp, _ = answer(
        SessionDescription.parse(SIPP_DEFAULT),
        local_ip="2001:db8::5",
        local_port=30000,
        session_id=99,
        session_version=4,
    )
    assert sdp.origin == Origin("-", 99, 4, "IN", "IP6", "2001:db8::5")
    assert "c=IN IP6 2001:db8::5\r\n" in str(sdp)


# ---------------------------------------------------------------- the offerer


def test_offer_variants() -> None:
    held = offer(
        local_ip="10.0.0.1",
        local_port=20000,
        codecs=["PCMA"],
        dtmf_payload_type=96,
        session_id=1,
        direction="sendonly",
        ptime=30,
    )
    media = held.media[0]
    assert media.formats == ["8", "96"]
    assert (media.direction, media.ptime) == ("sendonly", 30)
    plain = offer(local_ip="10.0.0.1", local_port=1, dtmf_payload_type=None, session_id=1)
    assert plain.media[0].formats == ["0", "8"]
    with pytest.raises(ValueError, match="unknown direction"):
        offer(local_ip="10.0.0.1", local_port=1, session_id=1, direction="both")


def test_offer_answer_between_two_endpoints() -> None:
    """Both ends in memory: our offer, the far end's answer, our reading of it."""
    ours = offer(local_ip="10.0.0.1", local_port=20000, codecs=["PCMA", "PCMU"], session_id=1)
    wire = ours.to_bytes()
    their_sdp, theirs = answer(
        SessionDescription.parse(wire), local_ip="10.0.0.2", local_port=30000, session_id=2
    )
    mine = negotiate_answer(ours, SessionDescription.parse(their_sdp.to_bytes()))
    assert theirs.remote_addr == ("10.0.0.1", 20000)
    assert mine.remote_addr == ("10.0.0.2", 30000)
    assert (mine.codec, mine.payload_type) == (theirs.codec, theirs.payload_type) == ("PCMA", 8)
    assert mine.dtmf_payload_type == theirs.dtmf_payload_type == 101
    assert mine.direction == theirs.direction == "sendrecv"
    assert not mine.on_hold and not theirs.on_hold


def test_hold_and_resume_by_reoffer() -> None:
    hold_offer = offer(
        local_ip="10.0.0.1", local_port=20000, session_id=1, session_version=1, direction="sendonly"
    )
    their_sdp, theirs = answer(hold_offer, local_ip="10.0.0.2", local_port=30000, session_id=2)
    assert theirs.on_hold and theirs.direction == "recvonly"
    mine = negotiate_answer(hold_offer, their_sdp)
    assert (mine.direction, mine.on_hold) == ("sendonly", False)
    resume = offer(local_ip="10.0.0.1", local_port=20000, session_id=1, session_version=2)
    their_sdp, theirs = answer(resume, local_ip="10.0.0.2", local_port=30000, session_id=2)
    assert not theirs.on_hold and theirs.direction == "sendrecv"


def answer_text(media_lines: str, session: str = "c=IN IP4 198.51.100.9\n") -> SessionDescription:
    return SessionDescription.parse(make_offer(media_lines, session))


OUR_OFFER = offer(local_ip="10.0.0.1", local_port=20000, session_id=1)


def test_negotiate_answer_uses_their_choice_and_payload_types() -> None:
    their = answer_text("m=audio 5004 RTP/AVP 8 97\na=rtpmap:97 telephone-event/8000\na=ptime:40\n")
    audio = negotiate_answer(OUR_OFFER, their)
    assert (audio.codec, audio.payload_type, audio.dtmf_payload_type) == ("PCMA", 8, 97)
    assert (audio.remote_addr, audio.ptime) == (("198.51.100.9", 5004), 40)


def test_negotiate_answer_without_events_offered() -> None:
    no_events = offer(local_ip="10.0.0.1", local_port=1, dtmf_payload_type=None, session_id=1)
    their = answer_text("m=audio 5004 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n")
    assert negotiate_answer(no_events, their).dtmf_payload_type is None


@pytest.mark.parametrize(
    ("direction", "ours", "on_hold"),
    [
        ("sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", True),
        ("recvonly", "sendonly", False),
        ("inactive", "inactive", True),
    ],
)
def test_negotiate_answer_directions(direction: str, ours: str, on_hold: bool) -> None:
    their = answer_text(f"m=audio 5004 RTP/AVP 0\na={direction}\n")
    audio = negotiate_answer(OUR_OFFER, their)
    assert (audio.direction, audio.remote_direction, audio.on_hold) == (ours, direction, on_hold)


def test_negotiate_answer_null_address_is_hold() -> None:
    their = answer_text("m=audio 5004 RTP/AVP 0\n", session="c=IN IP4 0.0.0.0\n")
    audio = negotiate_answer(OUR_OFFER, their)
    assert audio.on_hold and audio.direction == "recvonly"


def test_negotiate_answer_failures() -> None:
    with pytest.raises(NotAcceptable, match="accepted no audio stream"):
        negotiate_answer(OUR_OFFER, answer_text("m=audio 0 RTP/AVP 0\n"))
    with pytest.raises(NotAcceptable):
        negotiate_answer(OUR_OFFER, answer_text("m=audio 5004 RTP/AVP 18\n"))  # not offered
    with pytest.raises(ValueError, match="2 m= lines for 1 offered"):
        negotiate_answer(OUR_OFFER, answer_text("m=audio 5004 RTP/AVP 0\nm=video 0 RTP/AVP 96\n"))


def test_dataclasses_are_plain_data() -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ["0"])
    assert dataclasses.replace(media, port=2).port == 2
    assert media.rtpmap == {} and media.attributes == [] and media.direction == "sendrecv"


def test_garbage_raises_only_value_error() -> None:
    rng = random.Random(8866)
    alphabet = "=\r\n :/0123456789amcvotsrtpIN"
    for _ in range(1500):
        text = list(rng.choice(SAMPLES))
        for _ in range(rng.randrange(1, 4)):
            text[rng.randrange(len(text))] = rng.choice(alphabet)
        try:
            sdp = SessionDescription.parse("".join(text))
        except ValueError:
            continue
        try:
            do_answer(str(sdp))
        except ValueError:
            pass
