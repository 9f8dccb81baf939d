"""RTP/RTCP wire format, the per-leg sender and reception statistics."""

from __future__ import annotations

import itertools
import random
import struct
from pathlib import Path

import pytest

from ccserver.media.g711 import ALAW_TO_ULAW, alaw_decode, ulaw_decode
from ccserver.media.rtp import (
    RTP_HEADER,
    RtcpBye,
    RtcpOther,
    RtcpPacket,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSdes,
    RtcpSdesChunk,
    RtcpSenderReport,
    RtpPacket,
    RtpSender,
    RtpStats,
    is_rtcp,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
    rtp_header,
)

SIP_TESTER = Path("/usr/share/sip-tester")
FIXTURES = Path(__file__).parent.parent / "fixtures" / "media"


def pcap_udp_payloads(path: Path) -> list[tuple[float, bytes]]:
    """(capture time, UDP payload) of every IPv4/UDP frame in a classic pcap
    with Ethernet link type: all the sip-tester captures need."""
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian package sip-tester)")
    data = path.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nanos = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    assert linktype == 1, "Ethernet captures only"
    out = []
    pos = 24
    while pos + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + captured]
        pos += 16 + captured
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        (udp_length,) = struct.unpack_from("!H", udp, 4)
        out.append((seconds + fraction / (1e9 if nanos else 1e6), udp[8:udp_length]))
    return out


# ----------------------------------------------------------------- RtpPacket


def test_parse_minimal_packet() -> None:
    data = bytes.fromhex("80 00 1234 00000100 deadbeef") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(0, 0x1234, 0x100, 0xDEADBEEF, b"\xff" * 160)
    assert bytes(packet) == data


def test_marker_and_payload_type() -> None:
    packet = RtpPacket.parse(bytes.fromhex("80e5 0001 00000002 00000003 0a0b0c0d"))
    assert packet.marker is True
    assert packet.payload_type == 101
    assert packet.payload == bytes.fromhex("0a0b0c0d")


def test_csrc_extension_padding_round_trip() -> None:
    packet = RtpPacket(
        payload_type=8,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=1,
        payload=b"\xd5" * 20,
        marker=True,
        csrc=(0x11111111, 0x22222222, 0x33333333),
        extension=(0xBEDE, bytes.fromhex("10ff0000")),
        padding=4,
    )
    data = bytes(packet)
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert len(data) == 12 + 12 + 4 + 4 + 20 + 4
    assert data[-4:] == b"\x00\x00\x00\x04"  # RFC 3550 §5.1: last octet counts the padding
    assert RtpPacket.parse(data) == packet


def test_all_csrc_counts_round_trip() -> None:
    for count in range(16):
        packet = RtpPacket(0, count, count, 7, b"x", csrc=tuple(range(count)))
        assert RtpPacket.parse(bytes(packet)) == packet


