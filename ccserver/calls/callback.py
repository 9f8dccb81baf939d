"""Queue callback: the caller hangs up and keeps its place; the platform calls it back.

A waiting caller presses the queue's ``callback_key`` (or overflows to a
``callback`` destination): it hears where it will be called back, is hung up,
and stays in the router's line as a virtual call (`Router.request_callback`).
When its turn comes the router offers it like any call, so the agent's phone
rings and the screen pops as usual; once the agent answers it hears a short
whisper ("callback to ...") while the platform calls the customer through the
trunk's outbound route, and the two are bridged when the customer answers.
All of it is one contact: its initiation becomes ``callback`` and its
timeline shows the request, the offer, the dialling and the connection.

One attempt is made: a customer who is busy or does not answer within
`CALLBACK_RING_TIMEOUT` ends the contact as ``callback-failed`` and the agent
goes to wrap-up (docs/acd.md, Queue callback).
"""

from __future__ import annotations

import re

from acd.agents import AcdError
from acd.decisions import Overflow
from ccserver.calls.leg import Leg
from ccserver.calls.model import Call
from ccserver.calls.model import utcnow as _utcnow
from ccserver.calls.routing import QueueRouting
from ccserver.media.sdp import SessionDescription, negotiate_answer
from ccserver.sip.message import Response, new_tag
from ccserver.sip.uri import NameAddr

#: How long the customer's phone rings before the callback is given up.
CALLBACK_RING_TIMEOUT = 30.0

#: A number the carrier can be asked to call: digits, with an optional leading +.
_DIALABLE = re.compile(r"\+?[0-9]{3,20}")


def spoken_number(number: str) -> str:
    """Digits read one by one ("0 6 1 2"), as people say phone numbers."""
    return " ".join("plus" if ch == "+" else ch for ch in number)


