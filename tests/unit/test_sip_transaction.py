"""RFC 3261 §17 transactions: a client and a server layer paired in memory.

Datagrams are moved by hand between the two layers (parsed with the real
parser), so each test decides which ones are lost. Time only moves when a
test passes a new ``now``.
"""

from __future__ import annotations

import logging

import pytest

from ccserver.sip.dialog import make_cancel
from ccserver.sip.errors import LocalProtocolError
from ccserver.sip.message import Request, Response, make_response, parse_message
from ccserver.sip.transaction import (
    CLIENT_INVITE_TABLE,
    CLIENT_NON_INVITE_TABLE,
    SERVER_INVITE_TABLE,
    SERVER_NON_INVITE_TABLE,
    Address,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionEvent,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    make_non2xx_ack,
)

ALICE: Address = ("192.0.2.10", 5060)
BOB: Address = ("192.0.2.20", 5060)
BRANCH = "z9hG4bKnashds8"


def request_text(
    method: str = "INVITE",
    *,
    branch: str = BRANCH,
    cseq: int = 1,
    to_tag: str | None = None,
    via_host: str = "192.0.2.10",
    call_id: str = "a84b4c76e66710@pc33.atlanta.example.com",
) -> bytes:
    to = "Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host}:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@192.0.2.10>\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


def make_request(method: str = "INVITE", **kwargs: object) -> Request:
    message = parse_message(request_text(method, **kwargs))  # type: ignore[arg-type]
    assert isinstance(message, Request)
    return message


def parse(data: bytes) -> Request | Response:
    return parse_message(data)


def status_of(data: bytes) -> int:
    message = parse(data)
    assert isinstance(message, Response)
    return message.status


def method_of(data: bytes) -> str:
    message = parse(data)
    assert isinstance(message, Request)
    return message.method


def drain_events(layer: TransactionLayer, *, bookkeeping: bool = False) -> list[TransactionEvent]:
    events: list[TransactionEvent] = []
    while (event := layer.next_event()) is not None:
        if bookkeeping or not isinstance(event, TransactionTerminated):
            events.append(event)
    return events


