"""Extra legs of a connected call: a supervisor, a conference party, a consult target.

A connected call has two legs (caller and agent) relayed packet by packet.
Supervision, conference and consult transfer each add one more leg that we
originate (B2BUA, RFC 7092 §3.1) to a registered extension or, through the
trunk's outbound route, to an external number. This module rings that leg,
follows its answer or failure, and decides the call's media from who is
connected: two talking parties are relayed directly, three or more go
through a `MixBridge` with a hearing relation, and a caller held for a
consultation hears hold music while the agent talks to the target.

The features (`monitor`, `conference`, `consult`) only say what they want;
`_rewire` is the one place that touches the media of a call with side legs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccserver.calls.leg import Address, Leg
from ccserver.calls.model import Call
from ccserver.calls.routing import TRANSFER_RING_TIMEOUT, QueueRouting
from ccserver.media.mixbridge import MixBridge, MixClock
from ccserver.media.sdp import SessionDescription, negotiate_answer
from ccserver.sip.message import Response

__all__ = ["FeatureRefused", "SideLeg", "SideLegs", "SideState", "has_side_legs", "side_of"]

#: Who hears the supervisor in each monitoring mode (besides the supervisor
#: hearing every talking party): nobody, the agent only, everyone.
MONITOR_MODES = ("listen", "whisper", "barge")


class FeatureRefused(Exception):
    """A call feature refused: HTTP-style status, machine-readable id, details."""

    def __init__(
        self, status: int, error_id: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.details = details or {}


@dataclass(eq=False)
class SideLeg:
    """One extra leg: what it is for, whom it calls, and whether it is connected."""

    kind: str  # monitor | conference | consult
    target: str  # the extension or number called
    leg: Leg | None = None  # None while its RTP port is being opened
    connected: bool = False
    mode: str = ""  # monitor mode
    by: str = ""  # who asked for it (supervisor's extension, or the agent)
    timer: Any = None  # ring timeout handle
    on_answer: Callable[[], None] | None = None
    on_failed: Callable[[str], None] | None = None
    on_left: Callable[[], None] | None = None


@dataclass(eq=False)
class SideState:
    """A call's side legs by kind, and its mix while three or more are connected."""

    legs: dict[str, SideLeg] = field(default_factory=dict)
    mix: MixBridge | None = None


def has_side_legs(call: Call) -> bool:
    """Whether a supervisor, conference party or consult target is ringing or connected:
    the call's media is then `SideLegs._rewire`'s, not hold's or transfer's."""
    return call.side is not None and bool(call.side.legs)


def side_of(call: Call) -> SideState:
    if call.side is None:
        call.side = SideState()
    state: SideState = call.side
    return state


