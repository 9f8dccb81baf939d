"""A real observer on loopback: dumpcap captures, this module reads and judges.

`RtpCapture` runs ``dumpcap -i lo`` with a filter on the ports of interest
and writes a capture file. Reading it back gives UDP datagrams, which are
parsed as RTP (`ccserver.media.rtp.RtpPacket`) and grouped into one
`StreamSummary` per direction (source address and port to destination
address and port): packets, payload types, SSRCs, RFC 4733 events, and the
loudness of the G.711 audio overall and over time windows.

dumpcap hands packets over in blocks (the kernel's TPACKET_V3 ring, flushed
when a block fills or about every half second), and stopping it drops the
block in flight. The capture therefore proves itself live before `start`
returns and complete before `stop` kills it: it sends a marker datagram to a
port of its own filter until the marker shows up in the file.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import struct
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from ccserver.media import g711
from ccserver.media.rtp import RtpPacket, is_rtcp

from . import PeerError, stop_process, wait_for
from .ports import LOOPBACK, free_udp_port

__all__ = [
    "DtmfEvent",
    "EnergyWindow",
    "RtpCapture",
    "StreamSummary",
    "UdpDatagram",
    "read_udp_datagrams",
    "summarize",
]

DUMPCAP = "dumpcap"
PortSpec = int | range | tuple[int, int]

# -- capture files -------------------------------------------------------------

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_IDB = 1
_PCAPNG_EPB = 6
_IF_TSRESOL = 9

# Link-layer types (https://www.tcpdump.org/linktypes.html).
_LINK_NULL = 0
_LINK_ETHERNET = 1
_LINK_RAW = (12, 14, 101)
_LINK_IPV4 = 228
_LINK_IPV6 = 229
_LINK_SLL = 113
_LINK_SLL2 = 276

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = (0x8100, 0x88A8)
_IPPROTO_UDP = 17


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One captured UDP datagram; ``time`` is the capture timestamp in seconds."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame, or None for anything else."""
    if linktype == _LINK_ETHERNET:
        if len(frame) < 14:
            return None
        offset = 12
        (ethertype,) = struct.unpack_from("!H", frame, offset)
        while ethertype in _ETHERTYPE_VLAN and len(frame) >= offset + 6:
            offset += 4
            (ethertype,) = struct.unpack_from("!H", frame, offset)
        if ethertype not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
            return None
        return frame[offset + 2 :]
    if linktype == _LINK_SLL:
        return frame[16:] if len(frame) >= 16 else None
    if linktype == _LINK_SLL2:
        return frame[20:] if len(frame) >= 20 else None
    if linktype == _LINK_NULL:
        return frame[4:] if len(frame) >= 4 else None
    if linktype in _LINK_RAW or linktype in (_LINK_IPV4, _LINK_IPV6):
        return frame
    return None


def _udp_from_ip(time: float, packet: bytes) -> UdpDatagram | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return None
        header_length = (packet[0] & 0x0F) * 4
        total_length, fragment = struct.unpack_from("!H2xH", packet, 2)
        # Only whole datagrams: no later fragment, no first fragment of several.
        if packet[9] != _IPPROTO_UDP or fragment & 0x3FFF:
            return None
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
        udp = packet[header_length:total_length]
    elif version == 6:
        if len(packet) < 40 or packet[6] != _IPPROTO_UDP:
            return None
        (payload_length,) = struct.unpack_from("!H", packet, 4)
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
        udp = packet[40 : 40 + payload_length]
    else:
        return None
    if len(udp) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", udp)
    return UdpDatagram(time, src, sport, dst, dport, bytes(udp[8:length]))


def _pcap_frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    endian, unit = _PCAP_MAGIC[data[:4]]
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    record = struct.Struct(endian + "IIII")
    pos = 24
    while pos + record.size <= len(data):
        seconds, fraction, captured, _original = record.unpack_from(data, pos)
        pos += record.size
        if pos + captured > len(data):
            break  # truncated last record (a capture still being written)
        yield seconds + fraction * unit, linktype & 0xFFFF, data[pos : pos + captured]
        pos += captured


def _pcapng_resolution(options: bytes, endian: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, pos)
        if code == 0:
            break
        if code == _IF_TSRESOL and length >= 1:
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        pos += 4 + length + (-length % 4)
    return 1e-6


