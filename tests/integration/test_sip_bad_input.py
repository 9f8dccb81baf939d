"""Bad input gets a clear error, and the server keeps serving.

Every test talks to a real `ccserver run` process (the `server` fixture) over
loopback. Well-formed messages are built with `ccserver.sip.message` types;
malformed ones are the bytes of a valid message with one precise change, sent
from a raw socket, because no SIP stack (SIPp included) sends most of them.
Each test ends with `assert_serving`: a fresh peer's OPTIONS still gets 200.

How "no answer" is proven without sleeping: the server answers each datagram
synchronously and in order, so after the bad datagram the same socket sends
an OPTIONS; the first datagram to come back must be that OPTIONS's 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from ccserver.media.sdp import offer
from ccserver.sip.digest import build_authorization, parse_challenge
from ccserver.sip.headers import Headers
from ccserver.sip.message import (
    Message,
    Request,
    Response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from ccserver.sip.uri import NameAddr, SipUri, Via
from ccserver.transport import MAX_MESSAGE, UdpSip
from tests.integration.peers.sipp import SippProcess, scenario_path
from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

Address = tuple[str, int]

#: The demo trunk (config/trunks.toml): INVITEs from here need no credentials.
TRUNK = "127.0.0.2"
#: Not a trunk: INVITEs from here must authenticate as an extension.
PHONE = "127.0.0.1"
#: Longest wait for one answer on loopback; generous for a loaded CI machine.
WAIT = 3.0
#: The largest UDP payload IPv4 can carry: 65,535 - 20 (IP) - 8 (UDP).
MAX_UDP_PAYLOAD = 65_507


def digest_algorithms(*algorithms: str) -> Callable[[Path], None]:
    """A config edit for `start_server`: offer these digest challenges, in this order."""

    def edit(config: Path) -> None:
        toml = config / "ccserver.toml"
        listed = ", ".join(f'"{name}"' for name in algorithms)
        text, n = re.subn(
            r"(?m)^digest_algorithms = \[[^\]]*\]", f"digest_algorithms = [{listed}]",
            toml.read_text(),
        )  # fmt: skip
        assert n == 1, "the demo ccserver.toml no longer sets digest_algorithms"
        toml.write_text(text)

    return edit


# -- answers read leniently ---------------------------------------------------------------


@dataclass
class Answer:
    """A response as received, read without validation: an error response to a bad
    request echoes the defect (no Call-ID, "CSeq: one OPTIONS"), which a strict
    parser such as `parse_message` refuses."""

    status: int
    reason: str
    headers: Headers
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> Answer:
        first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        version, status, reason = [*first.split(" ", 2), ""][:3]
        assert version == "SIP/2.0" and status.isdigit(), f"not a response: {data!r}"
        return cls(int(status), reason, Headers(header_fields(data)), data)

    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def to_tag(self) -> str | None:
        return NameAddr.parse(self.headers.get("To") or "").tag

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


def header_fields(data: bytes) -> list[tuple[str, str]]:
    """The header fields of raw bytes, read leniently (for comparing echoes)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")[1:]
    return [(name.strip(), value.strip()) for name, _, value in (f.partition(":") for f in head)]


# -- raw SIP peers ------------------------------------------------------------------------


