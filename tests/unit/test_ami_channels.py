"""Bus events as Asterisk channels and AMI events: a scripted queue call."""

from __future__ import annotations

from typing import Any

from ccserver.events import Event
from cti.ami.channels import AmiEvent, ChannelTracker

CID = "c0ffee00-0000-0000-0000-000000000001"
T0 = 1_700_000_000.0
CHANNEL_BLOCK = [
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
    "Exten", "Priority", "Uniqueid", "Linkedid",
]  # fmt: skip


def call_event(kind: str, at: float, agent: str | None = None, **data: Any) -> Event:
    return Event(f"call.{kind}", data={"caller": "0600000001", "dialed": "5001", **data},
                 contact_id=CID, agent=agent, queue="general", at=T0 + at)  # fmt: skip


ARRIVED = Event(
    "call.arrived",
    data={"caller": "0600000001", "caller_name": "Ada", "dialed": "5001",
          "entry": {"kind": "queue", "name": "general"}, "sip_call_id": "abc@host"},
    contact_id=CID,
    at=T0,
)  # fmt: skip

ANSWERED_CALL = [
    ARRIVED,
    call_event("accepted", 0.1),
    call_event("queued", 0.2, queue="general", priority=0, tier="standard"),
    call_event("offered", 1.0, agent="1001", queue="general"),
    call_event("ringing", 1.1, agent="1001"),
    call_event("answered", 3.0, agent="1001", codec="PCMU"),
    call_event("ended", 63.0, agent="1001", outcome="answered", disconnect_reason="caller"),
]


def run(events: list[Event], tracker: ChannelTracker | None = None) -> list[AmiEvent]:
    tracker = tracker or ChannelTracker(member_name=lambda a: {"1001": "Alice"}.get(a, a))
    out: list[AmiEvent] = []
    for ev in events:
        out.extend(tracker.handle(ev))
    return out


def test_answered_call_sequence() -> None:
    out = run(ANSWERED_CALL)
    assert [(e.name, str(e.get("Channel"))[:11]) for e in out if e.get("Channel")] == [
        ("Newchannel", "PJSIP/trunk"),
        ("Newstate", "PJSIP/trunk"),
        ("QueueCallerJoin", "PJSIP/trunk"),
        ("Newchannel", "PJSIP/1001-"),
        ("AgentCalled", "PJSIP/trunk"),
        ("DialBegin", "PJSIP/trunk"),
        ("Newstate", "PJSIP/1001-"),
        ("Newstate", "PJSIP/1001-"),
        ("DialEnd", "PJSIP/trunk"),
        ("QueueCallerLeave", "PJSIP/trunk"),
        ("AgentConnect", "PJSIP/trunk"),
        ("BridgeEnter", "PJSIP/trunk"),
        ("BridgeEnter", "PJSIP/1001-"),
        ("BridgeLeave", "PJSIP/trunk"),
        ("BridgeLeave", "PJSIP/1001-"),
        ("AgentComplete", "PJSIP/trunk"),
        ("Hangup", "PJSIP/1001-"),
        ("Hangup", "PJSIP/trunk"),
    ]


