"""A leg we answered sends no BYE before the ACK of its 2xx (RFC 3261 §15).

The call service runs with a fake SIP endpoint that records what would go on
the wire and a clock the test moves (`svc.now`); the 2xx retransmitter's
deadlines are run by calling `_retransmit_due` at the time they fall due.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from ccserver.calls.leg import CallLog, Leg
from ccserver.calls.model import Call, CallSettings
from ccserver.calls.service import CallService
from ccserver.media.endpoint import RtpEndpoint
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.sip.dialog import Dialog, make_dialog_response
from ccserver.sip.message import Request, parse_message
from tests.unit.test_calls_sidelegs import NoPhones, Router

PHONE = ("127.0.0.2", 5090)
INVITE = (
    b"INVITE sip:5000@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-bye1\r\n"
    b"From: <sip:0600000001@127.0.0.2>;tag=caller\r\nTo: <sip:5000@127.0.0.1>\r\n"
    b"Call-ID: bye-1\r\nCSeq: 1 INVITE\r\nContact: <sip:0600000001@127.0.0.2:5090>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Transports:
    def is_reliable(self, addr: Any) -> bool:
        return False


class Wire:
    """What the call service sends, in order: (kind, first line)."""

    address = ("127.0.0.1", 5060)
    transports = Transports()

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send_request(self, request: Request, addr: Any, callback: Any) -> None:
        self.sent.append(("request", request.method))

    def send_raw(self, data: bytes, addr: Any) -> None:
        self.sent.append(("raw", data.split(b"\r\n", 1)[0].decode()))

    def send_response(self, response: Any) -> None:
        self.sent.append(("response", str(response.status)))

    def send_stateless(self, request: Request, addr: Any) -> None:
        self.sent.append(("request", request.method))

    def byes(self) -> int:
        return self.sent.count(("request", "BYE"))


class Clock:
    def __init__(self, now: float) -> None:
        self.t = now

    def __call__(self) -> float:
        return self.t


class Contacts:
    """The recorder: the contacts' figures and how each ended."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.steps: list[tuple[str, dict[str, Any]]] = []
        self.closed: dict[str, str] = {}

    def event(self, contact_id: str, type: str, data: dict[str, Any]) -> None:
        self.steps.append((type, data))

    def update(self, contact_id: str, **fields: Any) -> None:
        self.fields.update(fields)

    def close_contact(self, contact_id: str, *, outcome: str, disconnect_reason: str) -> None:
        self.closed[contact_id] = outcome


def service(router: Any) -> CallService:
    settings = CallSettings(
        host="127.0.0.1", codecs=["PCMA"], trunk_networks=[], dids={}, flows={},
        queue_ring_timeout={},
    )  # fmt: skip
    moh = EncodedAudio(np.zeros(1600, dtype=np.int16), "moh")
    fakes: Any = (NoPhones(), router, None, MediaClock(), Contacts())
    return CallService(settings, *fakes, lambda t, v: None, moh)


@pytest.fixture
def svc() -> CallService:
    return service(Router())


@pytest.fixture
def clock(svc: CallService) -> Clock:
    fake = Clock(1000.0)
    svc.now = fake  # type: ignore[method-assign]
    svc.sip = Wire()
    return fake


def answered(svc: CallService) -> tuple[Call, Leg]:
    """A caller we answered with a 200 whose ACK has not come yet (as `_accept` leaves it)."""
    invite = parse_message(INVITE)
    assert isinstance(invite, Request)
    leg = Leg("uas", RtpEndpoint("caller"), invite, PHONE)
    ok = make_dialog_response(invite, 200, to_tag="ours", contact=svc.our_uri())
    leg.dialog = Dialog.from_uas(invite, ok, svc.our_uri())
    leg.state = "early"
    call = Call("c1", leg, CallLog(logging.getLogger("t"), {"call": "c1"}), "0600000001")
    svc.calls["c1"] = call
    svc._legs[invite.call_id] = (call, leg)
    svc._start_retransmit(leg, ok, PHONE)
    return call, leg