class QueueCallback(QueueRouting):
    """Turns waiting callers into virtual calls and calls them back when an agent is free."""

    # -- the caller asks ---------------------------------------------------------------
    def _queued_digit(self, call: Call, digit: str) -> bool:
        """A key from a waiting caller: True when it was the queue's callback key."""
        key = self.s.queue_callback_key.get(call.queue or "")
        if key is None or digit != key or call.state != "queued" or call.callback_to:
            return False
        self._book_callback(call, "key")
        return True

    def _overflow_to_callback(self, call: Call, d: Overflow) -> None:
        """Max wait passed with a ``callback`` destination: the call back is booked at
        once (the caller already waited long enough to be owed one) and the caller
        keeps its place. A caller we cannot call back keeps waiting instead."""
        if call.state != "queued":
            return  # an agent rings for it meanwhile
        self._book_callback(call, "overflow")

    def _callback_target(self, call: Call) -> tuple[str | None, str]:
        """The number to call back, or None with the reason it cannot be."""
        number = call.callback_number or call.caller_number
        if self.s.outbound is None:
            return None, "no outbound route"
        if not _DIALABLE.fullmatch(number):
            return None, "no number to call back"
        return number, ""

    def _book_callback(self, call: Call, how: str) -> None:
        number, why = self._callback_target(call)
        if number is not None:
            try:
                kept = self.router.request_callback(call.contact_id, self.now(), number)
            except AcdError:
                kept = False
            if not kept:
                number, why = None, "an agent is being offered the call"
        if number is None:
            self._note(call, "callback_refused", {"queue": call.queue, "by": how, "reason": why})
            call.log.info("no callback (%s): caller keeps waiting", why)
            return
        call.callback_to = number
        self._note(call, "callback_requested", {"queue": call.queue, "number": number, "by": how})
        self.recorder.update(
            call.contact_id,
            initiation="callback",
            attributes={**call.attributes, "callback_number": number},
        )
        call.log.info("callback to %s keeps its place in %s", number, call.queue)
        busy = "All our agents are still busy. " if how == "overflow" else ""
        text = f"{busy}We will call you back at {spoken_number(number)}. You keep your place."
        self._spawn(call, self._confirm_callback(call, text))

    async def _confirm_callback(self, call: Call, text: str) -> None:
        """Tell the caller, then hang up its leg; the virtual call stays queued."""
        audio = await self.render(text, call.voice)
        leg = call.caller
        if leg.state == "terminated" or call.callback_to is None:
            return  # the caller hung up first: nothing left to say
        self.clock.stop(leg.endpoint)
        pb = self.clock.play(leg.endpoint, [audio])
        await pb.done
        if leg.state != "terminated" and call.callback_to is not None and not call.answered:
            self._hangup_leg(call, leg, "system", send_bye=True)

    def _queue_leg_gone(self, call: Call, leg: Leg, who: str) -> bool:
        """The caller's leg of a virtual call ends (our BYE after the confirmation, or
        its own): the call stays in line. The agent hanging up while the customer
        is dialled ends the callback."""
        if call.callback_to is not None:
            if leg is call.caller and not call.answered and leg.call_id in self._legs:
                # Only while its leg is up: hanging up a caller already gone
                # (from the API) ends the pending callback as an abandon.
                self._release_leg(leg)
                self._note(call, "caller_left", {"by": who, "callback": call.callback_to})
                call.log.info("caller off the line; callback to %s waits", call.callback_to)
                return True
            if leg is call.agent_leg and call.state == "dialing":
                self._note(call, "callback_failed", {"number": call.callback_to,
                                                     "reason": "agent hung up"})  # fmt: skip
                self._end_call(call, who, "callback-failed")
                return True
        return super()._queue_leg_gone(call, leg, who)

    # -- the agent answered: call the customer -------------------------------------------
    def _callback_answered(self, call: Call, leg: Leg) -> bool:
        """The agent took the virtual call: whisper the number, dial the customer.

        False when the caller is still on the line (its turn came while it
        heard the confirmation): then it is simply connected to the agent.
        """
        assert leg.agent is not None and call.callback_to is not None
        number = call.callback_to
        if call.caller.state != "terminated":
            call.callback_to = None
            self.recorder.update(call.contact_id, initiation="inbound")
            why = "caller still on the line"
            self._note(call, "callback_cancelled", {"number": number, "reason": why})
            return False
        call.agent_leg = leg
        call.state = "dialing"
        self._record_agent_changes()
        self._arm_router()
        self.recorder.update(call.contact_id, agent=leg.agent)
        answered = {"agent": leg.agent, "callback": number, "codec": leg.endpoint.codec}
        self._note(call, "answered", answered)
        call.log.info("agent %s answered the callback; dialling %s", leg.agent, number)
        self._spawn(call, self._whisper(call, leg, f"Callback to {spoken_number(number)}."))
        self._spawn(call, self._dial_callback_customer(call, number))
        return True

    async def _whisper(self, call: Call, leg: Leg, text: str) -> None:
        audio = await self.render(text, call.voice)
        if call.state == "dialing" and call.agent_leg is leg:
            self.clock.play(leg.endpoint, [audio])

    async def _dial_callback_customer(self, call: Call, number: str) -> None:
        if self.s.outbound is None:
            self._callback_failed(call, "no outbound route")
            return
        endpoint = await self.ports.open("callback")
        if call.state != "dialing":
            endpoint.close()
            return
        host, port = self.s.outbound
        invite, sdp = self._invite(call, number, f"sip:{number}@{host}:{port}", (host, port),
                                   endpoint)  # fmt: skip
        # The customer sees the number it called, not its own.
        invite.headers.set(
            "From", str(NameAddr(self.our_uri(call.dialed or None), None, {"tag": new_tag()}))
        )
        leg = Leg("uac", endpoint, invite, (host, port), offer=sdp)
        self._legs[invite.call_id] = (call, leg)
        # With the ringing phones, so an agent hanging up cancels it too.
        call.ringing[f"callback:{number}"] = leg
        self._note(call, "customer_dialed", {"number": number, "via": f"{host}:{port}"})
        leg.client_tx = self.sip.send_request(
            invite, (host, port), lambda r: self._customer_response(call, leg, number, r)
        )
        call.ring_timer = self.loop.call_later(
            CALLBACK_RING_TIMEOUT, self._customer_timeout, call, leg, number
        )

    def _customer_timeout(self, call: Call, leg: Leg, number: str) -> None:
        call.ring_timer = None
        if call.state != "dialing" or leg.state == "confirmed":
            return
        call.ringing.pop(f"callback:{number}", None)
        leg.released = True
        self._cancel_leg(leg, "no-answer")
        self._callback_failed(call, "no answer")

    def _customer_response(self, call: Call, leg: Leg, number: str, resp: Response) -> None:
        status = resp.status
        if status >= 200:
            call.ringing.pop(f"callback:{number}", None)
        if status < 200:
            self._provisional(call, leg, status, "customer_ringing", {"number": number})
            return
        if status >= 300:
            leg.state = "terminated"
            self._release_leg(leg)
            if not leg.released and call.state == "dialing":
                self._callback_failed(call, f"the number answered {status}", status)
            return
        self._confirm_uac(leg, resp)
        agent_leg = call.agent_leg
        try:
            if leg.released or call.state != "dialing" or agent_leg is None:
                raise ValueError("the callback was given up")
            assert leg.offer is not None
            audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
        except (ValueError, AssertionError) as exc:
            self._send_bye(leg)
            self._release_leg(leg)
            if call.state == "dialing":
                self._callback_failed(call, f"unusable answer: {exc}")
            return
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        leg.endpoint.configure(audio)
        self.clock.stop(agent_leg.endpoint)  # end of the whisper
        agent_leg.endpoint.bridge(leg.endpoint)
        leg.endpoint.bridge(agent_leg.endpoint)
        # From here the customer is the call's caller: its BYE, hold and the
        # end of the call are handled as for any inbound caller.
        call.caller = leg
        call.state = "bridged"
        call.answered = True
        self.recorder.update(call.contact_id, answered_at=_utcnow())
        self._note(call, "connected", {"number": number, "agent": agent_leg.agent,
                                       "codec": audio.codec})  # fmt: skip
        call.log.info("customer %s answered; bridged with agent %s", number, agent_leg.agent)

    def _callback_failed(self, call: Call, why: str, status: int | None = None) -> None:
        """The customer could not be reached: the contact ends, the agent wraps up."""
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        data: dict[str, object] = {"number": call.callback_to, "reason": why}
        if status is not None:
            data["status"] = status
        self._note(call, "callback_failed", data)
        call.log.info("callback to %s failed: %s", call.callback_to, why)
        self._end_call(call, "system", "callback-failed")


__all__ = ["CALLBACK_RING_TIMEOUT", "QueueCallback", "spoken_number"]
