"""SIP over UDP and TCP: the thin I/O shell around the sans-IO SIP core.

Only bytes move here. Parsing, transactions and dialogs live in
`ccserver.sip`; this module frames messages, answers a request that cannot be
parsed with the error the parser named (400, 505, 513...) built from whatever
headers survived (RFC 3261 §8.2), drops unparseable responses (§18.1.2),
answers RFC 5626 keep-alives on streams, and hands everything else to a
`MessageSink`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Protocol, cast

from ccserver.sip.errors import LocalProtocolError, RemoteProtocolError
from ccserver.sip.headers import Headers
from ccserver.sip.message import Message, Response, StreamParser, parse_message
from ccserver.sip.uri import NameAddr

log = logging.getLogger(__name__)

Address = tuple[str, int]

#: The largest message accepted, on UDP and on TCP. RFC 3261 §18.1.1: a
#: sender moves requests above 1300 bytes to TCP, "however, implementations
#: MUST be able to handle messages up to the maximum datagram packet size.
#: For UDP, this size is 65,535 bytes, including IP and UDP headers". No UDP
#: datagram can exceed this (65,507 bytes of payload over IPv4), so over UDP
#: a 513 only happens when an operator lowers the limit (`max_datagram`);
#: over TCP it caps the buffer one connection can make us hold.
MAX_MESSAGE = 65_535

#: RFC 5626 §3.5.1: the answer to a double-CRLF "ping" on a stream.
PONG = b"\r\n"

# Reason phrases are built from peer input: keep them on one printable line.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_REASON = 120


class MessageSink(Protocol):
    def message_received(self, message: Message, addr: Address, *, reliable: bool) -> None: ...


def _start_line(data: bytes) -> bytes:
    """The first line of a message, after the CRLFs RFC 3261 §7.5 lets precede it."""
    return data.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")


def _stateless_tag(h: Headers) -> str:
    """A To tag that is the same for every retransmission of one request.

    RFC 3261 §8.2.7: a stateless UAS "MUST generate the To tag the same way
    for identical requests", so a retransmitted bad request gets the same
    response and the peer's transaction can match it.
    """
    seed = "\n".join(
        [h.get("Call-ID") or "", h.get("From") or "", h.get("CSeq") or "", *h.get_all("Via")[:1]]
    )
    return hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:12]


def error_response(exc: RemoteProtocolError, data: bytes = b"") -> Response | None:
    """The response a peer gets for a message we could not accept, or None.

    ``data`` is the message as received, when the caller still has it: its
    start line says whether it was a response or an ACK.

    Nobody is answered when the message was a response (RFC 3261 §18.1.2:
    a malformed response is discarded) or an ACK (§17.2.3: never answered),
    or when no Via survived: a response without a Via cannot name the
    transaction it answers (§8.2.6.2, §18.2.2). Otherwise the response copies
    every Via, and From, To, Call-ID and CSeq when they survived, so that a
    request missing its Call-ID still learns why it was refused.
    """
    first = _start_line(data)
    if first[:4].upper() == b"SIP/" or first.split(b" ", 1)[0] == b"ACK":
        return None
    h = exc.headers
    if h is None or "Via" not in h:
        return None
    cseq = (h.get("CSeq") or "").split()
    if len(cseq) == 2 and cseq[1].upper() == "ACK":
        return None
    out = Headers()
    for name, value in h:
        if name == "Via":
            out.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = h.get(name)
        if copied is not None:
            out.add(name, _with_tag(copied, h) if name == "To" else copied)
    reason = _UNPRINTABLE.sub("?", exc.reason)[:_MAX_REASON].strip() or "Bad Request"
    return Response(exc.status, reason, out)


def _with_tag(to: str, h: Headers) -> str:
    """§8.2.6.2: a final response adds a To tag when the request had none."""
    try:
        if NameAddr.parse(to).tag is not None:
            return to
    except RemoteProtocolError:
        return to  # a To we cannot parse is echoed as it came
    return f"{to};tag={_stateless_tag(h)}"


def _refusal(exc: RemoteProtocolError, data: bytes) -> bytes | None:
    """The wire form of `error_response`, or None when nothing is to be sent."""
    resp = error_response(exc, data)
    if resp is None:
        return None
    try:
        return bytes(resp)
    except LocalProtocolError:
        log.exception("cannot serialise the %d for a refused message", exc.status)
        return None


class UdpSip(asyncio.DatagramProtocol):
    """SIP on one UDP socket.

    ``max_datagram`` is the largest datagram accepted; larger ones are
    refused with 513 (RFC 3261 §21.5.14). Keep the default: see `MAX_MESSAGE`.
    """

    def __init__(self, sink: MessageSink, *, max_datagram: int = MAX_MESSAGE) -> None:
        self._sink = sink
        self.max_datagram = max_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        addr = (addr[0], addr[1])
        if not data.strip(b"\r\n"):
            return  # a CRLF keep-alive (RFC 5626 §4.4.1 uses STUN on UDP; never answered)
        try:
            message = self._parse(data)
        except RemoteProtocolError as exc:
            log.info("refused datagram from %s:%d: %s %s", addr[0], addr[1], exc.status, exc.reason)
            out = _refusal(exc, data)
            if out is not None:
                self.send(out, addr)
            return
        try:
            self._sink.message_received(message, addr, reliable=False)
        except Exception:  # one bad call must not stop the socket
            log.exception("error handling message from %s:%d", *addr)

    def _parse(self, data: bytes) -> Message:
        if len(data) <= self.max_datagram:
            return parse_message(data, max_size=self.max_datagram)
        # Too large for us, but still read its header fields: the 513 must
        # carry Via, From, To, Call-ID and CSeq to reach its sender (§8.2.6.2).
        try:
            headers: Headers | None = parse_message(data, max_size=len(data)).headers
        except RemoteProtocolError as exc:
            headers = exc.headers
        raise RemoteProtocolError("Message Too Large", 513, headers)

    def send(self, data: bytes, addr: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class TcpSip(asyncio.Protocol):
    """One SIP TCP connection, framed by Content-Length (RFC 3261 §18.3).

    A malformed message that was framed correctly is answered and consumed;
    the connection stays up. When the framing itself is lost (no or bad
    Content-Length, an unreadable header section, a message over
    ``max_message``) the peer gets the error if it can be addressed, and the
    connection is closed: nothing after that point can be trusted to start a
    message. A CRLFCRLF ping between messages is answered with CRLF
    (RFC 5626 §3.5.1).
    """

    def __init__(
        self, sink: MessageSink, registry: TcpConnections, *, max_message: int = MAX_MESSAGE
    ) -> None:
        self._sink = sink
        self._registry = registry
        self._parser = StreamParser(max_size=max_message)
        self._pongs = 0  # how many of the parser's pings were answered
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (host, port)
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        refused: RemoteProtocolError | None = None
        while True:
            try:
                message = parser.next_message()
            except RemoteProtocolError as exc:
                self._pong()
                if exc is refused:
                    # StreamParser raises the same error again once the
                    # framing is lost: answered already, now hang up.
                    self._close()
                    return
                log.info(
                    "refused message from tcp %s:%d: %s %s", *self.peer, exc.status, exc.reason
                )
                # StreamParser keeps the start line to itself, so a malformed
                # response here cannot be told from a request by its bytes.
                out = _refusal(exc, b"")
                if out is not None:
                    self.send(out)
                refused = exc
                continue
            self._pong()
            if message is None:
                return
            try:
                self._sink.message_received(message, self.peer, reliable=True)
            except Exception:
                log.exception("error handling message from %s:%d", *self.peer)

    def _pong(self) -> None:
        pings = self._parser.pings
        if pings > self._pongs:
            self.send(PONG * (pings - self._pongs))
            self._pongs = pings

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flushes the refusal written just before

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

    def __init__(
        self,
        sink: MessageSink,
        *,
        max_datagram: int = MAX_MESSAGE,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self._sink = sink
        self.max_datagram = max_datagram
        self.max_message = max_message
        self.udp: UdpSip | None = None
        self.tcp = TcpConnections()
        self._tcp_server: asyncio.Server | None = None
        self.address: Address = ("127.0.0.1", 0)

    async def start(self, host: str, port: int, transports: list[str]) -> None:
        loop = asyncio.get_running_loop()
        if "udp" in transports:
            transport, proto = await loop.create_datagram_endpoint(
                lambda: UdpSip(self._sink, max_datagram=self.max_datagram),
                local_addr=(host, port),
            )
            proto.transport = transport  # uvloop may call connection_made later
            self.udp = proto
            port = transport.get_extra_info("sockname")[1]
        if "tcp" in transports:
            self._tcp_server = await loop.create_server(self._tcp_protocol, host, port)
            if port == 0:
                port = self._tcp_server.sockets[0].getsockname()[1]
        self.address = (host, port)

    def _tcp_protocol(self) -> TcpSip:
        return TcpSip(self._sink, self.tcp, max_message=self.max_message)

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
        await loop.create_connection(self._tcp_protocol, addr[0], addr[1])

    async def close(self) -> None:
        if self.udp is not None and self.udp.transport is not None:
            self.udp.transport.close()
        self.tcp.close_all()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