def sent(layer: TransactionLayer, to: Address | None = None) -> list[bytes]:
    datagrams = layer.datagrams_to_send()
    if to is not None:
        assert all(addr == to for _, addr in datagrams)
    return [data for data, _ in datagrams]


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, list[bytes]]]:
    """Fire every timer up to ``until``; what was sent at each firing."""
    fired: list[tuple[float, list[bytes]]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        fired.append((deadline, sent(layer)))
    return fired


class Pair:
    """Alice's layer (client side) and Bob's layer (server side)."""

    def __init__(self, *, reliable: bool = False) -> None:
        self.alice = TransactionLayer()
        self.bob = TransactionLayer()
        self.reliable = reliable

    def to_bob(self, data: bytes, now: float) -> None:
        self.bob.receive(parse(data), ALICE, now, reliable=self.reliable)

    def to_alice(self, data: bytes, now: float) -> None:
        self.alice.receive(parse(data), BOB, now, reliable=self.reliable)

    def invite(self, now: float = 0.0) -> tuple[ClientTransaction, ServerTransaction]:
        """INVITE from Alice reaches Bob; Bob's 100 Trying reaches Alice."""
        client = self.alice.send_request(make_request(), BOB, now, reliable=self.reliable)
        [data] = sent(self.alice, BOB)
        self.to_bob(data, now)
        [event] = drain_events(self.bob)
        assert isinstance(event, RequestReceived)
        assert event.transaction is not None
        [trying] = sent(self.bob, ALICE)
        assert status_of(trying) == 100
        self.to_alice(trying, now)
        [got] = drain_events(self.alice)
        assert isinstance(got, ResponseReceived) and got.response.status == 100
        return client, event.transaction


# -- INVITE -------------------------------------------------------------------


def test_invite_happy_path_100_180_200() -> None:
    pair = Pair()
    client, server = pair.invite()
    assert client.state == "Proceeding"
    assert server.state == "Proceeding"
    assert server.addr == ALICE and server.is_invite

    pair.bob.send_response(make_response(server.request, 180, to_tag="314159"), 0.1)
    pair.to_alice(sent(pair.bob, ALICE)[0], 0.1)
    [ringing] = drain_events(pair.alice)
    assert isinstance(ringing, ResponseReceived)
    assert ringing.response.status == 180 and ringing.transaction is client

    ok = make_response(server.request, 200, to_tag="314159")
    pair.bob.send_response(ok, 2.0)
    assert server.state == "Accepted"
    pair.to_alice(sent(pair.bob, ALICE)[0], 2.0)
    [final] = drain_events(pair.alice)
    assert isinstance(final, ResponseReceived)
    assert final.response.status == 200 and final.transaction is client
    assert client.state == "Accepted" and client.last_response is final.response
    # The client transaction does not ACK a 2xx: that is the TU's job.
    assert sent(pair.alice) == []

    # The TU's ACK has its own branch and matches no server transaction.
    ack = make_request("ACK", branch="z9hG4bK776asdhds", to_tag="314159")
    pair.alice.send_stateless(ack, BOB)
    pair.to_bob(sent(pair.alice, BOB)[0], 2.1)
    [got_ack] = drain_events(pair.bob)
    assert isinstance(got_ack, RequestReceived)
    assert got_ack.transaction is None and got_ack.request.method == "ACK"

    # RFC 6026 Timers L and M (64*T1) end both sides.
    assert run_timers(pair.alice, 100) == [(34.0, [])]
    assert run_timers(pair.bob, 100) == [(34.0, [])]
    assert client.state == server.state == "Terminated"
    assert [type(e) for e in drain_events(pair.alice, bookkeeping=True)] == [TransactionTerminated]
    assert len(pair.alice) == len(pair.bob) == 0
    assert pair.alice.get_timer() is None


def test_timer_a_doubles_until_timer_b() -> None:
    layer = TransactionLayer()
    client = layer.send_request(make_request(), BOB, 0.0)
    assert method_of(sent(layer, BOB)[0]) == "INVITE"
    fired = run_timers(layer, 100.0)
    retransmits = [at for at, datagrams in fired if datagrams]
    # T1, then 2*T1, 4*T1 ... with no cap (§17.1.1.2).
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert fired[-1] == (32.0, [])
    timeout, _ = drain_events(layer, bookkeeping=True)
    assert isinstance(timeout, TransactionTimeout) and timeout.transaction is client
    assert client.state == "Terminated"
    assert layer.get_timer() is None
    assert len(layer) == 0


def test_provisional_stops_retransmissions_and_timer_b() -> None:
    pair = Pair()
    client, _ = pair.invite()
    # Proceeding: no retransmission and Timer B no longer runs; the TU ends
    # the wait with CANCEL (§9.1).
    assert pair.alice.get_timer() is None
    assert run_timers(pair.alice, 1000) == []
    assert client.state == "Proceeding"
    pair.alice.terminate(client)
    assert client.state == "Terminated" and len(pair.alice) == 0
    assert [type(e) for e in drain_events(pair.alice, bookkeeping=True)] == [TransactionTerminated]


def test_lost_trying_then_retransmitted_invite_is_absorbed() -> None:
    pair = Pair()
    client = pair.alice.send_request(make_request(), BOB, 0.0)
    pair.to_bob(sent(pair.alice)[0], 0.0)
    [event] = drain_events(pair.bob)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    server = event.transaction
    assert status_of(sent(pair.bob)[0]) == 100  # lost

    # Timer A retransmits; Bob resends his last response, the TU sees nothing.
    [(at, [again])] = run_timers(pair.alice, 0.5)
    assert at == 0.5
    pair.to_bob(again, 0.5)
    assert drain_events(pair.bob) == []
    [trying] = sent(pair.bob, ALICE)
    assert status_of(trying) == 100

    pair.bob.send_response(make_response(server.request, 180, to_tag="77"), 0.6)
    assert status_of(sent(pair.bob)[0]) == 180  # lost too
    [(_, [third])] = run_timers(pair.alice, 1.5)
    pair.to_bob(third, 1.5)
    assert drain_events(pair.bob) == []
    [ringing] = sent(pair.bob, ALICE)
    assert status_of(ringing) == 180
    pair.to_alice(ringing, 1.6)
    assert client.state == "Proceeding"


def test_retransmitted_invite_after_2xx_is_absorbed() -> None:
    pair = Pair()
    client, server = pair.invite()
    pair.bob.send_response(make_response(server.request, 200, to_tag="x"), 1.0)
    sent(pair.bob)
    # RFC 6026 Accepted: the INVITE is not new, and the TU (not the
    # transaction) retransmits the 2xx.
    pair.to_bob(bytes(client.request), 1.5)
    assert drain_events(pair.bob) == []
    assert sent(pair.bob) == []
    assert server.state == "Accepted"


def test_486_is_acked_by_the_client_and_retransmitted_until_ack() -> None:
    pair = Pair()
    client, server = pair.invite()
    busy = make_response(server.request, 486, to_tag="b0b")
    pair.bob.send_response(busy, 1.0)
    assert server.state == "Completed"
    [first] = sent(pair.bob, ALICE)  # lost

    # Timer G: T1, 2*T1, 4*T1 ... from the first send; the first two are lost.
    fired = run_timers(pair.bob, 4.5)
    assert [at for at, _ in fired] == [1.5, 2.5, 4.5]
    assert all(status_of(d) == 486 for _, [d] in fired)
    pair.to_alice(fired[-1][1][0], 4.5)

    [event] = drain_events(pair.alice)
    assert isinstance(event, ResponseReceived) and event.response.status == 486
    assert client.state == "Completed"
    [ack] = sent(pair.alice, BOB)
    ack_request = parse(ack)
    assert isinstance(ack_request, Request) and ack_request.method == "ACK"
    assert ack_request.top_via.branch == BRANCH  # same transaction (§17.1.1.3)
    assert ack_request.to.tag == "b0b" and ack_request.cseq == (1, "ACK")

    # A further copy of the 486 is ACKed again but not shown to the TU.
    pair.to_alice(first, 4.6)
    assert drain_events(pair.alice) == []
    assert sent(pair.alice) == [ack]

    pair.to_bob(ack, 4.7)
    assert drain_events(pair.bob) == []  # absorbed: the ACK of a non-2xx
    assert server.state == "Confirmed"
    pair.to_bob(ack, 4.8)
    assert drain_events(pair.bob) == [] and sent(pair.bob) == []

    # Timer I (T4) ends the server, Timer D (32 s) the client.
    assert run_timers(pair.bob, 100) == [(4.7 + 5.0, [])]
    assert server.state == "Terminated"
    assert run_timers(pair.alice, 100) == [(4.5 + 32.0, [])]
    assert client.state == "Terminated"


def test_timer_g_caps_at_t2_and_timer_h_when_ack_never_comes() -> None:
    pair = Pair()
    _, server = pair.invite()
    pair.bob.send_response(make_response(server.request, 603, to_tag="b0b"), 0.0)
    sent(pair.bob)
    fired = run_timers(pair.bob, 100)
    retransmits = [at for at, datagrams in fired if datagrams]
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1] == (32.0, [])
    timeout, terminated = drain_events(pair.bob, bookkeeping=True)
    assert isinstance(timeout, TransactionTimeout) and timeout.transaction is server
    assert isinstance(terminated, TransactionTerminated)
    assert len(pair.bob) == 0


