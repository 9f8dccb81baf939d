"""A demo agent's phone: registers with digest auth, rings, answers, talks, hangs up.

Registering logs the agent in, as a real phone does; each INVITE from the
platform rings for a while, is answered with an SDP answer and a looped
tone, and is hung up (BYE) after the agent's talk time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ccserver.demo_traffic.plan import AgentTimes
from ccserver.demo_traffic.ua import USER_AGENT, DemoUa, Line, log, session_id
from ccserver.media.endpoint import RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.media.sdp import NotAcceptable, SessionDescription, answer
from ccserver.sip.dialog import Dialog, make_dialog_response
from ccserver.sip.digest import build_authorization, select_challenge
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, new_call_id, new_tag
from ccserver.sip.transaction import ServerTransaction
from ccserver.sip.uri import NameAddr, SipUri
from ccserver.transport import Address

__all__ = ["DemoAgent", "RegistrationFailed"]

REGISTER_EXPIRES = 300


class RegistrationFailed(RuntimeError):
    """The platform refused the demo agent's REGISTER (wrong password, unknown extension)."""


class DemoAgent(DemoUa):
    """The phone of one agent extension."""

    def __init__(
        self,
        ext: str,
        password: str,
        server: Address,
        clock: MediaClock,
        ports: RtpPorts,
        audio: EncodedAudio,
        times: Callable[[], AgentTimes],
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host, server, clock, ports, audio)
        self.ext = ext
        self.password = password
        self.times = times
        self.answered = 0
        self.on_answered: Callable[[str, str], None] | None = None
        """(caller number, agent) when this agent answers a call."""
        self.on_hung_up: Callable[[str, str], None] | None = None
        """(caller number, agent) when this agent hangs a call up."""
        self._reg_call_id = new_call_id(host)
        self._reg_cseq = 0

    # -- registration -------------------------------------------------------
    def _register_request(self, expires: int, authorization: str | None) -> Request:
        self._reg_cseq += 1
        server = SipUri(host=self.server[0], port=self.server[1])
        aor = NameAddr(SipUri(user=self.ext, host=self.server[0], port=self.server[1]))
        h = Headers()
        h.add("Via", self.via())
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(aor.uri, None, {"tag": new_tag()})))
        h.add("To", str(aor))
        h.add("Call-ID", self._reg_call_id)
        h.add("CSeq", f"{self._reg_cseq} REGISTER")
        h.add("Contact", f"<{self.uri(self.ext)}>")
        h.add("Expires", str(expires))
        h.add("User-Agent", USER_AGENT)
        if authorization is not None:
            h.add("Authorization", authorization)
        return Request("REGISTER", server, h)

    async def _send(self, request: Request) -> Response:
        done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def got(resp: Response) -> None:
            if resp.status >= 200 and not done.done():
                done.set_result(resp)

        self.sip.send_request(request, self.server, got)
        return await done

    async def register(self, expires: int = REGISTER_EXPIRES) -> None:
        """REGISTER, answering one digest challenge (RFC 3261 §22.2)."""
        resp = await self._send(self._register_request(expires, None))
        if resp.status == 401:
            challenge = select_challenge(resp.headers.get_all("WWW-Authenticate"))
            if challenge is None:
                raise RegistrationFailed(f"{self.ext}: no digest challenge we can answer")
            request = self._register_request(expires, None)
            request.headers.add(
                "Authorization",
                build_authorization(
                    challenge,
                    username=self.ext,
                    password=self.password,
                    method="REGISTER",
                    uri=str(request.uri),
                ),
            )
            resp = await self._send(request)
        if not 200 <= resp.status < 300:
            raise RegistrationFailed(f"{self.ext}: REGISTER answered {resp.status} {resp.reason}")

    async def stay_registered(self, ready: asyncio.Future[None]) -> None:
        """Register, then refresh at half the expiry until cancelled; unregister on the way out."""
        try:
            await self.register()
        except Exception as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        log.info("demo agent %s registered from %s:%d", self.ext, self.host, self.port)
        try:
            while True:
                await asyncio.sleep(
                    REGISTER_EXPIRES / 2
                )  # the refresh period, not a wait on others
                await self.register()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("demo agent %s: registration refresh failed: %s", self.ext, exc)

    async def unregister(self) -> None:
        try:
            async with asyncio.timeout(2):
                await self.register(expires=0)
        except (TimeoutError, RegistrationFailed) as exc:
            log.info("demo agent %s: unregister: %s", self.ext, exc)

    # -- calls --------------------------------------------------------------
    def incoming(self, request: Request, addr: Address, tx: ServerTransaction) -> None:
        if self.lines:
            self.respond(request, 486)  # one call at a time, like a desk phone
            return
        try:
            remote = SessionDescription.parse(request.body)
        except ValueError:
            self.respond(request, 400)
            return
        caller = request.from_.uri.user or "anonymous"
        times = self.times()
        to_tag = new_tag()
        ringing = make_dialog_response(request, 180, to_tag=to_tag, contact=self.uri(self.ext))
        self.sip.send_response(ringing)
        self.spawn(self._answer(request, tx, remote, caller, to_tag, times), f"demo-{self.ext}")

    async def _answer(
        self,
        request: Request,
        tx: ServerTransaction,
        remote: SessionDescription,
        caller: str,
        to_tag: str,
        times: AgentTimes,
    ) -> None:
        endpoint = await self.open_rtp(f"demo-agent-{self.ext}")
        line = Line(request.call_id, endpoint, caller, invite=request, server_tx=tx)
        self.lines[line.call_id] = line
        loop = asyncio.get_running_loop()
        line.timers.append(loop.call_later(times.ring, self._pick_up, line, remote, to_tag, times))

    def _pick_up(
        self, line: Line, remote: SessionDescription, to_tag: str, times: AgentTimes
    ) -> None:
        if line.ended.is_set() or line.invite is None:
            return
        request = line.invite
        try:
            sdp, audio = answer(
                remote,
                local_ip=self.host,
                local_port=line.endpoint.local[1],
                session_id=session_id(),
            )
        except NotAcceptable:
            self.respond(request, 488)
            self.finish(line, "us")
            return
        ok = make_dialog_response(
            request,
            200,
            to_tag=to_tag,
            contact=self.uri(self.ext),
            headers=[("User-Agent", USER_AGENT), ("Content-Type", "application/sdp")],
            body=sdp.to_bytes(),
        )
        line.dialog = Dialog.from_uas(request, ok, self.uri(self.ext))
        self.sip.send_response(ok)
        self.retransmit_2xx(line, ok, self.server)
        line.endpoint.configure(audio)
        self.talk(line)
        self.answered += 1
        log.info(
            "demo agent %s answered %s; talking %.0f s", self.ext, line.peer_number, times.talk
        )
        if self.on_answered is not None:
            self.on_answered(line.peer_number, self.ext)
        loop = asyncio.get_running_loop()
        line.timers.append(loop.call_later(times.talk, self._done_talking, line))

    def _done_talking(self, line: Line) -> None:
        if line.ended.is_set():
            return
        self.hang_up(line)
        if self.on_hung_up is not None:
            self.on_hung_up(line.peer_number, self.ext)
