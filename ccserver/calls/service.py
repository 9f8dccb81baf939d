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
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from acd.router import Offer, Router
from ccserver.calls.leg import Address, CallLog, Leg
from ccserver.events import EventBus
from ccserver.media.endpoint import RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.media.sdp import NotAcceptable, SessionDescription, answer, negotiate_answer, offer
from ccserver.registration import Registrations
from ccserver.sip.dialog import Dialog, InviteRetransmitter, make_cancel, make_dialog_response
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, make_response, new_branch, new_call_id, new_tag
from ccserver.sip.transaction import ServerTransaction
from ccserver.sip.uri import NameAddr, SipUri, Via
from ivr import flow as ivr

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO"
SERVER = "ccserver"


@dataclass
class CallSettings:
    """What the call service needs from the configuration, decoupled from its schema."""

    host: str  # our address in Via, Contact and SDP
    codecs: Sequence[str]
    trunk_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
    dids: dict[str, tuple[str, str]]  # number -> ("flow" | "queue", name)
    flows: dict[str, Any]
    queue_ring_timeout: dict[str, float]
    extensions: set[str] = field(default_factory=set)
    node: str = "node1"


@dataclass(eq=False)
class Call:
    """One inbound contact: the caller's leg, its flow, its queue, its agent leg."""

    contact_id: str
    caller: Leg
    log: CallLog
    caller_number: str
    dialed: str = ""
    state: str = "ivr"  # ivr | queued | ringing | bridged | ended
    flow: ivr.FlowRun | None = None
    flow_timer: asyncio.TimerHandle | None = None
    queue: str | None = None
    agent_leg: Leg | None = None
    ring_timer: asyncio.TimerHandle | None = None
    answered: bool = False
    holds: int = 0
    hold_seconds: float = 0.0


