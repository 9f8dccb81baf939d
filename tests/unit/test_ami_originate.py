"""Originate, Redirect and queue membership over a manager session, without sockets.

The call control is a stand-in recording what it was asked; the bus events a
click-to-call produces (see ccserver/calls/outbound.py) are published to the
core by hand, in the order the call service emits them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ccserver.calls.control import ControlError
from ccserver.events import Event
from cti.ami.channels import ChannelTracker
from cti.ami.originate import dial_target, interface_extension
from cti.ami.protocol import Message
from cti.ami.server import ManagerCore, User
from tests.unit.test_ami_session import SECRET, Peer


class Control:
    """What the AMI asks of `CallControl`, recorded."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.extensions = {"1001": "Alice Martin", "1006": "Bob Chen"}
        self.refuse: ControlError | None = None

    async def click_to_call(
        self, agent: str, number: str, *, via: str = "api", ring_timeout: float | None = None
    ) -> dict[str, Any]:
        await asyncio.sleep(0)  # the real one opens RTP sockets
        if self.refuse is not None:
            raise self.refuse
        self.ops.append(("dial", agent, number, via, ring_timeout))
        return {"contact_id": "c1"}

    def queues(self) -> list[dict[str, Any]]:
        return [{"queue": "general"}]

    def transfer_to_queue(self, contact_id: str, queue: str) -> None:
        self.ops.append(("queue", contact_id, queue))

    def transfer_to_agent(self, contact_id: str, agent: str) -> None:
        self.ops.append(("agent", contact_id, agent))

    def transfer_to_number(self, contact_id: str, number: str) -> None:
        self.ops.append(("number", contact_id, number))

    def queue_add(self, queue: str, agent: str, penalty: int = 0) -> None:
        if queue != "general":
            raise ControlError(404, "queue-not-found", f"no queue {queue}")
        self.ops.append(("add", queue, agent, penalty))

    def queue_remove(self, queue: str, agent: str) -> None:
        if ("add", queue, agent, 0) not in self.ops:
            raise ControlError(404, "not-a-member", f"{agent} is not in queue {queue}")
        self.ops.append(("remove", queue, agent))

    def agent_pause(self, agent: str, reason: str) -> None:
        self.ops.append(("pause", agent, reason))


def make(control: Control) -> ManagerCore:
    users = {"crm": User("crm", SECRET, frozenset({"all"}), frozenset({"all"}))}
    return ManagerCore(users, tracker=ChannelTracker(), control=control)  # type: ignore[arg-type]


def ev(kind: str, **data: Any) -> Event:
    return Event(f"call.{kind}", data={"caller": "1001", "dialed": "0612345678", **data},
                 contact_id="c1", agent="1001", at=1000.0)  # fmt: skip


async def settle(core: ManagerCore) -> None:
    while core.tasks:
        await asyncio.gather(*core.tasks)


def test_interfaces_and_dial_targets() -> None:
    assert [interface_extension(i) for i in ("PJSIP/1001", "SIP/1001", "Local/1001@ctx")] == [
        "1001"
    ] * 3
    assert dial_target(Message([("Exten", "0612345678")])) == "0612345678"
    assert dial_target(Message([("Application", "Dial"), ("Data", "PJSIP/0612@trunk,30")])) == (
        "0612"
    )
    with pytest.raises(ValueError, match="only Dial"):
        dial_target(Message([("Application", "Playback")]))


async def test_async_originate_answers_then_reports_the_agent_channel() -> None:
    control = Control()
    core = make(control)
    peer = Peer(core)
    peer.login(Events="on")
    peer.received()
    peer.send(("Action", "Originate"), ("ActionID", "o1"), ("Channel", "PJSIP/1001"),
              ("Exten", "0612345678"), ("Context", "from-internal"), ("Priority", "1"),
              ("Async", "true"), ("Timeout", "15000"))  # fmt: skip
    await settle(core)
    (queued,) = peer.received()
    assert queued.pairs == [("Response", "Success"), ("ActionID", "o1"),
                            ("Message", "Originate successfully queued")]  # fmt: skip
    assert control.ops == [("dial", "1001", "0612345678", "ami", 15.0)]

    core.publish(ev("originated", agent="1001", number="0612345678", destination="trunk"))
    core.publish(ev("agent_alerting", agent="1001"))
    core.publish(ev("agent_answered", agent="1001"))
    out = peer.received()
    names = [m.get("Event") for m in out]
    assert names == ["Newchannel", "Newstate", "Newstate", "OriginateResponse"], names
    new, response = out[0], out[-1]
    assert str(new.get("Channel")).startswith("PJSIP/1001-")
    assert response.get("ActionID") == "o1" and response.get("Response") == "Success"
    assert response.get("Reason") == "4" and response.get("Uniqueid") == new.get("Uniqueid")
    assert response.get("Channel") == new.get("Channel")

    core.publish(ev("customer_dialed", number="0612345678", destination="trunk", agent="1001"))
    core.publish(ev("customer_alerting", number="0612345678", agent="1001"))
    core.publish(ev("connected", number="0612345678", agent="1001", codec="PCMU"))
    core.publish(Event("call.ended", data={"outcome": "answered", "disconnect_reason": "caller"},
                       contact_id="c1", at=1010.0))  # fmt: skip
    out = peer.received()
    names = [m.get("Event") for m in out]
    assert names == ["Newchannel", "DialBegin", "Newstate", "Newstate", "DialEnd",
                     "BridgeEnter", "BridgeEnter", "BridgeLeave", "BridgeLeave", "Hangup",
                     "Hangup"], names  # fmt: skip
    trunk = out[0]
    assert str(trunk.get("Channel")).startswith("PJSIP/trunk-")
    assert trunk.get("Linkedid") == new.get("Uniqueid")
    assert out[1].get("DestChannel") == trunk.get("Channel") and out[1].get("DialString") == (
        "0612345678"
    )
    assert out[4].get("DialStatus") == "ANSWER"
    assert "AgentComplete" not in names and core.originations.pending == {}


async def test_async_originate_failure_names_the_reason() -> None:
    core = make(Control())
    peer = Peer(core)
    peer.login(Events="off")
    peer.send(("Action", "Originate"), ("ActionID", "o2"), ("Channel", "SIP/1001"),
              ("Application", "Dial"), ("Data", "PJSIP/0612345678"), ("Async", "yes"))  # fmt: skip
    await settle(core)
    assert peer.received()[0].get("Response") == "Success"
    core.publish(ev("originated", agent="1001", number="0612345678", destination="trunk"))
    core.publish(ev("agent_failed", agent="1001", status=486, reason="busy"))
    core.publish(Event("call.ended", data={"outcome": "failed", "disconnect_reason": "system"},
                       contact_id="c1"))  # fmt: skip
    # Events are off for this session, but the originator still gets its response.
    (response,) = peer.received()
    assert response.get("Event") == "OriginateResponse" and response.get("ActionID") == "o2"
    assert response.get("Response") == "Failure" and response.get("Reason") == "5"
    assert response.get("Application") == "Dial"


async def test_sync_originate_waits_for_the_agent() -> None:
    control = Control()
    core = make(control)
    peer = Peer(core)
    peer.login(Events="off")
    peer.send(("Action", "Originate"), ("ActionID", "s"), ("Channel", "PJSIP/1001"),
              ("Exten", "1006"))  # fmt: skip
    await settle(core)
    assert peer.received() == []
    core.publish(ev("originated", agent="1001", number="1006", destination="extension"))
    core.publish(ev("agent_answered", agent="1001"))
    (ok,) = peer.received()
    assert ok.pairs == [("Response", "Success"), ("ActionID", "s"),
                        ("Message", "Originate successfully queued")]  # fmt: skip

    control.refuse = ControlError(409, "phone-not-registered", "agent 1001 has no registered phone")
    peer.send(("Action", "Originate"), ("ActionID", "t"), ("Channel", "PJSIP/1001"),
              ("Exten", "1006"), ("Async", "true"))  # fmt: skip
    await settle(core)
    (refused,) = peer.received()
    assert refused.get("Response") == "Error" and refused.get("ActionID") == "t"
    assert refused.get("Message") == "agent 1001 has no registered phone"


async def test_redirect_and_blind_transfer_pick_the_target_kind() -> None:
    control = Control()
    core = make(control)
    peer = Peer(core)
    peer.login(Events="off")
    core.publish(Event("call.arrived", data={"caller": "0600000001", "dialed": "5001"},
                       contact_id="c7"))  # fmt: skip
    (channel,) = [ch.name for ch in core.tracker.channels()]
    for action, exten in (("Redirect", "general"), ("BlindTransfer", "1006"),
                          ("Redirect", "0612345678")):  # fmt: skip
        (resp,) = peer.send(("Action", action), ("Channel", channel), ("Exten", exten),
                            ("Context", "default"), ("Priority", "1"))  # fmt: skip
        assert resp.get("Response") == "Success", resp
    assert control.ops == [("queue", "c7", "general"), ("agent", "c7", "1006"),
                           ("number", "c7", "0612345678")]  # fmt: skip


def test_queue_add_and_remove() -> None:
    control = Control()
    core = make(control)
    peer = Peer(core)
    peer.login(Events="agent")
    peer.received()
    out = peer.send(("Action", "QueueAdd"), ("ActionID", "a"), ("Queue", "general"),
                    ("Interface", "PJSIP/1006"), ("Penalty", "0"))  # fmt: skip
    added, ok = out
    assert added.get("Event") == "QueueMemberAdded" and added.get("Interface") == "PJSIP/1006"
    assert added.get("MemberName") == "Bob Chen" and added.get("Membership") == "dynamic"
    assert ok.get("Response") == "Success" and ok.get("ActionID") == "a"
    (bad,) = peer.send(("Action", "QueueAdd"), ("Queue", "nope"), ("Interface", "PJSIP/1006"))
    assert bad.get("Message") == "Unable to add interface to queue: No such queue"
    removed, ok = peer.send(("Action", "QueueRemove"), ("Queue", "general"),
                            ("Interface", "PJSIP/1006"))  # fmt: skip
    assert removed.get("Event") == "QueueMemberRemoved" and ok.get("Response") == "Success"
    (missing,) = peer.send(("Action", "QueueRemove"), ("Queue", "general"),
                           ("Interface", "PJSIP/1001"))  # fmt: skip
    assert missing.get("Response") == "Error"
    assert missing.get("Message") == "Unable to remove interface: Not there"
    peer.send(("Action", "QueueAdd"), ("Queue", "general"), ("Interface", "SIP/1001"),
              ("Paused", "true"))  # fmt: skip
    assert ("pause", "1001", "break") in control.ops
    assert control.ops[0] == ("add", "general", "1006", 0)


async def test_a_closed_session_is_forgotten_by_its_originates() -> None:
    core = make(Control())
    peer = Peer(core)
    peer.login(Events="off")
    peer.send(("Action", "Originate"), ("Channel", "PJSIP/1001"), ("Exten", "0612345678"),
              ("Async", "true"))  # fmt: skip
    await settle(core)
    assert list(core.originations.pending) == ["c1"]
    peer.session.close()
    assert core.originations.pending == {}
    core.publish(ev("originated", agent="1001", number="0612345678", destination="trunk"))
    core.publish(ev("agent_answered", agent="1001"))  # nobody left to answer: nothing sent
    assert peer.closed
