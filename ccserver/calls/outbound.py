"""Calls the platform places for software: click-to-call and blind transfers
to an agent's extension or an external number.

Click-to-call rings the agent's registered phone first, showing the number
it is about to call; when the agent answers, the number is called through
the trunk's outbound route (or an extension's registered phone) and the two
legs are bridged when it answers. The
customer's leg is the call's `caller` leg (it is the party the contact is
about) and the agent's is its `agent_leg`, as for a queue call, so hold,
hang-up and transfers work the same. The agent is on a call in the ACD from
the first ring to the end (no queue call is offered meanwhile) and then goes
through its queues' wrap-up. While the number rings the agent hears a
ringing tone of our own (early media from the far end is not relayed).

Blind transfers from the API or AMI reuse the IVR transfer mechanics
(`QueueRouting._start_transfer`): the agent's leg is released, the caller
hears hold music while the target rings, and is bridged on answer. When the
target does not answer, the caller goes back to its queue, or is hung up if
it never was in one.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass

import numpy as np

from acd.router import AVAILABLE, NOT_READY, WRAP_UP, AcdError
from ccserver.calls.core import log
from ccserver.calls.leg import Address, CallLog, Leg
from ccserver.calls.model import Call
from ccserver.calls.model import utcnow as _utcnow
from ccserver.calls.routing import QueueRouting
from ccserver.media.player import EncodedAudio
from ccserver.media.sdp import SessionDescription, negotiate_answer
from ccserver.sip.message import Response
from ccserver.sip.uri import NameAddr
from ivr.audio import SAMPLE_RATE, tone

__all__ = ["AGENT_RING_TIMEOUT", "CUSTOMER_RING_TIMEOUT", "NUMBER_PATTERN", "OriginateError",
           "Origination", "OutboundCalls", "failure_reason", "ringback"]  # fmt: skip

#: How long the agent's own phone rings for a click-to-call before it is given up.
AGENT_RING_TIMEOUT = 30.0
#: How long the called number rings before the click-to-call ends as not answered.
CUSTOMER_RING_TIMEOUT = 45.0

#: A number to dial: digits with an optional leading + (E.164), or * and # of a dial string.
NUMBER_PATTERN = r"^\+?[0-9*#]{1,32}$"
_NUMBER = re.compile(NUMBER_PATTERN)

#: Agent states from which a click-to-call may start (not ringing, not talking).
DIAL_STATES = (AVAILABLE, NOT_READY, WRAP_UP)


@functools.cache
def ringback() -> EncodedAudio:
    """The ringing tone the agent hears while the number rings: 425 Hz, 1 s on and
    4 s off (ITU-T E.180 Annex: the cadence of most European networks)."""
    on = tone([425.0], 1.0, level_dbfs=-15.0)
    return EncodedAudio(np.concatenate([on, np.zeros(4 * SAMPLE_RATE, dtype=np.int16)]),
                        "ringback")  # fmt: skip


class OriginateError(Exception):
    """A click-to-call or transfer refused before any phone rang (`status`, `error_id`)."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def failure_reason(status: int) -> str:
    """A final SIP failure as a reason word: busy (486, 600, 603: RFC 3261 §21.4.24,
    §21.6), no-answer (408, 480), rejected (the rest)."""
    if status in (486, 600, 603):
        return "busy"
    if status in (408, 480):
        return "no-answer"
    return "rejected"


@dataclass(eq=False)
class Origination:
    """What a click-to-call is about, kept on its `Call` (`Call.origination`)."""

    agent: str
    number: str
    destination: str  # "extension" or "trunk"
    via: str  # "api" or "ami": who asked
    agent_leg: Leg
    customer_sent: bool = False  # the customer's INVITE went out
    agent_answered: bool = False
    released: bool = False  # the ACD was told the agent's call is over