def test_retransmitted_2xx_after_the_client_transaction_ended() -> None:
    pair = Pair()
    client, server = pair.invite()
    pair.bob.send_response(make_response(server.request, 200, to_tag="x"), 1.0)
    [ok] = sent(pair.bob)
    pair.to_alice(ok, 1.0)
    drain_events(pair.alice)

    # While Accepted, a retransmitted 2xx still names the transaction.
    pair.to_alice(ok, 1.5)
    [again] = drain_events(pair.alice)
    assert isinstance(again, ResponseReceived) and again.transaction is client

    run_timers(pair.alice, 40)
    assert client.state == "Terminated"
    drain_events(pair.alice, bookkeeping=True)
    pair.to_alice(ok, 41)
    [late] = drain_events(pair.alice)
    assert isinstance(late, ResponseReceived)
    assert late.transaction is None and late.response.status == 200


def test_stray_responses_are_dropped() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    layer.receive(make_response(request, 200, to_tag="t"), BOB, 0.0)
    layer.receive(make_response(make_request(), 486, to_tag="t"), BOB, 0.0)
    assert layer.next_event() is None

    # §18.1.2: a response with two Vias was meant for a proxy.
    client = layer.send_request(make_request(), BOB, 0.0)
    response = make_response(client.request, 180, to_tag="t")
    response.headers.add("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKother")
    layer.receive(response, BOB, 0.1)
    assert layer.next_event() is None
    assert client.state == "Calling"