class UdpPeer(asyncio.DatagramProtocol):
    """One UDP socket that sends whatever bytes it is given and queues what comes back."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = (host, port)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.inbox.put_nowait(data)

    def send(self, data: bytes | Message, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data if isinstance(data, bytes) else bytes(data), to)

    async def recv(self, timeout: float = WAIT) -> bytes:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no datagram within {timeout} s on {self.address}") from None

    async def answer(self, timeout: float = WAIT) -> Answer:
        return Answer.parse(await self.recv(timeout))

    async def response(self, timeout: float = WAIT) -> Response:
        message = parse_message(await self.recv(timeout))
        assert isinstance(message, Response), f"expected a response, got {message!r}"
        return message

    async def final(self, method: str, timeout: float = WAIT) -> Response:
        """The next final response to a ``method`` request, skipping 1xx and others."""
        async with asyncio.timeout(timeout):
            while True:
                resp = await self.response(timeout)
                if resp.status >= 200 and resp.cseq[1] == method:
                    return resp


@contextlib.asynccontextmanager
async def udp_peer(host: str = PHONE) -> AsyncIterator[UdpPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(host, 0))
    try:
        yield peer
    finally:
        transport.close()


class TcpPeer:
    """One TCP connection to the server, framing what comes back by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.address: Address = (host, port)

    async def send(self, data: bytes | Message) -> None:
        self.writer.write(data if isinstance(data, bytes) else bytes(data))
        await self.writer.drain()

    async def answer(self, timeout: float = WAIT) -> Answer:
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = Headers(header_fields(head)).get("Content-Length")
            assert length is not None, f"no Content-Length on a stream: {head!r}"
            return Answer.parse(head + await self.reader.readexactly(int(length)))

    async def read_exactly(self, n: int, timeout: float = WAIT) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.readexactly(n)

    async def closed_by_server(self, timeout: float = WAIT) -> bool:
        """True once the server has closed the connection (EOF), within ``timeout``."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(65_536):
                pass
        return True


@contextlib.asynccontextmanager
async def tcp_peer(server: ServerProcess) -> AsyncIterator[TcpPeer]:
    reader, writer = await asyncio.open_connection(PHONE, server.sip_port)
    try:
        yield TcpPeer(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# -- requests -----------------------------------------------------------------------------


@dataclass
class Uac:
    """What a user agent keeps for one Call-ID: where it is, its tag, its CSeq."""

    local: Address
    server: Address
    transport: str = "UDP"
    user: str = "tester"
    call_id: str = field(default_factory=lambda: new_call_id("test.invalid"))
    tag: str = field(default_factory=new_tag)
    cseq: int = 0

    def request(
        self,
        method: str,
        target: str | None,
        *,
        to_user: str | None = None,
        to_tag: str | None = None,
        uri: SipUri | None = None,
        cseq: int | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A request for ``target`` (a user at the server; None: the server itself)."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        host, port = self.server
        via = Via(self.transport, *self.local, {"branch": new_branch(), "rport": None})
        to = NameAddr(SipUri(user=to_user or target, host=host, port=port))
        if to_tag is not None:
            to.params["tag"] = to_tag
        h = Headers()
        h.add("Via", str(via))
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(SipUri(user=self.user, host=host, port=port),
                                   params={"tag": self.tag})))  # fmt: skip
        h.add("To", str(to))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        h.add("Contact", str(NameAddr(SipUri(user=self.user, host=self.local[0],
                                             port=self.local[1]))))  # fmt: skip
        for name, value in headers:
            h.add(name, value)
        return Request(method, uri or SipUri(user=target, host=host, port=port), h, body)

    def options(self) -> Request:
        return self.request("OPTIONS", "5000")

    def invite(self, dialed: str, rtp_port: int) -> Request:
        sdp = offer(local_ip=self.local[0], local_port=rtp_port, codecs=["PCMU"], session_id=1)
        return self.request(
            "INVITE", dialed, headers=[("Content-Type", "application/sdp")], body=sdp.to_bytes()
        )


def ack_for(invite: Request, final: Response) -> Request:
    """The ACK of a non-2xx final: the INVITE's branch and its To tag (RFC 3261 §17.1.1.3)."""
    h = Headers()
    h.add("Via", invite.headers.get_all("Via")[0])
    h.add("Max-Forwards", "70")
    h.add("From", invite.headers.get("From") or "")
    h.add("To", final.headers.get("To") or "")
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{invite.cseq[0]} ACK")
    return Request("ACK", invite.uri.copy(), h)


