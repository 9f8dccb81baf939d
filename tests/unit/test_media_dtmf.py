"""RFC 4733 telephone-events: payload format, digit detection, key press packets."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ccserver.media.dtmf import (
    DTMF_EVENTS,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    event_code,
)
from ccserver.media.rtp import RtpPacket, RtpSender

SIP_TESTER = Path("/usr/share/sip-tester")
FIXTURES = Path(__file__).parent.parent / "fixtures" / "media"
CAPTURES = {**{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)}, "*": "dtmf_2833_star.pcap"}
CAPTURES["#"] = "dtmf_2833_pound.pcap"

Stream = list[tuple[float, RtpPacket]]


def pcap_rtp(path: Path) -> Stream:
    """(capture time, RTP packet) for every UDP datagram of an Ethernet pcap."""
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian package sip-tester)")
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    out = []
    pos = 24
    while pos + 16 <= len(data):
        seconds, micros, captured, _ = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + captured]
        pos += 16 + captured
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        (length,) = struct.unpack_from("!H", udp, 4)
        out.append((seconds + micros / 1e6, RtpPacket.parse(udp[8:length])))
    return out


def fixture_rtp() -> Stream:
    lines = (FIXTURES / "dtmf_2833_1.rtp.txt").read_text().splitlines()
    rows = [line.split() for line in lines if not line.startswith("#")]
    return [(float(t), RtpPacket.parse(bytes.fromhex(h))) for t, h in rows]


def feed_all(receiver: DtmfReceiver, stream: Stream) -> list[tuple[int, str]]:
    """(packet index, digit) for every digit the receiver reports."""
    found = []
    for index, (now, packet) in enumerate(stream):
        digit = receiver.feed(packet.payload, packet.timestamp, packet.marker, now)
        if digit is not None:
            found.append((index, digit))
    return found


def event(
    code: int, timestamp: int, duration: int, *, end: bool = False, marker: bool = False
) -> RtpPacket:
    payload = bytes(TelephoneEvent(code, end, 10, duration))
    return RtpPacket(101, 0, timestamp, 1, payload, marker=marker)


def press(code: int, timestamp: int, start: float, updates: int = 4) -> Stream:
    """A well-formed key press: marker first, updates every 20 ms, 3 end packets."""
    stream = [
        (start + 0.02 * i, event(code, timestamp, 160 * (i + 1), marker=i == 0))
        for i in range(updates)
    ]
    end_time = start + 0.02 * updates
    final = 160 * (updates + 1)
    stream += [(end_time + 0.02 * i, event(code, timestamp, final, end=True)) for i in range(3)]
    return stream


# ------------------------------------------------------------ payload format


def test_telephone_event_wire_format() -> None:
    # RFC 4733 §2.3: event, E|R|volume, duration.
    parsed = TelephoneEvent.parse(bytes.fromhex("010a00a0"))
    assert parsed == TelephoneEvent(event=1, end=False, volume=10, duration=160)
    assert parsed.digit == "1"
    end = TelephoneEvent.parse(bytes.fromhex("0bca08c0"))  # R bit set: ignored
    assert (end.event, end.end, end.volume, end.duration, end.digit) == (11, True, 10, 2240, "#")
    assert bytes(end) == bytes.fromhex("0b8a08c0")
    assert TelephoneEvent.parse(bytes.fromhex("0f3fffff")).digit == "D"
    assert TelephoneEvent(16).digit == ""  # flash is not a key


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (TelephoneEvent(256), "event code must be 0..255"),
        (TelephoneEvent(1, volume=64), "volume must be 0..63"),
        (TelephoneEvent(1, duration=65536), "duration must be 0..65535"),
    ],
)
def test_telephone_event_serialize_errors(event: TelephoneEvent, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bytes(event)


def test_telephone_event_parse_errors() -> None:
    with pytest.raises(ValueError, match="too short: 3 bytes"):
        TelephoneEvent.parse(b"\x01\x0a\x00")


def test_event_codes() -> None:
    assert [event_code(key) for key in DTMF_EVENTS] == list(range(16))
    assert event_code("a") == 12
    for bad in ("", "E", "11", " "):
        with pytest.raises(ValueError, match="not a DTMF key"):
            event_code(bad)


# ------------------------------------------------------------------ receiver


@pytest.mark.parametrize("digit", list(CAPTURES))
def test_sipp_captures_yield_their_digit_once(digit: str) -> None:
    stream = pcap_rtp(SIP_TESTER / CAPTURES[digit])
    assert len(stream) == 10  # 7 updates and 3 end packets
    # Reported on the first packet, so a prompt can stop at once.
    assert feed_all(DtmfReceiver(), stream) == [(0, digit)]


def test_sipp_captures_in_one_call() -> None:
    streams = [pcap_rtp(SIP_TESTER / name) for name in CAPTURES.values()]
    # The captures share one SSRC and clock: replay them in timestamp order.
    streams.sort(key=lambda stream: stream[0][1].timestamp)
    call: Stream = []
    for number, stream in enumerate(streams):
        call += [(number + t - stream[0][0], packet) for t, packet in stream]
    digits = "".join(d for _, d in feed_all(DtmfReceiver(), call))
    assert digits == "1023456789*#"


def test_fixture_capture_without_sip_tester() -> None:
    assert feed_all(DtmfReceiver(), fixture_rtp()) == [(0, "1")]


def test_lost_start_packet() -> None:
    stream = fixture_rtp()[1:]  # the marker packet never arrived
    assert feed_all(DtmfReceiver(), stream) == [(0, "1")]


def test_only_end_packets_arrive() -> None:
    stream = fixture_rtp()[7:]
    assert feed_all(DtmfReceiver(), stream) == [(0, "1")]


def test_duplicate_and_late_end_packets() -> None:
    stream = fixture_rtp()
    stream += [(0.3 + 0.02 * i, packet) for i, (_, packet) in enumerate(stream[-3:])]
    assert feed_all(DtmfReceiver(), stream) == [(0, "1")]


def test_same_key_twice_is_two_events() -> None:
    stream = press(5, 8000, 0.0) + press(5, 8000 + 2400, 0.3)
    assert feed_all(DtmfReceiver(), stream) == [(0, "5"), (7, "5")]


def test_same_key_twice_with_both_markers_lost() -> None:
    first, second = press(5, 8000, 0.0), press(5, 11000, 0.3)
    assert [d for _, d in feed_all(DtmfReceiver(), first[1:] + second[1:])] == ["5", "5"]


def test_late_packet_of_previous_event_is_ignored() -> None:
    first, second = press(1, 8000, 0.0), press(2, 10000, 0.3)
    stream = first + second[:2] + [(0.35, first[-1][1])] + second[2:]
    assert [d for _, d in feed_all(DtmfReceiver(), stream)] == ["1", "2"]


def test_sender_restart_after_quiet_period() -> None:
    # A new source behind the old timestamp is believed after a quiet period
    # (or at once with the marker), not in the middle of an event.
    receiver = DtmfReceiver(stale_after=2.0)
    assert feed_all(receiver, press(1, 900_000, 0.0)) == [(0, "1")]
    assert feed_all(receiver, press(2, 1000, 10.0)[1:]) == [(0, "2")]
    assert feed_all(receiver, press(3, 500, 10.5)) == [(0, "3")]  # marker
    assert feed_all(receiver, press(4, 100, 10.7)[1:]) == []  # neither


def test_long_press_segments_are_one_digit() -> None:
    # RFC 4733 §2.5.1.3: past 65535 units the event goes on in a new segment.
    stream: Stream = [
        (0.0, event(9, 1000, 160, marker=True)),
        (8.0, event(9, 1000, 65535)),
        (8.02, event(9, 1000 + 65535, 160)),
        (8.1, event(9, 1000 + 65535, 800, end=True)),
    ]
    assert feed_all(DtmfReceiver(), stream) == [(0, "9")]


def test_non_dtmf_and_garbage_payloads() -> None:
    receiver = DtmfReceiver()
    assert receiver.feed(b"\x01\x0a", 1, True, 0.0) is None
    assert receiver.feed(bytes(TelephoneEvent(16, False, 10, 160)), 2, True, 0.1) is None
    assert receiver.feed(bytes(TelephoneEvent(3, False, 10, 160)), 3, True, 0.2) == "3"
    receiver.reset()
    assert receiver.feed(bytes(TelephoneEvent(3, True, 10, 800)), 3, False, 0.3) == "3"


# -------------------------------------------------------------------- sender


def test_sender_packets() -> None:
    packets = DtmfSender().packets("7", duration_ms=100, volume=12)
    events = [TelephoneEvent.parse(payload) for payload, _ in packets]
    assert [marker for _, marker in packets] == [True] + [False] * 6
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3  # final packet 3 times
    assert {(e.event, e.volume) for e in events} == {(7, 12)}


def test_sender_short_press_and_other_rates() -> None:
    packets = DtmfSender(packet_ms=50).packets("#", duration_ms=40)
    events = [TelephoneEvent.parse(payload) for payload, _ in packets]
    assert [(e.duration, e.end) for e in events] == [(320, True)] * 3
    assert [marker for _, marker in packets] == [True, False, False]
    wideband = DtmfSender(clock_rate=16000).packets("1", duration_ms=60)
    assert [TelephoneEvent.parse(p).duration for p, _ in wideband] == [320, 640, 960, 960, 960]


def test_sender_errors() -> None:
    sender = DtmfSender()
    with pytest.raises(ValueError, match="not a DTMF key"):
        sender.packets("x")
    with pytest.raises(ValueError, match="duration must be"):
        sender.packets("1", duration_ms=0)
    with pytest.raises(ValueError, match="duration must be"):
        sender.packets("1", duration_ms=9000)
    with pytest.raises(ValueError, match="packet_ms"):
        DtmfSender(packet_ms=0)


def test_sender_to_receiver_over_rtp() -> None:
    """Key presses through an RtpSender and back: each digit once, audio clock kept."""
    rtp = RtpSender(ssrc=0x42, initial_seq=65530, initial_ts=0xFFFFFFFF - 400)
    keys = DtmfSender()
    receiver = DtmfReceiver()
    heard = []
    now = 0.0
    for digit in "0123456789*#ABCD11":
        event_ts = rtp.timestamp
        for payload, marker in keys.packets(digit, duration_ms=80):
            wire = rtp.event_packet(payload, event_ts, payload_type=101, marker=marker)
            packet = RtpPacket.parse(wire)
            assert packet.timestamp == event_ts
            result = receiver.feed(packet.payload, packet.timestamp, packet.marker, now)
            if result is not None:
                heard.append(result)
            now += 0.02
        rtp.skip(keys.samples(80))
        for _ in range(5):  # the gap between keys, as audio
            rtp.packet(b"\xff" * 160, 160)
            now += 0.02
    assert "".join(heard) == "0123456789*#ABCD11"