def test_empty_extension_and_payload() -> None:
    packet = RtpPacket(13, 1, 2, 3, extension=(0x1000, b""))
    assert RtpPacket.parse(bytes(packet)) == packet


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", "too short: 0 bytes"),
        ("8000000100000002000000", "too short: 11 bytes"),
        ("400000010000000200000003", "version must be 2, got 1"),
        ("c00000010000000200000003", "version must be 2, got 3"),
        ("820000010000000200000003 00000004", "CSRC list overflows"),
        ("900000010000000200000003 bede", "extension overflows the packet: its header"),
        ("900000010000000200000003 bede0002 00000000", "2 words need 24 bytes, got 20"),
        ("a00000010000000200000003 ffff0000", "padding count octet is 0"),
        ("a00000010000000200000003 ffff0005", "padding count 5 exceeds the 4 bytes"),
        ("a10000010000000200000003 00000004", "padding count 4 exceeds the 0 bytes"),
    ],
)
def test_parse_errors(hex_data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPacket.parse(bytes.fromhex(hex_data))


def test_every_truncation_fails_cleanly() -> None:
    data = bytes(RtpPacket(0, 1, 2, 3, b"abcd", csrc=(9, 10), extension=(1, b"12345678")))
    header_length = 12 + 8 + 4 + 8
    for size in range(len(data)):
        if size < header_length:
            with pytest.raises(ValueError):
                RtpPacket.parse(data[:size])
        else:
            assert RtpPacket.parse(data[:size]).payload == b"abcd"[: size - header_length]


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (RtpPacket(128, 0, 0, 0), "payload type must fit in 7 bits"),
        (RtpPacket(0, 65536, 0, 0), "sequence number must fit in 16 bits"),
        (RtpPacket(0, 0, 1 << 32, 0), "timestamp must fit in 32 bits"),
        (RtpPacket(0, 0, 0, -1), "SSRC must fit in 32 bits"),
        (RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))), "at most 15 CSRCs"),
        (RtpPacket(0, 0, 0, 0, extension=(1, b"abc")), "multiple of 4 bytes, got 3"),
        (RtpPacket(0, 0, 0, 0, padding=256), "padding must be 0..255"),
    ],
)
def test_serialize_errors(packet: RtpPacket, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bytes(packet)


def test_rtp_header_fast_path_matches_packet() -> None:
    assert rtp_header(8, 70000, 1 << 32 | 5, 42, marker=True) == bytes(
        RtpPacket(8, 70000 & 0xFFFF, 5, 42, marker=True)
    )
    assert RTP_HEADER.size == 12


def test_is_rtcp_demux() -> None:
    # RFC 5761 §4: RTCP packet types 192..223 show up as payload types 64..95.
    assert is_rtcp(bytes(RtcpReceiverReport(1)))
    assert is_rtcp(bytes(RtcpSenderReport(1, 0, 0, 0, 0)))
    assert is_rtcp(bytes(RtcpBye([1])))
    for pt in (0, 8, 13, 96, 101, 127):
        assert not is_rtcp(rtp_header(pt, 1, 2, 3))
        assert not is_rtcp(rtp_header(pt, 1, 2, 3, marker=True))
    assert not is_rtcp(b"\x80")


# ------------------------------------------------------------- wire captures


def test_sipp_g711a_capture() -> None:
    packets = pcap_udp_payloads(SIP_TESTER / "g711a.pcap")
    assert len(packets) == 236
    parsed = [RtpPacket.parse(data) for _, data in packets]
    for data_packet, (_, data) in zip(parsed, packets, strict=True):
        assert bytes(data_packet) == data  # byte-exact round trip
    assert {p.payload_type for p in parsed} == {8}
    assert {p.ssrc for p in parsed} == {0xDEE0EE8F}
    assert {len(p.payload) for p in parsed} == {240}  # 30 ms of A-law
    assert parsed[0].marker and not any(p.marker for p in parsed[1:])
    for before, after in itertools.pairwise(parsed):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        assert after.timestamp - before.timestamp == 240
    # The capture is speech, not silence: decoded A-law has real energy.
    pcm = alaw_decode(b"".join(p.payload for p in parsed))
    assert int(abs(pcm.astype(int)).max()) > 1000


def test_sipp_dtmf_fixture_packets() -> None:
    lines = (FIXTURES / "dtmf_2833_1.rtp.txt").read_text().splitlines()
    packets = [bytes.fromhex(line.split()[1]) for line in lines if not line.startswith("#")]
    assert len(packets) == 10
    for data in packets:
        packet = RtpPacket.parse(data)
        assert bytes(packet) == data
        assert packet.payload_type == 101
        assert packet.timestamp == 0x33E0  # RFC 4733: one timestamp for the whole event
    assert RtpPacket.parse(packets[0]).marker


# ------------------------------------------------------------------ RtpSender


def test_sender_packets_advance_sequence_and_timestamp() -> None:
    sender = RtpSender(ssrc=0x1234, payload_type=0, initial_seq=100, initial_ts=1000)
    first = RtpPacket.parse(sender.packet(b"\xff" * 160, 160, marker=True))
    second = RtpPacket.parse(sender.packet(b"\xd5" * 160, 160, payload_type=8))
    assert (first.sequence, first.timestamp, first.marker, first.payload_type) == (
        100,
        1000,
        True,
        0,
    )
    assert (second.sequence, second.timestamp, second.marker, second.payload_type) == (
        101,
        1160,
        False,
        8,
    )
    assert first.ssrc == second.ssrc == 0x1234
    assert (sender.sequence, sender.timestamp) == (102, 1320)


def test_sender_wraps_sequence_and_timestamp() -> None:
    sender = RtpSender(ssrc=1, initial_seq=0xFFFE, initial_ts=0xFFFFFFFF - 159)
    seqs, stamps = [], []
    for _ in range(3):
        packet = RtpPacket.parse(sender.packet(b"\xff" * 160, 160))
        seqs.append(packet.sequence)
        stamps.append(packet.timestamp)
    assert seqs == [0xFFFE, 0xFFFF, 0]
    assert stamps == [0xFFFFFFFF - 159, 0, 160]


def test_sender_random_initial_state() -> None:
    senders = [RtpSender() for _ in range(8)]
    assert len({s.ssrc for s in senders}) > 1  # RFC 3550 §5.1: random SSRC, seq, timestamp
    assert all(0 <= s.sequence <= 0xFFFF and 0 <= s.timestamp <= 0xFFFFFFFF for s in senders)
    with pytest.raises(ValueError, match="payload type"):
        RtpSender(payload_type=200)


def test_event_packets_share_timestamp() -> None:
    sender = RtpSender(ssrc=5, initial_seq=10, initial_ts=8000)
    event_ts = sender.timestamp
    packets = [
        RtpPacket.parse(
            sender.event_packet(b"\x01\x0a\x00\xa0", event_ts, payload_type=101, marker=m)
        )
        for m in (True, False, False)
    ]
    assert [p.timestamp for p in packets] == [8000] * 3
    assert [p.sequence for p in packets] == [10, 11, 12]
    assert [p.marker for p in packets] == [True, False, False]
    assert sender.timestamp == 8000  # audio clock untouched until skip()
    sender.skip(800)
    assert RtpPacket.parse(sender.packet(b"", 160)).timestamp == 8800


def source_packet(
    seq: int,
    ts: int,
    ssrc: int = 0xAAAA,
    payload: bytes = b"\xd5" * 160,
    *,
    marker: bool = False,
    csrc: tuple[int, ...] = (),
    extension: tuple[int, bytes] | None = None,
    padding: int = 0,
) -> bytes:
    """An A-law packet from the other leg's phone."""
    packet = RtpPacket(8, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload, marker, csrc, extension)
    packet.padding = padding
    return bytes(packet)


def test_forward_keeps_source_timestamp_deltas() -> None:
    sender = RtpSender(ssrc=0x5151, payload_type=0, initial_seq=500, initial_ts=90000)
    source = [(0, 7000), (1, 7160), (2, 7320), (5, 7800), (6, 7960)]  # 3 and 4 lost
    out = [RtpPacket.parse(sender.forward(source_packet(seq, ts))) for seq, ts in source]
    assert [p.timestamp for p in out] == [90000, 90160, 90320, 90800, 90960]
    assert [p.sequence for p in out] == [500, 501, 502, 503, 504]
    assert {p.ssrc for p in out} == {0x5151}
    assert [p.marker for p in out] == [True, False, False, False, False]
    assert {p.payload_type for p in out} == {8}  # kept unless rewritten
    assert (sender.sequence, sender.timestamp) == (505, 91120)


def test_forward_keeps_source_marker() -> None:
    sender = RtpSender(ssrc=1, initial_ts=0)
    sender.forward(source_packet(1, 100))
    assert RtpPacket.parse(sender.forward(source_packet(2, 5000, marker=True))).marker


def test_forward_reanchors_on_ssrc_change() -> None:
    sender = RtpSender(ssrc=7, initial_seq=0, initial_ts=1000)
    for i in range(3):
        sender.forward(source_packet(i, 50000 + 160 * i, ssrc=0xAAAA))
    # A new source (transfer, re-INVITE) with a timestamp far behind the old one.
    out = [
        RtpPacket.parse(sender.forward(source_packet(900 + i, 10 + 240 * i, ssrc=0xBBBB)))
        for i in range(3)
    ]
    assert [p.timestamp for p in out] == [1480, 1720, 1960]  # continues, then keeps its deltas
    assert [p.sequence for p in out] == [3, 4, 5]
    assert [p.marker for p in out] == [True, False, False]


def test_forward_then_prompt_then_forward_stays_monotonic() -> None:
    sender = RtpSender(ssrc=9, initial_seq=0, initial_ts=0)
    stamps = [
        RtpPacket.parse(sender.forward(source_packet(i, 3000 + 160 * i))).timestamp
        for i in range(3)
    ]
    stamps += [RtpPacket.parse(sender.packet(b"\xff" * 160, 160)).timestamp for _ in range(2)]
    resumed = RtpPacket.parse(sender.forward(source_packet(3, 3480)))
    stamps.append(resumed.timestamp)
    assert stamps == [0, 160, 320, 480, 640, 800]
    assert resumed.marker  # re-anchored after our own packets


def test_forward_ignores_late_packet_for_stream_clock() -> None:
    sender = RtpSender(ssrc=9, initial_seq=0, initial_ts=0)
    for seq, ts in [(0, 0), (1, 160), (3, 480), (2, 320)]:  # seq 2 arrives late
        sender.forward(source_packet(seq, ts))
    assert sender.timestamp == 640


def test_forward_timestamp_wraps() -> None:
    sender = RtpSender(ssrc=3, initial_seq=0xFFFF, initial_ts=0xFFFFFFFF - 159)
    out = [RtpPacket.parse(sender.forward(source_packet(i, 160 * i))) for i in range(3)]
    assert [p.timestamp for p in out] == [0xFFFFFFFF - 159, 0, 160]
    assert [p.sequence for p in out] == [0xFFFF, 0, 1]


def test_forward_translates_law_and_payload_type() -> None:
    alaw = bytes(range(256))
    sender = RtpSender(ssrc=3, payload_type=0, initial_ts=0)
    out = RtpPacket.parse(
        sender.forward(source_packet(1, 1, payload=alaw), payload_type=0, translate=ALAW_TO_ULAW)
    )
    assert out.payload_type == 0
    assert out.payload == alaw.translate(ALAW_TO_ULAW)
    error = abs(ulaw_decode(out.payload).astype(int) - alaw_decode(alaw).astype(int))
    assert int(error.max()) <= 1024  # one step of the coarser law at full scale


def test_forward_strips_csrc_extension_and_padding() -> None:
    sender = RtpSender(ssrc=3, initial_seq=0, initial_ts=0)
    data = source_packet(
        1, 1, payload=b"abc", csrc=(1, 2), extension=(0xBEDE, b"\x10\x01\x00\x00"), padding=3
    )
    out = sender.forward(data)
    assert out[0] == 0x80
    assert RtpPacket.parse(out).payload == b"abc"


def test_forward_rejects_garbage() -> None:
    sender = RtpSender()
    with pytest.raises(ValueError, match="too short"):
        sender.forward(b"\x80\x00")
    with pytest.raises(ValueError, match="version"):
        sender.forward(b"\x00" * 20)
    with pytest.raises(ValueError, match="overflow"):
        sender.forward(bytes.fromhex("900000010000000200000003 bede0009"))


# ----------------------------------------------------------------------- RTCP


def test_sender_report_round_trip() -> None:
    report = RtcpSenderReport(
        ssrc=0x01020304,
        ntp_timestamp=ntp_timestamp(1_700_000_000.5),
        rtp_timestamp=123456,
        packet_count=50,
        octet_count=8000,
        reports=[
            RtcpReportBlock(0xAAAA, 25, 10, 70000, 35, 0x12345678, 0x10000),
            RtcpReportBlock(0xBBBB, 0, -3, 5, 0, 0, 0),
        ],
    )
    data = bytes(report)
    assert data[:4] == bytes.fromhex("82c80012")  # 2 blocks, PT 200, 19 words - 1
    assert len(data) == 4 + 24 + 48
    assert parse_rtcp(data) == [report]


def test_report_block_wire_layout() -> None:
    block = RtcpReportBlock(1, fraction_lost=0x40, packets_lost=-2)
    data = bytes(block)
    assert data[4:8] == bytes.fromhex("40fffffe")  # fraction, then signed 24-bit count
    assert RtcpReportBlock.parse(data) == block
    with pytest.raises(ValueError, match="24 bits"):
        bytes(RtcpReportBlock(1, packets_lost=1 << 23))


def test_compound_rr_sdes_bye() -> None:
    packets: list[RtcpPacket] = [
        RtcpReceiverReport(0x11, [RtcpReportBlock(0x22, 1, 2, 3, 4, 5, 6)]),
        RtcpSdes.cname_only(0x11, "leg-1@ccserver"),
        RtcpBye([0x11, 0x33], reason="call ended"),
    ]
    data = b"".join(bytes(p) for p in packets)
    assert len(data) % 4 == 0
    parsed = parse_rtcp(data)
    assert parsed == packets
    sdes = parsed[1]
    assert isinstance(sdes, RtcpSdes)
    assert sdes.chunks[0].cname == "leg-1@ccserver"


def test_sdes_padding_for_every_length() -> None:
    for size in range(1, 12):
        sdes = RtcpSdes([RtcpSdesChunk(5, [(1, b"x" * size), (6, b"tool")])])
        data = bytes(sdes)
        assert len(data) % 4 == 0
        assert parse_rtcp(data) == [sdes]


def test_unknown_rtcp_types_are_kept() -> None:
    app = RtcpOther(204, 3, b"nameDATA")
    data = bytes(RtcpReceiverReport(1)) + bytes(app)
    assert parse_rtcp(data)[1] == app


def test_rtcp_padding_is_stripped() -> None:
    body = bytes(RtcpBye([9]))
    padded = (
        bytes([body[0] | 0x20, body[1]]) + struct.pack("!H", 2) + body[4:] + b"\x00\x00\x00\x04"
    )
    assert parse_rtcp(padded) == [RtcpBye([9])]


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("80c9", "too short"),
        ("40c90001 00000001", "version must be 2"),
        ("80c90005 00000001", "announces 24 bytes, only 8 left"),
        ("81c90001 00000001", "announces 1 report blocks"),
        ("80c80001 00000001", "SR too short"),
        ("81ca0001 00000001", "terminating null item"),
        ("81ca0002 00000001 0109ab00", "overflows"),
        ("83cb0001 00000001", "announces 3 sources"),
        ("81cb0002 00000001 09616263", "reason of 9 bytes"),
        ("a0c90001 00000000", "padding count 0"),
        ("80c90001 00000001 00", "trailing garbage"),
    ],
)
def test_rtcp_errors(hex_data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rtcp(bytes.fromhex(hex_data))


def test_ntp_helpers() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(0.5) & 0xFFFFFFFF == 1 << 31
    assert ntp_middle(0x1122334455667788) == 0x33445566


# ------------------------------------------------------------------ RtpStats


def test_stats_counts_loss_across_sequence_wrap() -> None:
    stats = RtpStats()
    dropped = {10, 11, 500, 537, 999}
    for i in range(1000):
        if i in dropped:
            continue
        seq = (65000 + i) & 0xFFFF
        # The first packet waits for a second in sequence (A.1 probation).
        assert stats.update(0xCAFE, seq, 160 * i, i * 0.02, 160) is (i > 0)
    assert stats.received == 995
    assert stats.octets == 995 * 160
    assert stats.expected == 999  # the last packet was lost: not known yet
    assert stats.lost == 4
    assert stats.extended_highest_sequence == 65536 + (65000 + 998 - 65536)
    block = stats.report_block(lsr=7, dlsr=8)
    assert block.ssrc == 0xCAFE
    assert block.packets_lost == 4
    assert block.fraction_lost == 4 * 256 // 999
    assert (block.lsr, block.dlsr) == (7, 8)
    assert block.jitter == 0  # perfectly regular arrivals


def test_stats_fraction_lost_is_per_interval() -> None:
    stats = RtpStats(min_sequential=1)
    for seq in range(100):
        if seq % 10 != 5:
            stats.update(1, seq, seq * 160, seq * 0.02)
    block = stats.report_block()
    assert (block.fraction_lost, block.packets_lost) == (10 * 256 // 100, 10)
    for seq in range(100, 200):
        stats.update(1, seq, seq * 160, seq * 0.02)
    block = stats.report_block()
    assert (block.fraction_lost, block.packets_lost) == (0, 10)  # no new loss this interval
    stats.update(1, 205, 205 * 160, 4.1)
    assert stats.report_block().fraction_lost == 5 * 256 // 6  # 200..204 lost


def test_stats_jitter_converges() -> None:
    # Every other packet 5 ms late: each transit difference is 40 samples,
    # so J (RFC 3550 A.8) tends to 40.
    stats = RtpStats(clock_rate=8000)
    for i in range(400):
        arrival = i * 0.02 + (0.005 if i % 2 else 0.0)
        timestamp = ((1 << 32) - 8000 + 160 * i) & 0xFFFFFFFF  # crosses the wrap
        stats.update(1, i, timestamp, arrival)
    assert stats.jitter == pytest.approx(40, rel=1e-3)
    assert stats.jitter_ms == pytest.approx(5, rel=1e-3)
    assert stats.report_block().jitter in (39, 40)


def test_stats_probation_and_duplicates() -> None:
    stats = RtpStats()
    assert not stats.update(1, 100, 0, 0.0)
    assert not stats.valid
    assert stats.update(1, 101, 160, 0.02)
    assert stats.valid
    assert stats.received == 2  # the probation packet counts
    assert stats.update(1, 101, 160, 0.03)  # duplicate
    assert stats.lost == -1


def test_stats_restart_after_large_jump() -> None:
    stats = RtpStats(min_sequential=1)
    for seq in range(10):
        stats.update(1, seq, seq * 160, seq * 0.02)
    assert not stats.update(1, 20000, 0, 0.3)  # one stray packet: not believed
    assert stats.received == 10
    assert stats.update(1, 20001, 160, 0.32)  # the next in sequence: sender restarted
    assert stats.expected == 1
    assert stats.received == 1


def test_stats_new_ssrc_starts_over() -> None:
    stats = RtpStats(min_sequential=1)
    for seq in range(5):
        stats.update(1, seq, 0, 0.0)
    stats.update(2, 4000, 0, 0.1)
    assert stats.ssrc == 2
    assert stats.received == 1


def test_stats_feed_raw_packets() -> None:
    stats = RtpStats()
    sender = RtpSender(ssrc=77, initial_seq=65534, initial_ts=0)
    for i in range(4):
        assert stats.feed(sender.packet(b"\xff" * 160, 160), i * 0.02) is (i > 0)
    padded = bytes(RtpPacket(0, 2, 640, 77, b"\xff" * 160, padding=8))
    assert stats.feed(padded, 0.08)
    assert stats.received == 5
    assert stats.octets == 5 * 160
    assert not stats.feed(b"\x80\x00", 0.1)


def test_forward_relays_event_packets_on_one_timestamp() -> None:
    sender = RtpSender(ssrc=3, initial_seq=0, initial_ts=50_000)
    sender.forward(source_packet(1, 8000))
    events = [
        RtpPacket.parse(sender.forward(source_packet(2 + i, 8160), payload_type=101))
        for i in range(4)
    ]
    assert {p.timestamp for p in events} == {50_160}
    assert {p.payload_type for p in events} == {101}
    assert [p.sequence for p in events] == [1, 2, 3, 4]


def test_garbage_raises_only_value_error() -> None:
    rng = random.Random(3550)
    valid = bytes(RtpPacket(0, 1, 2, 3, b"x" * 20, csrc=(4,), extension=(5, b"abcd"), padding=2))
    rtcp = bytes(RtcpSenderReport(1, 2, 3, 4, 5, [RtcpReportBlock(6)])) + bytes(RtcpBye([1], "x"))
    sender = RtpSender()
    for _ in range(3000):
        for template in (valid, rtcp):
            data = bytearray(template[: rng.randrange(len(template) + 1)])
            for _ in range(rng.randrange(4)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            for parse in (RtpPacket.parse, parse_rtcp, sender.forward):
                try:
                    parse(bytes(data))
                except ValueError:
                    pass