def in_dialog(uac: Uac, method: str, answer: Response, *, cseq: int | None = None) -> Request:
    """An ACK (of a 2xx) or a BYE in the dialog the 2xx created (RFC 3261 §12.2.1.1)."""
    return uac.request(
        method,
        None,
        uri=answer.contacts[0].uri.copy(),
        to_user=answer.to.uri.user,
        to_tag=answer.to.tag,
        cseq=cseq,
    )


def edit(message: bytes, old: bytes, new: bytes) -> bytes:
    """``message`` with its only occurrence of ``old`` replaced: one precise defect."""
    assert message.count(old) == 1, f"{old!r} must occur once in {message!r}"
    return message.replace(old, new)


def without_header(message: bytes, name: bytes) -> bytes:
    out, n = re.subn(rb"(?m)^" + re.escape(name) + rb":[^\r\n]*\r\n", b"", message, count=1)
    assert n == 1, f"no {name!r} header in {message!r}"
    return out


async def assert_serving(server: ServerProcess) -> None:
    """The server process is alive and answers a fresh peer's OPTIONS with 200."""
    assert server.proc is not None and server.proc.returncode is None, server.log_tail()
    async with udp_peer() as peer:
        uac = Uac(peer.address, (PHONE, server.sip_port))
        peer.send(uac.options(), uac.server)
        resp = await peer.final("OPTIONS")
    assert resp.status == 200, f"{resp.status} {resp.reason}"


async def assert_no_answer(peer: UdpPeer, server: Address) -> None:
    """Nothing came back for what ``peer`` sent last: its next datagram answers a probe."""
    probe = Uac(peer.address, server).options()
    peer.send(probe, server)
    first = await peer.answer()
    assert first.call_id == probe.call_id, f"unexpected answer: {first.raw!r}"


# -- 1. malformed requests over UDP -------------------------------------------------------


def _udp_defects(valid: bytes) -> list[tuple[str, bytes, int, str]]:
    """(what, bytes, status, reason phrase pattern) for one valid OPTIONS."""
    start_line = valid.split(b"\r\n", 1)[0]
    cseq = b"CSeq: 1 OPTIONS"
    return [
        ("missing Call-ID", without_header(valid, b"Call-ID"), 400, r"^Missing Call-ID header$"),
        ("CSeq number is a word", edit(valid, cseq, b"CSeq: one OPTIONS"), 400,
         r"^bad CSeq header$"),
        ("CSeq number over 2**32-1", edit(valid, cseq, b"CSeq: 4294967296 OPTIONS"), 400,
         r"^CSeq number out of range$"),
        ("CSeq method mismatch", edit(valid, cseq, b"CSeq: 1 INVITE"), 400,
         r"^CSeq method does not match the request$"),
        ("garbage start line", edit(valid, start_line, b"\x16\x03\x01 hello there"), 400,
         r"^bad request line$"),
        ("SIP/3.0", edit(valid, start_line, start_line.replace(b"SIP/2.0", b"SIP/3.0")), 505,
         r"^Version Not Supported$"),
        ("Content-Length past the end", edit(valid, b"Content-Length: 0", b"Content-Length: 99"),
         400, r"^Content-Length larger than the body$"),
        ("Max-Forwards not a number", edit(valid, b"Max-Forwards: 70", b"Max-Forwards: lots"),
         400, r"^bad Max-Forwards header$"),
        ("header section not UTF-8", edit(valid, b"Max-Forwards: 70", b"Subject: \xff\xfe"),
         400, r"^header section is not UTF-8$"),
        ("header section not terminated", valid.rstrip(b"\r\n"), 400,
         r"^header section not terminated$"),
    ]  # fmt: skip


