"""One call leg's RTP socket: the per-packet hot path.

A leg receives from one peer and sends to it. Incoming packets are either
RFC 4733 events (fed to the leg's DTMF receiver, and relayed when bridged),
or audio (relayed to the bridged leg, or handed to listeners such as a
speech recogniser). Outgoing audio comes from a player on the media clock or
from the bridged leg; both go through the leg's one `RtpSender` so the peer
sees a single continuous stream.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections.abc import Callable
from functools import partial
from typing import cast

from ccserver.media.dtmf import DtmfReceiver
from ccserver.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from ccserver.media.rtp import RtpPacket, RtpSender
from ccserver.media.sdp import NegotiatedAudio

log = logging.getLogger(__name__)

Address = tuple[str, int]
AudioListener = Callable[[bytes, str], None]  # (G.711 payload, codec)


def law_table(src_codec: str, dst_codec: str) -> bytes | None:
    """The 256-byte table that turns one G.711 law into the other, if needed."""
    if src_codec == dst_codec:
        return None
    return ALAW_TO_ULAW if src_codec == "PCMA" else ULAW_TO_ALAW


class RtpEndpoint(asyncio.DatagramProtocol):
    """RTP for one leg, with symmetric RTP (RFC 4961) so NATed phones work."""

    def __init__(self, label: str, local: Address = ("", 0)) -> None:
        self.label = label
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Address = local
        self.remote: Address | None = None
        self._latched = False
        self.codec = "PCMU"
        self.payload_type = 0
        self.dtmf_pt: int | None = None
        self.sender = RtpSender(payload_type=0)
        self.dtmf = DtmfReceiver()
        self.on_dtmf: Callable[[str], None] | None = None
        self.listeners: list[AudioListener] = []
        self.peer: RtpEndpoint | None = None
        self._to_peer_table: bytes | None = None
        self.closed = False
        self.may_send = True

    # -- setup ------------------------------------------------------------
    def configure(self, audio: NegotiatedAudio) -> None:
        """Apply an offer/answer result: where to send, which codec and event PT."""
        self.codec = audio.codec
        self.payload_type = audio.payload_type
        self.dtmf_pt = audio.dtmf_payload_type
        self.sender.payload_type = audio.payload_type
        # Hold (RFC 3264 §8.4): sendonly/inactive from them, or the legacy
        # c=0.0.0.0, means we must not send.
        self.may_send = audio.may_send and audio.remote_addr[0] not in ("0.0.0.0", "::")
        if not self._latched and self.may_send:
            self.remote = audio.remote_addr if audio.remote_addr[1] else None
        if self.peer is not None:
            self.bridge(self.peer)

    def bridge(self, other: RtpEndpoint) -> None:
        """Relay this leg's incoming media to `other` (one direction)."""
        self.peer = other
        self._to_peer_table = law_table(self.codec, other.codec)

    def unbridge(self) -> None:
        self.peer = None
        self._to_peer_table = None

    # -- asyncio ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if transport is self.transport:
            return  # RtpPorts.open already called it; uvloop calls it again later
        self.transport = cast(asyncio.DatagramTransport, transport)
        if not self.local[1]:  # RtpPorts knows the port it bound: no getsockname(2)
            self.local = transport.get_extra_info("sockname")[:2]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a phone that went away: not fatal.
        pass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or (data[0] >> 6) != 2:
            return
        pt = data[1] & 0x7F
        if 64 <= pt <= 95:
            return  # RTCP multiplexed on the RTP port (RFC 5761 §4): not used yet
        if not self._latched:
            # Symmetric RTP: answer where the packets really come from.
            self.remote = (addr[0], addr[1])
            self._latched = True
        if pt == self.dtmf_pt:
            self._dtmf_packet(data)
            return
        peer = self.peer
        if peer is not None:
            peer.send_forwarded(data, self._to_peer_table)
        if self.listeners:
            if data[0] & 0x3F == 0:
                # No padding, extension or CSRC (RFC 3550 §5.1): the usual
                # packet, whose payload starts right after the fixed header.
                payload = data[12:]
            else:
                try:
                    payload = RtpPacket.parse(data).payload
                except ValueError:
                    return
            for listener in self.listeners:
                listener(payload, self.codec)

    def _dtmf_packet(self, data: bytes) -> None:
        try:
            pkt = RtpPacket.parse(data)
        except ValueError:
            return
        loop = asyncio.get_running_loop()
        digit = self.dtmf.feed(pkt.payload, pkt.timestamp, pkt.marker, loop.time())
        peer = self.peer
        if peer is not None and peer.dtmf_pt is not None:
            peer.send_forwarded(data, None, payload_type=peer.dtmf_pt)
        if digit is not None and self.on_dtmf is not None:
            self.on_dtmf(digit)

    # -- sending ------------------------------------------------------------
    def send_forwarded(
        self, data: bytes, table: bytes | None, payload_type: int | None = None
    ) -> None:
        # Relayed media obeys the same direction as played media: a leg that
        # holds (sendonly/inactive) is sent nothing (RFC 3264 §6.1, §8.4).
        remote, transport = self.remote, self.transport
        if remote is None or transport is None or not self.may_send:
            return
        try:
            out = self.sender.forward(
                data, self.payload_type if payload_type is None else payload_type, table
            )
        except ValueError:
            return  # a header extension or padding that does not fit: drop the packet
        transport.sendto(out, remote)

    def send_audio(self, payload: bytes, samples: int, marker: bool = False) -> None:
        if self.remote is None or self.transport is None or not self.may_send:
            return
        self.transport.sendto(self.sender.packet(payload, samples, marker=marker), self.remote)

    def close(self) -> None:
        self.peer = None
        self.listeners.clear()
        self.on_dtmf = None
        if self.transport is not None:
            self.transport.close()


class RtpPorts:
    """Even RTP ports from the configured range (RFC 3550 §11: RTP on even ports)."""

    def __init__(self, host: str, low: int, high: int) -> None:
        self.host = host
        self.low = low + (low % 2)
        self.high = high
        self._next = self.low + 2 * random.randrange(max(1, (high - self.low) // 2))

    async def open(self, label: str) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        span = (self.high - self.low) // 2 + 1
        for _ in range(span):
            port = self._next
            self._next += 2
            if self._next > self.high:
                self._next = self.low
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
            sock.setblocking(False)
            transport, proto = await loop.create_datagram_endpoint(
                partial(RtpEndpoint, label, (self.host, port)), sock=sock
            )
            proto.connection_made(transport)  # idempotent; uvloop may call it later
            return proto
        raise OSError(errno.EADDRINUSE, f"no free RTP port in {self.low}-{self.high}")