# -- non-INVITE ---------------------------------------------------------------


def test_non_invite_timer_e_caps_at_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    client = layer.send_request(make_request("OPTIONS"), BOB, 0.0)
    assert client.state == "Trying" and not client.is_invite
    fired = run_timers(layer, 100)
    retransmits = [at for at, datagrams in fired if datagrams]
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1] == (32.0, [])
    events = drain_events(layer)
    assert len(events) == 1
    assert isinstance(events[0], TransactionTimeout) and events[0].transaction is client


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    pair = Pair()
    client = pair.alice.send_request(make_request("REGISTER"), BOB, 0.0)
    pair.to_bob(sent(pair.alice)[0], 0.0)
    [event] = drain_events(pair.bob)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    server = event.transaction
    assert server.state == "Trying"
    assert sent(pair.bob) == []  # no automatic 100 for non-INVITE

    # A retransmission in Trying is absorbed silently (§17.2.2).
    pair.to_bob(bytes(client.request), 0.2)
    assert drain_events(pair.bob) == [] and sent(pair.bob) == []

    pair.bob.send_response(make_response(server.request, 100), 0.3)
    assert server.state == "Proceeding"
    pair.to_alice(sent(pair.bob)[0], 0.3)
    assert client.state == "Proceeding"
    [event2] = drain_events(pair.alice)
    assert isinstance(event2, ResponseReceived) and event2.response.status == 100

    fired = run_timers(pair.alice, 12)
    assert [at for at, _ in fired] == [0.5, 4.5, 8.5]  # then T2 apart


def test_non_invite_completed_timer_j_and_k() -> None:
    pair = Pair()
    client = pair.alice.send_request(make_request("BYE", to_tag="x"), BOB, 0.0)
    pair.to_bob(sent(pair.alice)[0], 0.0)
    [event] = drain_events(pair.bob)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    server = event.transaction
    pair.bob.send_response(make_response(server.request, 200), 0.1)
    assert server.state == "Completed"
    [ok] = sent(pair.bob)  # lost

    [(_, [again])] = run_timers(pair.alice, 0.5)
    pair.to_bob(again, 0.5)
    assert drain_events(pair.bob) == []
    assert sent(pair.bob) == [ok]  # last response resent
    pair.to_alice(ok, 0.5)
    [final] = drain_events(pair.alice)
    assert isinstance(final, ResponseReceived) and final.transaction is client
    assert client.state == "Completed"
    pair.to_alice(ok, 0.6)
    assert drain_events(pair.alice) == []  # absorbed in Completed

    assert run_timers(pair.alice, 100) == [(5.5, [])]  # Timer K = T4
    assert run_timers(pair.bob, 100) == [(32.1, [])]  # Timer J = 64*T1
    assert client.state == server.state == "Terminated"
    with pytest.raises(LocalProtocolError):
        pair.bob.send_response(make_response(server.request, 200), 40)


