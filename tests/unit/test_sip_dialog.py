"""RFC 3261 §12 dialogs, §13.3.1.4 2xx retransmission and §9.1 CANCEL.

Messages follow the RFC 3665 §3.2 call flow through two record-routing
proxies: Alice -> proxy 1 -> proxy 2 -> Bob.
"""

from __future__ import annotations

import logging

import pytest

from ccserver.sip.dialog import (
    DIALOG_TABLE,
    Dialog,
    InviteRetransmitter,
    make_cancel,
    make_dialog_response,
    make_non2xx_ack,
)
from ccserver.sip.errors import LocalProtocolError, RemoteProtocolError
from ccserver.sip.message import Request, Response, make_response, parse_message
from ccserver.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)
from ccserver.sip.uri import SipUri

CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
ALICE_CONTACT = "sip:alice@client.atlanta.example.com"
BOB_CONTACT = "sip:bob@client.biloxi.example.com"
LOOSE = ["<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com;lr>"]


def invite_text(record_route: list[str] | None = None, scheme: str = "sip") -> bytes:
    # As Bob receives it: proxies added Record-Route top first (§16.6 step 4).
    rr = "".join(f"Record-Route: {value}\r\n" for value in record_route or [])
    return (
        f"INVITE {scheme}:bob@biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP ss2.biloxi.example.com:5060;branch=z9hG4bK721e418c4.1\r\n"
        "Via: SIP/2.0/UDP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1\r\n"
        "Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
        "Max-Forwards: 68\r\n"
        f"{rr}"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <{ALICE_CONTACT}>\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def parse_response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def answer(invite: Request, status: int = 200) -> Response:
    """Bob's answer, with the Record-Route copied as §12.1.1 asks."""
    if status >= 300:
        return make_response(invite, status, to_tag="8321234356")
    return make_dialog_response(
        invite, status, to_tag="8321234356", contact=SipUri.parse(BOB_CONTACT)
    )


def both_sides(
    record_route: list[str] | None = None, status: int = 200
) -> tuple[Dialog, Dialog, Request, Response]:
    """(alice's dialog, bob's dialog, the INVITE, Bob's answer)."""
    invite = parse_request(invite_text(record_route))
    response = answer(invite, status)
    bob = Dialog.from_uas(invite, response, SipUri.parse(BOB_CONTACT))
    # Alice sees the response after the proxies popped their Vias.
    alice = Dialog.from_uac(invite, parse_response(bytes(response)))
    return alice, bob, invite, response


def test_dialog_creation_from_both_sides() -> None:
    alice, bob, _, _ = both_sides(LOOSE)
    assert alice.id == (CALL_ID, "9fxced76sl", "8321234356")
    assert bob.id == (CALL_ID, "8321234356", "9fxced76sl")
    assert alice.state == bob.state == "confirmed"
    assert str(alice.remote_target) == BOB_CONTACT
    assert str(bob.remote_target) == ALICE_CONTACT
    assert str(alice.local_uri) == '"Alice" <sip:alice@atlanta.example.com>'
    assert alice.remote_uri.tag is None and alice.remote_uri.uri.user == "bob"
    assert (alice.local_seq, alice.remote_seq) == (1, None)
    assert (bob.local_seq, bob.remote_seq) == (0, 1)
    assert not alice.secure and not bob.secure


def test_route_set_order() -> None:
    alice, bob, _, _ = both_sides(LOOSE)
    # §12.1.1: the UAS keeps Record-Route in order; §12.1.2: the UAC reverses.
    assert [str(r.uri) for r in bob.route_set] == [
        "sip:ss2.biloxi.example.com;lr",
        "sip:ss1.atlanta.example.com;lr",
    ]
    assert [str(r.uri) for r in alice.route_set] == [
        "sip:ss1.atlanta.example.com;lr",
        "sip:ss2.biloxi.example.com;lr",
    ]
    assert str(alice.next_hop()) == "sip:ss1.atlanta.example.com;lr"
    assert str(bob.next_hop()) == "sip:ss2.biloxi.example.com;lr"


def test_no_route_set_goes_to_the_remote_target() -> None:
    alice, _, _, _ = both_sides()
    bye = alice.create_request("BYE", via_host="client.atlanta.example.com", via_port=5060)
    assert str(bye.uri) == BOB_CONTACT
    assert "Route" not in bye.headers
    assert str(alice.next_hop()) == BOB_CONTACT


def test_loose_routing_request() -> None:
    alice, _, _, _ = both_sides(LOOSE)
    bye = alice.create_request("BYE", via_host="client.atlanta.example.com", via_port=5060)
    assert bye.method == "BYE"
    assert str(bye.uri) == BOB_CONTACT
    assert bye.headers.get_all("Route") == [
        "<sip:ss1.atlanta.example.com;lr>",
        "<sip:ss2.biloxi.example.com;lr>",
    ]
    assert bye.cseq == (2, "BYE")
    assert bye.from_.tag == "9fxced76sl" and bye.to.tag == "8321234356"
    assert bye.call_id == CALL_ID
    assert bye.max_forwards == 70
    assert "Contact" not in bye.headers
    via = bye.top_via
    assert via.transport == "UDP" and via.sent_by == ("client.atlanta.example.com", 5060)
    assert via.branch is not None and via.branch.startswith("z9hG4bK")
    # The wire form parses back to the same request.
    assert parse_request(bytes(bye)).headers == bye.headers


def test_bye_ends_the_dialog_with_its_final_response() -> None:
    alice, bob, _, _ = both_sides()
    bye = alice.create_request("BYE", via_host="h", via_port=5060)
    assert alice.state == "confirmed"
    # §15.1.1: a challenged BYE is sent again with credentials.
    alice.receive_response(make_response(bye, 407))
    assert alice.state == "confirmed"
    bye = alice.create_request("BYE", via_host="h", via_port=5060, extra=[("X-Retry", "1")])
    assert bye.cseq == (3, "BYE")
    assert bob.receive_request(bye) is None
    assert bob.state == "terminated"  # §15.1.2
    alice.receive_response(make_response(bye, 200))
    assert alice.state == "terminated"


def test_cancel_is_not_built_from_the_dialog() -> None:
    alice, _, _, _ = both_sides()
    with pytest.raises(LocalProtocolError, match="make_cancel"):
        alice.create_request("CANCEL", via_host="h", via_port=5060)


def test_dialog_response_copies_record_route_in_order() -> None:
    invite = parse_request(invite_text(LOOSE))
    response = make_dialog_response(
        invite, 180, to_tag="t", contact=SipUri.parse(BOB_CONTACT), headers=[("Allow", "INVITE")]
    )
    assert response.headers.get_all("Record-Route") == LOOSE
    assert [str(c.uri) for c in response.contacts] == [BOB_CONTACT]
    assert response.to.tag == "t" and response.headers.get("Allow") == "INVITE"


def test_strict_routing_request() -> None:
    strict = ["<sip:p2.biloxi.example.com>", "<sip:p1.atlanta.example.com;method=INVITE>"]
    alice, _, _, _ = both_sides(strict)
    info = alice.create_request(
        "INFO",
        via_host="client.atlanta.example.com",
        via_port=5060,
        body=b"Signal=5\r\n",
        content_type="application/dtmf-relay",
    )
    # §12.2.1.1: the strict router becomes the Request-URI (without the
    # parameters a Request-URI may not carry), the remote target goes last.
    assert str(info.uri) == "sip:p1.atlanta.example.com"
    assert info.headers.get_all("Route") == [
        "<sip:p2.biloxi.example.com>",
        f"<{BOB_CONTACT}>",
    ]
    assert str(alice.next_hop()) == "sip:p1.atlanta.example.com;method=INVITE"
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert parse_request(bytes(info)).body == b"Signal=5\r\n"


def test_cseq_increments_and_reinvite_carries_contact() -> None:
    alice, bob, _, _ = both_sides(LOOSE)
    reinvite = alice.create_request(
        "INVITE",
        via_host="client.atlanta.example.com",
        via_port=5060,
        body=b"v=0\r\n",
        content_type="application/sdp",
        extra=[("Supported", "timer")],
    )
    assert reinvite.cseq == (2, "INVITE")
    assert [str(c.uri) for c in reinvite.contacts] == [ALICE_CONTACT]
    assert reinvite.headers.get("Supported") == "timer"
    ack = alice.create_ack(2, via_host="client.atlanta.example.com", via_port=5060)
    assert ack.cseq == (2, "ACK")
    assert ack.top_via.branch != reinvite.top_via.branch  # its own transaction
    assert "Contact" not in ack.headers
    options = alice.create_request("OPTIONS", via_host="h", via_port=5060)
    assert options.cseq == (3, "OPTIONS")
    # The UAS side starts from an empty local sequence number.
    bye = bob.create_request("BYE", via_host="client.biloxi.example.com", via_port=5060)
    assert bye.cseq == (1, "BYE")
    assert bye.from_.tag == "8321234356" and bye.to.tag == "9fxced76sl"
    assert str(bye.uri) == ALICE_CONTACT


def test_ack_for_2xx_keeps_the_invite_cseq() -> None:
    alice, _, _, _ = both_sides(LOOSE)
    ack = alice.create_ack(
        1, via_host="client.atlanta.example.com", via_port=5060, transport="tcp", body=b"v=0\r\n"
    )
    assert ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.top_via.transport == "TCP"
    assert ack.headers.get("Content-Type") == "application/sdp"
    assert alice.local_seq == 1
    also_ack = alice.create_request("ACK", via_host="h", via_port=5060)
    assert also_ack.cseq == (1, "ACK")


def test_receive_request_checks_cseq_order() -> None:
    alice, bob, _, _ = both_sides(LOOSE)
    first = alice.create_request("INFO", via_host="h", via_port=5060)
    second = alice.create_request("INFO", via_host="h", via_port=5060)
    assert bob.receive_request(second) is None
    assert bob.remote_seq == 3
    assert bob.receive_request(first) == 500  # §12.2.2: lower CSeq
    assert bob.remote_seq == 3


def test_receive_request_target_refresh_and_bye() -> None:
    alice, bob, _, _ = both_sides()
    reinvite = alice.create_request("INVITE", via_host="h", via_port=5060)
    reinvite.headers.set("Contact", "<sip:alice@198.51.100.7:5062>")
    assert bob.receive_request(reinvite) is None
    assert str(bob.remote_target) == "sip:alice@198.51.100.7:5062"
    bye = alice.create_request("BYE", via_host="h", via_port=5060)
    assert bob.receive_request(bye) is None
    assert bob.state == "terminated"
    late = parse_request(bytes(bye).replace(b"CSeq: 3 BYE", b"CSeq: 4 BYE"))
    assert b"CSeq: 4 BYE" in bytes(late)
    assert bob.receive_request(late) == 481


def test_receive_request_from_another_dialog_is_481() -> None:
    alice, bob, _, _ = both_sides()
    info = alice.create_request("INFO", via_host="h", via_port=5060)
    info.headers.set("To", "Bob <sip:bob@biloxi.example.com>;tag=other")
    assert not bob.matches(info)
    assert bob.receive_request(info) == 481


def test_ack_and_cancel_do_not_move_remote_seq() -> None:
    alice, bob, _, _ = both_sides()
    alice.create_request("INFO", via_host="h", via_port=5060)
    info = alice.create_request("INFO", via_host="h", via_port=5060)
    assert bob.receive_request(info) is None
    ack = alice.create_ack(1, via_host="h", via_port=5060)
    assert bob.receive_request(ack) is None
    assert bob.remote_seq == 3


def test_matches_responses_and_requests() -> None:
    alice, bob, invite, response = both_sides()
    assert alice.matches(response)
    assert not bob.matches(response)  # Bob's own response: tags the other way
    bye = bob.create_request("BYE", via_host="h", via_port=5060)
    assert alice.matches(bye)
    assert not alice.matches(invite)  # no To tag yet


def test_early_dialog_is_confirmed_and_route_set_recomputed() -> None:
    invite = parse_request(invite_text(LOOSE))
    ringing = answer(invite, 180)
    ringing.headers.remove("Record-Route")  # a proxy that did not record-route on 1xx
    alice = Dialog.from_uac(invite, ringing)
    assert alice.state == "early" and alice.route_set == []
    alice.receive_response(answer(invite, 200))
    assert alice.state == "confirmed"
    # §13.2.2.4: "the route set ... MUST be recomputed based on the 2xx".
    assert [str(r.uri) for r in alice.route_set] == [
        "sip:ss1.atlanta.example.com;lr",
        "sip:ss2.biloxi.example.com;lr",
    ]


def test_early_dialog_ends_on_failure_and_on_481() -> None:
    invite = parse_request(invite_text())
    alice = Dialog.from_uac(invite, answer(invite, 183))
    alice.receive_response(answer(invite, 486))
    assert alice.state == "terminated"
    with pytest.raises(LocalProtocolError):
        alice.create_request("INFO", via_host="h", via_port=5060)

    confirmed, _, _, _ = both_sides()
    info = confirmed.create_request("INFO", via_host="h", via_port=5060)
    confirmed.receive_response(make_response(info, 481))
    assert confirmed.state == "terminated"


def test_uas_dialog_state_follows_its_answers() -> None:
    invite = parse_request(invite_text())
    bob = Dialog.from_uas(invite, answer(invite, 180), SipUri.parse(BOB_CONTACT))
    assert bob.state == "early"
    bob.response_sent(answer(invite, 200))
    assert bob.state == "confirmed"
    bob.terminate()
    assert bob.state == "terminated"


def test_2xx_to_reinvite_refreshes_remote_target() -> None:
    alice, _, _, _ = both_sides()
    reinvite = alice.create_request("INVITE", via_host="h", via_port=5060)
    ok = make_response(reinvite, 200, headers=[("Contact", "<sip:bob@203.0.113.9>")])
    alice.receive_response(ok)
    assert str(alice.remote_target) == "sip:bob@203.0.113.9"
    assert alice.state == "confirmed"


def test_dialog_creation_errors() -> None:
    invite = parse_request(invite_text())
    with pytest.raises(LocalProtocolError):
        Dialog.from_uac(invite, make_response(invite, 100))
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(invite, make_response(invite, 200), SipUri.parse(BOB_CONTACT))
    no_contact = parse_request(invite_text())
    no_contact.headers.remove("Contact")
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uas(no_contact, answer(no_contact), SipUri.parse(BOB_CONTACT))


def test_sips_dialog_is_secure() -> None:
    invite = parse_request(invite_text(scheme="sips"))
    bob = Dialog.from_uas(invite, answer(invite), SipUri.parse(BOB_CONTACT))
    assert bob.secure


def test_dialog_transitions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ccserver.sip.dialog")
    invite = parse_request(invite_text())
    alice = Dialog.from_uac(invite, answer(invite, 180))
    alice.receive_response(answer(invite, 200))
    assert any(
        CALL_ID in r.getMessage() and "early -> confirmed" in r.getMessage() for r in caplog.records
    )


def test_dialog_table_is_closed() -> None:
    for row in DIALOG_TABLE.values():
        assert set(row.values()) <= set(DIALOG_TABLE)
    assert DIALOG_TABLE["terminated"] == {}


# -- 2xx retransmission (§13.3.1.4) -------------------------------------------


def test_invite_retransmitter_schedule_and_timeout() -> None:
    invite = parse_request(invite_text())
    ok = answer(invite)
    retransmitter = InviteRetransmitter(ok, ("192.0.2.1", 5060), 10.0)
    times: list[float] = []
    while (deadline := retransmitter.get_timer()) is not None:
        result = retransmitter.handle_timer(deadline)
        if result is None:
            break
        assert result == [(bytes(ok), ("192.0.2.1", 5060))]
        times.append(deadline - 10.0)
    # T1, doubling to T2 and staying there, until 64*T1.
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert deadline == 42.0
    assert retransmitter.done and retransmitter.timed_out
    assert retransmitter.get_timer() is None


def test_invite_retransmitter_stops_on_ack() -> None:
    invite = parse_request(invite_text())
    retransmitter = InviteRetransmitter(answer(invite), ("192.0.2.1", 5060), 0.0)
    assert retransmitter.handle_timer(0.2) == []  # nothing due yet
    assert retransmitter.handle_timer(0.5) is not None
    retransmitter.ack_received()
    assert retransmitter.done and not retransmitter.timed_out
    assert retransmitter.get_timer() is None
    assert retransmitter.handle_timer(100.0) == []


def test_2xx_retransmission_through_the_layers() -> None:
    """Bob's 2xx is lost; the retransmitter resends it; Alice's ACK stops it."""
    alice_addr, bob_addr = ("192.0.2.10", 5060), ("192.0.2.20", 5060)
    alice_layer, bob_layer = TransactionLayer(), TransactionLayer()
    invite = parse_request(invite_text().replace(b"Max-Forwards: 68", b"Max-Forwards: 70"))
    invite.headers.remove("Via")
    invite.headers.add("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcall1")
    alice_layer.send_request(invite, bob_addr, 0.0)
    [(data, _)] = alice_layer.datagrams_to_send()
    bob_layer.receive(parse_message(data), alice_addr, 0.0)
    event = bob_layer.next_event()
    assert isinstance(event, RequestReceived) and event.transaction is not None
    bob_layer.datagrams_to_send()  # 100 Trying, lost

    ok = answer(event.request)
    bob = Dialog.from_uas(event.request, ok, SipUri.parse(BOB_CONTACT))
    bob_layer.send_response(ok, 1.0)
    bob_layer.datagrams_to_send()  # lost
    retransmitter = InviteRetransmitter(ok, event.addr, 1.0)
    deadline = retransmitter.get_timer()
    assert deadline == 1.5
    resent = retransmitter.handle_timer(deadline)
    assert resent is not None
    [(again, addr)] = resent
    assert addr == alice_addr

    alice_layer.receive(parse_message(again), bob_addr, 1.5)
    got = alice_layer.next_event()
    assert isinstance(got, ResponseReceived) and got.response.status == 200
    alice = Dialog.from_uac(invite, got.response)
    ack = alice.create_ack(1, via_host="192.0.2.10", via_port=5060)
    alice_layer.send_stateless(ack, bob_addr)
    [(ack_data, _)] = alice_layer.datagrams_to_send()

    bob_layer.receive(parse_message(ack_data), alice_addr, 1.6)
    got_ack = bob_layer.next_event()
    assert isinstance(got_ack, RequestReceived) and got_ack.transaction is None
    assert bob.matches(got_ack.request)
    assert bob.receive_request(got_ack.request) is None
    retransmitter.ack_received()
    assert retransmitter.get_timer() is None


# -- CANCEL and non-2xx ACK -----------------------------------------------------


def test_make_cancel() -> None:
    invite = parse_request(invite_text())
    invite.headers.add("Route", "<sip:ss1.atlanta.example.com;lr>")
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert [str(v) for v in cancel.vias] == [str(invite.top_via)]
    assert cancel.top_via.branch == "z9hG4bK721e418c4.1"
    assert cancel.headers.get_all("Route") == ["<sip:ss1.atlanta.example.com;lr>"]
    assert cancel.from_ == invite.from_ and cancel.to == invite.to
    assert cancel.call_id == CALL_ID and cancel.cseq == (1, "CANCEL")
    assert cancel.max_forwards == 70
    assert parse_request(bytes(cancel)).method == "CANCEL"
    with pytest.raises(LocalProtocolError):
        make_cancel(cancel)


def test_make_non2xx_ack_is_reexported() -> None:
    invite = parse_request(invite_text())
    ack = make_non2xx_ack(invite, make_response(invite, 486, to_tag="busy"))
    assert ack.cseq == (1, "ACK") and ack.to.tag == "busy"


# -- no BYE before the ACK of the 2xx (§15) ------------------------------------


def test_bye_requested_before_the_ack_waits_for_it() -> None:
    invite = parse_request(invite_text())
    retransmitter = InviteRetransmitter(answer(invite), ("192.0.2.1", 5060), 0.0)
    assert retransmitter.request_bye() is False
    assert retransmitter.bye_waiting
    # The 2xx keeps going out: the peer still needs it to send its ACK.
    assert retransmitter.get_timer() == 0.5
    assert retransmitter.handle_timer(0.5) == [(bytes(answer(invite)), ("192.0.2.1", 5060))]
    assert retransmitter.request_bye() is False  # asking again changes nothing
    retransmitter.ack_received()
    assert retransmitter.done and retransmitter.bye_waiting and not retransmitter.timed_out
    assert retransmitter.request_bye() is True  # acknowledged: the BYE may go


def test_bye_waiting_goes_when_the_2xx_retransmissions_end() -> None:
    invite = parse_request(invite_text())
    retransmitter = InviteRetransmitter(answer(invite), ("192.0.2.1", 5060), 100.0, t1=0.1)
    assert retransmitter.request_bye() is False
    resent = 0
    while (deadline := retransmitter.get_timer()) is not None:
        out = retransmitter.handle_timer(deadline)
        if out is None:
            break
        resent += len(out)
    # §15: "or until the server transaction times out": 64*T1 without an ACK.
    assert deadline == pytest.approx(100.0 + 64 * 0.1)
    assert resent > 0 and retransmitter.timed_out and retransmitter.bye_waiting
    assert retransmitter.request_bye() is True


def test_bye_after_the_ack_goes_at_once() -> None:
    invite = parse_request(invite_text())
    retransmitter = InviteRetransmitter(answer(invite), ("192.0.2.1", 5060), 0.0)
    retransmitter.ack_received()
    assert retransmitter.request_bye() is True
    assert not retransmitter.bye_waiting
