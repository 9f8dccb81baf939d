"""One hold account per contact, whatever holds the caller (`ccserver.calls.hold`).

The pure rule first (`begin_hold`/`end_hold` with the time as an argument),
then the call service with a clock the test moves: a phone's re-INVITE hold
(`_set_hold`) and a hold from the agent's software (`CallControl.hold`)
overlapping, and what the contact's row and the ACD router are told.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ccserver.calls.control import CallControl
from ccserver.calls.hold import CONSULT, CONTROL, begin_hold, end_hold
from ccserver.calls.leg import CallLog
from ccserver.calls.model import Call
from ccserver.calls.service import CallService
from tests.unit.test_calls_bye import Clock, Contacts, service
from tests.unit.test_calls_sidelegs import Router, leg


def bare_call() -> Call:
    return Call("c1", leg("caller"), CallLog(logging.getLogger("t"), {"call": "c1"}), "0600")


# -- the rule ------------------------------------------------------------------


def test_one_holder_one_period() -> None:
    call = bare_call()
    assert begin_hold(call, CONTROL, 10.0) is True
    assert begin_hold(call, CONTROL, 11.0) is False  # held already
    assert end_hold(call, CONTROL, 14.5) is True
    assert (call.holds, call.hold_seconds, call.hold_started) == (1, 4.5, None)
    assert end_hold(call, CONTROL, 20.0) is False  # not held: nothing to end


def test_overlapping_holders_count_once_for_the_union() -> None:
    # phone 10-20, control 15-30: one hold of 20 s, not two adding to 25.
    call = bare_call()
    assert begin_hold(call, "phone:a", 10.0) is True
    assert begin_hold(call, CONTROL, 15.0) is False
    assert end_hold(call, "phone:a", 20.0) is False  # the control hold goes on
    assert call.hold_started == 10.0
    assert end_hold(call, CONTROL, 30.0) is True
    assert (call.holds, call.hold_seconds) == (1, 20.0)


def test_nested_and_separate_holds() -> None:
    # control 0-10 holds the whole phone hold 2-5; then consult 12-15.
    call = bare_call()
    begin_hold(call, CONTROL, 0.0)
    begin_hold(call, "phone:a", 2.0)
    end_hold(call, "phone:a", 5.0)
    end_hold(call, CONTROL, 10.0)
    begin_hold(call, CONSULT, 12.0)
    end_hold(call, CONSULT, 15.0)
    assert (call.holds, call.hold_seconds) == (2, 13.0)


def test_the_end_of_the_call_ends_every_hold() -> None:
    call = bare_call()
    begin_hold(call, "phone:a", 1.0)
    begin_hold(call, CONTROL, 2.0)
    assert end_hold(call, None, 7.0) is True
    assert (call.holds, call.hold_seconds, call.holders) == (1, 6.0, set())


def test_a_period_begun_without_a_holder_ends_with_the_next_release() -> None:
    call = bare_call()
    call.hold_started = 3.0
    assert begin_hold(call, CONSULT, 3.0) is False  # already on hold: not counted again
    assert end_hold(call, CONSULT, 4.0) is True
    assert call.hold_seconds == 1.0


# -- the call service ------------------------------------------------------------


class AcdRouter(Router):
    """The router as far as hold time goes."""

    def __init__(self) -> None:
        super().__init__()
        self.agents = {"1001": object(), "1002": object()}
        self.told: list[tuple[str, str, float]] = []

    def hold(self, ext: str, now: float) -> None:
        self.told.append(("hold", ext, now))

    def retrieve(self, ext: str, now: float) -> None:
        self.told.append(("retrieve", ext, now))


@pytest.fixture
def svc() -> CallService:
    service_ = service(AcdRouter())
    service_.now = Clock(100.0)  # type: ignore[method-assign]
    return service_


def bridged(svc: CallService) -> Call:
    call = bare_call()
    call.agent_leg = leg("agent")
    call.agent_leg.agent = "1001"
    call.state = "bridged"
    call.caller.endpoint.bridge(call.agent_leg.endpoint)
    call.agent_leg.endpoint.bridge(call.caller.endpoint)
    svc.calls["c1"] = call
    return call


def at(svc: CallService, t: float) -> None:
    svc.now.t = t  # type: ignore[attr-defined]


def told(svc: CallService) -> list[tuple[str, str, float]]:
    router: AcdRouter = svc.router  # type: ignore[assignment]
    return router.told


def stored(svc: CallService) -> dict[str, Any]:
    contacts: Contacts = svc.recorder
    return contacts.fields


async def test_phone_and_console_holds_overlapping(svc: CallService) -> None:
    """The caller's phone holds at 100, the agent presses hold in the console at
    104, the phone resumes at 106 (still held: no audio back yet), the console
    resumes at 110: one hold of 10 s, one hold and one retrieve for the router."""
    control = CallControl(svc, {})
    call = bridged(svc)
    assert call.agent_leg is not None
    svc._set_hold(call, call.caller, True)
    at(svc, 104.0)
    assert control.hold("c1")["on_hold"] is True
    at(svc, 106.0)
    svc._set_hold(call, call.caller, False)
    assert control.call_view(call)["on_hold"] is True
    assert call.caller.endpoint.peer is None  # the console's hold goes on
    at(svc, 110.0)
    assert control.resume("c1")["on_hold"] is False
    assert call.caller.endpoint.peer is call.agent_leg.endpoint
    assert stored(svc) == {"holds": 1, "hold_seconds": 10.0}
    assert told(svc) == [("hold", "1001", 100.0), ("retrieve", "1001", 110.0)]
    steps = [(t, d.get("by"), d.get("via")) for t, d in svc.recorder.steps]  # type: ignore[attr-defined]
    assert steps == [
        ("hold", "caller", None), ("hold", "agent", "control"),
        ("resume", "caller", None), ("resume", "agent", "control"),
    ]  # fmt: skip
    svc.clock.close()


async def test_console_hold_inside_a_phone_hold(svc: CallService) -> None:
    control = CallControl(svc, {})
    call = bridged(svc)
    assert call.agent_leg is not None
    svc._set_hold(call, call.agent_leg, True)  # the agent's phone
    at(svc, 101.0)
    control.hold("c1")
    at(svc, 102.0)
    control.resume("c1")
    at(svc, 105.0)
    svc._set_hold(call, call.agent_leg, False)
    assert stored(svc) == {"holds": 1, "hold_seconds": 5.0}
    assert told(svc) == [("hold", "1001", 100.0), ("retrieve", "1001", 105.0)]
    svc.clock.close()


async def test_transfer_on_hold_ends_the_console_hold_not_the_phones(svc: CallService) -> None:
    """Held by the console and by the caller's phone, the call is transferred to a
    queue: the console's hold ends with the agent's leg, the phone's goes on and
    is still one hold; the router never hears a retrieve for the agent who left."""
    control = CallControl(svc, {})
    svc.router.queues = {"cards": object()}  # type: ignore[attr-defined]
    svc._enqueue = lambda call, queue, priority, skills=None: None  # type: ignore[method-assign]
    call = bridged(svc)
    control.hold("c1")
    at(svc, 102.0)
    svc._set_hold(call, call.caller, True)
    at(svc, 103.0)
    control.transfer_to_queue("c1", "cards")
    assert call.hold_started == 100.0 and call.holders  # the caller's phone still holds
    at(svc, 108.0)
    svc._set_hold(call, call.caller, False)
    assert stored(svc) == {"holds": 1, "hold_seconds": 8.0}
    assert told(svc) == [("hold", "1001", 100.0)]  # its hangup settled the hold
    svc.clock.close()


async def test_a_hold_running_when_the_call_ends_is_counted(svc: CallService) -> None:
    call = bridged(svc)
    svc._set_hold(call, call.caller, True)
    at(svc, 100.0)
    CallControl(svc, {}).hold("c1")
    at(svc, 107.5)
    svc._end_call(call, "caller", "answered")
    assert stored(svc) == {"holds": 1, "hold_seconds": 7.5}
    assert not call.holders and call.hold_started is None
    svc.clock.close()