class CallService:
    """SIP request handler of the node (see `ccserver.sip_endpoint.RequestHandler`)."""

    def __init__(
        self,
        settings: CallSettings,
        registrations: Registrations,
        router: Router,
        ports: RtpPorts,
        clock: MediaClock,
        recorder: Any,
        prompt: Callable[[str, str], EncodedAudio | None],
        moh: EncodedAudio,
        bus: EventBus | None = None,
    ) -> None:
        self.s = settings
        self.reg = registrations
        self.router = router
        self.ports = ports
        self.clock = clock
        self.recorder = recorder
        self.prompt = prompt
        self.moh = moh
        self.bus = bus or EventBus()
        self.sip: Any = None  # SipEndpoint, set by the app after construction
        self.calls: dict[str, Call] = {}  # contact id -> call
        self._legs: dict[str, tuple[Call, Leg]] = {}  # SIP Call-ID -> (call, leg)
        self._router_timer: asyncio.TimerHandle | None = None
        self._reg_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    # -- helpers ---------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    @property
    def port(self) -> int:
        return int(self.sip.address[1])

    def our_uri(self, user: str | None = None) -> SipUri:
        return SipUri(user=user, host=self.s.host, port=self.port)

    def _via(self, addr: Address) -> Via:
        transport = "TCP" if self.sip.transports.is_reliable(addr) else "UDP"
        return Via(transport, self.s.host, self.port, {"branch": new_branch(), "rport": None})

    def _respond(self, request: Request, status: int, reason: str | None = None, **kw: Any) -> None:
        resp = make_response(request, status, reason, **kw)
        resp.headers.add("Server", SERVER)
        self.sip.send_response(resp)

    def _note(self, call: Call, type: str, data: dict[str, Any] | None = None) -> None:
        """One step of a call: into the contact's timeline and onto the event bus."""
        data = data or {}
        self.recorder.event(call.contact_id, type, data)
        leg = call.agent_leg
        self.bus.emit(
            f"call.{type}",
            contact_id=call.contact_id,
            agent=data.get("agent") or (leg.agent if leg is not None else None),
            queue=call.queue,
            data={"caller": call.caller_number, "dialed": call.dialed, **data},
        )

    # -- RequestHandler ----------------------------------------------------------
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

    # -- new calls ------------------------------------------------------------
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
        self._legs[request.call_id] = (call, leg)
        endpoint.on_dtmf = lambda d: self._on_digit(call, d, "rfc4733")

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

    def _start_entry(self, call: Call, entry: tuple[str, str]) -> None:
        """Start the DID's flow, or queue the caller directly."""
        if entry[0] == "flow":
            run = ivr.FlowRun(self.s.flows[entry[1]], entry[1])
            call.flow = run
            self._flow_actions(call, run.start(self.now()))
        else:
            self._enqueue(call, entry[1], 0)

    def _start_retransmit(self, leg: Leg, resp: Response, addr: Address) -> None:
        # RFC 3261 §13.3.1.4: the 2xx is retransmitted until the ACK even over
        # a reliable transport, since hops further on may be unreliable.
        leg.retransmitter = InviteRetransmitter(resp, addr, self.now())
        self._arm_retransmit(leg)

    def _arm_retransmit(self, leg: Leg) -> None:
        rt = leg.retransmitter
        if rt is None or rt.done:
            return
        deadline = rt.get_timer()
        if deadline is None:
            return

        def fire() -> None:
            leg.retransmit_timer = None
            out = rt.handle_timer(self.now())
            if out is None:
                # No ACK for 64*T1: the dialog is dead (RFC 3261 §13.3.1.4).
                found = self._legs.get(leg.call_id)
                if found is not None:
                    self._hangup_leg(found[0], leg, "system", send_bye=True)
                return
            for data, to in out:
                self.sip.send_raw(data, to)
            self._arm_retransmit(leg)

        leg.retransmit_timer = self.loop.call_at(deadline, fire)

    # -- IVR --------------------------------------------------------------------
    def _flow_actions(self, call: Call, actions: list[ivr.Action]) -> None:
        for action in actions:
            if call.state == "ended":
                return
            if isinstance(action, ivr.Step):
                self._note(call, action.type, action.data)
            elif isinstance(action, ivr.Play):
                self._play_prompt(call, action)
            elif isinstance(action, ivr.StopPrompt):
                self.clock.stop(call.caller.endpoint)
            elif isinstance(action, ivr.Wait):
                self._arm_flow(call, action.deadline)
            elif isinstance(action, ivr.Enqueue):
                self._cancel_flow_timer(call)
                self._enqueue(call, action.queue, action.priority)
            elif isinstance(action, ivr.Hangup):
                self._cancel_flow_timer(call)
                self._hangup_leg(
                    call, call.caller, "system", send_bye=True, outcome="completed-ivr"
                )

    def _play_prompt(self, call: Call, action: ivr.Play) -> None:
        audio = self.prompt(action.text, action.voice)
        if audio is None:
            call.log.warning("prompt not rendered: %r", action.text)
            self.loop.call_soon(self._prompt_done, call, True)
            return
        pb = self.clock.play(call.caller.endpoint, [audio])
        pb.done.add_done_callback(lambda f: self._prompt_done(call, f.result()))

    def _prompt_done(self, call: Call, completed: bool) -> None:
        if not completed or call.flow is None or call.state != "ivr":
            return
        self._note(call, "prompt_played", {"node": call.flow.node_name})
        self._flow_actions(call, call.flow.prompt_finished(self.now()))

    def _arm_flow(self, call: Call, deadline: float) -> None:
        self._cancel_flow_timer(call)

        def fire() -> None:
            call.flow_timer = None
            if call.flow is not None and call.state == "ivr":
                self._flow_actions(call, call.flow.handle_timer(self.now()))

        call.flow_timer = self.loop.call_at(deadline, fire)

    def _cancel_flow_timer(self, call: Call) -> None:
        if call.flow_timer is not None:
            call.flow_timer.cancel()
            call.flow_timer = None

    def _on_digit(self, call: Call, digit: str, method: str) -> None:
        call.log.info("digit %s (%s)", digit, method)
        if call.state == "ivr" and call.flow is not None:
            # The flow knows the key, not how it came: the timeline's digit
            # entry says which (RFC 4733 event or SIP INFO), as it does outside
            # the IVR.
            actions = [
                ivr.Step(a.type, {**a.data, "method": method})
                if isinstance(a, ivr.Step) and a.type == "digit"
                else a
                for a in call.flow.digit(digit, self.now())
            ]
            self._flow_actions(call, actions)
        else:
            self._note(call, "digit", {"digit": digit, "method": method, "state": call.state})

    # -- ACD ----------------------------------------------------------------------
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

    def _cancel_leg(self, leg: Leg, why: str) -> None:
        leg.cancelled = why
        if leg.provisional:
            self._send_cancel(leg)
        else:
            # RFC 3261 §9.1: no CANCEL before a provisional response; it goes
            # out when the first 1xx arrives (or the INVITE times out).
            leg.cancel_pending = True

    def _send_cancel(self, leg: Leg) -> None:
        leg.cancel_pending = False
        self.sip.send_request(make_cancel(leg.invite), leg.signal_addr, lambda r: None)

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

    def _send_ack(self, leg: Leg, resp: Response) -> None:
        assert leg.dialog is not None
        ack = leg.dialog.create_ack(resp.cseq[0], via_host=self.s.host, via_port=self.port)
        self.sip.send_stateless(ack, leg.signal_addr)

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

    # -- in-dialog --------------------------------------------------------------
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
            who = "caller" if leg.role == "uas" else "agent"
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
        now = self.now()
        other = call.caller if leg is call.agent_leg else call.agent_leg
        call.log.info(
            "%s %s", "caller" if leg.role == "uas" else "agent", "holds" if hold else "resumes"
        )
        if hold:
            leg.hold_started = now
            call.holds += 1
            self._note(call, "hold", {"by": "caller" if leg.role == "uas" else "agent"})
            if other is not None and call.state == "bridged":
                leg.endpoint.unbridge()
                self.clock.play(other.endpoint, [self.moh], loop=True)
        else:
            if leg.hold_started is not None:
                call.hold_seconds += now - leg.hold_started
                leg.hold_started = None
            self._note(call, "resume", {"by": "caller" if leg.role == "uas" else "agent"})
            if other is not None and call.state == "bridged":
                self.clock.stop(other.endpoint)
                leg.endpoint.bridge(other.endpoint)
        self.recorder.update(
            call.contact_id, holds=call.holds, hold_seconds=round(call.hold_seconds, 3)
        )

    # -- ending -------------------------------------------------------------------
    def _send_bye(self, leg: Leg) -> None:
        if leg.dialog is None or leg.state == "terminated":
            return
        leg.stop_retransmit()
        bye = leg.dialog.create_request("BYE", via_host=self.s.host, via_port=self.port)
        bye.headers.set("Via", str(self._via(leg.signal_addr)))
        leg.state = "terminated"
        self.sip.send_request(bye, leg.signal_addr, lambda r: None)

    def _release_leg(self, leg: Leg) -> None:
        leg.stop_retransmit()
        self.clock.stop(leg.endpoint)
        leg.endpoint.close()
        self._legs.pop(leg.call_id, None)

    def _hangup_leg(
        self, call: Call, leg: Leg, who: str, *, send_bye: bool, outcome: str | None = None
    ) -> None:
        """One side is gone: take down the other and close the contact."""
        if leg.state == "terminated" and not send_bye:
            return
        if send_bye:
            self._send_bye(leg)
        leg.state = "terminated"
        if leg.hold_started is not None:
            call.hold_seconds += self.now() - leg.hold_started
            leg.hold_started = None
        if call.answered:
            result = outcome or "answered"
        elif call.state in ("queued", "ringing"):
            result = outcome or "abandoned"
        else:
            result = outcome or ("abandoned" if who == "caller" else "failed")
        self._end_call(call, who, result)

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
        if previous in ("queued", "ringing"):
            ringing_agent = self.router.remove(call.contact_id, now)
            if ringing_agent is not None:
                self._record_agent_changes()
            if agent_leg is not None and agent_leg.state != "confirmed":
                self._cancel_leg(agent_leg, "caller-gone")
            self._note(call, "abandoned", {"queue": call.queue})
        for leg in (call.caller, agent_leg):
            if leg is None:
                continue
            if leg.state == "confirmed" or (leg.state == "early" and leg.dialog is not None):
                self._send_bye(leg)
            if leg.role == "uac" and leg.state != "terminated" and leg.dialog is None:
                continue  # still ringing: the CANCEL's final response releases it
            self._release_leg(leg)
        if previous == "bridged" and agent_leg is not None and agent_leg.agent is not None:
            self._apply(self.router.hangup(agent_leg.agent, now))
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

    # -- registration timer -----------------------------------------------------
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
        for handle in (self._router_timer, self._reg_timer):
            if handle is not None:
                handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)
