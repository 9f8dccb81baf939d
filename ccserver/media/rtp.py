"""RTP and RTCP as plain data (RFC 3550): parse bytes, build bytes, no sockets.

The relay path (`RtpSender.forward`) works on raw packets with one struct
unpack and one pack; `RtpPacket` is for code that needs every header field.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RTP_HEADER",
    "RtcpBye",
    "RtcpOther",
    "RtcpPacket",
    "RtcpReceiverReport",
    "RtcpReportBlock",
    "RtcpSdes",
    "RtcpSdesChunk",
    "RtcpSenderReport",
    "RtpPacket",
    "RtpSender",
    "RtpStats",
    "is_rtcp",
    "ntp_middle",
    "ntp_timestamp",
    "parse_rtcp",
    "rtp_header",
]

#: Fixed RTP header (RFC 3550 §5.1): V/P/X/CC, M/PT, sequence, timestamp, SSRC.
RTP_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_CSRC = tuple(struct.Struct(f"!{n}I") for n in range(16))

_pack_header = RTP_HEADER.pack
_unpack_header = RTP_HEADER.unpack_from

_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFFFFFF
_HALF_TS = 0x80000000


def _check_range(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must fit in {bits} bits, got {value}")


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet with every header field decoded (RFC 3550 §5.1)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined id, data) per §5.3.1
    padding: int = 0  # octets of padding including the count octet itself

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        length = len(data)
        if length < 12:
            raise ValueError(f"RTP packet too short: {length} bytes, the fixed header needs 12")
        b0, b1, sequence, timestamp, ssrc = _unpack_header(data)
        version = b0 >> 6
        if version != 2:
            raise ValueError(f"RTP version must be 2, got {version}")
        count = b0 & 0x0F
        pos = 12 + 4 * count
        if pos > length:
            raise ValueError(
                f"RTP CSRC list overflows the packet: {count} CSRCs need {pos} bytes, got {length}"
            )
        csrc: tuple[int, ...] = _CSRC[count].unpack_from(data, 12) if count else ()
        extension: tuple[int, bytes] | None = None
        if b0 & 0x10:
            # §5.3.1: a 4-octet header (profile-defined, length in 32-bit words) then data.
            if pos + 4 > length:
                raise ValueError(
                    f"RTP header extension overflows the packet: its header needs {pos + 4} "
                    f"bytes, got {length}"
                )
            profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * words
            if end > length:
                raise ValueError(
                    f"RTP header extension overflows the packet: {words} words need {end} bytes, "
                    f"got {length}"
                )
            extension = (profile, data[pos:end])
            pos = end
        end = length
        padding = 0
        if b0 & 0x20:
            # §5.1: the last octet counts the padding octets, itself included.
            padding = data[-1]
            if padding == 0:
                raise ValueError("RTP padding bit set but the padding count octet is 0")
            if padding > length - pos:
                raise ValueError(
                    f"RTP padding count {padding} exceeds the {length - pos} bytes after the header"
                )
            end = length - padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[pos:end],
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension=extension,
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        _check_range("payload type", self.payload_type, 7)
        _check_range("sequence number", self.sequence, 16)
        _check_range("timestamp", self.timestamp, 32)
        _check_range("SSRC", self.ssrc, 32)
        if len(self.csrc) > 15:
            raise ValueError(f"at most 15 CSRCs fit in an RTP header, got {len(self.csrc)}")
        for csrc in self.csrc:
            _check_range("CSRC", csrc, 32)
        if not 0 <= self.padding <= 255:
            raise ValueError(f"RTP padding must be 0..255 octets, got {self.padding}")
        b0 = 0x80 | len(self.csrc)
        parts = [b"", _CSRC[len(self.csrc)].pack(*self.csrc)]
        if self.extension is not None:
            profile, data = self.extension
            _check_range("header extension profile", profile, 16)
            if len(data) % 4:
                raise ValueError(
                    f"RTP header extension data must be a multiple of 4 bytes, got {len(data)}"
                )
            if len(data) // 4 > 0xFFFF:
                raise ValueError(f"RTP header extension too long: {len(data)} bytes")
            b0 |= 0x10
            parts.append(_EXTENSION_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            b0 |= 0x20
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        parts[0] = _pack_header(
            b0,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
        )
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """True for RTCP on a muxed port: RFC 5761 §4 demultiplexes on the second
    octet, where RTCP packet types 192..223 read as RTP payload types 64..95."""
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95


def rtp_header(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool = False
) -> bytes:
    """The 12-byte fixed header, for senders that append the payload themselves."""
    return _pack_header(
        0x80,
        (0x80 if marker else 0) | (payload_type & 0x7F),
        sequence & _SEQ_MASK,
        timestamp & _TS_MASK,
        ssrc,
    )


def _payload_bounds(packet: bytes, b0: int) -> tuple[int, int]:
    """Where the payload sits when the header carries CSRCs, an extension or padding."""
    length = len(packet)
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if pos + 4 > length:
            raise ValueError("RTP header extension overflows the packet")
        pos += 4 + 4 * _EXTENSION_HEADER.unpack_from(packet, pos)[1]
    end = length
    if b0 & 0x20 and length > pos:
        end = length - packet[-1]
    if pos > end:
        raise ValueError("RTP header, extension or padding overflow the packet")
    return pos, end


class RtpSender:
    """Per-leg outgoing stream state: our SSRC, sequence and timestamp, so prompts
    and relayed audio form one continuous stream (RFC 3550 §5.1).

    ``sequence`` and ``timestamp`` are the values the next locally built packet
    will carry. Relayed packets keep the source's timestamp spacing through an
    offset that is re-anchored whenever the source SSRC changes or we sent
    packets of our own in between, so the timestamps we emit never jump back.
    """

    __slots__ = (
        "_anchored",
        "_last_src_seq",
        "_last_src_ts",
        "_src_ssrc",
        "_step",
        "_ts_offset",
        "clock_rate",
        "payload_type",
        "sequence",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        ssrc: int | None = None,
        payload_type: int = 0,
        clock_rate: int = 8000,
        initial_seq: int | None = None,
        initial_ts: int | None = None,
    ) -> None:
        _check_range("payload type", payload_type, 7)
        # §5.1: the initial sequence number and timestamp SHOULD be random.
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.sequence = secrets.randbits(16) if initial_seq is None else initial_seq & _SEQ_MASK
        self.timestamp = secrets.randbits(32) if initial_ts is None else initial_ts & _TS_MASK
        _check_range("SSRC", self.ssrc, 32)
        self._anchored = False
        self._src_ssrc = -1
        self._ts_offset = 0
        self._last_src_seq = 0
        self._last_src_ts = 0
        self._step = 0

    def packet(
        self,
        payload: bytes,
        samples: int,
        *,
        payload_type: int | None = None,
        marker: bool = False,
    ) -> bytes:
        """A packet stamped with the current sequence and timestamp, then advance
        the sequence by one and the timestamp by ``samples``."""
        pt = self.payload_type if payload_type is None else payload_type & 0x7F
        header = _pack_header(
            0x80, 0x80 | pt if marker else pt, self.sequence, self.timestamp, self.ssrc
        )
        self.sequence = (self.sequence + 1) & _SEQ_MASK
        self.timestamp = (self.timestamp + samples) & _TS_MASK
        self._anchored = False
        return header + payload

    def event_packet(
        self, payload: bytes, event_ts: int, *, payload_type: int, marker: bool
    ) -> bytes:
        """One RFC 4733 packet: every packet of an event carries the event's start
        timestamp (§2.5.1.2) while the sequence number still increments (§2.5.1.6).

        The stream timestamp is left alone; once the event is over, call
        `skip` with its duration so the audio that follows lines up in time.
        """
        header = _pack_header(
            0x80,
            (0x80 if marker else 0) | (payload_type & 0x7F),
            self.sequence,
            event_ts & _TS_MASK,
            self.ssrc,
        )
        self.sequence = (self.sequence + 1) & _SEQ_MASK
        self._anchored = False
        return header + payload

    def skip(self, samples: int) -> None:
        """Let ``samples`` of media time pass without sending (silence, an event)."""
        self.timestamp = (self.timestamp + samples) & _TS_MASK
        self._anchored = False

    def forward(
        self,
        packet: bytes,
        payload_type: int | None = None,
        translate: bytes | None = None,
    ) -> bytes:
        """Re-stamp a received RTP packet as the next packet of our stream.

        The payload (without CSRCs, header extension or padding, which belong
        to the other leg) is kept, optionally mapped through a 256-byte
        ``translate`` table (A-law <-> µ-law), and the payload type rewritten.
        The source's marker bit is kept; a re-anchor sets it, since the
        timestamp spacing changes there (RFC 3551 §4.1).

        This runs once per relayed packet (50 per second per leg), so it is
        written for the interpreter: literal masks (0xFFFF sequence,
        0xFFFFFFFF timestamp, 0x80000000 half the timestamp space) instead of
        module constants, one unpack, one pack, one concatenation.
        """
        try:
            b0, b1, src_seq, src_ts, src_ssrc = _unpack_header(packet)
        except struct.error:
            raise ValueError(
                f"RTP packet too short: {len(packet)} bytes, the fixed header needs 12"
            ) from None
        if b0 & 0xC0 != 0x80:
            raise ValueError(f"RTP version must be 2, got {b0 >> 6}")
        marker = b1 & 0x80
        if src_ssrc != self._src_ssrc or not self._anchored:
            # A new source or our own packets in between: continue from our
            # timestamp so the receiver sees one monotonic clock (§5.1).
            self._src_ssrc = src_ssrc
            self._ts_offset = (self.timestamp - src_ts) & 0xFFFFFFFF
            self._anchored = True
            marker = 0x80
        elif src_seq == (self._last_src_seq + 1) & 0xFFFF:
            # Consecutive packets: their timestamp step is one packet's duration.
            delta = (src_ts - self._last_src_ts) & 0xFFFFFFFF
            if 0 < delta < 0x80000000:
                self._step = delta
        self._last_src_seq = src_seq
        self._last_src_ts = src_ts
        ts = (src_ts + self._ts_offset) & 0xFFFFFFFF
        if b0 & 0x3F:
            start, end = _payload_bounds(packet, b0)
            payload = packet[start:end]
        else:
            payload = packet[12:]
        if translate is not None:
            payload = payload.translate(translate)
        seq = self.sequence
        self.sequence = (seq + 1) & 0xFFFF
        # Our next own packet follows this one by one packet duration: the
        # source's last timestamp step, or one sample per byte (G.711) before
        # a step is known. Only move forward, so a late packet cannot pull
        # the stream clock back.
        following = (ts + (self._step or len(payload))) & 0xFFFFFFFF
        if (following - self.timestamp) & 0xFFFFFFFF < 0x80000000:
            self.timestamp = following
        pt = b1 & 0x7F if payload_type is None else payload_type & 0x7F
        return _pack_header(0x80, marker | pt, seq, ts, self.ssrc) + payload


# --------------------------------------------------------------------------- RTCP

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203

_RTCP_HEADER = struct.Struct("!BBH")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SSRC = struct.Struct("!I")
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) for a Unix time in seconds."""
    seconds = int(unix_time)
    fraction = int((unix_time - seconds) * (1 << 32)) & _TS_MASK
    return (((seconds + _NTP_EPOCH_OFFSET) & _TS_MASK) << 32) | fraction


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of §6.4.1."""
    return (ntp >> 16) & _TS_MASK


def _rtcp_header(count: int, packet_type: int, body_length: int) -> bytes:
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP count must be 0..31, got {count}")
    if body_length % 4:
        raise ValueError(f"RTCP packet body must be a multiple of 4 bytes, got {body_length}")
    # §6.4.1: length in 32-bit words minus one, the header included.
    return _RTCP_HEADER.pack(0x80 | count, packet_type, body_length // 4)


@dataclass(slots=True)
class RtcpReportBlock:
    """Reception statistics about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0  # fixed point, lost / expected * 256
    packets_lost: int = 0  # cumulative, signed 24 bits
    highest_sequence: int = 0  # extended: cycles << 16 | max sequence
    jitter: int = 0  # timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0  # delay since that SR in 1/65536 s

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> RtcpReportBlock:
        if len(data) - offset < 24:
            raise ValueError(f"RTCP report block truncated: {len(data) - offset} of 24 bytes")
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        _check_range("fraction lost", self.fraction_lost, 8)
        if not -0x800000 <= self.packets_lost <= 0x7FFFFF:
            raise ValueError(
                f"cumulative packets lost must fit in 24 bits, got {self.packets_lost}"
            )
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | (self.packets_lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


def _parse_blocks(body: bytes, offset: int, count: int, kind: str) -> list[RtcpReportBlock]:
    end = offset + 24 * count
    if end > len(body):
        raise ValueError(f"RTCP {kind} announces {count} report blocks but has room for fewer")
    return [RtcpReportBlock.parse(body, offset + 24 * i) for i in range(count)]


@dataclass(slots=True)
class RtcpSenderReport:
    """SR (RFC 3550 §6.4.1): what we sent, plus reports on what we received."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""  # profile-specific extension (§6.4.1), kept opaque

    @classmethod
    def _parse(cls, count: int, body: bytes) -> RtcpSenderReport:
        if len(body) < 24:
            raise ValueError(f"RTCP SR too short: {len(body)} bytes after the header, need 24")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = _parse_blocks(body, 24, count, "SR")
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, body[24 + 24 * count :])

    def __bytes__(self) -> bytes:
        body = b"".join(
            [
                _SENDER_INFO.pack(
                    self.ssrc,
                    self.ntp_timestamp,
                    self.rtp_timestamp,
                    self.packet_count,
                    self.octet_count,
                ),
                *(bytes(block) for block in self.reports),
                self.extension,
            ]
        )
        return _rtcp_header(len(self.reports), RTCP_SR, len(body)) + body


@dataclass(slots=True)
class RtcpReceiverReport:
    """RR (RFC 3550 §6.4.2): reception reports from a participant that did not send."""

    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def _parse(cls, count: int, body: bytes) -> RtcpReceiverReport:
        if len(body) < 4:
            raise ValueError(f"RTCP RR too short: {len(body)} bytes after the header, need 4")
        reports = _parse_blocks(body, 4, count, "RR")
        return cls(_SSRC.unpack_from(body)[0], reports, body[4 + 24 * count :])

    def __bytes__(self) -> bytes:
        body = b"".join(
            [_SSRC.pack(self.ssrc), *(bytes(block) for block in self.reports), self.extension]
        )
        return _rtcp_header(len(self.reports), RTCP_RR, len(body)) + body


SDES_CNAME = 1


@dataclass(slots=True)
class RtcpSdesChunk:
    """The SDES items of one source (RFC 3550 §6.5)."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)  # (item type, value)

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class RtcpSdes:
    """SDES (RFC 3550 §6.5); every compound packet carries at least a CNAME (§6.1)."""

    chunks: list[RtcpSdesChunk] = field(default_factory=list)

    @classmethod
    def cname_only(cls, ssrc: int, cname: str) -> RtcpSdes:
        return cls([RtcpSdesChunk(ssrc, [(SDES_CNAME, cname.encode())])])

    @classmethod
    def _parse(cls, count: int, body: bytes) -> RtcpSdes:
        chunks = []
        pos = 0
        for _ in range(count):
            if pos + 4 > len(body):
                raise ValueError(f"RTCP SDES announces {count} chunks but has room for fewer")
            chunk = RtcpSdesChunk(_SSRC.unpack_from(body, pos)[0])
            pos += 4
            while True:
                if pos >= len(body):
                    raise ValueError("RTCP SDES chunk lacks its terminating null item")
                kind = body[pos]
                if kind == 0:
                    # §6.5: the list ends with a null octet, then zeros to the next word.
                    pos = (pos + 4) & ~3
                    break
                if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                    raise ValueError(f"RTCP SDES item of type {kind} overflows the packet")
                end = pos + 2 + body[pos + 1]
                chunk.items.append((kind, body[pos + 2 : end]))
                pos = end
            chunks.append(chunk)
        return cls(chunks)

    def __bytes__(self) -> bytes:
        parts = []
        for chunk in self.chunks:
            data = bytearray(_SSRC.pack(chunk.ssrc))
            for kind, value in chunk.items:
                if not 1 <= kind <= 255 or len(value) > 255:
                    raise ValueError(f"bad SDES item: type {kind}, {len(value)} bytes")
                data += bytes((kind, len(value))) + value
            data += bytes(4 - len(data) % 4)  # at least one null octet (§6.5)
            parts.append(bytes(data))
        body = b"".join(parts)
        return _rtcp_header(len(self.chunks), RTCP_SDES, len(body)) + body


@dataclass(slots=True)
class RtcpBye:
    """BYE (RFC 3550 §6.6): these sources are leaving, with an optional reason."""

    sources: list[int] = field(default_factory=list)
    reason: str = ""

    @classmethod
    def _parse(cls, count: int, body: bytes) -> RtcpBye:
        end = 4 * count
        if end > len(body):
            raise ValueError(f"RTCP BYE announces {count} sources but has room for fewer")
        sources = [_SSRC.unpack_from(body, 4 * i)[0] for i in range(count)]
        reason = ""
        if end < len(body) and body[end]:
            size = body[end]
            if end + 1 + size > len(body):
                raise ValueError(f"RTCP BYE reason of {size} bytes overflows the packet")
            reason = body[end + 1 : end + 1 + size].decode("utf-8", "replace")
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        if len(self.sources) > 31:
            raise ValueError(f"at most 31 sources fit in one BYE, got {len(self.sources)}")
        body = b"".join(_SSRC.pack(source) for source in self.sources)
        if self.reason:
            text = self.reason.encode()
            if len(text) > 255:
                raise ValueError(f"BYE reason longer than 255 bytes: {len(text)}")
            text = bytes((len(text),)) + text
            body += text + bytes(-len(text) % 4)
        return _rtcp_header(len(self.sources), RTCP_BYE, len(body)) + body


@dataclass(slots=True)
class RtcpOther:
    """An RTCP packet type this module does not decode (APP, feedback, XR), kept as is."""

    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        return _rtcp_header(self.count, self.packet_type, len(self.body)) + self.body


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpSdes | RtcpBye | RtcpOther


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Split a compound RTCP packet (RFC 3550 §6.1) into its packets."""
    if len(data) < 4:
        raise ValueError(f"RTCP packet too short: {len(data)} bytes, the header needs 4")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise ValueError(f"RTCP trailing garbage: {len(data) - pos} bytes at offset {pos}")
        b0, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise ValueError(f"RTCP version must be 2, got {b0 >> 6} at offset {pos}")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise ValueError(
                f"RTCP packet at offset {pos} announces {4 + 4 * words} bytes, "
                f"only {len(data) - pos} left"
            )
        body = data[pos + 4 : end]
        if b0 & 0x20:
            # §6.4.1: padding is counted by the last octet and ends the compound packet.
            padding = body[-1] if body else 0
            if padding == 0 or padding > len(body):
                raise ValueError(
                    f"RTCP padding count {padding} invalid for a {len(body)}-byte body"
                )
            body = body[:-padding]
        count = b0 & 0x1F
        if packet_type == RTCP_SR:
            packets.append(RtcpSenderReport._parse(count, body))
        elif packet_type == RTCP_RR:
            packets.append(RtcpReceiverReport._parse(count, body))
        elif packet_type == RTCP_SDES:
            packets.append(RtcpSdes._parse(count, body))
        elif packet_type == RTCP_BYE:
            packets.append(RtcpBye._parse(count, body))
        else:
            packets.append(RtcpOther(packet_type, count, body))
        pos = end
    return packets


# ------------------------------------------------------------------- statistics

_MAX_DROPOUT = 3000  # RFC 3550 A.1 suggested constants
_MAX_MISORDER = 100
_SEQ_MOD = 1 << 16


class RtpStats:
    """Reception statistics of one incoming stream: counts, extended highest
    sequence number with wrap (RFC 3550 A.1), cumulative and interval loss
    (A.3) and interarrival jitter (A.8).

    A source is accepted after ``min_sequential`` packets in sequence
    (A.1 probation); those packets are counted. A new SSRC starts over, as
    each SSRC is a separate source (§8).
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_last_arrival",
        "_last_ts",
        "_max_seq",
        "_probation",
        "_probation_octets",
        "_probation_start",
        "_received_prior",
        "clock_rate",
        "jitter",
        "min_sequential",
        "octets",
        "received",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000, min_sequential: int = 2) -> None:
        self.clock_rate = clock_rate
        self.min_sequential = max(1, min_sequential)
        self.ssrc: int | None = None
        self._start_probation(0)

    def _start_probation(self, sequence: int) -> None:
        self.received = 0
        self.octets = 0
        self.jitter = 0.0
        self._probation = 0  # packets seen in sequence so far, 0 = not started
        self._probation_start = sequence
        self._probation_octets = 0
        self._max_seq = sequence
        self._base_seq = sequence
        self._cycles = 0
        self._bad_seq = _SEQ_MOD + 1  # matches no sequence number
        self._expected_prior = 0
        self._received_prior = 0
        self._last_arrival: float | None = None
        self._last_ts = 0

    @property
    def valid(self) -> bool:
        """Whether the source has passed probation."""
        return self._probation < 0

    def feed(self, packet: bytes, arrival_time: float) -> bool:
        """Update from a raw RTP packet; see `update`."""
        if len(packet) < 12:
            return False
        b0, _, sequence, timestamp, ssrc = _unpack_header(packet)
        if b0 & 0x3F:
            try:
                start, end = _payload_bounds(packet, b0)
            except ValueError:
                return False
            size = end - start
        else:
            size = len(packet) - 12
        return self.update(ssrc, sequence, timestamp, arrival_time, size)

    def update(
        self, ssrc: int, sequence: int, timestamp: int, arrival_time: float, payload_size: int = 0
    ) -> bool:
        """Account for one packet; False when it is not (yet) counted: still in
        probation or a big sequence jump waiting for confirmation (A.1)."""
        if ssrc != self.ssrc:
            self.ssrc = ssrc
            self._start_probation(sequence)
        if self._probation >= 0:
            if self._probation and sequence == (self._max_seq + 1) & 0xFFFF:
                self._probation += 1
                self._probation_octets += payload_size
            else:
                self._probation = 1
                self._probation_start = sequence
                self._probation_octets = payload_size
            self._max_seq = sequence
            if self._probation < self.min_sequential:
                return False
            # Probation passed: count the probation packets from the first one.
            received, octets = self._probation, self._probation_octets
            self._init_sequence(self._probation_start)
            self._max_seq = sequence
            self.received = received
            self.octets = octets
            self._jitter(timestamp, arrival_time)
            return True
        udelta = (sequence - self._max_seq) & 0xFFFF
        if udelta < _MAX_DROPOUT:
            if sequence < self._max_seq:
                self._cycles += _SEQ_MOD  # sequence number wrapped
            self._max_seq = sequence
        elif udelta <= _SEQ_MOD - _MAX_MISORDER:
            if sequence != self._bad_seq:
                # A very large jump: believe it only if the next packet follows it.
                self._bad_seq = (sequence + 1) & 0xFFFF
                return False
            # Two sequential packets: the sender restarted its numbering.
            self._init_sequence(sequence)
            self._last_arrival = None
        # else: duplicate or reordered packet, counted but not moving max_seq
        self.received += 1
        self.octets += payload_size
        self._jitter(timestamp, arrival_time)
        return True

    def _init_sequence(self, sequence: int) -> None:
        self._base_seq = sequence
        self._max_seq = sequence
        self._bad_seq = _SEQ_MOD + 1
        self._cycles = 0
        self.received = 0
        self.octets = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._probation = -1

    def _jitter(self, timestamp: int, arrival_time: float) -> None:
        # A.8: J += (|D(i-1,i)| - J) / 16, with D the change in transit time,
        # in timestamp units. The timestamp difference is taken modulo 2^32.
        last = self._last_arrival
        if last is not None:
            dts = ((timestamp - self._last_ts + _HALF_TS) & _TS_MASK) - _HALF_TS
            d = (arrival_time - last) * self.clock_rate - dts
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._last_arrival = arrival_time
        self._last_ts = timestamp

    @property
    def extended_highest_sequence(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        if self._probation >= 0:
            return 0
        return self.extended_highest_sequence - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative with duplicates."""
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def report_block(self, *, lsr: int = 0, dlsr: int = 0) -> RtcpReportBlock:
        """A report block for the next RR/SR; starts a new loss interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return RtcpReportBlock(
            ssrc=self.ssrc or 0,
            fraction_lost=fraction,
            packets_lost=max(-0x800000, min(0x7FFFFF, self.lost)),
            highest_sequence=self.extended_highest_sequence & _TS_MASK,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )
