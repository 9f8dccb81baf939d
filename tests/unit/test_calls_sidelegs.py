"""Who hears whom on a call with side legs: `SideLegs._rewire` and the features' refusals.

The call service runs with real RTP endpoints that have no socket (nothing
is sent), a real media clock and mixer; what would be SIP is not reached
(legs are marked connected by hand). The recorder is a list of timeline steps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ccserver.calls.leg import CallLog, Leg
from ccserver.calls.model import Call, CallSettings
from ccserver.calls.service import CallService
from ccserver.calls.sidelegs import FeatureRefused, SideLeg, side_of
from ccserver.media.endpoint import RtpEndpoint
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.sip.message import Request, parse_message

INVITE = (
    b"INVITE sip:5001@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-1\r\n"
    b"From: <sip:0600000001@127.0.0.2>;tag=a\r\nTo: <sip:5001@127.0.0.1>\r\n"
    b"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


class Recorder:
    def __init__(self) -> None:
        self.steps: list[tuple[str, dict[str, Any]]] = []

    def event(self, contact_id: str, type: str, data: dict[str, Any]) -> None:
        self.steps.append((type, data))

    def update(self, contact_id: str, **fields: Any) -> None:
        pass


class Router:
    """The ACD as far as releasing an agent goes."""

    def __init__(self) -> None:
        self.changes: list[Any] = []
        self.hung_up: list[str] = []

    def hangup(self, ext: str, now: float) -> list[Any]:
        self.hung_up.append(ext)
        return []

    def take_decisions(self) -> list[Any]:
        return []

    def get_timer(self) -> float | None:
        return None


class NoPhones:
    def lookup(self, ext: str, now: float) -> list[Any]:
        return []


def leg(name: str) -> Leg:
    invite = parse_message(INVITE % name.encode())
    assert isinstance(invite, Request)
    return Leg("uas" if name == "caller" else "uac", RtpEndpoint(name), invite, ("127.0.0.1", 1))


@pytest.fixture
def svc() -> CallService:
    settings = CallSettings(
        host="127.0.0.1", codecs=["PCMU", "PCMA"], trunk_networks=[], dids={}, flows={},
        queue_ring_timeout={}, extensions={"1900", "1001"}, config_dir=Path(),
    )  # fmt: skip
    moh = EncodedAudio(np.zeros(1600, dtype=np.int16), "moh")
    fakes: Any = (NoPhones(), Router(), None, MediaClock(), Recorder())
    return CallService(settings, *fakes, lambda t, v: None, moh)


def connected_call(svc: CallService) -> Call:
    call = Call("c1", leg("caller"), CallLog(logging.getLogger("t"), {"call": "c1"}), "0600")
    call.agent_leg = leg("agent")
    call.agent_leg.agent = "1001"
    call.state = "bridged"
    svc.calls["c1"] = call
    return call


def add_side(call: Call, kind: str, mode: str = "") -> SideLeg:
    side = SideLeg(kind, kind, leg=leg(kind), connected=True, mode=mode)
    side_of(call).legs[kind] = side
    return side


def hearing(call: Call) -> dict[str, set[str]]:
    mix = side_of(call).mix
    assert mix is not None
    return {k: set(v) for k, v in mix.mixer.hearing().items()}


def outputs(call: Call) -> set[str]:
    """The legs sent mixed frames (the others get one leg's packets relayed)."""
    mix = side_of(call).mix
    assert mix is not None
    return {name for name, p in mix.mixer.participants.items() if p.output}


async def test_monitor_modes_set_who_hears_the_supervisor(svc: CallService) -> None:
    call = connected_call(svc)
    side = add_side(call, "monitor", "listen")
    svc._rewire(call)
    both = {"caller", "agent"}
    assert hearing(call) == {"caller": {"agent"}, "agent": {"caller"}, "supervisor": both}
    agent = call.agent_leg
    assert agent is not None
    # Listening changes nothing for caller and agent: they keep the packet relay,
    # their audio also feeds the supervisor's mix.
    assert (
        call.caller.endpoint.peer is agent.endpoint and agent.endpoint.peer is call.caller.endpoint
    )
    assert outputs(call) == {"supervisor"}
    side.mode = "whisper"
    svc._rewire(call)
    assert hearing(call)["agent"] == {"caller", "supervisor"}
    assert hearing(call)["caller"] == {"agent"}
    assert call.caller.endpoint.peer is None  # the agent now gets a mix
    assert agent.endpoint.peer is call.caller.endpoint
    assert outputs(call) == {"supervisor", "agent"}
    side.mode = "barge"
    svc._rewire(call)
    assert hearing(call)["caller"] == {"agent", "supervisor"}
    assert agent.endpoint.peer is None and call.caller.endpoint.peer is None
    assert outputs(call) == {"supervisor", "agent", "caller"}
    side.mode = "listen"
    svc._rewire(call)
    assert (
        call.caller.endpoint.peer is agent.endpoint and agent.endpoint.peer is call.caller.endpoint
    )
    # The supervisor leaves: back to the relay, no mix left running.
    del side_of(call).legs["monitor"]
    svc._rewire(call)
    assert side_of(call).mix is None
    assert call.caller.endpoint.peer is call.agent_leg.endpoint  # type: ignore[union-attr]
    assert call.agent_leg.endpoint.peer is call.caller.endpoint  # type: ignore[union-attr]
    assert call.caller.endpoint.listeners == []


async def test_conference_with_a_listening_supervisor(svc: CallService) -> None:
    call = connected_call(svc)
    add_side(call, "conference")
    svc._rewire(call)
    assert hearing(call) == {
        "caller": {"agent", "conference"},
        "agent": {"caller", "conference"},
        "conference": {"caller", "agent"},
    }
    add_side(call, "monitor", "listen")
    svc._rewire(call)
    assert hearing(call)["supervisor"] == {"caller", "agent", "conference"}
    assert "supervisor" not in hearing(call)["conference"]
    svc._end_side_legs(call)
    assert side_of(call).mix is None and side_of(call).legs == {}


async def test_consult_holds_the_caller_and_pairs_agent_with_target(svc: CallService) -> None:
    call = connected_call(svc)
    side = add_side(call, "consult")
    svc._rewire(call)
    agent = call.agent_leg
    assert agent is not None and side.leg is not None
    assert svc.clock.is_playing(call.caller.endpoint)  # hold music
    assert call.caller.endpoint.peer is None
    assert agent.endpoint.peer is side.leg.endpoint and side.leg.endpoint.peer is agent.endpoint
    svc.consult_cancel("c1")
    assert not svc.clock.is_playing(call.caller.endpoint)
    assert call.caller.endpoint.peer is agent.endpoint
    steps = [s for s, _ in svc.recorder.steps]  # type: ignore[attr-defined]
    assert steps == ["consult_ended"]
    svc.clock.close()


async def test_refusals(svc: CallService) -> None:
    with pytest.raises(FeatureRefused) as err:
        svc.monitor("nope", "1900", "listen", "sup")
    assert err.value.status == 404
    call = connected_call(svc)
    with pytest.raises(FeatureRefused) as err:
        svc.monitor("c1", "1900", "spy", "sup")
    assert (err.value.status, err.value.error_id) == (422, "invalid-mode")
    with pytest.raises(FeatureRefused) as err:
        svc.monitor("c1", "1900", "listen", "sup")  # no registered phone
    assert err.value.error_id == "phone-not-registered"
    with pytest.raises(FeatureRefused) as err:
        svc.monitor("c1", "1001", "listen", "sup")
    assert err.value.error_id == "own-call"
    with pytest.raises(FeatureRefused) as err:
        svc.conference("c1", "number", "0612", "a")  # no trunk with an outbound route
    assert err.value.error_id == "no-outbound-route"
    with pytest.raises(FeatureRefused) as err:
        svc.consult_complete("c1")
    assert err.value.error_id == "no-consult"
    side = add_side(call, "monitor", "listen")
    side.target = "1900"
    svc.monitor("c1", "1900", "whisper", "sup")  # a mode change, recorded
    assert svc.recorder.steps[-1] == (  # type: ignore[attr-defined]
        "monitor_mode",
        {"supervisor": "1900", "mode": "whisper", "from": "listen"},
    )
    with pytest.raises(FeatureRefused) as err:
        svc.monitor("c1", "1901", "listen", "sup2")
    assert err.value.error_id == "already-monitored"
    with pytest.raises(FeatureRefused) as err:
        svc.consult("c1", "extension", "1001", "a")
    assert err.value.error_id == "monitor-in-progress"
    call.state = "queued"
    with pytest.raises(FeatureRefused) as err:
        svc.conference("c1", "extension", "1001", "a")
    assert err.value.error_id == "not-connected"
    svc._end_side_legs(call)


async def test_agent_leaving_a_conference_leaves_caller_and_third_party(svc: CallService) -> None:
    call = connected_call(svc)
    side = add_side(call, "conference")
    svc._rewire(call)
    agent = call.agent_leg
    assert agent is not None and side.leg is not None
    svc._hangup_leg(call, agent, "agent", send_bye=False)  # the agent's BYE
    assert call.state == "bridged" and call.agent_leg is side.leg
    assert svc.router.hung_up == ["1001"]  # type: ignore[attr-defined]
    assert side_of(call).mix is None  # two parties again: the relay
    assert call.caller.endpoint.peer is side.leg.endpoint
    assert agent.state == "terminated" and agent.endpoint.peer is None
    assert svc.recorder.steps[-1] == (  # type: ignore[attr-defined]
        "conference_left",
        {"who": "agent", "agent": "1001", "target": "conference"},
    )


async def test_agent_hanging_up_during_a_consult_completes_the_transfer(svc: CallService) -> None:
    call = connected_call(svc)
    side = add_side(call, "consult")
    call.hold_started = svc.now()
    svc._rewire(call)
    agent = call.agent_leg
    assert agent is not None and side.leg is not None
    svc._hangup_leg(call, agent, "agent", send_bye=False)
    assert call.state == "bridged" and call.agent_leg is side.leg
    assert not svc.clock.is_playing(call.caller.endpoint)
    assert call.caller.endpoint.peer is side.leg.endpoint
    assert side.leg.endpoint.peer is call.caller.endpoint
    steps = dict(svc.recorder.steps)  # type: ignore[attr-defined]
    assert steps["transfer"] == {
        "kind": "consult",
        "from_agent": "1001",
        "to": "consult",
        "agent_hung_up": True,
    }
    assert call.hold_started is None
    svc.clock.close()
