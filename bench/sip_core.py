"""How much CPU the sans-IO SIP core costs per message and per call.

Prints a table and JSON lines: parse and serialise rates for a typical INVITE,
and complete INVITE/200/ACK + BYE/200 exchanges between a client and a server
transaction layer paired in memory (no sockets), i.e. the signalling cost of
one call without I/O.

    .venv/bin/python bench/sip_core.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import time

from ccserver.sip.message import Request, Response, make_response, parse_message
from ccserver.sip.transaction import RequestReceived, ResponseReceived, TransactionLayer

INVITE = (
    b"INVITE sip:5000@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-%d;rport\r\n"
    b"From: <sip:0600000001@127.0.0.2:5090>;tag=abc%d\r\n"
    b"To: <sip:5000@127.0.0.1:5060>\r\n"
    b"Call-ID: %d@127.0.0.2\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:0600000001@127.0.0.2:5090>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 129\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 16000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def rate(fn: object, seconds: float) -> tuple[float, int]:
    assert callable(fn)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn(n)
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), n


def one_call(i: int) -> None:
    """INVITE -> 100/200 -> (ACK is end to end) and BYE -> 200, through both layers."""
    client = TransactionLayer()
    server = TransactionLayer()
    a, b = ("127.0.0.2", 5090), ("127.0.0.1", 5060)
    now = 0.0
    invite = parse_message(INVITE % (i, i, i))
    assert isinstance(invite, Request)
    client.send_request(invite, b, now)
    for data, _ in client.datagrams_to_send():
        server.receive(parse_message(data), a, now)
    event = server.next_event()
    assert isinstance(event, RequestReceived)
    server.send_response(make_response(event.request, 200, to_tag="t"), now)
    for data, _ in server.datagrams_to_send():
        client.receive(parse_message(data), b, now)
    while (ev := client.next_event()) is not None:
        if isinstance(ev, ResponseReceived) and ev.response.status == 200:
            break
    bye = parse_message(
        (INVITE % (i, i, i))
        .replace(b"INVITE sip", b"BYE sip")
        .replace(b"1 INVITE", b"2 BYE")
        .replace(b"branch=z9hG4bK-", b"branch=z9hG4bKbye-")
    )
    assert isinstance(bye, Request)
    bye.body = b""
    client.send_request(bye, b, now)
    for data, _ in client.datagrams_to_send():
        server.receive(parse_message(data), a, now)
    event = server.next_event()
    while event is not None and not isinstance(event, RequestReceived):
        event = server.next_event()
    assert event is not None
    server.send_response(make_response(event.request, 200), now)
    for data, _ in server.datagrams_to_send():
        client.receive(parse_message(data), b, now)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()
    sample = parse_message(INVITE % (1, 1, 1))
    assert isinstance(sample, Request)
    resp = make_response(sample, 200, to_tag="x")
    assert isinstance(resp, Response)
    secs = args.seconds
    rows = [
        (
            "parse INVITE (messages/s)",
            *rate(lambda i: parse_message(INVITE % (i, i, i)), args.seconds),
        ),
        ("serialise 200 OK (messages/s)", *rate(lambda i: bytes(resp), secs)),
        ("INVITE+BYE calls through two layers (calls/s)", *rate(one_call, secs)),
    ]
    print(f"{'measure':<50} {'rate':>12} {'µs each':>10}")
    for name, r, _ in rows:
        print(f"{name:<50} {r:>12,.0f} {1e6 / r:>10.1f}")
    for name, r, n in rows:
        print(
            json.dumps(
                {
                    "bench": "sip_core",
                    "measure": name,
                    "rate": round(r, 1),
                    "us_each": round(1e6 / r, 2),
                    "samples": n,
                }
            )
        )


if __name__ == "__main__":
    main()