# -- CANCEL -------------------------------------------------------------------


def test_cancel_matching_invite() -> None:
    pair = Pair()
    client, server = pair.invite()
    pair.bob.send_response(make_response(server.request, 180, to_tag="r1ng"), 0.1)
    pair.to_alice(sent(pair.bob)[0], 0.1)
    drain_events(pair.alice)

    cancel_client = pair.alice.send_request(make_cancel(client.request), BOB, 1.0)
    assert cancel_client.key == TransactionKey(BRANCH, "CANCEL")
    pair.to_bob(sent(pair.alice)[0], 1.0)
    [event] = drain_events(pair.bob)
    assert isinstance(event, CancelReceived)
    assert event.invite is server and event.cancel.method == "CANCEL"
    [cancel_ok] = sent(pair.bob, ALICE)
    ok = parse(cancel_ok)
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq == (1, "CANCEL")
    assert ok.to.tag == "r1ng"  # §9.2: same To tag as the INVITE's responses

    pair.bob.send_response(make_response(server.request, 487, to_tag="r1ng"), 1.1)
    [terminated] = sent(pair.bob)
    pair.to_alice(cancel_ok, 1.1)
    pair.to_alice(terminated, 1.1)
    events = drain_events(pair.alice)
    assert [
        (e.response.status, e.transaction) for e in events if isinstance(e, ResponseReceived)
    ] == [
        (200, cancel_client),
        (487, client),
    ]
    assert method_of(sent(pair.alice)[0]) == "ACK"

    # A retransmitted CANCEL gets the same 200 again, and no second event.
    pair.to_bob(bytes(cancel_client.request), 1.5)
    assert drain_events(pair.bob) == []
    assert sent(pair.bob) == [cancel_ok]


def test_cancel_matching_nothing_gets_481() -> None:
    layer = TransactionLayer()
    invite = make_request()
    layer.receive(make_cancel(invite), ALICE, 0.0)
    assert drain_events(layer) == []
    [reply] = sent(layer, ALICE)
    response = parse(reply)
    assert isinstance(response, Response)
    assert response.status == 481 and response.to.tag


def test_cancel_after_final_response_has_no_effect() -> None:
    pair = Pair()
    client, server = pair.invite()
    pair.bob.send_response(make_response(server.request, 200, to_tag="t"), 0.5)
    sent(pair.bob)
    pair.to_bob(bytes(make_cancel(client.request)), 0.6)
    assert drain_events(pair.bob) == []  # §9.2: "no effect"
    [reply] = sent(pair.bob)
    assert status_of(reply) == 200


# -- reliable transports ---------------------------------------------------------


def test_reliable_transport_never_retransmits() -> None:
    pair = Pair(reliable=True)
    client, server = pair.invite()
    assert pair.alice.get_timer() is None  # no Timer A; Timer B stopped by the 100

    pair.bob.send_response(make_response(server.request, 486, to_tag="t"), 1.0)
    [busy] = sent(pair.bob)
    assert [name for name in server.deadlines] == ["H"]  # no Timer G
    pair.to_alice(busy, 1.0)
    # Timer D is zero: the TU sees the response, then the transaction ends.
    assert [type(e) for e in drain_events(pair.alice, bookkeeping=True)] == [
        ResponseReceived,
        TransactionTerminated,
    ]
    assert client.state == "Terminated"
    [ack] = sent(pair.alice)
    pair.to_bob(ack, 1.0)
    assert server.state == "Terminated"  # Timer I is zero
    assert pair.bob.get_timer() is None
    assert len(pair.alice) == len(pair.bob) == 0


def test_reliable_invite_still_times_out_with_timer_b() -> None:
    layer = TransactionLayer()
    layer.send_request(make_request(), BOB, 0.0, reliable=True)
    sent(layer)
    fired = run_timers(layer, 100)
    assert fired == [(32.0, [])]
    assert isinstance(layer.next_event(), TransactionTimeout)


