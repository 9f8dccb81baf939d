"""The B2BUA: answers callers, runs their IVR flow, queues them, rings agents, bridges.

The platform is a back-to-back user agent (RFC 7092 §3.1): the caller's leg
ends here and the agent's leg is a new dialog that we originate, so the
platform keeps control of both (hold, transfer, recording, supervision) and
each leg negotiates its own codec. Media between the legs goes through the
node's relay (`ccserver.media.endpoint`).

This module owns the SIP request dispatch of the node; the decisions it
delegates: who gets the call (`acd.router`), what the caller hears and
presses (`ivr.flow`), what is recorded (`ccserver.storage.recorder`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from ccserver.calls.callback import QueueCallback
from ccserver.calls.conference import Conferencing
from ccserver.calls.consult import ConsultTransfer
from ccserver.calls.flows import FlowSteps
from ccserver.calls.hold import HoldAccounting, phone_holder
from ccserver.calls.leg import Address, CallLog, Leg
from ccserver.calls.model import ALLOW, SERVER, Call, CallSettings
from ccserver.calls.monitor import Supervision
from ccserver.calls.outbound import OutboundCalls
from ccserver.calls.routing import QueueRouting
from ccserver.calls.sidelegs import has_side_legs
from ccserver.calls.voicemail import QueueVoicemail
from ccserver.media.sdp import NotAcceptable, SessionDescription, answer, negotiate_answer, offer
from ccserver.sip.dialog import Dialog, make_dialog_response
from ccserver.sip.message import Request, Response, make_response, new_tag
from ccserver.sip.transaction import ServerTransaction
from ivr.inband import G711InbandDtmf

__all__ = ["Call", "CallService", "CallSettings"]

log = logging.getLogger(__name__)


class CallService(
    OutboundCalls,
    Supervision,
    Conferencing,
    ConsultTransfer,
    QueueVoicemail,
    QueueCallback,
    FlowSteps,
    HoldAccounting,
    QueueRouting,
):
    """SIP request handler of the node (see `ccserver.sip_endpoint.RequestHandler`)."""

    def on_request(self, request: Request, addr: Address, tx: ServerTransaction) -> None:
        method = request.method
        mf = request.max_forwards
        if mf is not None and mf <= 0 and method not in ("ACK", "CANCEL"):
            self._respond(request, 483)
            return
        has_to_tag = request.to.tag is not None
        if method == "REGISTER":
            transport = "tcp" if self.sip.transports.is_reliable(addr) else "udp"
            self.sip.send_response(self.reg.register(request, addr, transport, self.now()))
            self._arm_registrations()
        elif method == "OPTIONS":
            self._respond(request, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif has_to_tag:
            self._in_dialog(request, addr)
        elif method == "INVITE":
            self._new_invite(request, addr, tx)
        elif method in ("BYE", "INFO"):
            self._respond(request, 481)
        else:
            self._respond(request, 405, headers=[("Allow", ALLOW)])

    def on_ack(self, request: Request, addr: Address) -> None:
        found = self._legs.get(request.call_id)
        if found is None:
            return
        call, leg = found
        if leg.dialog is not None and leg.dialog.matches(request):
            if leg.bye_pending:
                self._send_pending_bye(leg)  # ended before this ACK (RFC 3261 §15)
                return
            leg.stop_retransmit()
            if leg.state == "early":
                leg.state = "confirmed"
            if leg.pending_offer is not None:
                # We offered in the 2xx (late offer or an SDP-less re-INVITE);
                # the ACK must carry the answer (RFC 3264 §4, RFC 3261 §13.2.1).
                offer_sent, leg.pending_offer = leg.pending_offer, None
                try:
                    audio = negotiate_answer(offer_sent, SessionDescription.parse(request.body))
                except ValueError as exc:
                    call.log.warning("no usable SDP answer in the ACK: %s", exc)
                    self._hangup_leg(call, leg, "system", send_bye=True, outcome="failed")
                    return
                leg.endpoint.configure(audio)
                self._set_hold(call, leg, audio.on_hold)
            start, leg.on_confirmed = leg.on_confirmed, None
            if start is not None:
                start()

    def on_cancel(self, invite: ServerTransaction, cancel: Request) -> None:
        found = self._legs.get(cancel.call_id)
        if found is None:
            return
        call, leg = found
        if leg.role == "uas" and leg.state == "early" and not call.answered and leg.dialog is None:
            self._respond(leg.invite, 487)
            self._end_call(call, "caller", "abandoned")

    def on_stray_response(self, response: Response) -> None:
        # A retransmitted 2xx to our INVITE: the ACK got lost, send it again
        # (RFC 3261 §13.2.2.4).
        found = self._legs.get(response.call_id)
        if found is None or response.status // 100 != 2 or response.cseq[1] != "INVITE":
            return
        _, leg = found
        if leg.role == "uac" and leg.dialog is not None:
            self._send_ack(leg, response)

    def on_server_timeout(self, tx: ServerTransaction) -> None:
        pass

    def _new_invite(self, request: Request, addr: Address, tx: ServerTransaction) -> None:
        if self.closing:
            self._respond(request, 503, headers=[("Retry-After", "5")])
            return
        require = request.headers.get_all("Require")
        if require:
            self._respond(request, 420, headers=[("Unsupported", ", ".join(require))])
            return
        if not self._trusted(addr):
            _, refusal = self.reg.authenticate(request, self.now(), proxy=True)
            if refusal is not None:
                self.sip.send_response(refusal)
                return
        dialed = request.uri.user or ""
        entry = self.s.dids.get(dialed)
        if entry is None:
            self._respond(request, 404, "Unknown Number")
            return
        remote: SessionDescription | None = None  # no body: a late offer (RFC 3261 §13.2.1)
        if request.body:
            if request.content_type != "application/sdp":
                self._respond(request, 415, headers=[("Accept", "application/sdp")])
                return
            try:
                remote = SessionDescription.parse(request.body)
            except ValueError as exc:
                self._respond(request, 400, f"Bad SDP: {exc}"[:120])
                return
        task = self.loop.create_task(self._accept(request, addr, tx, remote, dialed, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _trusted(self, addr: Address) -> bool:
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return False
        return any(ip in net for net in self.s.trunk_networks)

    async def _accept(
        self,
        request: Request,
        addr: Address,
        tx: ServerTransaction,
        remote: SessionDescription | None,
        dialed: str,
        entry: tuple[str, str],
    ) -> None:
        endpoint = await self.ports.open("caller")
        leg = Leg("uas", endpoint, request, addr, server_tx=tx)
        codec = "pending"
        if remote is None:
            # Late offer: we offer in the 200 and the ACK carries the answer.
            sdp = offer(
                local_ip=self.s.host,
                local_port=endpoint.local[1],
                codecs=self.s.codecs,
                session_id=leg.sdp_session,
            )
            leg.pending_offer = sdp
        else:
            try:
                sdp, audio = answer(
                    remote,
                    local_ip=self.s.host,
                    local_port=endpoint.local[1],
                    codecs=self.s.codecs,
                    session_id=leg.sdp_session,
                )
            except NotAcceptable as exc:
                endpoint.close()
                self._respond(request, 488, str(exc)[:120] or None)
                return
            endpoint.configure(audio)
            codec = audio.codec
        frm = request.from_
        caller_number = frm.uri.user or "anonymous"
        # Who is calling, before the first prompt: the tier sets the queue
        # priority and the record pops on the agent's screen. Time-bounded.
        customer = None
        if self.lookup is not None and caller_number != "anonymous":
            customer = await self.lookup(caller_number, request.call_id)
        contact_id = self.recorder.open_contact(
            caller_number=caller_number,
            caller_name=frm.display,
            dialed_number=dialed,
            sip_call_id=request.call_id,
            entry_point=entry[1],
        )
        call = Call(contact_id, leg, CallLog(log, {"call": contact_id[:8]}), caller_number, dialed)
        self.bus.emit(
            "call.arrived",
            contact_id=contact_id,
            data={
                "caller": caller_number,
                "caller_name": frm.display,
                "dialed": dialed,
                "entry": {"kind": entry[0], "name": entry[1]},
                "sip_call_id": request.call_id,
            },
        )
        self.calls[contact_id] = call
        if customer is not None:
            call.customer = customer
            call.tier = str(customer.tier).lower()
            self.recorder.update(contact_id, customer_id=customer.id, caller_name=customer.name)
        self._legs[request.call_id] = (call, leg)
        endpoint.on_dtmf = lambda d: self._on_digit(call, d, "rfc4733")
        if remote is not None and endpoint.dtmf_pt is None:
            # No telephone-event offered: the keys come as tones in the audio
            # (ITU-T Q.23), as from some trunks.
            # Batched, and silence never decoded: cheap on every packet (ivr/inband.py).
            detector = G711InbandDtmf()

            def inband(payload: bytes, codec: str) -> None:
                for key in detector.feed(payload, codec):
                    self._on_digit(call, key, "inband")

            endpoint.listeners.append(inband)

        # Answer at once: the IVR talks to the caller (RFC 3261 §13.3.1.4).
        resp = make_dialog_response(
            request,
            200,
            to_tag=new_tag(),
            contact=self.our_uri(),
            headers=[("Allow", ALLOW), ("Server", SERVER), ("Content-Type", "application/sdp")],
            body=sdp.to_bytes(),
        )
        leg.dialog = Dialog.from_uas(request, resp, self.our_uri())
        leg.state = "early"  # answered, waiting for the ACK
        self.sip.send_response(resp)
        self._start_retransmit(leg, resp, addr)
        self._note(
            call,
            "accepted",
            {"by": "ivr" if entry[0] == "flow" else "queue", "codec": codec},
        )
        call.log.info("call from %s to %s accepted (%s)", caller_number, dialed, codec)
        if leg.pending_offer is not None:
            # Nothing can be played before the ACK tells us where the media goes.
            leg.on_confirmed = lambda: self._start_entry(call, entry)
        else:
            self._start_entry(call, entry)

    def _in_dialog(self, request: Request, addr: Address) -> None:
        found = self._legs.get(request.call_id)
        if found is None or found[1].dialog is None or not found[1].dialog.matches(request):
            self._respond(request, 481)
            return
        call, leg = found
        assert leg.dialog is not None
        error = leg.dialog.receive_request(request)
        if error is not None:
            self._respond(request, error)
            return
        method = request.method
        if method == "BYE":
            self._respond(request, 200)
            self._send_pending_bye(leg)  # the peer ended it first: ours is not needed
            who = "caller" if leg is call.caller else "agent"
            self._hangup_leg(call, leg, who, send_bye=False)
        elif method == "INVITE":
            self._reinvite(call, leg, request, addr)
        elif method == "INFO":
            self._info(call, leg, request)
        elif method == "OPTIONS":
            self._respond(request, 200, headers=[("Allow", ALLOW)])
        else:
            self._respond(request, 405, headers=[("Allow", ALLOW)])

    def _info(self, call: Call, leg: Leg, request: Request) -> None:
        if request.content_type == "application/dtmf-relay":
            for line in request.body.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "signal" and value.strip():
                    digit = value.strip()[0].upper()
                    self._respond(request, 200)
                    if leg.role == "uas":
                        self._on_digit(call, digit, "sip-info")
                    return
        self._respond(request, 415 if request.body else 200)

    def _reinvite(self, call: Call, leg: Leg, request: Request, addr: Address) -> None:
        if not request.body:
            # A re-INVITE without an offer: we offer in the 2xx (RFC 3261
            # §14.2); the ACK brings the answer.
            leg.sdp_version += 1
            ours = offer(
                local_ip=self.s.host,
                local_port=leg.endpoint.local[1],
                codecs=[leg.endpoint.codec],
                dtmf_payload_type=leg.endpoint.dtmf_pt,
                session_id=leg.sdp_session,
                session_version=leg.sdp_version,
            )
            leg.pending_offer = ours
            resp = make_response(
                request,
                200,
                headers=[("Contact", f"<{self.our_uri()}>"), ("Content-Type", "application/sdp")],
                body=ours.to_bytes(),
            )
            self.sip.send_response(resp)
            self._start_retransmit(leg, resp, addr)
            return
        try:
            remote = SessionDescription.parse(request.body)
            sdp, audio = answer(
                remote,
                local_ip=self.s.host,
                local_port=leg.endpoint.local[1],
                codecs=self.s.codecs,
                session_id=leg.sdp_session,
                session_version=leg.sdp_version + 1,
            )
        except NotAcceptable as exc:
            self._respond(request, 488, str(exc)[:120] or None)
            return
        except ValueError as exc:
            self._respond(request, 400, f"Bad SDP: {exc}"[:120])
            return
        leg.sdp_version += 1
        leg.endpoint.configure(audio)
        resp = make_response(
            request,
            200,
            headers=[("Contact", f"<{self.our_uri()}>"), ("Content-Type", "application/sdp")],
            body=sdp.to_bytes(),
        )
        self.sip.send_response(resp)
        self._start_retransmit(leg, resp, addr)
        self._set_hold(call, leg, audio.on_hold)

    def _set_hold(self, call: Call, leg: Leg, hold: bool) -> None:
        if hold == leg.on_hold:
            return
        leg.on_hold = hold
        other = call.caller if leg is call.agent_leg else call.agent_leg
        call.log.info(
            "%s %s", "caller" if leg is call.caller else "agent", "holds" if hold else "resumes"
        )
        if hold:
            self._hold_begins(call, phone_holder(leg))
            self._note(call, "hold", {"by": "caller" if leg is call.caller else "agent"})
            # With side legs the mix (or consult) owns the media; a holding phone
            # is simply sent nothing (RFC 3264 §8.4).
            if other is not None and call.state == "bridged" and not has_side_legs(call):
                leg.endpoint.unbridge()
                self.clock.play(other.endpoint, [self.moh], loop=True)
        else:
            self._hold_ends(call, phone_holder(leg))
            self._note(call, "resume", {"by": "caller" if leg is call.caller else "agent"})
            if call.held_by_control:
                pass  # still held from the agent's software: its resume reconnects them
            elif other is not None and call.state == "bridged" and not has_side_legs(call):
                self.clock.stop(other.endpoint)
                leg.endpoint.bridge(other.endpoint)

    def _hangup_leg(
        self, call: Call, leg: Leg, who: str, *, send_bye: bool, outcome: str | None = None
    ) -> None:
        """One side is gone: take down the other and close the contact."""
        if leg.state == "terminated" and not send_bye:
            return
        if self._side_hangup(call, leg, send_bye):
            return  # a supervisor, conference party or consult target: the call goes on
        if send_bye:
            self._send_bye(leg)
        leg.state = "terminated"
        if leg.on_hold:
            self._hold_ends(call, phone_holder(leg))  # a phone gone holds nothing
        if self._queue_leg_gone(call, leg, who):
            return  # a queue callback or a voicemail goes on, or ended its own way
        if (
            who == "agent"
            and leg is call.agent_leg
            and call.flow is not None
            and call.flow.wants_survey
            and call.state == "bridged"
        ):
            self._survey(call, leg)
            return
        if call.survey_after and who == "system":
            who = "agent"  # the survey ran because the agent hung up
        if call.answered:
            result = "answered" if outcome in (None, "completed-ivr") else outcome
        elif call.state in ("queued", "ringing"):
            result = outcome or "abandoned"
        else:
            result = outcome or ("abandoned" if who == "caller" else "failed")
        self._end_call(call, who, result)

    def _survey(self, call: Call, agent_leg: Leg) -> None:
        """The agent hung up: the caller stays for the flow's satisfaction survey."""
        assert call.flow is not None
        call.caller.endpoint.unbridge()
        agent_leg.endpoint.unbridge()
        self._release_leg(agent_leg)
        if agent_leg.agent is not None:
            self._apply(self.acd.hangup(agent_leg.agent, self.now()))
        call.state = "ivr"
        call.survey_after = True
        self._note(call, "agent_hung_up", {"agent": agent_leg.agent})
        self._flow_actions(call, call.flow.agent_hung_up(self.now()))

    def _end_call(self, call: Call, who: str, outcome: str) -> None:
        if call.state == "ended":
            return
        previous = call.state
        call.state = "ended"
        self._cancel_flow_timer(call)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        now = self.now()
        agent_leg = call.agent_leg
        # Phones still ringing for the caller (agents, or a transfer target) stop.
        self._stop_ringing(call, "caller-gone")
        self._end_side_legs(call)
        if previous in ("queued", "ringing"):
            departure = self.acd.abandon(call.contact_id, now)
            self._record_agent_changes()
            if departure is not None:
                self._note(
                    call,
                    "abandoned",
                    {
                        "queue": departure.queue,
                        "waited": round(departure.waited, 3),
                        "position": departure.position,
                    },
                )
        for leg in (call.caller, agent_leg):
            if leg is None:
                continue
            if leg.state == "confirmed" or (leg.state == "early" and leg.dialog is not None):
                self._send_bye(leg)
            if leg.role == "uac" and leg.state != "terminated" and leg.dialog is None:
                continue  # still ringing: the CANCEL's final response releases it
            self._release_leg(leg)
        if previous in ("bridged", "dialing") and agent_leg is not None and agent_leg.agent:
            self._apply(self.acd.hangup(agent_leg.agent, now))
        self._hold_ends(call, None)
        self.recorder.update(
            call.contact_id, holds=call.holds, hold_seconds=round(call.hold_seconds, 3)
        )
        self.recorder.close_contact(call.contact_id, outcome=outcome, disconnect_reason=who)
        self.bus.emit(
            "call.ended",
            contact_id=call.contact_id,
            agent=agent_leg.agent if agent_leg is not None else None,
            queue=call.queue,
            data={
                "caller": call.caller_number,
                "dialed": call.dialed,
                "outcome": outcome,
                "disconnect_reason": who,
            },
        )
        call.log.info("ended: %s (%s hung up)", outcome, who)
        self.calls.pop(call.contact_id, None)
        self._call_ended(call, previous)

    def _arm_registrations(self) -> None:
        if self._reg_timer is not None:
            self._reg_timer.cancel()
            self._reg_timer = None
        deadline = self.reg.location.get_timer()
        if deadline is not None:

            def fire() -> None:
                self._reg_timer = None
                self.reg.expire(self.now())
                self._arm_registrations()

            self._reg_timer = self.loop.call_at(deadline + 0.001, fire)

    async def close(self) -> None:
        """Hang up every call (BYE both legs) and stop the timers."""
        self.closing = True
        for call in list(self.calls.values()):
            self._end_call(call, "system", "interrupted")
        for _, leg in list(self._legs.values()):
            # Nobody will wait for these ACKs: better a BYE now than a dialog
            # the peer keeps open.
            self._send_pending_bye(leg)
        for handle in (self._router_timer, self._reg_timer):
            if handle is not None:
                handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
