"""SIP over UDP and TCP: the thin I/O shell around the sans-IO SIP core.

Only bytes move here. Parsing, transactions and dialogs live in
`ccserver.sip`; this module frames messages, answers what cannot be parsed
with a 400 built from whatever headers survived (RFC 3261 §8.2), and hands
everything else to a `MessageSink`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

from ccserver.sip.errors import RemoteProtocolError
from ccserver.sip.headers import Headers
from ccserver.sip.message import Message, Response, StreamParser, parse_message

log = logging.getLogger(__name__)

Address = tuple[str, int]

#: Datagrams larger than this are refused with 513 (RFC 3261 §18.1.1 caps
#: UDP requests near the path MTU; we accept up to a 64 KiB datagram).
MAX_MESSAGE = 65_535


class MessageSink(Protocol):
    def message_received(self, message: Message, addr: Address, *, reliable: bool) -> None: ...


def error_response(exc: RemoteProtocolError) -> Response | None:
    """The response a peer gets for a message we could not accept.

    Needs the headers that identify the transaction; without them there is
    nobody to answer (RFC 3261 §8.2: the response is built from the request).
    """
    h = exc.headers
    if h is None:
        return None
    needed = ("Via", "From", "To", "Call-ID", "CSeq")
    if any(h.get(name) is None for name in needed):
        return None
    out = Headers()
    for name in needed:
        for value in h.get_all(name) if name == "Via" else [h.get(name) or ""]:
            out.add(name, value)
    cseq = (h.get("CSeq") or "").split()
    if len(cseq) == 2 and cseq[1].upper() == "ACK":
        return None  # never answer an ACK (RFC 3261 §17.2.3)
    return Response(exc.status, exc.reason, out)


class UdpSip(asyncio.DatagramProtocol):
    """SIP on one UDP socket."""

    def __init__(self, sink: MessageSink) -> None:
        self._sink = sink
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        addr = (addr[0], addr[1])
        if not data.strip(b"\r\n"):
            return  # RFC 5626 §4.4.1 keep-alive
        try:
            message = parse_message(data, max_size=MAX_MESSAGE)
        except RemoteProtocolError as exc:
            log.info("refused datagram from %s:%d: %s %s", addr[0], addr[1], exc.status, exc.reason)
            resp = error_response(exc)
            if resp is not None and self.transport is not None:
                self.transport.sendto(bytes(resp), addr)
            return
        try:
            self._sink.message_received(message, addr, reliable=False)
        except Exception:  # one bad call must not stop the socket
            log.exception("error handling message from %s:%d", *addr)

    def send(self, data: bytes, addr: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class TcpSip(asyncio.Protocol):
    """One SIP TCP connection, framed by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, sink: MessageSink, registry: TcpConnections) -> None:
        self._sink = sink
        self._registry = registry
        self._parser = StreamParser(max_size=MAX_MESSAGE)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (host, port)
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while True:
            try:
                message = self._parser.next_message()
            except RemoteProtocolError as exc:
                # The stream has lost its framing: answer if we can, then close.
                resp = error_response(exc)
                if resp is not None:
                    self.send(bytes(resp))
                if self.transport is not None:
                    self.transport.close()
                return
            if message is None:
                return
            try:
                self._sink.message_received(message, self.peer, reliable=True)
            except Exception:
                log.exception("error handling message from %s:%d", *self.peer)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)


class TcpConnections:
    """TCP connections by peer address, so replies and requests reuse them."""

    def __init__(self) -> None:
        self._by_peer: dict[Address, TcpSip] = {}

    def add(self, conn: TcpSip) -> None:
        self._by_peer[conn.peer] = conn

    def discard(self, conn: TcpSip) -> None:
        if self._by_peer.get(conn.peer) is conn:
            del self._by_peer[conn.peer]

    def get(self, addr: Address) -> TcpSip | None:
        return self._by_peer.get(addr)

    def close_all(self) -> None:
        for conn in list(self._by_peer.values()):
            if conn.transport is not None:
                conn.transport.close()


class SipTransports:
    """The listening sockets of one node and the one `send` the SIP core uses."""

    def __init__(self, sink: MessageSink) -> None:
        self._sink = sink
        self.udp: UdpSip | None = None
        self.tcp = TcpConnections()
        self._tcp_server: asyncio.Server | None = None
        self.address: Address = ("127.0.0.1", 0)

    async def start(self, host: str, port: int, transports: list[str]) -> None:
        loop = asyncio.get_running_loop()
        if "udp" in transports:
            transport, proto = await loop.create_datagram_endpoint(
                lambda: UdpSip(self._sink), local_addr=(host, port)
            )
            proto.transport = transport  # uvloop may call connection_made later
            self.udp = proto
            port = transport.get_extra_info("sockname")[1]
        if "tcp" in transports:
            factory: Callable[[], TcpSip] = lambda: TcpSip(self._sink, self.tcp)  # noqa: E731
            self._tcp_server = await loop.create_server(factory, host, port)
            if port == 0:
                port = self._tcp_server.sockets[0].getsockname()[1]
        self.address = (host, port)

    def is_reliable(self, addr: Address) -> bool:
        return self.tcp.get(addr) is not None

    def send(self, data: bytes, addr: Address) -> None:
        conn = self.tcp.get(addr)
        if conn is not None:
            conn.send(data)
        elif self.udp is not None:
            self.udp.send(data, addr)

    async def connect_tcp(self, addr: Address) -> None:
        """Open (or reuse) a TCP connection to a peer whose contact asks for TCP."""
        if self.tcp.get(addr) is not None:
            return
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: TcpSip(self._sink, self.tcp), addr[0], addr[1])

    async def close(self) -> None:
        if self.udp is not None and self.udp.transport is not None:
            self.udp.transport.close()
        self.tcp.close_all()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