def test_reliable_non_invite_timers_j_and_k_are_zero() -> None:
    pair = Pair(reliable=True)
    client = pair.alice.send_request(make_request("OPTIONS"), BOB, 0.0, reliable=True)
    assert list(client.deadlines) == ["F"]
    pair.to_bob(sent(pair.alice)[0], 0.0)
    [event] = drain_events(pair.bob)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    pair.bob.send_response(make_response(event.transaction.request, 200, to_tag="t"), 0.1)
    assert event.transaction.state == "Terminated"
    pair.to_alice(sent(pair.bob)[0], 0.1)
    assert client.state == "Terminated"
    assert pair.alice.get_timer() is None and pair.bob.get_timer() is None


# -- matching and API misuse ------------------------------------------------------


def test_same_branch_from_two_hosts_is_two_transactions() -> None:
    layer = TransactionLayer()
    layer.receive(make_request(), ALICE, 0.0)
    layer.receive(make_request(via_host="192.0.2.99"), ("192.0.2.99", 5060), 0.0)
    events = drain_events(layer)
    assert len(events) == 2 and len(layer) == 2


def test_rfc2543_request_without_cookie_is_still_matched() -> None:
    layer = TransactionLayer()
    text = request_text("OPTIONS").replace(b";branch=" + BRANCH.encode(), b"")
    layer.receive(parse(text), ALICE, 0.0)
    [event] = drain_events(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    layer.receive(parse(text), ALICE, 0.1)
    assert drain_events(layer) == []
    layer.send_response(make_response(event.transaction.request, 200, to_tag="t"), 0.2)
    [ok] = sent(layer)
    layer.receive(parse(text), ALICE, 0.3)
    assert sent(layer) == [ok]


def test_api_misuse_raises_local_protocol_error() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(make_request("ACK"), BOB, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(make_request(branch="old-style-branch"), BOB, 0.0)
    layer.send_request(make_request(), BOB, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(make_request(), BOB, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(make_response(make_request(), 200, to_tag="t"), 0.0)

    layer.receive(make_request("INVITE", branch="z9hG4bKin"), ALICE, 0.0)
    [event] = drain_events(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    invite = event.transaction.request
    layer.send_response(make_response(invite, 404, to_tag="t"), 0.1)
    with pytest.raises(LocalProtocolError):
        layer.send_response(make_response(invite, 180, to_tag="t"), 0.2)


def test_find_server_invite() -> None:
    layer = TransactionLayer()
    layer.receive(make_request(), ALICE, 0.0)
    layer.receive(make_request("OPTIONS", branch="z9hG4bKopt"), ALICE, 0.0)
    found = layer.find_server_invite(BRANCH)
    assert found is not None and found.request.method == "INVITE"
    assert layer.find_server_invite("z9hG4bKopt") is None
    assert layer.find_server_invite("z9hG4bKnone") is None


def test_make_non2xx_ack() -> None:
    invite = make_request()
    invite.headers.add("Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    response = make_response(invite, 404, to_tag="404tag")
    ack = make_non2xx_ack(invite, response)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert [str(v) for v in ack.vias] == [str(invite.top_via)]
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert ack.from_ == invite.from_ and ack.to.tag == "404tag"
    assert ack.call_id == invite.call_id and ack.cseq == (1, "ACK")
    assert isinstance(parse(bytes(ack)), Request)


def test_transitions_are_logged_with_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ccserver.sip.transaction")
    pair = Pair()
    pair.invite()
    assert any(
        "a84b4c76e66710@pc33.atlanta.example.com" in r.getMessage()
        and "Calling -> Proceeding" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    "table",
    [CLIENT_INVITE_TABLE, CLIENT_NON_INVITE_TABLE, SERVER_INVITE_TABLE, SERVER_NON_INVITE_TABLE],
)
def test_tables_are_closed(table: dict[str, dict[str, str]]) -> None:
    for row in table.values():
        assert set(row.values()) <= set(table)
    assert table["Terminated"] == {}
