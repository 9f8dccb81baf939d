"""What every part of the call service shares: the node's SIP and media handles,
and the mechanics of one SIP leg (answers, 2xx retransmission, ACK, BYE, CANCEL).

The call service is split by feature (`flows` for the IVR, `routing` for the
ACD, `service` for SIP dispatch); each part extends `CallCore`, and the hooks
declared at the end are implemented by the part that owns them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from acd.router import Router
from ccserver.calls.acd_link import LocalAcd
from ccserver.calls.leg import Address, Leg
from ccserver.calls.model import SERVER, Call, CallSettings
from ccserver.events import EventBus
from ccserver.media.endpoint import RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.registration import Registrations
from ccserver.sip.dialog import Dialog, InviteRetransmitter, make_cancel
from ccserver.sip.message import Request, Response, make_response, new_branch
from ccserver.sip.uri import SipUri, Via
from ivr import flow as ivr

log = logging.getLogger("ccserver.calls")


class CallCore:
    """Shared state and leg mechanics of the call service."""

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
        render: Callable[[str, str], Awaitable[EncodedAudio]] | None = None,
        lookup: Callable[[str, str], Awaitable[Any]] | None = None,
    ) -> None:
        self.s = settings
        self.reg = registrations
        self.router = router
        self.acd: LocalAcd = LocalAcd(router)  # ACD events go here (ClusterAcd for a cluster)
        self.ports = ports
        self.clock = clock
        self.recorder = recorder
        self.prompt = prompt
        self.moh = moh
        self.bus = bus or EventBus()
        self._render = render
        self.lookup = lookup  # (caller number, call id) -> Customer | None, time-bounded
        self.lookup_account: Callable[[str, str], Awaitable[Any]] | None = None
        self.speech: Any = None  # ivr.speech.SpeechService once a model is loaded
        self.audio_files: dict[str, EncodedAudio] = {}
        self.sip: Any = None  # SipEndpoint, set by the app after construction
        self.calls: dict[str, Call] = {}  # contact id -> call
        self._legs: dict[str, tuple[Call, Leg]] = {}  # SIP Call-ID -> (call, leg)
        self._router_timer: asyncio.TimerHandle | None = None
        self._reg_timer: asyncio.TimerHandle | None = None
        self._wrap_started: dict[str, tuple[str, float]] = {}  # agent -> (contact, since)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

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
        leg.retransmit_timer = self.loop.call_at(deadline, self._retransmit_due, leg)

    def _retransmit_due(self, leg: Leg) -> None:
        leg.retransmit_timer = None
        rt = leg.retransmitter
        if rt is None:
            return
        out = rt.handle_timer(self.now())
        if out is None and leg.bye_pending:
            # Ended before the ACK, which never came: RFC 3261 §15 lets the
            # BYE go once the 2xx retransmissions have timed out.
            self._send_pending_bye(leg)
            return
        if out is None:
            # No ACK for 64*T1: the dialog is dead (RFC 3261 §13.3.1.4).
            found = self._legs.get(leg.call_id)
            if found is not None:
                self._hangup_leg(found[0], leg, "system", send_bye=True)
            return
        for data, to in out:
            self.sip.send_raw(data, to)
        self._arm_retransmit(leg)

    def _send_ack(self, leg: Leg, resp: Response) -> None:
        assert leg.dialog is not None
        ack = leg.dialog.create_ack(resp.cseq[0], via_host=self.s.host, via_port=self.port)
        self.sip.send_stateless(ack, leg.signal_addr)

    def _send_bye(self, leg: Leg) -> None:
        """End the leg's dialog. A leg we answered whose 2xx is not ACKed yet
        keeps its BYE until the ACK comes or the 2xx retransmissions time out
        (RFC 3261 §15): the leg is over for the call at once, and stays known
        to the SIP side (`_legs`, the retransmitter) until the BYE is out."""
        if leg.dialog is None or leg.state == "terminated":
            return
        rt = leg.retransmitter
        if leg.role == "uas" and leg.state == "early" and rt is not None and not rt.request_bye():
            leg.bye_pending = True
            leg.state = "terminated"
            return
        leg.stop_retransmit()
        self._bye_now(leg)

    def _bye_now(self, leg: Leg) -> None:
        assert leg.dialog is not None
        bye = leg.dialog.create_request("BYE", via_host=self.s.host, via_port=self.port)
        bye.headers.set("Via", str(self._via(leg.signal_addr)))
        leg.state = "terminated"
        self.sip.send_request(bye, leg.signal_addr, lambda r: None)

    def _send_pending_bye(self, leg: Leg) -> None:
        """The ACK came (or the 2xx timed out) for a leg ended before it: the
        held-back BYE goes now, unless the peer's own BYE ended the dialog first."""
        if not leg.bye_pending:
            return
        leg.bye_pending = False
        leg.stop_retransmit()
        if leg.dialog is not None and leg.dialog.state != "terminated":
            self._bye_now(leg)
        found = self._legs.get(leg.call_id)
        if found is not None and found[1] is leg:
            self._legs.pop(leg.call_id)

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

    def _provisional(
        self, call: Call, leg: Leg, status: int, step: str | None = None, data: Any = None
    ) -> None:
        """A 1xx on a leg we ring: a CANCEL held back for it goes now (RFC 3261 §9.1),
        and the first 180/183 is noted on the timeline as `step`."""
        leg.provisional = True
        if leg.cancel_pending:
            self._send_cancel(leg)
        elif step is not None and status in (180, 183) and not leg.ringing:
            leg.ringing = True
            self._note(call, step, data)

    def _confirm_uac(self, leg: Leg, resp: Response) -> None:
        """A 2xx on a leg we rang: its dialog is set up and ACKed (RFC 3261 §13.2.2.4)."""
        leg.dialog = Dialog.from_uac(leg.invite, resp)
        leg.state = "confirmed"
        self._send_ack(leg, resp)

    def _release_leg(self, leg: Leg) -> None:
        self.clock.stop(leg.endpoint)
        leg.endpoint.close()
        if leg.bye_pending:
            return  # the 2xx goes on until the ACK; `_send_pending_bye` lets go
        leg.stop_retransmit()
        self._legs.pop(leg.call_id, None)

    def _spawn(self, call: Call, coro: Any) -> None:
        """Run a coroutine for the call; the service owns it and cancels it on close."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def render(self, text: str, voice: str) -> EncodedAudio:
        """Audio for text only known during the call (announcements, balances)."""
        ready: EncodedAudio | None = self.prompt(text, voice)
        if ready is not None:
            return ready
        if self._render is None:
            raise RuntimeError("no prompt renderer configured")
        return await self._render(text, voice)

    # -- hooks implemented by the feature parts ----------------------------------
    def _flow_actions(self, call: Call, actions: list[ivr.Action]) -> None:
        raise NotImplementedError

    def _enqueue(
        self, call: Call, queue: str, priority: int, skills: dict[str, int] | None = None
    ) -> None:
        raise NotImplementedError

    def _start_entry(self, call: Call, entry: tuple[str, str]) -> None:
        raise NotImplementedError

    def _run_flow(self, call: Call, name: str) -> None:
        raise NotImplementedError

    def _feed(self, call: Call, event: Any) -> None:
        raise NotImplementedError

    def _transfer_to_extension(self, call: Call, ext: str) -> None:
        raise NotImplementedError

    def _transfer_failed(self, call: Call, why: str) -> None:
        raise NotImplementedError

    def _transfer_to_number(self, call: Call, number: str) -> None:
        raise NotImplementedError

    def _hangup_leg(
        self, call: Call, leg: Leg, who: str, *, send_bye: bool, outcome: str | None = None
    ) -> None:
        raise NotImplementedError

    def _end_call(self, call: Call, who: str, outcome: str) -> None:
        raise NotImplementedError

    # hold accounting (ccserver.calls.hold)
    def _hold_begins(self, call: Call, holder: str) -> None:
        raise NotImplementedError

    def _hold_ends(self, call: Call, holder: str | None) -> None:
        raise NotImplementedError

    # queue callback and voicemail overflow (ccserver.calls.callback, .voicemail)
    def _queued_digit(self, call: Call, digit: str) -> bool:
        """A key from a caller outside the IVR; True when it was acted on."""
        return False

    def _queue_leg_gone(self, call: Call, leg: Leg, who: str) -> bool:
        """A leg ended; True when a feature took care of it (the call goes on)."""
        return False

    def _recording_stopped(self, call: Call) -> None:
        """A recording ended (its WAV, if any, is attached to the contact)."""

    def _callback_answered(self, call: Call, leg: Leg) -> bool:
        raise NotImplementedError

    def _overflow_to_callback(self, call: Call, d: Any) -> None:
        raise NotImplementedError

    def _overflow_to_voicemail(self, call: Call, d: Any) -> None:
        raise NotImplementedError

    def _call_ended(self, call: Call, previous: str) -> None:
        """After `_end_call`: a feature releases what it held for the call (`previous`
        is the state the call was in)."""