def from_caller(method: str, cseq: int) -> Request:
    """An in-dialog request as the caller sends it: its tag in From, ours in To."""
    text = (
        f"{method} sip:ccserver@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-{method}{cseq}\r\n"
        "From: <sip:0600000001@127.0.0.2>;tag=caller\r\nTo: <sip:5000@127.0.0.1>;tag=ours\r\n"
        f"Call-ID: bye-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, Request)
    return request


def run_due(svc: CallService, clock: Clock, leg: Leg, until: float) -> None:
    """Move the clock through the retransmitter's deadlines up to ``until``."""
    while leg.retransmitter is not None and (deadline := leg.retransmitter.get_timer()):
        if deadline > until:
            clock.t = until
            return
        clock.t = deadline
        svc._retransmit_due(leg)
    clock.t = until


async def test_hangup_before_the_ack_sends_the_bye_after_it(svc: CallService, clock: Clock) -> None:
    call, leg = answered(svc)
    svc._hangup_leg(call, leg, "system", send_bye=True, outcome="completed-ivr")
    wire: Wire = svc.sip
    assert wire.byes() == 0
    assert call.state == "ended" and "c1" not in svc.calls  # the contact is closed at once
    assert leg.bye_pending and svc._legs["bye-1"][1] is leg
    run_due(svc, clock, leg, 1001.0)
    assert ("raw", "SIP/2.0 200 OK") in wire.sent  # the 200 goes on until the ACK
    assert wire.byes() == 0
    svc.on_ack(from_caller("ACK", 1), PHONE)
    assert wire.sent[-1] == ("request", "BYE") and wire.byes() == 1
    assert not leg.bye_pending and "bye-1" not in svc._legs
    assert leg.retransmitter is not None and leg.retransmitter.done
    svc.on_ack(from_caller("ACK", 1), PHONE)  # a retransmitted ACK: nothing more
    assert wire.byes() == 1
    svc.clock.close()


async def test_no_ack_sends_the_bye_when_the_2xx_times_out(svc: CallService, clock: Clock) -> None:
    call, leg = answered(svc)
    svc._end_call(call, "system", "completed-ivr")
    wire: Wire = svc.sip
    run_due(svc, clock, leg, 1000.0 + 64 * 0.5 - 0.01)
    assert wire.byes() == 0
    resent = wire.sent.count(("raw", "SIP/2.0 200 OK"))
    assert resent == 10  # at 0.5, 1.5, 3.5, 7.5 … 31.5 s: T1 doubling to T2 (§13.3.1.4)
    run_due(svc, clock, leg, 1000.0 + 64 * 0.5)
    assert wire.sent[-1] == ("request", "BYE") and wire.byes() == 1
    assert "bye-1" not in svc._legs and leg.retransmit_timer is None
    svc.clock.close()


async def test_the_callers_bye_first_means_none_of_ours(svc: CallService, clock: Clock) -> None:
    call, leg = answered(svc)
    svc._end_call(call, "system", "completed-ivr")
    svc.on_request(from_caller("BYE", 2), PHONE, None)  # type: ignore[arg-type]
    wire: Wire = svc.sip
    assert wire.sent[-1] == ("response", "200") and wire.byes() == 0
    assert "bye-1" not in svc._legs and not leg.bye_pending
    svc.clock.close()


async def test_after_the_ack_the_bye_goes_at_once(svc: CallService, clock: Clock) -> None:
    call, leg = answered(svc)
    svc.on_ack(from_caller("ACK", 1), PHONE)
    assert leg.state == "confirmed"
    svc._hangup_leg(call, leg, "system", send_bye=True)
    wire: Wire = svc.sip
    assert wire.byes() == 1 and not leg.bye_pending and "bye-1" not in svc._legs
    svc.clock.close()


async def test_a_late_offer_ended_before_its_ack_starts_nothing(
    svc: CallService, clock: Clock
) -> None:
    """We offered in the 200 (no SDP in the INVITE) and the flow was to start on
    the ACK; the call ended first: the ACK brings only the BYE."""
    call, leg = answered(svc)
    started: list[bool] = []
    leg.on_confirmed = lambda: started.append(True)
    svc._end_call(call, "system", "interrupted")
    svc.on_ack(from_caller("ACK", 1), PHONE)
    wire: Wire = svc.sip
    assert wire.byes() == 1 and started == []
    svc.clock.close()
