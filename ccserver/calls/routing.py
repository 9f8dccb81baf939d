"""The ACD side of a call: queueing, offering to agents, ringing and connecting them.

The router (`acd.router`) decides; this module carries its decisions out on
real SIP legs: an `Offer` rings an agent's phone (several at once for a
ring-all queue), a `Withdraw` cancels the phones that lost, an `Announce`
speaks the caller's place and expected wait between bars of hold music, and
an `Overflow` moves the caller on when it waited too long.
"""

from __future__ import annotations

import random
from typing import Any

from acd.agents import WRAP_UP, AgentChange
from acd.decisions import Announce, Overflow
from acd.router import Offer
from ccserver.calls.core import CallCore
from ccserver.calls.leg import Address, Leg
from ccserver.calls.model import ALLOW, SERVER, Call
from ccserver.calls.model import utcnow as _utcnow
from ccserver.media.sdp import SessionDescription, negotiate_answer, offer
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, new_call_id, new_tag
from ccserver.sip.uri import NameAddr, SipUri

#: How long an IVR transfer rings the extension before the flow's failure branch.
TRANSFER_RING_TIMEOUT = 20.0


class QueueRouting(CallCore):
    """Executes the router's decisions on the calls and phones of this node."""

    def _enqueue(
        self, call: Call, queue: str, priority: int, skills: dict[str, int] | None = None
    ) -> None:
        call.state = "queued"
        call.queue = queue
        self.clock.play(call.caller.endpoint, [self.moh], loop=True)
        self.recorder.update(call.contact_id, queue=queue, enqueued_at=_utcnow())
        self._note(call, "queued", {"queue": queue, "priority": priority, "tier": call.tier})
        call.log.info("queued in %s", queue)
        offers = self.acd.enqueue(
            call.contact_id, queue, self.now(), priority, skills=skills, tier=call.tier
        )
        self._apply(offers)

    def _apply(self, offers: list[Offer]) -> None:
        """Carry out offers, then whatever the router decided on its own, then re-arm."""
        self._record_agent_changes()
        for o in offers:
            self._offer(o)
        for decision in self.router.take_decisions():
            call = self.calls.get(decision.call_id)
            if call is None or call.state == "ended":
                continue
            if isinstance(decision, Announce):
                self._announce(call, decision)
            elif isinstance(decision, Overflow):
                self._overflow(call, decision)
        self._record_agent_changes()
        self._arm_router()

    def _offer(self, o: Offer) -> None:
        call = self.calls.get(o.call_id)
        if call is None or call.state == "ended":
            self.acd.remove(o.call_id, self.now())
            return
        bindings = self.reg.lookup(o.agent, self.now())
        if not bindings:
            # The phone is gone: log the agent out and try the next one.
            self._apply_later(self.acd.logout(o.agent, self.now(), "unregistered"))
            return
        task = self.loop.create_task(
            self._ring_agent(call, o, bindings[0].contact, bindings[0].source)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _apply_later(self, offers: list[Offer]) -> None:
        self.loop.call_soon(self._apply, offers)

    def _record_agent_changes(self) -> None:
        changes, self.router.changes = self.router.changes, []
        for ch in changes:
            self._time_wrap_up(ch)
            self.recorder.agent_event(ch.agent, ch.new, ch.reason, {"from": ch.old})
            self.bus.emit(
                "agent.state",
                agent=ch.agent,
                data={"state": ch.new, "from": ch.old, "reason": ch.reason},
            )

    def _time_wrap_up(self, ch: AgentChange) -> None:
        """The contact keeps its agent's wrap-up time, which ends after the call does
        (the queue's wrap-up timer, or the agent ending it early from the console)."""
        if ch.new == WRAP_UP and ch.call_id is not None:
            self._wrap_started[ch.agent] = (ch.call_id, ch.at)
        elif ch.old == WRAP_UP:
            started = self._wrap_started.pop(ch.agent, None)
            if started is not None:
                contact_id, at = started
                self.recorder.update(contact_id, wrap_seconds=round(max(0.0, ch.at - at), 3))

    def _arm_router(self) -> None:
        if self._router_timer is not None:
            self._router_timer.cancel()
            self._router_timer = None
        deadline = self.acd.get_timer()
        if deadline is not None:

            def fire() -> None:
                self._router_timer = None
                self._apply(self.acd.handle_timer(self.now()))

            self._router_timer = self.loop.call_at(deadline, fire)

    def agent_phone(self, ext: str, online: bool) -> None:
        """A phone of an agent registered or went away: log the agent in or out."""
        now = self.now()
        self.recorder.agent_event(ext, "registered" if online else "unregistered")
        self.bus.emit("agent.phone", agent=ext, data={"registered": online})
        offers = self.acd.login(ext, now) if online else self.acd.logout(ext, now, "unregistered")
        self._apply(offers)

    # -- what the router decides on its own ----------------------------------------
    def _announce(self, call: Call, d: Announce) -> None:
        """Speak the caller's place and estimated wait, then back to hold music."""
        parts = []
        if d.position is not None:
            parts.append(f"You are number {d.position} in line.")
        if d.estimated_wait is not None:
            minutes = max(1, round(d.estimated_wait / 60))
            unit = "minutes" if minutes > 1 else "minute"
            parts.append(f"Your estimated waiting time is about {minutes} {unit}.")
        if not parts:
            return
        text = " ".join(parts)
        self._note(
            call,
            "announced",
            {"queue": d.queue, "position": d.position, "estimated_wait": d.estimated_wait},
        )

        async def speak() -> None:
            audio = await self.render(text, call.voice)
            if call.state != "queued":
                return  # an agent is ringing or answered meanwhile: keep quiet
            pb = self.clock.play(call.caller.endpoint, [audio])

            def back_to_music(done: object) -> None:
                if call.state == "queued" and not self.clock.is_playing(call.caller.endpoint):
                    self.clock.play(call.caller.endpoint, [self.moh], loop=True)

            pb.done.add_done_callback(back_to_music)

        task = self.loop.create_task(speak())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _overflow(self, call: Call, d: Overflow) -> None:
        """The caller waited too long (or nobody can serve the queue): move it on."""
        self._note(
            call,
            "overflow",
            {"from": d.queue, "kind": d.destination_kind, "to": d.destination,
             "reason": d.reason, "waited": round(d.waited, 3)},
        )  # fmt: skip
        call.log.info("overflow from %s to %s %s (%s)", d.queue, d.destination_kind,
                      d.destination, d.reason)  # fmt: skip
        if d.destination_kind == "queue":
            # The router already moved the call; follow it.
            call.queue = d.destination
            self.recorder.update(call.contact_id, queue=d.destination)
        elif d.destination_kind == "flow" and d.destination in self.s.flows:
            self.clock.stop(call.caller.endpoint)
            self._run_flow(call, d.destination)
        elif d.destination_kind == "hangup":
            # The router has let go of the call: ending it is not an abandon.
            call.state = "leaving"
            self.clock.stop(call.caller.endpoint)
            # A caller refused as it joins (join-empty) may not have ACKed our
            # 200 yet: `_send_bye` holds the BYE back until it has (RFC 3261 §15).
            self._hangup_leg(call, call.caller, "system", send_bye=True, outcome="overflowed")
        elif d.destination_kind == "voicemail":
            self._overflow_to_voicemail(call, d)
        elif d.destination_kind == "callback":
            self._overflow_to_callback(call, d)
        else:
            call.log.warning("overflow to %s is not available: caller keeps waiting",
                             d.destination_kind)  # fmt: skip

    # -- ringing agents -------------------------------------------------------------
    def _invite(
        self, call: Call, user: str, contact: str, source: Address, endpoint: Any
    ) -> tuple[Request, SessionDescription]:
        """An INVITE to a registered phone on behalf of the caller (their number shown)."""
        caller = call.caller.invite.from_
        shown = NameAddr(self.our_uri(call.caller_number), caller.display or call.caller_number)
        return self._invite_as(call.contact_id, shown, user, contact, source, endpoint)

    def _invite_as(
        self, contact_id: str, shown: NameAddr, user: str, contact: str, source: Address,
        endpoint: Any,
    ) -> tuple[Request, SessionDescription]:  # fmt: skip
        """An INVITE from the platform for contact `contact_id`, `shown` as the calling party."""
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
        h.add("From", str(NameAddr(shown.uri, shown.display, {"tag": new_tag()})))
        h.add("To", str(NameAddr(SipUri(user=user, host=self.s.host, port=self.port))))
        h.add("Call-ID", new_call_id(self.s.host))
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<{self.our_uri()}>")
        h.add("Allow", ALLOW)
        h.add("User-Agent", SERVER)
        h.add("X-Contact-ID", contact_id)
        h.add("Content-Type", "application/sdp")
        return Request("INVITE", target, h, sdp.to_bytes()), sdp

    async def _ring_agent(self, call: Call, o: Offer, contact: str, source: Address) -> None:
        endpoint = await self.ports.open("agent")
        if call.state == "ended":
            endpoint.close()  # the router already withdrew the offer
            return
        invite, sdp = self._invite(call, o.agent, contact, source, endpoint)
        leg = Leg("uac", endpoint, invite, source, offer=sdp, agent=o.agent)
        call.ringing[o.agent] = leg
        call.state = "ringing"
        self._legs[invite.call_id] = (call, leg)
        self.recorder.update(call.contact_id, agent=o.agent)
        offered = {"agent": o.agent, "queue": o.queue, "ring_all": o.ring_all}
        if o.callback is not None:
            offered["callback"] = o.callback
        self._note(call, "offered", offered)
        call.log.info("offering to agent %s at %s", o.agent, contact)
        leg.client_tx = self.sip.send_request(
            invite, source, lambda r: self._agent_response(call, leg, r)
        )
        if call.ring_timer is None:
            timeout = self.s.queue_ring_timeout.get(o.queue, 15.0)
            call.ring_timer = self.loop.call_later(timeout, self._ring_timeout, call)

    # -- transfers out of the IVR ------------------------------------------------------
    def _transfer_to_extension(self, call: Call, ext: str) -> None:
        """Ring an extension's phone for the caller (an IVR transfer node), outside the ACD."""
        bindings = self.reg.lookup(ext, self.now())
        if ext not in self.s.extensions or not bindings:
            self._transfer_failed(call, f"extension {ext} is not registered")
            return
        self._start_transfer(call, ext, bindings[0].contact, bindings[0].source)

    def _transfer_to_number(self, call: Call, number: str) -> None:
        """Call an external number through the trunk's outbound route."""
        route = self._outbound_route(number)
        if route is None:
            self._transfer_failed(call, f"no outbound route to {number}")
            return
        self._start_transfer(call, number, *route)

    def _outbound_route(self, number: str) -> tuple[str, Address] | None:
        """The request URI and carrier address the trunk's outbound route uses for `number`."""
        if self.s.outbound is None:
            return None
        host, port = self.s.outbound
        return f"sip:{number}@{host}:{port}", (host, port)

    def _start_transfer(self, call: Call, ext: str, contact: str, source: Address) -> None:
        call.state = "transferring"
        self.clock.play(call.caller.endpoint, [self.moh], loop=True)
        task = self.loop.create_task(self._ring_extension(call, ext, contact, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ring_extension(self, call: Call, ext: str, contact: str, source: Address) -> None:
        endpoint = await self.ports.open("transfer")
        if call.state != "transferring":
            endpoint.close()
            return
        invite, sdp = self._invite(call, ext, contact, source, endpoint)
        leg = Leg("uac", endpoint, invite, source, offer=sdp)
        self._legs[invite.call_id] = (call, leg)
        # Kept with the ringing phones so a caller who hangs up cancels it too.
        call.ringing[f"transfer:{ext}"] = leg
        self._note(call, "transfer_ringing", {"extension": ext})
        call.log.info("transferring to extension %s at %s", ext, contact)
        leg.client_tx = self.sip.send_request(
            invite, source, lambda r: self._transfer_response(call, leg, ext, r)
        )
        call.ring_timer = self.loop.call_later(
            TRANSFER_RING_TIMEOUT, self._transfer_timeout, call, leg, ext
        )

    def _transfer_timeout(self, call: Call, leg: Leg, ext: str) -> None:
        call.ring_timer = None
        if call.state != "transferring" or leg.state == "confirmed":
            return
        call.ringing.pop(f"transfer:{ext}", None)
        leg.released = True
        self._cancel_leg(leg, "no-answer")
        self._transfer_failed(call, f"extension {ext} did not answer")

    def _transfer_response(self, call: Call, leg: Leg, ext: str, resp: Response) -> None:
        status = resp.status
        if status >= 200:
            call.ringing.pop(f"transfer:{ext}", None)
        if status < 200:
            self._provisional(call, leg, status)
            return
        if status < 300:
            self._confirm_uac(leg, resp)
            try:
                if leg.released or call.state != "transferring":
                    raise ValueError("the transfer was given up")
                assert leg.offer is not None
                audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
            except (ValueError, AssertionError) as exc:
                self._send_bye(leg)
                self._release_leg(leg)
                if call.state == "transferring":
                    self._transfer_failed(call, f"unusable answer: {exc}")
                return
            if call.ring_timer is not None:
                call.ring_timer.cancel()
                call.ring_timer = None
            leg.endpoint.configure(audio)
            self.clock.stop(call.caller.endpoint)
            call.caller.endpoint.bridge(leg.endpoint)
            leg.endpoint.bridge(call.caller.endpoint)
            call.agent_leg = leg
            call.state = "bridged"
            if not call.answered:  # a connected caller transferred keeps its first answer
                self.recorder.update(call.contact_id, answered_at=_utcnow())
            call.answered = True
            self._note(call, "answered", {"extension": ext, "transfer": True,
                                          "codec": audio.codec})  # fmt: skip
            return
        leg.state = "terminated"
        self._release_leg(leg)
        if not leg.released and call.state == "transferring":
            if call.ring_timer is not None:
                call.ring_timer.cancel()
                call.ring_timer = None
            self._transfer_failed(call, f"extension {ext} answered {status}")

    def _transfer_failed(self, call: Call, why: str) -> None:
        """Back to the flow, which takes the transfer node's failure branch."""
        self.clock.stop(call.caller.endpoint)
        call.state = "ivr"
        call.log.info("transfer failed: %s", why)
        self.loop.call_soon(
            self._feed, call, lambda run, now, why=why: run.transfer_failed(now, why)
        )

    def _stop_ringing(self, call: Call, why: str, keep: Leg | None = None) -> list[str]:
        """CANCEL every phone still ringing for the call (but `keep`); the router is told
        separately. Their final responses only clean up (`released`)."""
        stopped = []
        for agent, leg in list(call.ringing.items()):
            if leg is keep:
                continue
            del call.ringing[agent]
            leg.released = True
            self._cancel_leg(leg, why)
            stopped.append(agent)
        return stopped

    def _ring_timeout(self, call: Call) -> None:
        call.ring_timer = None
        if call.state != "ringing":
            return
        agents = self._stop_ringing(call, "no-answer")
        call.log.info("no answer from %s", ", ".join(agents))
        call.state = "queued"
        for agent in agents:
            self._note(call, "no_answer", {"agent": agent})
        self._apply(self.acd.no_answer(call.contact_id, self.now()))

    def _agent_response(self, call: Call, leg: Leg, resp: Response) -> None:
        status = resp.status
        if status < 200:
            self._provisional(call, leg, status, "ringing", {"agent": leg.agent})
            return
        if status < 300:
            self._confirm_uac(leg, resp)
            if leg.released or leg.cancelled or call.state in ("ended", "bridged"):
                # Answered after we gave up, or another phone won: ACK then BYE
                # (RFC 3261 §15).
                self._send_bye(leg)
                self._release_leg(leg)
                return
            self._agent_answered(call, leg, resp)
            return
        # A final failure: the phone refused, or our CANCEL took effect.
        leg.state = "terminated"
        self._release_leg(leg)
        if leg.released or call.state == "ended":
            return  # the router moved on already
        assert leg.agent is not None
        call.ringing.pop(leg.agent, None)
        if not call.ringing:
            call.state = "queued"
            if call.ring_timer is not None:
                call.ring_timer.cancel()
                call.ring_timer = None
        now = self.now()
        if status == 408:
            self._note(call, "no_answer", {"agent": leg.agent, "status": status})
            self._apply(self.acd.no_answer(call.contact_id, now, agent=leg.agent))
        else:
            self._note(call, "declined", {"agent": leg.agent, "status": status})
            self._apply(self.acd.declined(call.contact_id, now, agent=leg.agent))

    def _agent_answered(self, call: Call, leg: Leg, resp: Response) -> None:
        assert leg.agent is not None
        try:
            assert leg.offer is not None
            audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
        except (ValueError, AssertionError) as exc:
            call.log.warning("agent %s answered with unusable SDP: %s", leg.agent, exc)
            self._send_bye(leg)
            self._release_leg(leg)
            call.ringing.pop(leg.agent, None)
            if not call.ringing:
                call.state = "queued"
            self._apply(
                self.acd.no_answer(call.contact_id, self.now(), "bad media", agent=leg.agent)
            )
            return
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        call.ringing.pop(leg.agent, None)
        # Ring-all: the router withdraws the other offers; their phones stop
        # ringing (every phone still ringing for this call is one of them).
        self.acd.answered(call.contact_id, self.now(), agent=leg.agent)
        self._stop_ringing(call, "answered-elsewhere")
        leg.endpoint.configure(audio)
        if call.callback_to is not None and self._callback_answered(call, leg):
            return  # nobody on the line: the customer is being called
        self.clock.stop(call.caller.endpoint)
        call.caller.endpoint.bridge(leg.endpoint)
        leg.endpoint.bridge(call.caller.endpoint)
        call.agent_leg = leg
        call.state = "bridged"
        call.answered = True
        self._record_agent_changes()
        self._arm_router()
        self.recorder.update(call.contact_id, answered_at=_utcnow(), agent=leg.agent)
        self._note(call, "answered", {"agent": leg.agent, "codec": audio.codec})
        call.log.info(
            "agent %s answered; bridged %s<->%s", leg.agent, call.caller.endpoint.codec, audio.codec
        )