def _pcapng_frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []
    pos = 0
    while pos + 12 <= len(data):
        (block_type,) = struct.unpack_from(endian + "I", data, pos)
        if block_type == _PCAPNG_SHB:
            magic = data[pos + 8 : pos + 12]
            endian = "<" if struct.unpack("<I", magic)[0] == _PCAPNG_BYTE_ORDER else ">"
            interfaces = []  # a new section numbers its interfaces afresh
        (length,) = struct.unpack_from(endian + "I", data, pos + 4)
        if length < 12 or pos + length > len(data):
            break  # truncated last block
        body = data[pos + 8 : pos + length - 4]
        if block_type == _PCAPNG_IDB:
            (linktype,) = struct.unpack_from(endian + "H", body, 0)
            interfaces.append((linktype, _pcapng_resolution(body[8:], endian)))
        elif block_type == _PCAPNG_EPB:
            interface, high, low, captured, _original = struct.unpack_from(endian + "IIIII", body)
            if interface < len(interfaces):
                linktype, unit = interfaces[interface]
                yield ((high << 32) | low) * unit, linktype, body[20 : 20 + captured]
        pos += length


def read_udp_datagrams(path: Path) -> list[UdpDatagram]:
    """Every UDP datagram in a pcap or pcapng file (dumpcap writes pcapng unless -P)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    if data[:4] in _PCAP_MAGIC:
        frames = _pcap_frames(data)
    elif struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        frames = _pcapng_frames(data)
    else:
        raise ValueError(f"{path} is neither pcap nor pcapng (magic {data[:4].hex()})")
    datagrams = []
    for time, linktype, frame in frames:
        packet = _ip_payload(linktype, frame)
        if packet is not None and (datagram := _udp_from_ip(time, packet)) is not None:
            datagrams.append(datagram)
    return datagrams


# -- RTP analysis --------------------------------------------------------------

#: RFC 4733 §3.2 events 0-15: the DTMF keys.
_DTMF_KEYS = "0123456789*#ABCD"
_DECODERS = {0: g711.ulaw_decode, 8: g711.alaw_decode}  # RFC 3551 static types
_CODEC_NAMES = {0: "PCMU", 8: "PCMA"}


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One RFC 4733 event (a key press): all packets with one SSRC and RTP timestamp."""

    event: int
    ssrc: int
    rtp_timestamp: int
    #: Capture time of its first packet, seconds.
    time: float
    #: Largest duration seen, in RTP timestamp units (1/8000 s for 8 kHz).
    duration: int
    volume: int
    ended: bool
    packets: int

    @property
    def key(self) -> str:
        return _DTMF_KEYS[self.event] if self.event < len(_DTMF_KEYS) else f"<{self.event}>"


@dataclass(frozen=True, slots=True)
class EnergyWindow:
    """Loudness of the audio that arrived in one time window."""

    #: Window start, seconds after the stream's first packet.
    start: float
    dbov: float
    packets: int


@dataclass(slots=True)
class StreamSummary:
    """Everything seen going one way between two UDP addresses."""

    src: tuple[str, int]
    dst: tuple[str, int]
    packets: int = 0
    first_time: float = 0.0
    last_time: float = 0.0
    payload_types: Counter[int] = field(default_factory=Counter)
    ssrcs: list[int] = field(default_factory=list)
    #: G.711 packets (PT 0 or 8) and their decoded samples, in arrival order.
    audio_packets: int = 0
    pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    energy_dbov: float = -120.0
    windows: list[EnergyWindow] = field(default_factory=list)
    dtmf: list[DtmfEvent] = field(default_factory=list)
    rtcp_packets: int = 0
    #: Datagrams that are neither RTP nor RTCP (SIP on a watched port, say).
    other_packets: int = 0

    @property
    def duration(self) -> float:
        return self.last_time - self.first_time

    @property
    def rtp_packets(self) -> int:
        return sum(self.payload_types.values())

    @property
    def keys(self) -> str:
        """The DTMF keys pressed, in order."""
        return "".join(event.key for event in self.dtmf)

    @property
    def codecs(self) -> list[str]:
        return [_CODEC_NAMES.get(pt, str(pt)) for pt in sorted(self.payload_types)]

    def loud_seconds(self, threshold_dbov: float = -50.0) -> float:
        """How long the audio was louder than ``threshold_dbov``, in whole windows."""
        if len(self.windows) < 2:
            return self.duration if self.energy_dbov > threshold_dbov else 0.0
        step = self.windows[1].start - self.windows[0].start
        return step * sum(1 for w in self.windows if w.dbov > threshold_dbov)

    def describe(self) -> str:
        """One line for assertion messages."""
        return (
            f"{self.src[0]}:{self.src[1]} -> {self.dst[0]}:{self.dst[1]}: {self.packets} packets "
            f"over {self.duration:.2f} s, types {dict(self.payload_types)}, "
            f"{self.audio_packets} audio at {self.energy_dbov:.1f} dBov, keys {self.keys!r}, "
            f"{len(self.ssrcs)} SSRC(s), {self.rtcp_packets} RTCP, {self.other_packets} other"
        )


