"""Bus events as Asterisk channels and AMI events, without I/O.

A call on this platform is one contact with a caller leg and, once routed,
agent legs. A CRM built for Asterisk expects channels instead: the caller
is ``PJSIP/trunk-<n>``, each agent phone rung is ``PJSIP/<ext>-<n>``, all
sharing the caller's Uniqueid as Linkedid, and every channel event carries
the standard header block (Channel, ChannelState, ChannelStateDesc,
CallerIDNum, CallerIDName, ConnectedLineNum, ConnectedLineName, Language,
AccountCode, Context, Exten, Priority, Uniqueid, Linkedid). Events that
involve two channels (DialBegin, AgentCalled, AgentConnect) repeat the block
for the second one with the ``Dest`` prefix, as Asterisk does.

`ChannelTracker.handle(event)` takes one bus event and returns the AMI
events it means, in order; it keeps the channels for the Status and
CoreShowChannels actions and the channel variables of Getvar/Setvar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccserver.events import Event
from cti.ami.protocol import clean

__all__ = ["STATE_DESC", "AmiEvent", "Channel", "ChannelTracker", "event_class"]

log = logging.getLogger(__name__)

# Asterisk's channel states (ast_state2str) for the ones a queue call passes through.
DOWN, RING, RINGING, UP = 0, 4, 5, 6
STATE_DESC = {DOWN: "Down", RING: "Ring", RINGING: "Ringing", UP: "Up"}

# Q.850 causes as Asterisk names them in Hangup events (causes.h).
NORMAL_CLEARING = (16, "Normal Clearing")
USER_BUSY = (17, "User busy")
NO_ANSWER = (19, "User alerting, no answer")
CALL_REJECTED = (21, "Call Rejected")
ANSWERED_ELSEWHERE = (26, "Answered elsewhere")

# Device states (ast_device_state) reported as QueueMember Status.
DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_UNAVAILABLE, DEVICE_RINGING = 1, 2, 5, 6
AGENT_DEVICE_STATE = {
    "logged-out": DEVICE_UNAVAILABLE,
    "available": DEVICE_NOT_INUSE,
    "reserved": DEVICE_RINGING,
    "on-call": DEVICE_INUSE,
    "wrap-up": DEVICE_NOT_INUSE,
    "not-ready": DEVICE_NOT_INUSE,
}

_CALL_EVENTS = frozenset(
    "Newchannel Newstate DialBegin DialEnd BridgeEnter BridgeLeave Hold Unhold Hangup VarSet"
    " OriginateResponse".split()
)  # fmt: skip


def event_class(name: str) -> str:
    """The manager.conf read class an event belongs to (as in Asterisk's docs)."""
    if name in _CALL_EVENTS:
        return "call"
    if name.startswith(("Queue", "Agent")):
        return "agent"
    return "system"


@dataclass(frozen=True, slots=True)
class AmiEvent:
    """One event to push to sessions: its name, read class and headers after ``Event:``."""

    name: str
    headers: tuple[tuple[str, str], ...]

    @property
    def klass(self) -> str:
        return event_class(self.name)

    def pairs(self) -> list[tuple[str, str]]:
        return [("Event", self.name), *self.headers]

    def get(self, key: str) -> str | None:
        for k, v in self.headers:
            if k == key:
                return v
        return None


@dataclass(slots=True)
class Channel:
    """One leg as a CRM sees it."""

    name: str
    uniqueid: str
    linkedid: str
    contact_id: str
    caller_num: str
    caller_name: str
    exten: str
    context: str
    created: float
    state: int = DOWN
    connected_num: str = ""
    connected_name: str = ""
    agent: str | None = None
    answered: float | None = None
    variables: dict[str, str] = field(default_factory=dict)

    def header(self, prefix: str = "") -> list[tuple[str, str]]:
        """The standard channel block; ``prefix="Dest"`` for the second channel of an event."""
        block = [
            ("Channel", self.name),
            ("ChannelState", str(self.state)),
            ("ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            ("CallerIDNum", self.caller_num or "<unknown>"),
            ("CallerIDName", self.caller_name or "<unknown>"),
            ("ConnectedLineNum", self.connected_num or "<unknown>"),
            ("ConnectedLineName", self.connected_name or "<unknown>"),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", self.context),
            ("Exten", self.exten),
            ("Priority", "1"),
            ("Uniqueid", self.uniqueid),
            ("Linkedid", self.linkedid),
        ]
        return [(prefix + k, clean(v)) for k, v in block]


@dataclass(slots=True)
class _Call:
    caller: Channel
    queue: str | None = None
    joined: float | None = None
    original_position: int = 0
    dialing: dict[str, tuple[Channel, float]] = field(default_factory=dict)
    """Agent channels ringing, with when they were offered."""
    connected: Channel | None = None
    ring_time: float = 0.0
    hold_time: float = 0.0
    """Seconds the caller waited in queue before the agent answered."""
    originated: bool = False
    """A click-to-call: `caller` is the agent's channel, the number is dialled from it."""
    cause: tuple[int, str] = NORMAL_CLEARING
    """The first channel's hangup cause."""


class ChannelTracker:
    """Turns the bus's call and agent events into Asterisk channels and AMI events.

    ``queues_of(agent)`` names the queues an agent is a member of (for
    QueueMemberStatus/QueueMemberPause); ``member_name(agent)`` the agent's
    display name.
    """

    def __init__(
        self,
        queues_of: Callable[[str], list[str]] = lambda agent: [],
        member_name: Callable[[str], str] = lambda agent: agent,
        *,
        trunk: str = "trunk",
        context: str = "from-trunk",
        agent_context: str = "from-queue",
    ) -> None:
        self.queues_of = queues_of
        self.member_name = member_name
        self.trunk = trunk
        self.context = context
        self.agent_context = agent_context
        self._seq = 0
        self._calls: dict[str, _Call] = {}
        self._lines: dict[str, list[str]] = {}  # queue -> contact ids, in join order

    # -- views --------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        """Every live channel, callers first, in creation order."""
        out: list[Channel] = []
        for call in self._calls.values():
            out.append(call.caller)
            if call.connected is not None:
                out.append(call.connected)
            out.extend(ch for ch, _ in call.dialing.values())
        return out

    def find(self, name: str) -> Channel | None:
        """The live channel called ``name`` (exact, or case-insensitive)."""
        lowered = name.lower()
        for ch in self.channels():
            if ch.name == name or ch.name.lower() == lowered:
                return ch
        return None

    def caller_channel(self, contact_id: str) -> Channel | None:
        call = self._calls.get(contact_id)
        return call.caller if call is not None else None

    def bridged_with(self, ch: Channel) -> Channel | None:
        call = self._calls.get(ch.contact_id)
        if call is None or call.connected is None:
            return None
        return call.connected if ch is call.caller else call.caller

    def waiting(self, queue: str) -> list[tuple[int, Channel, float]]:
        """(position, caller channel, joined at) of each caller in ``queue``'s line."""
        out = []
        for pos, cid in enumerate(self._lines.get(queue, []), start=1):
            call = self._calls.get(cid)
            if call is not None:
                out.append((pos, call.caller, call.joined or call.caller.created))
        return out

    # -- events -------------------------------------------------------------------
    def _channel(self, tech_name: str, contact_id: str, at: float, linkedid: str | None,
                 **kw: Any) -> Channel:  # fmt: skip
        self._seq += 1
        uniqueid = f"{int(at)}.{self._seq}"
        return Channel(
            name=f"PJSIP/{tech_name}-{self._seq:08x}",
            uniqueid=uniqueid,
            linkedid=linkedid or uniqueid,
            contact_id=contact_id,
            created=at,
            **kw,
        )

    def handle(self, event: Event) -> list[AmiEvent]:
        """The AMI events ``event`` means, in the order a CRM expects them."""
        out: list[AmiEvent] = []
        kind = event.type
        if kind.startswith("agent."):
            if kind == "agent.state" and event.agent is not None:
                self._agent_state(event, out)
            return out
        cid = event.contact_id
        if not kind.startswith("call.") or cid is None:
            return out
        handler = getattr(self, "_on_" + kind[5:], None)
        if kind == "call.arrived":
            self._on_arrived(event, cid, out)
            return out
        if kind == "call.originated":
            self._on_originated(event, cid, out)
            return out
        call = self._calls.get(cid)
        if call is None or handler is None:
            return out
        handler(event, call, out)
        return out

    @staticmethod
    def _emit(out: list[AmiEvent], name: str, *blocks: list[tuple[str, str]]) -> None:
        headers: list[tuple[str, str]] = []
        for block in blocks:
            headers.extend((k, clean(v)) for k, v in block)
        out.append(AmiEvent(name, tuple(headers)))

    def _on_arrived(self, ev: Event, cid: str, out: list[AmiEvent]) -> None:
        d = ev.data
        caller = self._channel(
            self.trunk,
            cid,
            ev.at,
            None,
            caller_num=str(d.get("caller") or ""),
            caller_name=str(d.get("caller_name") or ""),
            exten=str(d.get("dialed") or ""),
            context=self.context,
            state=RING,
        )
        caller.variables["SIPCALLID"] = str(d.get("sip_call_id") or "")
        self._calls[cid] = _Call(caller)
        self._emit(out, "Newchannel", caller.header())

    def _on_accepted(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._newstate(call.caller, UP, ev.at, out)

    def _newstate(self, ch: Channel, state: int, at: float, out: list[AmiEvent]) -> None:
        if ch.state == state:
            return
        ch.state = state
        if state == UP and ch.answered is None:
            ch.answered = at
        self._emit(out, "Newstate", ch.header())

    def _on_queued(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        queue = str(ev.data.get("queue") or ev.queue or "")
        line = self._lines.setdefault(queue, [])
        cid = call.caller.contact_id
        if cid not in line:
            line.append(cid)
        call.queue = queue
        call.joined = ev.at
        call.original_position = line.index(cid) + 1
        call.caller.variables["QUEUENAME"] = queue
        self._emit(out, "QueueCallerJoin", call.caller.header(), [
            ("Queue", queue),
            ("Position", str(call.original_position)),
            ("Count", str(len(line))),
        ])  # fmt: skip

    def _leave_line(self, call: _Call) -> int:
        """Take the caller out of its queue's line; returns the position it had (0 if none)."""
        if call.queue is None:
            return 0
        line = self._lines.get(call.queue, [])
        cid = call.caller.contact_id
        if cid not in line:
            return 0
        pos = line.index(cid) + 1
        line.remove(cid)
        return pos

    def _member(self, agent: str) -> list[tuple[str, str]]:
        return [("Interface", f"PJSIP/{agent}"), ("MemberName", self.member_name(agent))]

    def _on_offered(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        agent = str(ev.data.get("agent") or ev.agent or "")
        if not agent or agent in call.dialing:
            return
        queue = str(ev.data.get("queue") or call.queue or "")
        caller = call.caller
        dest = self._channel(
            agent,
            caller.contact_id,
            ev.at,
            caller.linkedid,
            caller_num=agent,
            caller_name=self.member_name(agent),
            exten=agent,
            context=self.agent_context,
            connected_num=caller.caller_num,
            connected_name=caller.caller_name,
            agent=agent,
        )
        caller.connected_num, caller.connected_name = agent, self.member_name(agent)
        call.dialing[agent] = (dest, ev.at)
        self._emit(out, "Newchannel", dest.header())
        self._emit(out, "AgentCalled", caller.header(), dest.header("Dest"),
                   [("Queue", queue), *self._member(agent)])  # fmt: skip
        self._emit(out, "DialBegin", caller.header(), dest.header("Dest"),
                   [("DialString", agent)])  # fmt: skip

    def _on_ringing(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        agent = ev.data.get("agent") or ev.agent
        if agent in call.dialing:
            self._newstate(call.dialing[str(agent)][0], RINGING, ev.at, out)

    def _dial_end(self, call: _Call, dest: Channel, status: str, out: list[AmiEvent]) -> None:
        self._emit(out, "DialEnd", call.caller.header(), dest.header("Dest"),
                   [("DialStatus", status)])  # fmt: skip

    def _hangup(self, ch: Channel, cause: tuple[int, str], out: list[AmiEvent]) -> None:
        self._emit(out, "Hangup", ch.header(), [("Cause", str(cause[0])), ("Cause-txt", cause[1])])

    def _on_answered(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        agent = str(ev.data.get("agent") or ev.agent or "")
        entry = call.dialing.pop(agent, None)
        if entry is None:
            return
        dest, offered = entry
        caller = call.caller
        self._newstate(dest, UP, ev.at, out)
        self._dial_end(call, dest, "ANSWER", out)
        for other, _ in list(call.dialing.values()):  # ring-all: the others stop ringing
            self._dial_end(call, other, "CANCEL", out)
            self._hangup(other, ANSWERED_ELSEWHERE, out)
        call.dialing.clear()
        queue = call.queue or ""
        call.hold_time = ev.at - (call.joined if call.joined is not None else caller.created)
        call.ring_time = ev.at - offered
        call.connected = dest
        caller.connected_num, caller.connected_name = dest.caller_num, dest.caller_name
        pos = self._leave_line(call)
        if pos:
            self._emit(out, "QueueCallerLeave", caller.header(), [
                ("Queue", queue), ("Position", str(pos)),
                ("Count", str(len(self._lines.get(queue, [])))),
            ])  # fmt: skip
        self._emit(out, "AgentConnect", caller.header(), dest.header("Dest"), [
            ("Queue", queue), *self._member(agent),
            ("HoldTime", str(round(call.hold_time))),
            ("RingTime", str(round(call.ring_time))),
        ])  # fmt: skip
        bridge = [
            ("BridgeUniqueid", caller.contact_id),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
        ]
        self._emit(out, "BridgeEnter", bridge, [("BridgeNumChannels", "1")], caller.header())
        self._emit(out, "BridgeEnter", bridge, [("BridgeNumChannels", "2")], dest.header())

    def _ring_failed(self, ev: Event, call: _Call, out: list[AmiEvent], status: str,
                     cause: tuple[int, str]) -> None:  # fmt: skip
        agent = str(ev.data.get("agent") or ev.agent or "")
        entry = call.dialing.pop(agent, None)
        if entry is None:
            return
        dest, offered = entry
        self._dial_end(call, dest, status, out)
        self._emit(out, "AgentRingNoAnswer", call.caller.header(), dest.header("Dest"), [
            ("Queue", call.queue or ""), *self._member(agent),
            ("RingTime", str(round((ev.at - offered) * 1000))),  # milliseconds, as Asterisk
        ])  # fmt: skip
        self._hangup(dest, cause, out)

    def _on_no_answer(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._ring_failed(ev, call, out, "NOANSWER", NO_ANSWER)

    def _on_declined(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._ring_failed(ev, call, out, "BUSY", USER_BUSY)

    def _on_hold(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._emit(out, "Hold", call.caller.header(), [("MusicClass", "default")])

    def _on_resume(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._emit(out, "Unhold", call.caller.header())

    def _end_bridge(self, ev: Event, call: _Call, reason: str, out: list[AmiEvent]) -> None:
        """The agent leaves the caller: BridgeLeave both, AgentComplete, the agent's Hangup."""
        dest = call.connected
        if dest is None:
            return
        caller = call.caller
        bridge = [
            ("BridgeUniqueid", caller.contact_id),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
        ]
        first, second = (caller, dest) if reason == "caller" else (dest, caller)
        self._emit(out, "BridgeLeave", bridge, [("BridgeNumChannels", "1")], first.header())
        self._emit(out, "BridgeLeave", bridge, [("BridgeNumChannels", "0")], second.header())
        talk = ev.at - (dest.answered if dest.answered is not None else ev.at)
        if call.originated:
            self._hangup(dest, NORMAL_CLEARING, out)
            call.connected = None
            return
        self._emit(out, "AgentComplete", caller.header(), dest.header("Dest"), [
            ("Queue", call.queue or ""), *self._member(dest.agent or ""),
            ("HoldTime", str(round(call.hold_time))),
            ("TalkTime", str(round(talk))),
            ("Reason", reason),
        ])  # fmt: skip
        self._hangup(dest, NORMAL_CLEARING, out)
        call.connected = None

    def _on_transferred(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._end_bridge(ev, call, "transfer", out)

    def _on_agent_hung_up(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._end_bridge(ev, call, "agent", out)

    def _cancel_dialing(self, call: _Call, out: list[AmiEvent]) -> None:
        for dest, _ in list(call.dialing.values()):
            self._dial_end(call, dest, "CANCEL", out)
            self._hangup(dest, NORMAL_CLEARING, out)
        call.dialing.clear()

    def _on_abandoned(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        queue = str(ev.data.get("queue") or call.queue or "")
        pos = self._leave_line(call)
        position = ev.data.get("position") or pos or call.original_position
        waited = ev.data.get("waited")
        if waited is None:
            waited = ev.at - (call.joined or call.caller.created)
        self._cancel_dialing(call, out)
        self._emit(out, "QueueCallerAbandon", call.caller.header(), [
            ("Queue", queue), ("Position", str(position)),
            ("OriginalPosition", str(call.original_position or position)),
            ("HoldTime", str(round(float(waited)))),
        ])  # fmt: skip
        self._emit(out, "QueueCallerLeave", call.caller.header(), [
            ("Queue", queue), ("Position", str(position)),
            ("Count", str(len(self._lines.get(queue, [])))),
        ])  # fmt: skip

    def _on_ended(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        who = str(ev.data.get("disconnect_reason") or "caller")
        self._end_bridge(ev, call, "agent" if who == "agent" else "caller", out)
        self._cancel_dialing(call, out)
        self._leave_line(call)
        self._hangup(call.caller, call.cause, out)
        self._calls.pop(call.caller.contact_id, None)

    # -- click-to-call: the agent's channel first, the number dialled from it ---------
    def _on_originated(self, ev: Event, cid: str, out: list[AmiEvent]) -> None:
        d = ev.data
        agent = str(d.get("agent") or ev.agent or "")
        number = str(d.get("number") or "")
        ch = self._channel(
            agent,
            cid,
            ev.at,
            None,
            caller_num=agent,
            caller_name=self.member_name(agent),
            exten=number,
            context=self.agent_context,
            connected_num=number,
            agent=agent,
        )
        self._calls[cid] = _Call(ch, originated=True)
        self._emit(out, "Newchannel", ch.header())

    def _on_agent_alerting(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._newstate(call.caller, RINGING, ev.at, out)

    def _on_agent_answered(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        self._newstate(call.caller, UP, ev.at, out)

    def _on_agent_failed(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        reason = ev.data.get("reason")
        call.cause = {"no-answer": NO_ANSWER, "busy": USER_BUSY}.get(str(reason), CALL_REJECTED)

    def _on_customer_dialed(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        number = str(ev.data.get("number") or "")
        extension = ev.data.get("destination") == "extension"
        agent = call.caller
        dest = self._channel(
            number if extension else self.trunk,
            agent.contact_id,
            ev.at,
            agent.linkedid,
            caller_num=number,
            caller_name="",
            exten=number,
            context=self.agent_context,
            connected_num=agent.caller_num,
            connected_name=agent.caller_name,
        )
        call.dialing[number] = (dest, ev.at)
        self._emit(out, "Newchannel", dest.header())
        self._emit(out, "DialBegin", agent.header(), dest.header("Dest"),
                   [("DialString", number)])  # fmt: skip

    def _on_customer_alerting(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        entry = call.dialing.get(str(ev.data.get("number") or ""))
        if entry is not None:
            self._newstate(entry[0], RINGING, ev.at, out)

    def _on_connected(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        entry = call.dialing.pop(str(ev.data.get("number") or ""), None)
        if entry is None:
            return
        dest = entry[0]
        agent = call.caller
        self._newstate(dest, UP, ev.at, out)
        self._dial_end(call, dest, "ANSWER", out)
        call.connected = dest
        bridge = [
            ("BridgeUniqueid", agent.contact_id),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
        ]
        self._emit(out, "BridgeEnter", bridge, [("BridgeNumChannels", "1")], agent.header())
        self._emit(out, "BridgeEnter", bridge, [("BridgeNumChannels", "2")], dest.header())

    def _on_customer_failed(self, ev: Event, call: _Call, out: list[AmiEvent]) -> None:
        entry = call.dialing.pop(str(ev.data.get("number") or ""), None)
        if entry is None:
            return
        reason = str(ev.data.get("reason") or "")
        status, cause = {"no-answer": ("NOANSWER", NO_ANSWER), "busy": ("BUSY", USER_BUSY)}.get(
            reason, ("CONGESTION", CALL_REJECTED)
        )
        self._dial_end(call, entry[0], status, out)
        self._hangup(entry[0], cause, out)

    def _agent_state(self, ev: Event, out: list[AmiEvent]) -> None:
        agent = str(ev.agent)
        state = str(ev.data.get("state") or "")
        before = str(ev.data.get("from") or "")
        reason = str(ev.data.get("reason") or "")
        paused = state == "not-ready"
        status = AGENT_DEVICE_STATE.get(state, 0)
        for queue in self.queues_of(agent):
            self._emit(out, "QueueMemberStatus", [
                ("Queue", queue), *self._member(agent),
                ("StateInterface", f"PJSIP/{agent}"),
                ("Membership", "static"), ("Penalty", "0"),
                ("InCall", "1" if state in ("reserved", "on-call") else "0"),
                ("Status", str(status)),
                ("Paused", "1" if paused else "0"),
                ("PausedReason", reason if paused else ""),
            ])  # fmt: skip
            if paused != (before == "not-ready") and state != "logged-out":
                self._emit(out, "QueueMemberPause", [
                    ("Queue", queue), *self._member(agent),
                    ("StateInterface", f"PJSIP/{agent}"),
                    ("Paused", "1" if paused else "0"),
                    ("PausedReason", reason if paused else ""),
                ])  # fmt: skip