class SideLegs(QueueRouting):
    """Ringing, answering and hanging up side legs; the media of calls that have them."""

    _mix_clock: MixClock | None = None  # the node's, made with the first mixed call

    @property
    def mix_clock(self) -> MixClock:
        if self._mix_clock is None:
            self._mix_clock = MixClock()
        return self._mix_clock

    # -- refusals shared by the features ---------------------------------------------
    def _connected_call(self, contact_id: str) -> Call:
        call = self.calls.get(contact_id)
        if call is None:
            raise FeatureRefused(
                404, "call-not-found", f"no active call {contact_id}", {"contact_id": contact_id}
            )
        if call.state != "bridged" or call.agent_leg is None:
            raise FeatureRefused(
                409,
                "not-connected",
                "the call is not connected to an agent",
                {"contact_id": contact_id, "state": call.state},
            )
        if call.held_by_control or call.caller.on_hold or call.agent_leg.on_hold:
            raise FeatureRefused(409, "on-hold", "the call is on hold", {"contact_id": contact_id})
        return call

    def _destination(self, kind: str, target: str) -> tuple[str, Address]:
        """(contact URI, signalling address) of an extension's phone or an external number."""
        if kind == "extension":
            bindings = self.reg.lookup(target, self.now())
            if target not in self.s.extensions:
                raise FeatureRefused(
                    404, "extension-not-found", f"no extension {target}", {"extension": target}
                )
            if not bindings:
                raise FeatureRefused(
                    409,
                    "phone-not-registered",
                    f"extension {target} has no registered phone",
                    {"extension": target},
                )
            return bindings[0].contact, bindings[0].source
        if self.s.outbound is None:
            raise FeatureRefused(
                409,
                "no-outbound-route",
                f"no trunk has an outbound route to call {target}",
                {"number": target},
            )
        host, port = self.s.outbound
        return f"sip:{target}@{host}:{port}", (host, port)

    # -- ringing a side leg ---------------------------------------------------------------
    def _dial_side(self, call: Call, side: SideLeg, contact: str, source: Address) -> None:
        """Open a port and ring `side.target`; its answer or failure calls back `side`."""
        side_of(call).legs[side.kind] = side
        self._note(call, f"{side.kind}_ringing", {"target": side.target, "by": side.by})
        task = self.loop.create_task(self._ring_side(call, side, contact, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ring_side(self, call: Call, side: SideLeg, contact: str, source: Address) -> None:
        endpoint = await self.ports.open(side.kind)
        if call.state == "ended" or side_of(call).legs.get(side.kind) is not side:
            endpoint.close()  # given up while the port opened
            return
        invite, sdp = self._invite(call, side.target, contact, source, endpoint)
        leg = Leg("uac", endpoint, invite, source, offer=sdp)
        side.leg = leg
        self._legs[invite.call_id] = (call, leg)
        call.log.info("%s: ringing %s at %s", side.kind, side.target, contact)
        leg.client_tx = self.sip.send_request(
            invite, source, lambda r: self._side_response(call, side, r)
        )
        side.timer = self.loop.call_later(TRANSFER_RING_TIMEOUT, self._side_timeout, call, side)

    def _side_timeout(self, call: Call, side: SideLeg) -> None:
        side.timer = None
        if side.connected or side.leg is None:
            return
        side.leg.released = True
        self._cancel_leg(side.leg, "no-answer")
        self._side_failed(call, side, f"{side.target} did not answer")

    def _side_response(self, call: Call, side: SideLeg, resp: Response) -> None:
        leg = side.leg
        assert leg is not None
        status = resp.status
        if status < 200:
            self._provisional(call, leg, status)
            return
        if status >= 300:
            leg.state = "terminated"
            self._release_leg(leg)
            if not leg.released:
                self._side_failed(call, side, f"{side.target} answered {status}")
            return
        self._confirm_uac(leg, resp)
        wanted = (
            not leg.released
            and call.state == "bridged"
            and side_of(call).legs.get(side.kind) is side
        )
        try:
            if not wanted:
                raise ValueError("no longer wanted")
            assert leg.offer is not None
            audio = negotiate_answer(leg.offer, SessionDescription.parse(resp.body))
        except (ValueError, AssertionError) as exc:
            # Answered after we gave up (RFC 3261 §15: ACK, then BYE) or unusable SDP.
            self._send_bye(leg)
            self._release_leg(leg)
            if wanted:
                self._side_failed(call, side, f"unusable answer: {exc}")
            return
        self._cancel_side_timer(side)
        leg.endpoint.configure(audio)
        side.connected = True
        call.log.info("%s: %s answered (%s)", side.kind, side.target, audio.codec)
        if side.on_answer is not None:
            side.on_answer()
        self._rewire(call)

    def _side_failed(self, call: Call, side: SideLeg, why: str) -> None:
        self._cancel_side_timer(side)
        state = side_of(call)
        if state.legs.get(side.kind) is side:
            del state.legs[side.kind]
        self._note(call, f"{side.kind}_failed", {"target": side.target, "reason": why})
        call.log.info("%s failed: %s", side.kind, why)
        if side.on_failed is not None:
            side.on_failed(why)
        self._rewire(call)

    @staticmethod
    def _cancel_side_timer(side: SideLeg) -> None:
        if side.timer is not None:
            side.timer.cancel()
            side.timer = None

    def _drop_side(self, call: Call, side: SideLeg) -> None:
        """Hang up or stop ringing a side leg from our side (no note, no rewire)."""
        self._cancel_side_timer(side)
        state = side_of(call)
        if state.legs.get(side.kind) is side:
            del state.legs[side.kind]
        leg = side.leg
        if leg is None:
            return
        if side.connected or leg.dialog is not None:
            self._send_bye(leg)
            self._release_leg(leg)
        elif leg.state != "terminated":
            leg.released = True
            self._cancel_leg(leg, "dropped")  # its final response releases it

    # -- hooks called by the call service ----------------------------------------------------
    def _side_hangup(self, call: Call, leg: Leg, send_bye: bool) -> bool:
        """A leg of a call with side legs hung up; True if handled here (the call goes on)."""
        state: SideState | None = call.side
        if state is None or call.state != "bridged":
            return False
        for side in list(state.legs.values()):
            if side.leg is leg:
                if send_bye:
                    self._send_bye(leg)
                leg.state = "terminated"
                self._release_leg(leg)
                self._cancel_side_timer(side)
                del state.legs[side.kind]
                if side.on_left is not None:
                    side.on_left()
                self._rewire(call)
                return True
        if leg is call.agent_leg:
            return self._agent_left(call, leg, send_bye)
        return False

    def _agent_left(self, call: Call, leg: Leg, send_bye: bool) -> bool:
        """The agent hung up while side legs exist; True if the call goes on without it:
        a connected consult target takes the caller (the transfer completes), a
        connected conference party stays with the caller."""
        state = side_of(call)
        consult = state.legs.get("consult")
        if consult is not None and consult.connected:
            self._consult_complete(call, agent_hung_up=True)
            return True
        conf = state.legs.get("conference")
        if conf is not None and conf.connected:
            self._conference_takes_over(call)
            return True
        return False

    # -- hooks implemented by the features ---------------------------------------------------
    def _consult_complete(self, call: Call, agent_hung_up: bool = False) -> None:
        raise NotImplementedError

    def _conference_takes_over(self, call: Call) -> None:
        raise NotImplementedError

    def _end_side_legs(self, call: Call) -> None:
        """The call ends: every side leg is hung up or cancelled, the mix stops."""
        state: SideState | None = call.side
        if state is None:
            return
        if state.mix is not None:
            state.mix.close()
            state.mix = None
        for side in list(state.legs.values()):
            if side.connected:
                self._note(call, f"{side.kind}_left", {"target": side.target, "by": "call-ended"})
            self._drop_side(call, side)

    # -- the media of a call with side legs -----------------------------------------------------
    def _rewire(self, call: Call) -> None:
        """Set the call's media from who is connected (the one place that does so)."""
        state = side_of(call)
        agent = call.agent_leg
        if call.state != "bridged" or agent is None:
            self._stop_mix(state)
            return
        consult = state.legs.get("consult")
        if consult is not None:
            # The caller waits with hold music; the agent talks to the target alone.
            self._stop_mix(state)
            call.caller.endpoint.unbridge()
            agent.endpoint.unbridge()
            if not self.clock.is_playing(call.caller.endpoint):
                self.clock.play(call.caller.endpoint, [self.moh], loop=True)
            if consult.connected and consult.leg is not None:
                agent.endpoint.bridge(consult.leg.endpoint)
                consult.leg.endpoint.bridge(agent.endpoint)
            return
        if call.held_by_control:
            self._stop_mix(state)
            return  # hold owns the media (control.hold / resume)
        self.clock.stop(call.caller.endpoint)
        talkers = {"caller": call.caller, "agent": agent}
        conf = state.legs.get("conference")
        if conf is not None and conf.connected and conf.leg is not None:
            talkers["conference"] = conf.leg
        monitor = state.legs.get("monitor")
        listener = monitor.leg if monitor is not None and monitor.connected else None
        if listener is None and len(talkers) == 2:
            # Two parties: the packet relay, as fast as an ordinary call.
            self._stop_mix(state)
            call.caller.endpoint.bridge(agent.endpoint)
            agent.endpoint.bridge(call.caller.endpoint)
            return
        hears = {name: set(talkers) - {name} for name in talkers}
        endpoints = {name: leg.endpoint for name, leg in talkers.items()}
        if listener is not None and monitor is not None:
            endpoints["supervisor"] = listener.endpoint
            hears["supervisor"] = set(talkers)
            if monitor.mode == "whisper":
                hears["agent"].add("supervisor")
            elif monitor.mode == "barge":
                for name in talkers:
                    hears[name].add("supervisor")
        if state.mix is None:
            state.mix = MixBridge(self.mix_clock, call.contact_id[:8])
        state.mix.update(endpoints, hears)
        call.log.info("mixing %s", {k: sorted(v) for k, v in sorted(hears.items())})

    @staticmethod
    def _stop_mix(state: SideState) -> None:
        if state.mix is not None:
            state.mix.close()
            state.mix = None

    def side_view(self, call: Call) -> dict[str, Any]:
        """The side legs of a call, for the API's call view."""
        state: SideState | None = call.side
        out: dict[str, Any] = {
            "monitor": None,
            "conference": None,
            "consult": None,
            "mixing": False,
        }
        if state is None:
            return out
        for kind, side in state.legs.items():
            view: dict[str, Any] = {"target": side.target, "connected": side.connected}
            if kind == "monitor":
                view["mode"] = side.mode
            out[kind] = view
        out["mixing"] = state.mix is not None
        return out