def _dtmf_events(
    packets: Iterable[tuple[float, RtpPacket]],
) -> list[DtmfEvent]:
    """RFC 4733 §2.3: an event is identified by its RTP timestamp (per SSRC);
    retransmitted end packets repeat it."""
    grouped: dict[tuple[int, int], list[tuple[float, int, bool, int, int]]] = defaultdict(list)
    for time, packet in packets:
        payload = packet.payload
        # §2.3.6: several 4-octet blocks may share a packet (redundancy); the
        # last one is the current event.
        if len(payload) < 4:
            continue
        event, flags, duration = struct.unpack_from("!BBH", payload, len(payload) - 4)
        grouped[(packet.ssrc, packet.timestamp)].append(
            (time, event, bool(flags & 0x80), flags & 0x3F, duration)
        )
    events = []
    for (ssrc, timestamp), entries in grouped.items():
        events.append(
            DtmfEvent(
                event=entries[0][1],
                ssrc=ssrc,
                rtp_timestamp=timestamp,
                time=min(e[0] for e in entries),
                duration=max(e[4] for e in entries),
                volume=entries[0][3],
                ended=any(e[2] for e in entries),
                packets=len(entries),
            )
        )
    return sorted(events, key=lambda e: e.time)


def summarize(
    datagrams: Iterable[UdpDatagram],
    *,
    window: float = 0.5,
    event_payload_types: Collection[int] = (101,),
) -> list[StreamSummary]:
    """Group datagrams by direction and analyse each group as RTP.

    ``event_payload_types`` are the payload types read as RFC 4733 events
    (dynamic, so the SDP decides; 101 is what SIPp's captures and baresip use).
    """
    flows: dict[tuple[str, int, str, int], list[UdpDatagram]] = defaultdict(list)
    for datagram in datagrams:
        flows[(datagram.src, datagram.sport, datagram.dst, datagram.dport)].append(datagram)
    summaries = []
    for (src, sport, dst, dport), flow in flows.items():
        flow.sort(key=lambda d: d.time)
        summary = StreamSummary(
            src=(src, sport),
            dst=(dst, dport),
            packets=len(flow),
            first_time=flow[0].time,
            last_time=flow[-1].time,
        )
        audio: list[tuple[float, np.ndarray]] = []
        events: list[tuple[float, RtpPacket]] = []
        for datagram in flow:
            if is_rtcp(datagram.payload):
                summary.rtcp_packets += 1
                continue
            try:
                packet = RtpPacket.parse(datagram.payload)
            except ValueError:
                summary.other_packets += 1
                continue
            summary.payload_types[packet.payload_type] += 1
            if packet.ssrc not in summary.ssrcs:
                summary.ssrcs.append(packet.ssrc)
            decode = _DECODERS.get(packet.payload_type)
            if decode is not None:
                audio.append((datagram.time, decode(packet.payload)))
            elif packet.payload_type in event_payload_types:
                events.append((datagram.time, packet))
        summary.dtmf = _dtmf_events(events)
        summary.audio_packets = len(audio)
        if audio:
            summary.pcm = np.concatenate([samples for _, samples in audio])
            summary.energy_dbov = g711.rms_dbov(summary.pcm)
            start = audio[0][0]
            buckets: dict[int, list[np.ndarray]] = defaultdict(list)
            for time, samples in audio:
                buckets[int((time - start) // window)].append(samples)
            last = max(buckets)
            summary.windows = [
                EnergyWindow(
                    start=index * window,
                    dbov=g711.rms_dbov(np.concatenate(buckets[index]))
                    if index in buckets
                    else -120.0,
                    packets=len(buckets.get(index, [])),
                )
                for index in range(last + 1)
            ]
        summaries.append(summary)
    return sorted(summaries, key=lambda s: s.first_time)


def _port_filter(spec: PortSpec) -> str:
    if isinstance(spec, int):
        return f"udp port {spec}"
    low, high = (spec.start, spec.stop - 1) if isinstance(spec, range) else spec
    return f"udp portrange {low}-{high}"


def _matches(port: int, spec: PortSpec) -> bool:
    if isinstance(spec, int):
        return port == spec
    if isinstance(spec, range):
        return port in spec
    return spec[0] <= port <= spec[1]


# -- the capture process ---------------------------------------------------------


class RtpCapture:
    """dumpcap on the loopback interface, limited to UDP on ``ports``.

    ``ports`` are port numbers, ``range`` objects or inclusive ``(low, high)``
    tuples. The file is pcapng (dumpcap's default) or pcap with ``pcap=True``.
    """

    _names = itertools.count(1)

    def __init__(
        self,
        workdir: Path,
        ports: Iterable[PortSpec],
        *,
        name: str | None = None,
        interface: str = "lo",
        pcap: bool = False,
    ) -> None:
        self.ports = list(ports)
        if not self.ports:
            raise ValueError("a capture needs at least one port to watch")
        self.workdir = workdir
        self.name = name or f"capture-{next(self._names)}"
        self.interface = interface
        self.pcap = pcap
        self.path = workdir / f"{self.name}.{'pcap' if pcap else 'pcapng'}"
        self.stderr_path = workdir / f"{self.name}.err"
        self.marker_port = free_udp_port()
        self._process: asyncio.subprocess.Process | None = None
        self._sink: socket.socket | None = None
        self._datagrams: list[UdpDatagram] | None = None

    @property
    def filter(self) -> str:
        watched = [_port_filter(spec) for spec in self.ports]
        watched.append(f"udp port {self.marker_port}")
        return " or ".join(watched)

    @property
    def command(self) -> list[str]:
        cmd = [DUMPCAP, "-i", self.interface, "-f", self.filter, "-w", str(self.path), "-q"]
        return cmd + (["-P"] if self.pcap else [])

    def diagnostics(self) -> str:
        try:
            stderr = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            stderr = ""
        return f"command: {' '.join(self.command)}\n--- dumpcap stderr ---\n{stderr}"

    async def start(self, timeout: float = 5.0) -> None:
        """Start dumpcap and return once a marker datagram is in the file."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("wb") as err:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sink.bind((LOOPBACK, self.marker_port))
        self._sink.setblocking(False)
        # dumpcap says "Capturing on 'Loopback: lo'" before the ring is live.
        await wait_for(
            lambda: "Capturing on" in self._stderr() or self._exited(),
            timeout,
            f"{self.name}: dumpcap to start capturing",
            diagnose=self.diagnostics,
        )
        await self._mark("start", timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush (marker datagram seen in the file), then stop dumpcap with SIGINT."""
        if self._process is None:
            return
        try:
            if self._process.returncode is None:
                await self._mark("stop", timeout)
        finally:
            await stop_process(self._process, sig=signal.SIGINT, timeout=timeout)
            if self._sink is not None:
                self._sink.close()
                self._sink = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _exited(self) -> bool:
        if self._process is not None and self._process.returncode is not None:
            raise PeerError(f"{self.name}: dumpcap exited\n{self.diagnostics()}")
        return False

    async def _mark(self, label: str, timeout: float) -> None:
        marker = f"ccserver-capture-{label}-{uuid.uuid4().hex}".encode()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setblocking(False)
        try:

            def seen() -> bool:
                self._exited()
                if self._sink is not None:  # drain, the marks are not read
                    try:
                        while True:
                            self._sink.recv(2048)
                    except BlockingIOError:
                        pass
                try:
                    if marker in self.path.read_bytes():
                        return True
                except FileNotFoundError:
                    pass
                sender.sendto(marker, (LOOPBACK, self.marker_port))
                return False

            await wait_for(
                seen,
                timeout,
                f"{self.name}: marker datagram in {self.path.name}",
                interval=0.05,
                diagnose=self.diagnostics,
            )
        finally:
            sender.close()

    # -- reading ----------------------------------------------------------------

    def datagrams(self) -> list[UdpDatagram]:
        """The captured datagrams, markers left out (read once, after `stop`)."""
        if self._datagrams is None:
            if self._process is None or self._process.returncode is None:
                raise RuntimeError(f"{self.name}: read the capture after stop()")
            self._datagrams = [
                d
                for d in read_udp_datagrams(self.path)
                if self.marker_port not in (d.sport, d.dport)
            ]
        return self._datagrams

    def streams(
        self, *, window: float = 0.5, event_payload_types: Collection[int] = (101,)
    ) -> list[StreamSummary]:
        """One summary per direction (see `summarize`)."""
        return summarize(self.datagrams(), window=window, event_payload_types=event_payload_types)

    def streams_to(
        self, port: PortSpec, *, rtp_only: bool = True, **options: Any
    ) -> list[StreamSummary]:
        """Streams whose destination port is ``port`` (or in the range).

        With ``rtp_only`` (the default), flows without a single RTP packet
        (RTCP on the port above, say) are left out.
        """
        return [
            s
            for s in self.streams(**options)
            if _matches(s.dst[1], port) and (s.rtp_packets or not rtp_only)
        ]

    def streams_from(
        self, port: PortSpec, *, rtp_only: bool = True, **options: Any
    ) -> list[StreamSummary]:
        """Streams whose source port is ``port`` (or in the range); see `streams_to`."""
        return [
            s
            for s in self.streams(**options)
            if _matches(s.src[1], port) and (s.rtp_packets or not rtp_only)
        ]