def test_headers() -> None:
    out = run(ANSWERED_CALL)
    first = out[0]
    assert [k for k, _ in first.headers] == CHANNEL_BLOCK
    assert first.get("ChannelState") == "4" and first.get("ChannelStateDesc") == "Ring"
    assert first.get("CallerIDNum") == "0600000001" and first.get("CallerIDName") == "Ada"
    assert first.get("Exten") == "5001" and first.get("Context") == "from-trunk"
    linked = first.get("Uniqueid")
    assert first.get("Linkedid") == linked and linked == f"{int(T0)}.1"
    assert first.klass == "call"

    join = next(e for e in out if e.name == "QueueCallerJoin")
    assert (join.get("Queue"), join.get("Position"), join.get("Count")) == ("general", "1", "1")
    assert join.klass == "agent"

    called = next(e for e in out if e.name == "AgentCalled")
    assert called.get(
        "DestChannel",
    ).startswith("PJSIP/1001-")  # type: ignore[union-attr]
    assert called.get("DestLinkedid") == linked and called.get("Interface") == "PJSIP/1001"
    assert (
        called.get("MemberName") == "Alice" and called.get("DestConnectedLineNum") == "0600000001"
    )

    connect = next(e for e in out if e.name == "AgentConnect")
    assert connect.get("HoldTime") == "3" and connect.get("RingTime") == "2"
    dial_end = next(e for e in out if e.name == "DialEnd")
    assert dial_end.get("DialStatus") == "ANSWER"

    complete = next(e for e in out if e.name == "AgentComplete")
    assert complete.get("TalkTime") == "60" and complete.get("HoldTime") == "3"
    assert complete.get("Reason") == "caller"
    hangups = [e for e in out if e.name == "Hangup"]
    assert all(h.get("Cause") == "16" and h.get("Cause-txt") == "Normal Clearing" for h in hangups)
    assert {h.get("Linkedid") for h in hangups} == {linked}


def test_tracker_forgets_ended_calls() -> None:
    tracker = ChannelTracker()
    run(ANSWERED_CALL[:6], tracker)
    names = [c.name for c in tracker.channels()]
    assert len(names) == 2 and tracker.find(names[1]) is not None
    assert tracker.bridged_with(tracker.channels()[0]) is tracker.channels()[1]
    run(ANSWERED_CALL[6:], tracker)
    assert tracker.channels() == []


def test_no_answer_then_abandon() -> None:
    out = run([
        ARRIVED,
        call_event("queued", 0.2, queue="general", priority=0, tier="standard"),
        call_event("offered", 1.0, agent="1001", queue="general"),
        call_event("no_answer", 16.0, agent="1001", status=408),
        call_event("offered", 17.0, agent="1002", queue="general"),
        call_event("abandoned", 20.0, queue="general", waited=19.8, position=1),
        call_event("ended", 20.0, outcome="abandoned", disconnect_reason="caller"),
    ])  # fmt: skip
    names = [e.name for e in out]
    assert names[names.index("AgentRingNoAnswer") - 1] == "DialEnd"
    no_answer = next(e for e in out if e.name == "AgentRingNoAnswer")
    assert no_answer.get("RingTime") == "15000"  # milliseconds
    first_hangup = next(e for e in out if e.name == "Hangup")
    assert first_hangup.get("Cause") == "19"
    abandon = next(e for e in out if e.name == "QueueCallerAbandon")
    assert abandon.get("HoldTime") == "20" and abandon.get("OriginalPosition") == "1"
    # The ringing agent is cancelled, the caller leaves the queue, then hangs up.
    assert names[-5:] == ["DialEnd", "Hangup", "QueueCallerAbandon", "QueueCallerLeave", "Hangup"]
    assert "AgentComplete" not in names and names[-1] == "Hangup"


def test_hold_resume_and_agent_state() -> None:
    tracker = ChannelTracker(queues_of=lambda a: ["general", "vip"])
    out = run([*ANSWERED_CALL[:6], call_event("hold", 10.0), call_event("resume", 12.0)], tracker)
    assert [e.name for e in out[-2:]] == ["Hold", "Unhold"]
    paused = tracker.handle(Event("agent.state", agent="1001",
                                  data={"state": "not-ready", "from": "available",
                                        "reason": "lunch"}))  # fmt: skip
    assert [e.name for e in paused] == [
        "QueueMemberStatus",
        "QueueMemberPause",
        "QueueMemberStatus",
        "QueueMemberPause",
    ]
    assert paused[1].get("Paused") == "1" and paused[1].get("PausedReason") == "lunch"
    on_call = {"state": "on-call", "from": "reserved", "reason": None}
    busy = tracker.handle(Event("agent.state", agent="1001", data=on_call))
    assert [e.get("Status") for e in busy] == ["2", "2"]
