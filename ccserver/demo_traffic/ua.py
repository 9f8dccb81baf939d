"""A small SIP user agent for the demo's phones, built on the node's own stack.

The transaction layer and its asyncio adapter (``ccserver.sip_endpoint``),
dialogs, SDP offer/answer, RTP endpoints and the media clock are the ones the
server uses; this module only adds what a phone does that a B2BUA does not:
be a single endpoint that answers, talks, presses keys and hangs up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from ccserver.media.dtmf import DtmfSender
from ccserver.media.endpoint import RtpEndpoint, RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.sip.dialog import Dialog, InviteRetransmitter
from ccserver.sip.message import Request, Response, make_response, new_branch
from ccserver.sip.transaction import ServerTransaction
from ccserver.sip.uri import SipUri, Via
from ccserver.sip_endpoint import SipEndpoint
from ccserver.transport import Address

__all__ = ["DemoUa", "Line"]

log = logging.getLogger("ccserver.demo")

USER_AGENT = "ccserver-demo"
DIGIT_MS = 100


@dataclass(eq=False)
class Line:
    """One call of a demo phone: its dialog, its RTP and where it stands."""

    call_id: str
    endpoint: RtpEndpoint
    peer_number: str
    invite: Request | None = None
    server_tx: ServerTransaction | None = None
    dialog: Dialog | None = None
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ended_by: str | None = None
    retransmit: InviteRetransmitter | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class DemoUa:
    """One SIP endpoint (one UDP socket) and the calls on it (see ``RequestHandler``)."""

    def __init__(
        self, host: str, server: Address, clock: MediaClock, ports: RtpPorts, audio: EncodedAudio
    ) -> None:
        self.host = host
        self.server = server
        self.clock = clock
        self.ports = ports
        self.audio = audio
        self.sip = SipEndpoint(self)
        self.lines: dict[str, Line] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self.sip.address[1]

    async def start(self) -> None:
        await self.sip.start(self.host, 0, ["udp"])

    async def close(self) -> None:
        for line in list(self.lines.values()):
            self.hang_up(line)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.sip.close()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a coroutine owned by this phone: cancelled by :meth:`close`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def uri(self, user: str | None = None) -> SipUri:
        return SipUri(user=user, host=self.host, port=self.port)

    def via(self) -> str:
        return str(Via("UDP", self.host, self.port, {"branch": new_branch(), "rport": None}))

    def respond(
        self, request: Request, status: int, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        resp = make_response(request, status, headers=[*headers, ("User-Agent", USER_AGENT)])
        self.sip.send_response(resp)

    # -- media ----------------------------------------------------------------
    async def open_rtp(self, label: str) -> RtpEndpoint:
        return await self.ports.open(label)

    def talk(self, line: Line) -> None:
        """Send our audio on the line until it ends (a looped tone)."""
        if not line.ended.is_set():
            self.clock.play(line.endpoint, [self.audio], loop=True)

    async def press(self, line: Line, digit: str) -> None:
        """One key as RFC 4733 events (§2.5.1), the audio paused meanwhile."""
        ep = line.endpoint
        if ep.dtmf_pt is None or ep.remote is None or ep.transport is None or line.ended.is_set():
            return
        self.clock.stop(ep)
        keys = DtmfSender()
        start = ep.sender.timestamp
        for payload, marker in keys.packets(digit, DIGIT_MS):
            if ep.transport is None or ep.closed or ep.remote is None:
                return
            packet = ep.sender.event_packet(payload, start, payload_type=ep.dtmf_pt, marker=marker)
            ep.transport.sendto(packet, ep.remote)
            await asyncio.sleep(keys.packet_ms / 1000)  # pacing: one packet per 20 ms
        ep.sender.skip(keys.samples(DIGIT_MS))
        log.info("demo %s pressed %s", line.peer_number, digit)
        self.talk(line)

    # -- ending ---------------------------------------------------------------
    def hang_up(self, line: Line) -> None:
        """BYE an established call, or just drop one that never got that far."""
        if line.ended.is_set():
            return
        if line.dialog is not None and line.dialog.state == "confirmed":
            bye = line.dialog.create_request("BYE", via_host=self.host, via_port=self.port)
            bye.headers.set("Via", self.via())
            self.sip.send_request(bye, self.server, lambda r: None)
        self.finish(line, "us")

    def finish(self, line: Line, by: str) -> None:
        if line.ended.is_set():
            return
        line.ended_by = by
        line.ended.set()
        for handle in line.timers:
            handle.cancel()
        self.clock.stop(line.endpoint)
        line.endpoint.close()
        self.lines.pop(line.call_id, None)

    # -- RequestHandler ---------------------------------------------------------
    def on_request(self, request: Request, addr: Address, tx: ServerTransaction) -> None:
        method = request.method
        if request.to.tag is not None:
            self._in_dialog(request)
        elif method == "INVITE":
            self.incoming(request, addr, tx)
        elif method == "OPTIONS":
            self.respond(request, 200)
        else:
            self.respond(request, 405 if method not in ("BYE", "INFO") else 481)

    def _in_dialog(self, request: Request) -> None:
        line = self.lines.get(request.call_id)
        if line is None or line.dialog is None:
            self.respond(request, 481)
            return
        error = line.dialog.receive_request(request)
        if error is not None:
            self.respond(request, error)
            return
        self.respond(request, 200)
        if request.method == "BYE":
            self.finish(line, "them")

    def incoming(self, request: Request, addr: Address, tx: ServerTransaction) -> None:
        """A new call for this phone; a caller's phone takes none (486 Busy Here)."""
        self.respond(request, 486)

    def on_ack(self, request: Request, addr: Address) -> None:
        line = self.lines.get(request.call_id)
        if line is not None and line.retransmit is not None:
            line.retransmit.ack_received()
            line.confirmed.set()

    def on_cancel(self, invite: ServerTransaction, cancel: Request) -> None:
        line = self.lines.get(cancel.call_id)
        if line is not None and line.dialog is None:
            self.respond(invite.request, 487)
            self.finish(line, "them")

    def on_stray_response(self, response: Response) -> None:
        # A retransmitted 2xx: our ACK was lost; send it again (RFC 3261 §13.2.2.4).
        line = self.lines.get(response.call_id)
        if line is not None and line.dialog is not None and response.cseq[1] == "INVITE":
            self.send_ack(line, response)

    def on_server_timeout(self, tx: ServerTransaction) -> None:
        pass

    def send_ack(self, line: Line, response: Response) -> None:
        assert line.dialog is not None
        ack = line.dialog.create_ack(response.cseq[0], via_host=self.host, via_port=self.port)
        ack.headers.set("Via", self.via())
        self.sip.send_stateless(ack, self.server)

    def retransmit_2xx(self, line: Line, response: Response, addr: Address) -> None:
        """Resend our 2xx until the ACK (RFC 3261 §13.3.1.4); no ACK at all ends the call."""
        rt = InviteRetransmitter(response, addr, self.now())
        line.retransmit = rt
        loop = asyncio.get_running_loop()

        def fire() -> None:
            due = rt.handle_timer(self.now())
            if due is None:
                self.hang_up(line)
                return
            for data, to in due:
                self.sip.send_raw(data, to)
            arm()

        def arm() -> None:
            deadline = rt.get_timer()
            if deadline is not None and not line.ended.is_set():
                line.timers.append(loop.call_at(deadline, fire))

        arm()


def session_id() -> int:
    return random.randrange(1, 2**31)