async def test_malformed_udp_requests_get_an_error_naming_the_problem(
    server: ServerProcess,
) -> None:
    """Each defect gets its status and a reason phrase saying what was wrong, built
    from the headers that survived (RFC 3261 §8.2, §21.4.1, §21.5.6)."""
    async with udp_peer() as peer:
        uac = Uac(peer.address, (PHONE, server.sip_port))
        valid = bytes(uac.options())
        wrong = []
        for what, data, status, reason in _udp_defects(valid):
            peer.send(data, uac.server)
            resp = await peer.answer()
            if resp.status != status or not re.search(reason, resp.reason):
                wrong.append(f"{what}: got {resp}")
                continue
            # §8.2.6.2: the answer carries the request's Vias, its Call-ID and
            # CSeq when they survived, and a To tag.
            sent = Headers(header_fields(data))
            assert resp.headers.get_all("Via") == sent.get_all("Via"), what
            assert resp.call_id == sent.get("Call-ID"), what
            assert resp.headers.get("CSeq") == sent.get("CSeq"), what
            assert resp.to_tag, f"{what}: no To tag in {resp.raw!r}"
        assert not wrong, "\n".join(wrong)
        # The same bad request again gets the same To tag (§8.2.7, stateless UAS).
        bad = edit(valid, b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS")
        peer.send(bad, uac.server)
        peer.send(bad, uac.server)
        assert (await peer.answer()).to_tag == (await peer.answer()).to_tag
    await server.wait_log(r"refused datagram .* 400 Missing Call-ID header")
    await assert_serving(server)


async def test_unanswerable_input_gets_no_answer(server: ServerProcess) -> None:
    """Garbage without headers, a request without Via, a malformed response and a
    malformed ACK are dropped silently (RFC 3261 §8.2.6.2, §17.2.3, §18.1.2)."""
    async with udp_peer() as peer:
        uac = Uac(peer.address, (PHONE, server.sip_port))
        valid = bytes(uac.options())
        response = b"SIP/2.0 200 OK\r\n" + edit(
            valid.split(b"\r\n", 1)[1], b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"
        )
        ack = bytes(uac.request("ACK", "5000"))
        inputs = {
            "binary garbage": bytes(range(256)) * 4,
            "text without headers": b"hello world\r\n\r\n",
            "a lone request line": b"OPTIONS sip:5000@127.0.0.1 SIP/2.0\r\n\r\n",
            "request without Via": without_header(valid, b"Via"),
            "malformed response": response,
            "ACK whose CSeq names INVITE": edit(ack, b" ACK\r\n", b" INVITE\r\n"),
        }
        for what, data in inputs.items():
            peer.send(data, uac.server)
            try:
                await assert_no_answer(peer, uac.server)
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from None
    await assert_serving(server)


async def test_sipp_bad_requests_get_400_and_505(server: ServerProcess, tmp_path: Path) -> None:
    """SIPp's bad_requests.xml: "CSeq: one OPTIONS" gets 400, SIP/3.0 gets 505."""
    sipp = SippProcess(
        scenario_path("bad_requests.xml"),
        workdir=tmp_path,
        remote=f"{PHONE}:{server.sip_port}",
        service="5000",
        timeout=10,
    )
    async with sipp:
        result = await sipp.wait()
    assert result.stats is not None and result.stats.successful == 1, sipp.diagnostics()
    answers = [m.first_line for m in sipp.messages() if not m.sent]
    assert answers == ["SIP/2.0 400 bad CSeq header", "SIP/2.0 505 Version Not Supported"]
    await assert_serving(server)


# -- message size -------------------------------------------------------------------------


def _padded(request: Request, size: int) -> bytes:
    """``request`` with an X-Padding header that makes it exactly ``size`` bytes."""
    bare = len(bytes(request)) + len("X-Padding: \r\n")
    request.headers.add("X-Padding", "x" * (size - bare))
    data = bytes(request)
    assert len(data) == size
    return data


async def test_largest_udp_datagram_is_accepted(server: ServerProcess) -> None:
    """RFC 3261 §18.1.1: "implementations MUST be able to handle messages up to the
    maximum datagram packet size": a 65,507-byte OPTIONS gets its 200."""
    async with udp_peer() as peer:
        uac = Uac(peer.address, (PHONE, server.sip_port))
        peer.send(_padded(uac.options(), MAX_UDP_PAYLOAD), uac.server)
        assert (await peer.final("OPTIONS")).status == 200
    await assert_serving(server)


class _Recorder:
    """A `MessageSink` that keeps what the transport hands up."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()

    def message_received(self, message: Message, addr: Address, *, reliable: bool) -> None:
        self.messages.append(message)
        self.arrived.set()


async def test_datagram_over_a_lowered_limit_gets_513() -> None:
    """No datagram can exceed the default limit (see `MAX_MESSAGE`), so a 513 over UDP
    needs a lower ``max_datagram``. The real transport on a real socket then answers
    513 Message Too Large (RFC 3261 §21.5.14) with the request's headers, drops an
    oversized datagram it cannot address, and keeps serving."""
    assert MAX_MESSAGE >= MAX_UDP_PAYLOAD  # by default every datagram is accepted
    limit = 16 * 1024
    sink = _Recorder()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpSip(sink, max_datagram=limit), local_addr=(PHONE, 0)
    )
    try:
        address = transport.get_extra_info("sockname")[:2]
        async with udp_peer() as peer:
            uac = Uac(peer.address, address)
            for _ in range(2):
                big = uac.options()
                peer.send(_padded(big, limit + 1), address)
                resp = await peer.response()
                assert (resp.status, resp.reason) == (513, "Message Too Large")
                assert resp.call_id == uac.call_id and resp.cseq == big.cseq
                # No headers, nobody to answer: the next answer is the next 513.
                peer.send(b"\x00" * (limit + 1), address)
            peer.send(_padded(uac.options(), limit), address)  # at the limit: accepted
            await asyncio.wait_for(sink.arrived.wait(), WAIT)
            assert peer.inbox.empty()
    finally:
        transport.close()
    assert [m.cseq for m in sink.messages] == [(3, "OPTIONS")]


# -- 2. TCP ---------------------------------------------------------------------------------


async def test_tcp_malformed_but_framed_gets_400_and_the_connection_stays(
    server: ServerProcess,
) -> None:
    """A bad CSeq inside a correctly framed message is answered 400; the stream is
    still in step, so the next request on the same connection gets its 200."""
    async with tcp_peer(server) as tcp:
        uac = Uac(tcp.address, (PHONE, server.sip_port), transport="TCP")
        await tcp.send(edit(bytes(uac.options()), b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"))
        resp = await tcp.answer()
        assert (resp.status, resp.reason) == (400, "bad CSeq header")
        assert resp.call_id == uac.call_id
        await tcp.send(uac.options())
        resp = await tcp.answer()
        assert (resp.status, resp.headers.get("CSeq")) == (200, "2 OPTIONS")
    await assert_serving(server)


async def test_tcp_keepalive_ping_gets_pong(server: ServerProcess) -> None:
    """RFC 5626 §3.5.1: a CRLFCRLF ping gets a single CRLF pong; the stream goes on."""
    async with tcp_peer(server) as tcp:
        uac = Uac(tcp.address, (PHONE, server.sip_port), transport="TCP")
        await tcp.send(b"\r\n\r\n")
        assert await tcp.read_exactly(2) == b"\r\n"
        await tcp.send(b"\r\n\r\n\r\n\r\n")  # two pings in one segment: two pongs
        assert await tcp.read_exactly(4) == b"\r\n\r\n"
        await tcp.send(b"\r\n\r\n" + bytes(uac.options()))  # a ping, then a request
        assert await tcp.read_exactly(2) == b"\r\n"
        assert (await tcp.answer()).status == 200
    await assert_serving(server)


async def test_tcp_missing_content_length_gets_400_and_close(server: ServerProcess) -> None:
    """Without Content-Length a stream cannot be framed (RFC 3261 §18.3, §20.14): the
    peer is told why, then the connection is closed."""
    async with tcp_peer(server) as tcp:
        uac = Uac(tcp.address, (PHONE, server.sip_port), transport="TCP")
        await tcp.send(without_header(bytes(uac.options()), b"Content-Length"))
        resp = await tcp.answer()
        assert (resp.status, resp.reason) == (400, "Content-Length is required on streams")
        assert await tcp.closed_by_server()
    await server.wait_log(r"refused message from tcp .* 400 Content-Length is required")
    await assert_serving(server)


async def test_tcp_message_over_the_limit_gets_513_and_close(server: ServerProcess) -> None:
    """A Content-Length beyond the size limit is refused with 513 before its body is
    buffered, and the connection closed (the body would be read as messages)."""
    async with tcp_peer(server) as tcp:
        uac = Uac(tcp.address, (PHONE, server.sip_port), transport="TCP")
        await tcp.send(edit(bytes(uac.options()), b"Content-Length: 0", b"Content-Length: 70000"))
        resp = await tcp.answer()
        assert (resp.status, resp.reason) == (513, "Message Too Large")
        assert await tcp.closed_by_server()
    await assert_serving(server)


# -- 3, 4. INVITEs that are refused -------------------------------------------------------


@contextlib.asynccontextmanager
async def rtp_port(host: str) -> AsyncIterator[int]:
    """A bound UDP port to name in SDP, so the server's RTP has somewhere to go."""
    async with udp_peer(host) as rtp:
        yield rtp.address[1]


async def test_invite_to_unknown_did_from_trunk_gets_404(server: ServerProcess) -> None:
    async with udp_peer(TRUNK) as peer, rtp_port(TRUNK) as media:
        uac = Uac(peer.address, (PHONE, server.sip_port), user="0600000001")
        invite = uac.invite("5999", media)
        peer.send(invite, uac.server)
        resp = await peer.final("INVITE")
        assert (resp.status, resp.reason) == (404, "Unknown Number")
        peer.send(ack_for(invite, resp), uac.server)
    await assert_serving(server)
    assert server.contacts() == []


async def test_invite_from_non_trunk_must_authenticate(start_server: Callable[..., object]) -> None:
    """From 127.0.0.1, with SHA-256 and MD5 configured: 407 offering both, SHA-256
    first (RFC 8760 §2.4); 403 for a wrong password; the right one is accepted."""
    server = await start_server(digest_algorithms("SHA-256", "MD5"))  # type: ignore[misc]
    assert isinstance(server, ServerProcess)
    async with udp_peer(PHONE) as peer, rtp_port(PHONE) as media:
        uac = Uac(peer.address, (PHONE, server.sip_port), user="1001")
        invite = uac.invite("5000", media)
        peer.send(invite, uac.server)
        challenge = await peer.final("INVITE")
        assert challenge.status == 407
        peer.send(ack_for(invite, challenge), uac.server)
        offered = challenge.headers.get_all("Proxy-Authenticate")
        params = [parse_challenge(value)[1] for value in offered]
        assert [p["algorithm"] for p in params] == ["SHA-256", "MD5"], offered
        assert all(p["realm"] == "ccserver" and p["qop"] == "auth" for p in params)

        def authorized(password: str) -> Request:
            retry = uac.invite("5000", media)
            value = build_authorization(
                offered[0], username="1001", password=password,
                method="INVITE", uri=str(retry.uri), nc=uac.cseq,
            )  # fmt: skip
            assert "algorithm=SHA-256" in value
            retry.headers.add("Proxy-Authorization", value)
            return retry

        wrong = authorized("agent1002pw")
        peer.send(wrong, uac.server)
        refused = await peer.final("INVITE")
        assert refused.status == 403
        peer.send(ack_for(wrong, refused), uac.server)

        right = authorized("agent1001pw")
        peer.send(right, uac.server)
        answer = await peer.final("INVITE")
        assert answer.status == 200, f"{answer.status} {answer.reason}"
        peer.send(in_dialog(uac, "ACK", answer, cseq=right.cseq[0]), uac.server)
        peer.send(in_dialog(uac, "BYE", answer), uac.server)
        assert (await peer.final("BYE")).status == 200
    (contact,) = await server.wait_contact_closed(1)
    assert contact.caller_number == "1001"
    await assert_serving(server)


# -- 6. retransmissions ---------------------------------------------------------------------


async def _collect_200s(peer: UdpPeer, n: int, timeout: float = WAIT) -> list[Response]:
    """Read until ``n`` 200s to the INVITE have come (T1 = 0.5 s apart, §13.3.1.4)."""
    seen: list[Response] = []
    async with asyncio.timeout(timeout):
        while len(seen) < n:
            resp = await peer.response(timeout)
            if resp.status == 200 and resp.cseq[1] == "INVITE":
                seen.append(resp)
    return seen


async def _ack_bye_one_contact(
    peer: UdpPeer, uac: Uac, invite: Request, answer: Response, server: ServerProcess
) -> None:
    peer.send(in_dialog(uac, "ACK", answer, cseq=invite.cseq[0]), uac.server)
    peer.send(in_dialog(uac, "BYE", answer), uac.server)
    assert (await peer.final("BYE")).status == 200
    await server.wait_contact_closed(1)
    contacts = server.contacts()
    assert [c.sip_call_id for c in contacts] == [uac.call_id]
    assert len([line for line in server.lines if "accepted (PCMU)" in line]) == 1


async def test_invite_retransmitted_before_the_answer_makes_one_call(
    server: ServerProcess,
) -> None:
    """The same INVITE twice (same branch) is one server transaction (RFC 3261 §17.2.3):
    the 200 is retransmitted until the ACK, always with the same To tag; one contact."""
    async with udp_peer(TRUNK) as peer, rtp_port(TRUNK) as media:
        uac = Uac(peer.address, (PHONE, server.sip_port), user="0600000002")
        invite = uac.invite("5001", media)
        data = bytes(invite)
        peer.send(data, uac.server)
        peer.send(data, uac.server)
        assert (await peer.response()).status == 100
        answers = await _collect_200s(peer, 2)  # the 200 and its first retransmission
        assert len({a.to.tag for a in answers}) == 1
        await _ack_bye_one_contact(peer, uac, invite, answers[0], server)
    await assert_serving(server)


async def test_invite_retransmitted_after_the_200_makes_no_second_call(
    server: ServerProcess,
) -> None:
    """A retransmission that arrives after our 200 and before the ACK is absorbed by the
    transaction in its Accepted state (RFC 6026 §7.1); the 200 keeps being resent."""
    async with udp_peer(TRUNK) as peer, rtp_port(TRUNK) as media:
        uac = Uac(peer.address, (PHONE, server.sip_port), user="0600000003")
        invite = uac.invite("5001", media)
        data = bytes(invite)
        peer.send(data, uac.server)
        (answer,) = await _collect_200s(peer, 1)
        peer.send(data, uac.server)  # as if the 200 had been lost
        peer.send(data, uac.server)
        again = await _collect_200s(peer, 2, timeout=2 * WAIT)  # T1, then 2*T1 later
        assert {a.to.tag for a in again} == {answer.to.tag}
        await _ack_bye_one_contact(peer, uac, invite, answer, server)
    await assert_serving(server)


# -- 7. OPTIONS -------------------------------------------------------------------------------


async def test_options_gets_200_with_allow(server: ServerProcess, tmp_path: Path) -> None:
    """OPTIONS (RFC 3261 §11.2) from a raw socket, and SIPp's options_ping.xml."""
    async with udp_peer() as peer:
        uac = Uac(peer.address, (PHONE, server.sip_port))
        peer.send(uac.options(), uac.server)
        resp = await peer.final("OPTIONS")
    assert resp.status == 200
    allow = {m.strip() for m in (resp.headers.get("Allow") or "").split(",")}
    assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"} <= allow
    sipp = SippProcess(
        scenario_path("options_ping.xml"),
        workdir=tmp_path,
        remote=f"{PHONE}:{server.sip_port}",
        service="5000",
        timeout=10,
    )
    async with sipp:
        await sipp.wait()
    await assert_serving(server)