class OutboundCalls(QueueRouting):
    """Click-to-call and the API's blind transfers on this node."""

    # -- click-to-call ---------------------------------------------------------------
    def _dial_target(self, number: str) -> tuple[str, str, Address]:
        """(kind, request URI, address) for `number`: a registered extension, else the trunk."""
        if number in self.s.extensions:
            bindings = self.reg.lookup(number, self.now())
            if not bindings:
                raise OriginateError(409, "destination-not-registered",
                                     f"extension {number} has no registered phone")  # fmt: skip
            return "extension", bindings[0].contact, bindings[0].source
        route = self._outbound_route(number)
        if route is None:
            raise OriginateError(409, "no-outbound-route",
                                 f"no trunk has an outbound route to call {number}")  # fmt: skip
        return "trunk", *route

    def _check_agent(self, agent: str) -> None:
        state = self.router.agents.get(agent)
        if state is None:
            raise OriginateError(404, "agent-not-found", f"no agent {agent}")
        if state.state not in DIAL_STATES:
            raise OriginateError(409, "agent-busy" if state.state != "logged-out" else
                                 "agent-not-logged-in",
                                 f"agent {agent} is {state.state}")  # fmt: skip

    async def originate(
        self, agent: str, number: str, *, via: str, agent_name: str | None = None,
        ring_timeout: float | None = None,
    ) -> Call:  # fmt: skip
        """Start a click-to-call: ring `agent`'s phone, then `number`. Raises
        `OriginateError` when it cannot start (nothing rang, nothing recorded)."""
        if self.closing:
            raise OriginateError(503, "shutting-down", "the node is shutting down")
        if not _NUMBER.match(number):
            raise OriginateError(422, "invalid-number", f"{number!r} is not a number to dial")
        if number == agent:
            raise OriginateError(422, "invalid-number", "an agent cannot call its own extension")
        self._check_agent(agent)
        bindings = self.reg.lookup(agent, self.now())
        if not bindings:
            raise OriginateError(409, "phone-not-registered",
                                 f"agent {agent} has no registered phone to ring")  # fmt: skip
        kind, target, target_addr = self._dial_target(number)
        agent_ep = await self.ports.open("agent")
        customer_ep = await self.ports.open("customer")
        try:
            # The phones and the agent may have changed during the awaits.
            self._check_agent(agent)
            bindings = self.reg.lookup(agent, self.now())
            if not bindings:
                raise OriginateError(409, "phone-not-registered",
                                     f"agent {agent} has no registered phone to ring")  # fmt: skip
        except OriginateError:
            agent_ep.close()
            customer_ep.close()
            raise
        contact_id = uuid.uuid4().hex
        name = agent_name or agent
        # The agent's phone shows the number it is about to call; the far end
        # sees the agent (there is no outbound caller-id setting).
        to_agent, agent_sdp = self._invite_as(
            contact_id, NameAddr(self.our_uri(number), number), agent,
            bindings[0].contact, bindings[0].source, agent_ep,
        )  # fmt: skip
        to_customer, customer_sdp = self._invite_as(
            contact_id, NameAddr(self.our_uri(agent), name), number, target, target_addr,
            customer_ep,
        )  # fmt: skip
        agent_leg = Leg("uac", agent_ep, to_agent, bindings[0].source, offer=agent_sdp,
                        agent=agent)  # fmt: skip
        customer = Leg("uac", customer_ep, to_customer, target_addr, offer=customer_sdp)
        self.recorder.open_contact(
            contact_id=contact_id,
            caller_number=agent,
            caller_name=name,
            dialed_number=number,
            sip_call_id=to_agent.call_id,
            direction="outbound",
            initiation="click-to-call",
            entry_point=via,
        )
        self.recorder.update(contact_id, agent=agent)
        call = Call(contact_id, customer, CallLog(log, {"call": contact_id[:8]}), agent, number)
        call.state = "dialing-agent"
        call.origination = Origination(agent, number, kind, via, agent_leg)
        self.calls[contact_id] = call
        self._legs[to_agent.call_id] = (call, agent_leg)
        call.ringing[agent] = agent_leg
        try:
            self.acd.dial(agent, self.now(), contact_id)
        except AcdError as exc:  # pragma: no cover - checked above, same loop turn
            raise OriginateError(409, "agent-busy", str(exc)) from None
        self._record_agent_changes()
        self._note(call, "originated", {"agent": agent, "number": number, "destination": kind,
                                        "via": via})  # fmt: skip
        call.log.info("click-to-call: ringing agent %s, then %s %s", agent, kind, number)
        agent_leg.client_tx = self.sip.send_request(
            to_agent, agent_leg.signal_addr, lambda r: self._origin_agent_response(call, r)
        )
        self._note(call, "agent_rung", {"agent": agent, "contact": bindings[0].contact})
        call.ring_timer = self.loop.call_later(
            ring_timeout or AGENT_RING_TIMEOUT, self._origin_timeout, call, agent_leg
        )
        if self.lookup is not None and kind == "trunk":
            task = self.loop.create_task(self._identify(call, number))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return call

    async def _identify(self, call: Call, number: str) -> None:
        """Who the agent is calling, from the customer records (time-bounded), so the
        call view and the contact name the customer as for an inbound call."""
        assert self.lookup is not None
        customer = await self.lookup(number, call.caller.call_id)
        if customer is None or call.state == "ended":
            return
        call.customer = customer
        call.tier = str(customer.tier).lower()
        self.recorder.update(call.contact_id, customer_id=customer.id)
        self._note(call, "customer_identified", {"customer_id": customer.id,
                                                 "agent": call.origination.agent})  # fmt: skip

    def _origin_agent_response(self, call: Call, resp: Response) -> None:
        o: Origination = call.origination
        leg = o.agent_leg
        status = resp.status
        if status < 200:
            self._provisional(call, leg, status, "agent_alerting", {"agent": o.agent})
            return
        if status < 300:
            self._confirm_uac(leg, resp)
            if leg.released or call.state != "dialing-agent":
                self._send_bye(leg)  # answered after we gave up (RFC 3261 §15)
                self._release_leg(leg)
                return
            try:
                assert leg.offer is not None
                audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
            except (ValueError, AssertionError) as exc:
                call.ringing.pop(o.agent, None)
                self._send_bye(leg)
                self._release_leg(leg)
                self._origin_failed(call, "agent", 488, f"unusable answer: {exc}")
                return
            self._cancel_ring_timer(call)
            call.ringing.pop(o.agent, None)
            leg.endpoint.configure(audio)
            call.agent_leg = leg
            o.agent_answered = True
            self._note(call, "agent_answered", {"agent": o.agent, "codec": audio.codec})
            self._dial_originated_customer(call)
            return
        leg.state = "terminated"
        self._release_leg(leg)
        if leg.released or call.state != "dialing-agent":
            return
        call.ringing.pop(o.agent, None)
        self._cancel_ring_timer(call)
        self._origin_failed(call, "agent", status, failure_reason(status))

    def _dial_originated_customer(self, call: Call) -> None:
        o: Origination = call.origination
        leg = call.caller
        call.state = "dialing"
        o.customer_sent = True
        self._legs[leg.call_id] = (call, leg)
        call.ringing[f"number:{o.number}"] = leg
        self.clock.play(o.agent_leg.endpoint, [ringback()], loop=True)
        leg.client_tx = self.sip.send_request(
            leg.invite, leg.signal_addr, lambda r: self._origin_customer_response(call, r)
        )
        self._note(call, "customer_dialed", {"number": o.number, "destination": o.destination,
                                             "agent": o.agent})  # fmt: skip
        call.log.info("agent %s answered: calling %s", o.agent, o.number)
        call.ring_timer = self.loop.call_later(
            CUSTOMER_RING_TIMEOUT, self._origin_timeout, call, leg
        )

    def _origin_customer_response(self, call: Call, resp: Response) -> None:
        o: Origination = call.origination
        leg = call.caller
        status = resp.status
        if status < 200:
            self._provisional(
                call, leg, status, "customer_alerting", {"number": o.number, "agent": o.agent}
            )
            return
        call.ringing.pop(f"number:{o.number}", None)
        if status < 300:
            self._confirm_uac(leg, resp)
            if leg.released or call.state != "dialing":
                self._send_bye(leg)
                self._release_leg(leg)
                return
            try:
                assert leg.offer is not None
                audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
            except (ValueError, AssertionError) as exc:
                self._send_bye(leg)
                self._release_leg(leg)
                self._origin_failed(call, "customer", 488, f"unusable answer: {exc}")
                return
            self._cancel_ring_timer(call)
            agent_leg = o.agent_leg
            leg.endpoint.configure(audio)
            self.clock.stop(agent_leg.endpoint)  # the ringing tone
            leg.endpoint.bridge(agent_leg.endpoint)
            agent_leg.endpoint.bridge(leg.endpoint)
            call.state = "bridged"
            call.answered = True
            self.recorder.update(call.contact_id, answered_at=_utcnow())
            self._note(call, "connected", {"number": o.number, "agent": o.agent,
                                           "codec": audio.codec})  # fmt: skip
            call.log.info("%s answered: bridged to agent %s", o.number, o.agent)
            return
        leg.state = "terminated"
        self._release_leg(leg)
        if leg.released or call.state != "dialing":
            return
        self._cancel_ring_timer(call)
        self._origin_failed(call, "customer", status, failure_reason(status))

    def _origin_timeout(self, call: Call, leg: Leg) -> None:
        """A phone of the click-to-call rang too long: CANCEL it and give up."""
        call.ring_timer = None
        if call.state not in ("dialing-agent", "dialing") or leg.dialog is not None:
            return
        o: Origination = call.origination
        side = "agent" if leg is o.agent_leg else "customer"
        call.ringing.pop(o.agent if side == "agent" else f"number:{o.number}", None)
        leg.released = True
        self._cancel_leg(leg, "no-answer")
        self._origin_failed(call, side, 408, "no-answer")

    def _origin_failed(self, call: Call, side: str, status: int, reason: str) -> None:
        """The agent or the number could not be reached: say why and end the contact."""
        o: Origination = call.origination
        data = {"agent": o.agent, "number": o.number, "status": status, "reason": reason}
        self._note(call, f"{side}_failed", data)
        call.log.info("click-to-call: %s %s failed: %s (%d)", side,
                      o.agent if side == "agent" else o.number, reason, status)  # fmt: skip
        if call.agent_leg is not None:
            self._hangup_leg(call, call.agent_leg, "system", send_bye=True, outcome="failed")
        else:
            self._end_call(call, "system", "failed")

    def _cancel_ring_timer(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _call_ended(self, call: Call, previous: str) -> None:
        """A click-to-call ended: free its unused leg, end the agent's call in the ACD."""
        super()._call_ended(call, previous)
        if call.transfer_target is not None:  # the caller left while the target rang
            target, call.transfer_target = call.transfer_target, None
            self._end_agent_call(target, call)
        o: Origination | None = call.origination
        if o is None or o.released:
            return
        o.released = True
        if not o.customer_sent:
            self._release_leg(call.caller)  # never dialled
        self._end_agent_call(o.agent, call)

    def _end_agent_call(self, ext: str, call: Call) -> None:
        """End `ext`'s call in the ACD (wrap-up) if it is still this one."""
        agent = self.router.agents.get(ext)
        if agent is not None and agent.call_id == call.contact_id:
            self._apply(self.acd.hangup(ext, self.now()))

    # -- blind transfers asked by software -----------------------------------------------
    def blind_transfer(self, call: Call, kind: str, target: str) -> None:
        """Send a connected caller to an extension (`kind` "agent") or a number ("number").

        The caller's agent is released first, as for a transfer to a queue;
        the target is rung with `QueueRouting._start_transfer`. A target agent
        is on this call in the ACD from the first ring, so no queue call is
        offered to it meanwhile.
        """
        if kind == "agent":
            if target not in self.s.extensions:
                raise OriginateError(404, "agent-not-found", f"no extension {target}")
            agent = self.router.agents.get(target)
            if agent is not None and agent.state not in (*DIAL_STATES, "logged-out"):
                raise OriginateError(409, "agent-busy", f"agent {target} is {agent.state}")
            bindings = self.reg.lookup(target, self.now())
            if not bindings:
                raise OriginateError(409, "destination-not-registered",
                                     f"extension {target} has no registered phone")  # fmt: skip
            contact, source = bindings[0].contact, bindings[0].source
        else:
            if not _NUMBER.match(target):
                raise OriginateError(422, "invalid-number", f"{target!r} is not a number to dial")
            route = self._outbound_route(target)
            if route is None:
                raise OriginateError(
                    409, "no-outbound-route", f"no trunk has an outbound route to call {target}"
                )
            contact, source = route
        self._release_agent(call, {"to_" + kind: target})
        call.transfer_target = target
        agent = self.router.agents.get(target) if kind == "agent" else None
        if agent is not None and agent.state in DIAL_STATES:
            self.acd.dial(target, self.now(), call.contact_id)
            self._record_agent_changes()
        self._start_transfer(call, target, contact, source)

    def _release_agent(self, call: Call, note: dict[str, str]) -> None:
        """Take the agent out of a connected call (BYE, ACD wrap-up), the caller stays."""
        leg = call.agent_leg
        if call.state != "bridged" or leg is None:
            raise OriginateError(409, "not-connected", "only a connected call can be transferred")
        call.caller.endpoint.unbridge()
        leg.endpoint.unbridge()
        self._send_bye(leg)
        self._release_leg(leg)
        if leg.agent:
            self._apply(self.acd.hangup(leg.agent, self.now()))
        if call.origination is not None:
            call.origination.released = True  # the agent's ACD call ended just now
        call.agent_leg = None
        call.held_by_control = False
        self._note(call, "transferred", {"from_agent": leg.agent, **note})

    def _transfer_response(self, call: Call, leg: Leg, ext: str, resp: Response) -> None:
        super()._transfer_response(call, leg, ext, resp)
        if call.transfer_target != ext or resp.status < 200:
            return
        if call.state != "bridged" or call.agent_leg is not leg:
            return
        call.transfer_target = None
        agent = self.router.agents.get(ext)
        if agent is not None and agent.call_id == call.contact_id:
            # The agent took the caller: its call until the end (`_end_call` hangs it up).
            leg.agent = ext
            self.recorder.update(call.contact_id, agent=ext)

    def _transfer_failed(self, call: Call, why: str) -> None:
        target = call.transfer_target
        if target is None:
            super()._transfer_failed(call, why)
            return
        call.transfer_target = None
        self._end_agent_call(target, call)
        self.clock.stop(call.caller.endpoint)
        self._note(call, "transfer_failed", {"reason": why})
        call.log.info("transfer failed: %s", why)
        if call.queue is not None and call.queue in self.router.queues:
            self._enqueue(call, call.queue, 0)  # back to the line it came from
        else:
            call.state = "leaving"
            self._hangup_leg(call, call.caller, "system", send_bye=True, outcome="failed")
