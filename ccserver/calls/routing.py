"""The ACD side of a call: queueing, offering to agents, ringing and connecting them."""

from __future__ import annotations

import random

from acd.router import Offer
from ccserver.calls.core import CallCore
from ccserver.calls.leg import Address, Leg
from ccserver.calls.model import ALLOW, SERVER, Call
from ccserver.calls.model import utcnow as _utcnow
from ccserver.media.sdp import SessionDescription, negotiate_answer, offer
from ccserver.sip.dialog import Dialog
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, new_call_id, new_tag
from ccserver.sip.uri import NameAddr, SipUri


class QueueRouting(CallCore):
    """Executes the router's decisions: ring an agent, re-route on no answer, bridge on answer."""

    def _enqueue(self, call: Call, queue: str, priority: int) -> None:
        call.state = "queued"
        call.queue = queue
        self.clock.play(call.caller.endpoint, [self.moh], loop=True)
        self.recorder.update(call.contact_id, queue=queue, enqueued_at=_utcnow())
        self._note(call, "queued", {"queue": queue, "priority": priority})
        call.log.info("queued in %s", queue)
        self._apply(self.router.enqueue(call.contact_id, queue, self.now(), priority))

    def _apply(self, offers: list[Offer]) -> None:
        self._record_agent_changes()
        for o in offers:
            call = self.calls.get(o.call_id)
            if call is None or call.state == "ended":
                self.router.remove(o.call_id, self.now())
                continue
            bindings = self.reg.lookup(o.agent, self.now())
            if not bindings:
                # The phone is gone: log the agent out and try the next one.
                self._apply_later(self.router.logout(o.agent, self.now(), "unregistered"))
                continue
            task = self.loop.create_task(
                self._ring_agent(call, o, bindings[0].contact, bindings[0].source)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._arm_router()

    def _apply_later(self, offers: list[Offer]) -> None:
        self.loop.call_soon(self._apply, offers)

    def _record_agent_changes(self) -> None:
        changes, self.router.changes = self.router.changes, []
        for ch in changes:
            self.recorder.agent_event(ch.agent, ch.new, ch.reason, {"from": ch.old})
            self.bus.emit(
                "agent.state",
                agent=ch.agent,
                data={"state": ch.new, "from": ch.old, "reason": ch.reason},
            )

    def _arm_router(self) -> None:
        if self._router_timer is not None:
            self._router_timer.cancel()
            self._router_timer = None
        deadline = self.router.get_timer()
        if deadline is not None:

            def fire() -> None:
                self._router_timer = None
                self._apply(self.router.handle_timer(self.now()))

            self._router_timer = self.loop.call_at(deadline, fire)

    def agent_phone(self, ext: str, online: bool) -> None:
        """A phone of an agent registered or went away: log the agent in or out."""
        now = self.now()
        self.recorder.agent_event(ext, "registered" if online else "unregistered")
        self.bus.emit("agent.phone", agent=ext, data={"registered": online})
        offers = (
            self.router.login(ext, now) if online else self.router.logout(ext, now, "unregistered")
        )
        self._apply(offers)

    async def _ring_agent(self, call: Call, o: Offer, contact: str, source: Address) -> None:
        endpoint = await self.ports.open("agent")
        if call.state == "ended":
            endpoint.close()  # the router already withdrew the offer
            return
        target = SipUri.parse(contact)
        sdp = offer(
            local_ip=self.s.host,
            local_port=endpoint.local[1],
            codecs=self.s.codecs,
            session_id=random.randrange(1, 2**31),
        )
        h = Headers()
        h.add("Via", str(self._via(source)))
        h.add("Max-Forwards", "70")
        caller = call.caller.invite.from_
        display = caller.display or call.caller_number
        h.add("From", str(NameAddr(self.our_uri(call.caller_number), display, {"tag": new_tag()})))
        h.add("To", str(NameAddr(SipUri(user=o.agent, host=self.s.host, port=self.port))))
        h.add("Call-ID", new_call_id(self.s.host))
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<{self.our_uri()}>")
        h.add("Allow", ALLOW)
        h.add("User-Agent", SERVER)
        h.add("X-Contact-ID", call.contact_id)
        h.add("Content-Type", "application/sdp")
        invite = Request("INVITE", target, h, sdp.to_bytes())
        leg = Leg("uac", endpoint, invite, source, offer=sdp, agent=o.agent)
        call.agent_leg = leg
        call.state = "ringing"
        self._legs[invite.call_id] = (call, leg)
        self.recorder.update(call.contact_id, agent=o.agent)
        self._note(call, "offered", {"agent": o.agent, "queue": o.queue})
        call.log.info("offering to agent %s at %s", o.agent, contact)
        leg.client_tx = self.sip.send_request(
            invite, source, lambda r: self._agent_response(call, leg, r)
        )
        timeout = self.s.queue_ring_timeout.get(o.queue, 15.0)
        call.ring_timer = self.loop.call_later(timeout, self._ring_timeout, call, leg)

    def _ring_timeout(self, call: Call, leg: Leg) -> None:
        call.ring_timer = None
        if leg.state in ("confirmed", "terminated") or leg.cancelled:
            return
        call.log.info("agent %s did not answer", leg.agent)
        self._cancel_leg(leg, "no-answer")
        if not leg.provisional:
            # Not even a 100 Trying: the phone is unreachable. Re-route now
            # instead of waiting 32 s for Timer B; the leg cleans up later.
            leg.released = True
            if call.agent_leg is leg:
                call.agent_leg = None
            call.state = "queued"
            self._note(call, "no_answer", {"agent": leg.agent, "status": None})
            self._apply(self.router.no_answer(call.contact_id, self.now()))

    def _agent_response(self, call: Call, leg: Leg, resp: Response) -> None:
        status = resp.status
        if status < 200:
            leg.provisional = True
            if leg.cancel_pending:
                self._send_cancel(leg)
                return
            if status in (180, 183) and not leg.ringing:
                leg.ringing = True
                self._note(call, "ringing", {"agent": leg.agent})
            return
        if status < 300:
            leg.dialog = Dialog.from_uac(leg.invite, resp)
            leg.state = "confirmed"
            self._send_ack(leg, resp)
            if leg.cancelled or call.state == "ended":
                # Answered after we gave up: ACK then BYE (RFC 3261 §15).
                self._send_bye(leg)
                self._release_leg(leg)
                return
            self._agent_answered(call, leg, resp)
            return
        # Final failure: the phone refused, or our CANCEL took effect.
        if leg.released:
            # The router moved on already (a phone that never answered at all).
            leg.state = "terminated"
            self._release_leg(leg)
            return
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        leg.state = "terminated"
        self._release_leg(leg)
        if call.agent_leg is leg:
            call.agent_leg = None
        if call.state == "ended":
            return
        call.state = "queued"
        now = self.now()
        if leg.cancelled == "no-answer" or status == 408:
            self._note(call, "no_answer", {"agent": leg.agent, "status": status})
            self._apply(self.router.no_answer(call.contact_id, now))
        else:
            self._note(call, "declined", {"agent": leg.agent, "status": status})
            self._apply(self.router.declined(call.contact_id, now))

    def _agent_answered(self, call: Call, leg: Leg, resp: Response) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        try:
            assert leg.offer is not None
            audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
        except (ValueError, AssertionError) as exc:
            call.log.warning("agent %s answered with unusable SDP: %s", leg.agent, exc)
            self._send_bye(leg)
            self._release_leg(leg)
            self._apply(self.router.no_answer(call.contact_id, self.now(), "bad media"))
            return
        leg.endpoint.configure(audio)
        self.clock.stop(call.caller.endpoint)
        call.caller.endpoint.bridge(leg.endpoint)
        leg.endpoint.bridge(call.caller.endpoint)
        call.state = "bridged"
        call.answered = True
        self.router.answered(call.contact_id, self.now())
        self._record_agent_changes()
        self.recorder.update(call.contact_id, answered_at=_utcnow(), agent=leg.agent)
        self._note(call, "answered", {"agent": leg.agent, "codec": audio.codec})
        call.log.info(
            "agent %s answered; bridged %s<->%s", leg.agent, call.caller.endpoint.codec, audio.codec
        )
