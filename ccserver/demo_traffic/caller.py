"""Demo customers calling in from the trunk address, one script per call.

A call is an INVITE with an SDP offer from the carrier's address (the demo
trunk trusts 127.0.0.2 without authentication), a looped tone as the
caller's voice, keys pressed as RFC 4733 events, and a hang-up when the
caller runs out of patience in the queue. What happens is reported back as
an outcome word for the run's summary.
"""

from __future__ import annotations

import asyncio

from ccserver.demo_traffic.plan import CallScript
from ccserver.demo_traffic.ua import USER_AGENT, DemoUa, Line, log, session_id
from ccserver.media.endpoint import RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.media.sdp import SessionDescription, negotiate_answer, offer
from ccserver.sip.dialog import Dialog
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, new_call_id, new_tag
from ccserver.sip.uri import NameAddr, SipUri
from ccserver.transport import Address

__all__ = ["DemoCallers"]

SURVEY_PAUSE = 2.0
"""Seconds a caller listens to the survey question before pressing a score."""
AFTER_AGENT = 30.0
"""Seconds a caller who rated the call waits for the platform's goodbye before hanging up."""


class DemoCallers(DemoUa):
    """Every demo customer's calls, on one SIP socket at the trunk address."""

    def __init__(
        self, host: str, server: Address, clock: MediaClock, ports: RtpPorts, audio: EncodedAudio
    ) -> None:
        super().__init__(host, server, clock, ports, audio)
        self.connected: dict[str, asyncio.Event] = {}
        """Caller number -> set when an agent answered that caller."""
        self.agent_gone: dict[str, asyncio.Event] = {}

    def busy_numbers(self) -> set[str]:
        return set(self.connected)

    def agent_answered(self, number: str, agent: str) -> None:
        event = self.connected.get(number)
        if event is not None:
            event.set()

    def agent_hung_up(self, number: str, agent: str) -> None:
        event = self.agent_gone.get(number)
        if event is not None:
            event.set()

    def _invite(self, script: CallScript, sdp: SessionDescription) -> Request:
        target = SipUri(user=script.dialed, host=self.server[0], port=self.server[1])
        h = Headers()
        h.add("Via", self.via())
        h.add("Max-Forwards", "70")
        h.add(
            "From",
            str(NameAddr(SipUri(user=script.number, host=self.host), None, {"tag": new_tag()})),
        )
        h.add("To", str(NameAddr(target)))
        h.add("Call-ID", new_call_id(self.host))
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<{self.uri(script.number)}>")
        h.add("User-Agent", USER_AGENT)
        h.add("Content-Type", "application/sdp")
        return Request("INVITE", target, h, sdp.to_bytes())

    async def call(self, script: CallScript) -> str:
        """Place one call and play it to its end; returns what happened.

        ``agent``: an agent answered; ``abandoned``: the caller gave up in the
        queue; ``ivr``: the platform ended the call before any agent;
        ``refused``/``failed``: no call was set up.
        """
        number = script.number
        connected = self.connected[number] = asyncio.Event()
        gone = self.agent_gone[number] = asyncio.Event()
        try:
            return await self._call(script, connected, gone)
        finally:
            self.connected.pop(number, None)
            self.agent_gone.pop(number, None)

    async def _call(self, script: CallScript, connected: asyncio.Event, gone: asyncio.Event) -> str:
        endpoint = await self.open_rtp("demo-caller")
        ours = offer(local_ip=self.host, local_port=endpoint.local[1], session_id=session_id())
        invite = self._invite(script, ours)
        line = Line(invite.call_id, endpoint, script.number, invite=invite)
        self.lines[line.call_id] = line
        final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def got(resp: Response) -> None:
            if resp.status < 200:
                return
            if 200 <= resp.status < 300 and line.dialog is None:
                line.dialog = Dialog.from_uac(invite, resp)
            if not final.done():
                final.set_result(resp)
            elif resp.status < 300:
                self.send_ack(line, resp)

        self.sip.send_request(invite, self.server, got)
        log.info("demo caller %s dials %s", script.number, script.dialed)
        resp = await final
        if resp.status >= 300:
            self.finish(line, "them")
            return "refused"
        self.send_ack(line, resp)
        try:
            audio = negotiate_answer(ours, SessionDescription.parse(resp.body))
        except ValueError:
            self.hang_up(line)
            return "failed"
        endpoint.configure(audio)
        line.confirmed.set()
        self.talk(line)
        loop = asyncio.get_running_loop()
        for key in script.keys:
            line.timers.append(loop.call_later(key.after, self._press_later, line, key.digit))
        if not await _first(connected, line.ended, timeout=script.patience + _keys_time(script)):
            log.info("demo caller %s gives up waiting", script.number)
            self.hang_up(line)
            return "abandoned"
        if line.ended.is_set() and not connected.is_set():
            return "ivr"
        await _first(gone, line.ended, timeout=None)
        if not line.ended.is_set():
            # An IVR call stays for the survey once the agent has hung up:
            # listen to the question, then rate, or just hang up.
            await _first(line.ended, timeout=SURVEY_PAUSE)
            if script.survey is not None:
                await self.press(line, script.survey)
                await _first(line.ended, timeout=AFTER_AGENT)
        self.hang_up(line)
        return "agent"

    def _press_later(self, line: Line, digit: str) -> None:
        self.spawn(self.press(line, digit), f"demo-key-{line.peer_number}")


def _keys_time(script: CallScript) -> float:
    return max((k.after for k in script.keys), default=0.0)


async def _first(*events: asyncio.Event, timeout: float | None) -> bool:
    """Wait until one of ``events`` is set; False when ``timeout`` passed first."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for w in waiters:
            w.cancel()
