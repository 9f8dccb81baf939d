"""Message parsing, serialising and stream framing (RFC 3261 §7, §8.2.6, §18.3; RFC 4475).

Fixtures live in tests/fixtures/sip: ``valid/*.sip`` must parse,
``invalid/<name>.<status>.sip`` must raise RemoteProtocolError with that status.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ccserver.sip.errors import LocalProtocolError, RemoteProtocolError
from ccserver.sip.headers import Headers
from ccserver.sip.message import (
    REASONS,
    Message,
    Request,
    Response,
    StreamParser,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from ccserver.sip.uri import SipUri

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip"
VALID = sorted((FIXTURES / "valid").glob("*.sip"))
INVALID = sorted((FIXTURES / "invalid").glob("*.sip"))


def load(name: str) -> bytes:
    return (FIXTURES / "valid" / f"{name}.sip").read_bytes()


def parse(name: str) -> Message:
    return parse_message(load(name))


def request(name: str) -> Request:
    message = parse(name)
    assert isinstance(message, Request)
    return message


def response(name: str) -> Response:
    message = parse(name)
    assert isinstance(message, Response)
    return message


def without_length(message: Message) -> Message:
    headers = message.headers.copy()
    headers.remove("Content-Length")
    if isinstance(message, Request):
        return Request(message.method, message.uri, headers, message.body)
    return Response(message.status, message.reason, headers, message.body)


def test_fixtures_are_present_and_crlf() -> None:
    assert len(VALID) >= 30
    assert len(INVALID) >= 20
    for path in VALID + INVALID:
        data = path.read_bytes()
        assert b"\r\n" in data
        assert b"\n" not in data.replace(b"\r\n", b""), path.name


# ---------------------------------------------------------------- fixtures


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_parses(path: Path) -> None:
    message = parse_message(path.read_bytes())
    assert message.call_id
    number, method = message.cseq
    assert number >= 0
    if isinstance(message, Request):
        assert method == message.method
        assert message.uri.scheme in ("sip", "sips", "tel")
    assert message.vias[0] == message.top_via
    assert message.from_.uri.scheme
    assert message.to.uri.scheme
    message.contacts  # noqa: B018
    message.max_forwards  # noqa: B018


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_round_trip(path: Path) -> None:
    first = parse_message(path.read_bytes())
    wire = bytes(first)
    second = parse_message(wire)
    assert without_length(second) == without_length(first)
    assert second.headers.get("Content-Length") == str(len(first.body))
    assert bytes(second) == wire


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_is_rejected(path: Path) -> None:
    status = int(path.suffixes[0].lstrip("."))
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(path.read_bytes())
    assert info.value.status == status, info.value.reason
    # The headers read so far come along so that a response can be built.
    assert info.value.headers is not None
    assert "Via" in info.value.headers


def test_wsinv() -> None:
    # RFC 4475 §3.1.1.1: a short tortuous INVITE.
    message = request("wsinv")
    assert message.method == "INVITE"
    assert str(message.uri) == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.to.tag == "1918181833n"
    assert message.from_.display == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    assert message.max_forwards == 68
    assert message.cseq == (9, "INVITE")
    assert message.headers.get("Subject") == ""
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert [(v.transport, v.host, v.branch) for v in message.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.top_via.params == {"rport": None, "branch": "390skdjuw"}
    [contact] = message.contacts
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert message.headers.get_all("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    ]
    assert message.content_type == "application/sdp"
    assert message.body.startswith(b"v=0\r\n")
    assert len(message.body) == int(message.headers.get("Content-Length") or -1)


def test_intmeth() -> None:
    # RFC 4475 §3.1.1.2: a wide range of valid characters.
    message = request("intmeth")
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert message.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert message.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.display == "token1~` token2'+_ token3*%!.-"
    assert message.from_.params == {
        "fromparam''~+*_!.-%": '"работающий"',
        "tag": "_token~1'+`*%!-.",
    }
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert message.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert bytes(message).startswith(b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual")


def test_escapes_in_uris() -> None:
    # RFC 4475 §3.1.1.3 esc01 and §3.1.1.4 escnull.
    message = request("esc01")
    assert message.uri.user == "sips:user@example.com"
    assert message.uri.host == "example.net"
    assert message.to.uri.user == "user"
    assert message.from_.uri.user == "I have spaces"
    [contact] = message.contacts
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    assert message.content_type == "application/sdp"
    assert bytes(message).startswith(
        b"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n"
    )

    message = request("escnull")
    assert message.to.uri.user == "null-\x00-null"
    assert [c.uri.user for c in message.contacts] == ["\x00", "\x00\x00"]


def test_escaped_method_is_not_register() -> None:
    # RFC 4475 §3.1.1.5: the method is the unknown RE%47IST%45R.
    message = request("esc02")
    assert message.method == "RE%47IST%45R"
    assert message.cseq == (29344, "RE%47IST%45R")
    assert message.to.display == "%Z%45"
    assert [str(c.uri) for c in message.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp() -> None:
    message = request("lwsdisp")
    assert message.from_.display == "caller"
    assert message.from_.tag == "323"


def test_longreq() -> None:
    message = request("longreq")
    assert len(message.vias) == 40
    assert message.vias[-1].host == "sip40.example.com"
    assert message.to.display is not None and len(message.to.display) > 70
    assert len(message.call_id) > 300
    assert message.to.uri.port == 6000


def test_dblreq_ignores_bytes_after_the_body() -> None:
    # RFC 4475 §3.1.1.8: one datagram, one message.
    message = request("dblreq")
    assert message.method == "REGISTER"
    assert message.body == b""
    assert str(message.contacts[0].uri) == "sip:j.user@host.example.com"


def test_semiuri() -> None:
    message = request("semiuri")
    assert message.uri.user == "user;par=u@example.net"
    assert message.uri.params == {}
    assert message.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports() -> None:
    message = request("transports")
    assert [v.transport for v in message.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert [v.sent_by[1] for v in message.vias] == [5060, 5060, 5061, 5060, 5060]
    assert message.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_multipart_body_is_opaque() -> None:
    message = request("mpart01")
    assert message.content_type == "multipart/mixed"
    assert message.body.endswith(b"--boundary42--\r\n")
    assert message.headers.get("MIME-Version") == "1.0"


def test_reason_phrases() -> None:
    # RFC 4475 §3.1.1.12 / §3.1.1.13: UTF-8 and empty reason phrases.
    message = response("unreason")
    assert message.status == 200
    assert message.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert bytes(message).split(b"\r\n", 1)[0] == (
        "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое".encode()
    )
    message = response("noreason")
    assert (message.status, message.reason) == (100, "")


def test_unknown_schemes_outside_the_request_uri() -> None:
    # RFC 4475 §3.3.2 unksm2: accepted, the URIs are opaque.
    message = request("unksm2")
    assert (message.to.uri.scheme, message.to.uri.opaque) == ("isbn", "2983792873")
    assert str(message.from_.uri) == "http://www.example.com"
    assert message.contacts[0].uri.scheme == "name"


def test_contact_params() -> None:
    # RFC 4475 §3.3.4/§3.3.5: addr-spec params belong to the header.
    [contact] = request("cparam01").contacts
    assert contact.params == {"unknownparam": None}
    assert contact.uri.params == {}
    [contact] = request("cparam02").contacts
    assert contact.params == {}
    assert contact.uri.params == {"unknownparam": None}
    [contact] = request("regescrt").contacts
    assert contact.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}


def test_max_forwards_zero_and_absent() -> None:
    assert request("zeromf").max_forwards == 0
    message = request("inv2543")
    assert message.max_forwards is None
    assert message.top_via.branch is None
    assert message.from_.tag is None


def test_semantic_torture_cases_still_parse() -> None:
    # RFC 4475 §3.3: unknown extensions, body types and auth schemes are for
    # the layers above; the parser keeps them intact.
    message = request("bext01")
    assert message.headers.get_all("Require") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]
    assert len(message.headers.get_all("Proxy-Require")) == 2
    assert request("invut").content_type == "application/unknownformat"
    assert request("regaut01").headers.get_all("Authorization") == [
        "NoOneKnowsThisScheme opaque-data=here"
    ]
    assert request("sdp01").headers.get("Accept") == "text/nobodyKnowsThis"


def test_ipv6_message() -> None:
    message = request("ipv6")
    assert (message.uri.host, message.uri.port, message.uri.transport) == (
        "2001:db8::10",
        5070,
        "tcp",
    )
    assert message.top_via.sent_by == ("2001:db8::9:1", 5070)
    assert message.top_via.params["received"] == "2001:db8::9:255"
    assert message.to.uri.host == "2001:db8::10"
    assert message.contacts[0].uri.host == "2001:db8::9:1"
    assert bytes(message).startswith(b"INVITE sip:[2001:db8::10]:5070;transport=tcp SIP/2.0\r\n")


def test_tel_request_uri() -> None:
    message = request("tel")
    assert message.uri.scheme == "tel"
    assert message.uri.user == "+1-201-555-0123"
    assert message.to.uri.user == "+1-201-555-0123"


def test_leading_crlf_skipped() -> None:
    # RFC 3261 §7.5.
    assert request("leadcrlf").method == "OPTIONS"


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    message = request("nocl")
    assert message.body == b"Please take the next call."
    assert "Content-Length" not in message.headers
    assert b"\r\nContent-Length: 26\r\n\r\nPlease" in bytes(message)


def test_rfc3665_registration() -> None:
    challenge = response("rfc3665-reg-f2")
    assert challenge.status == 401
    [value] = challenge.headers.get_all("WWW-Authenticate")
    assert value.startswith('Digest realm="atlanta.example.com", qop="auth", nonce=')
    assert challenge.top_via.params["received"] == "192.0.2.201"
    retry = request("rfc3665-reg-f3")
    assert retry.cseq == (2, "REGISTER")
    assert len(retry.headers.get_all("Authorization")) == 1
    assert retry.uri.scheme == "sips"
    ok = response("rfc3665-reg-f4")
    assert ok.contacts[0].params == {"expires": "3600"}
    assert ok.headers.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"


def test_rfc3665_call() -> None:
    invite = request("rfc3665-call-f2")
    assert [v.host for v in invite.vias] == [
        "ss1.atlanta.example.com",
        "client.atlanta.example.com",
    ]
    assert invite.vias[1].params == {"branch": "z9hG4bK74bf9", "received": "192.0.2.101"}
    assert invite.max_forwards == 69
    ringing = response("rfc3665-call-f3")
    assert ringing.to.tag == "314159"
    assert ringing.headers.get_all("Record-Route") == ["<sip:ss1.atlanta.example.com;lr>"]
    ack = request("rfc3665-call-f5")
    assert ack.cseq == (1, "ACK")
    cancel = request("rfc3665-cancel-f1")
    terminated = response("rfc3665-cancel-f2")
    assert cancel.top_via.branch == terminated.top_via.branch
    assert terminated.cseq == (1, "INVITE")


def test_insufficient_headers_error_keeps_what_was_there() -> None:
    data = (FIXTURES / "invalid" / "insuf.400.sip").read_bytes()
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    headers = info.value.headers
    assert headers is not None
    assert headers.get("CSeq") == "193942 INVITE"
    assert headers.get("Via") == "SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"
    assert info.value.reason == "Missing From header"


# ---------------------------------------------------------------- parse_message edge cases

MINIMAL = (
    b"OPTIONS sip:user@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKmin\r\n"
    b"From: <sip:caller@example.com>;tag=1\r\n"
    b"To: <sip:user@example.com>\r\n"
    b"Call-ID: minimal@192.0.2.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
)


def minimal(extra: bytes = b"", body: bytes = b"", *, start: bytes | None = None) -> bytes:
    data = MINIMAL if start is None else start + b"\r\n" + MINIMAL.split(b"\r\n", 1)[1]
    return data + extra + b"\r\n" + body


def test_size_limit() -> None:
    data = minimal(b"Content-Length: 5\r\n", b"hello")
    assert parse_message(data, max_size=len(data)).body == b"hello"
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert (info.value.status, info.value.reason) == (513, "Message Too Large")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(b"x" * 70_000)
    assert info.value.status == 513


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n\r\n"])
def test_empty_datagram(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_bare_lf_line_ends_are_tolerated() -> None:
    data = minimal(b"Content-Length: 2\r\n", b"ok").replace(b"\r\n", b"\n")
    message = parse_message(data)
    assert message.body == b"ok"
    assert message.cseq == (1, "OPTIONS")


def test_binary_body_is_kept() -> None:
    body = bytes(range(256))
    message = parse_message(minimal(b"Content-Type: application/octet-stream\r\nl: 256\r\n", body))
    assert message.body == body
    assert parse_message(bytes(message)).body == body


def test_compact_forms_and_case() -> None:
    data = (
        b"invite sip:user@example.com sip/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc\r\n"
        b"f: <sip:caller@example.com>;tag=1\r\n"
        b"t: <sip:user@example.com>\r\n"
        b"I: compact@192.0.2.1\r\n"
        b"CSEQ: 1 invite\r\n"
        b"m: <sip:caller@192.0.2.1>\r\n"
        b"k: timer, 100rel\r\n"
        b"l: 0\r\n\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, Request)
    assert message.method == "invite"  # methods are case-sensitive (§7.1)
    assert message.call_id == "compact@192.0.2.1"
    assert message.headers.get_all("Supported") == ["timer", "100rel"]
    assert bytes(message).startswith(b"invite sip:user@example.com SIP/2.0\r\nVia: ")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (minimal(start=b"OPTIONS sip:user@example.com SIP/2.0 extra"), 400),
        (minimal(start=b"OPTIONS sip:user@example.com"), 400),
        (minimal(start=b"OPTIONS sip:user@example.com HTTP/1.1"), 400),
        (minimal(start=b"OPTIONS sip:user@example.com SIP/2"), 400),
        (minimal(start=b"OPTIONS sip:user@example.com SIP/3.0"), 505),
        (minimal(start=b"OPT\xc3\xa9ONS sip:user@example.com SIP/2.0"), 400),
        (minimal(start=b"OPTIONS mailto:user@example.com SIP/2.0"), 416),
        (minimal(start=b"OPTIONS sip:user@example.com:99999 SIP/2.0"), 400),
        (minimal(start=b"SIP/2.0 99 Too Small"), 400),
        (minimal(start=b"SIP/2.0 700 Too Big"), 400),
        (minimal(start=b"SIP/2.0 2000 OK"), 400),
        (minimal(start=b"SIP/3.0 200 OK"), 505),
        (minimal(start=b"SIP/2.0"), 400),
        (minimal(start=b"OPTIONS sip:u@example.com SIP/2.0\r\n folded onto nothing"), 400),
        (minimal(b"Max-Forwards: 256\r\n"), 400),
        (minimal(b"Max-Forwards: -1\r\n"), 400),
        (minimal(b"Max-Forwards: 70\r\nMax-Forwards: 69\r\n"), 400),
        (minimal(b"Content-Length: 1 0\r\n"), 400),
        (minimal(b"Content-Length: 99999999999999999999\r\n"), 400),
        (minimal(b"Content-Type: a/b\r\nContent-Type: c/d\r\n"), 400),
        (minimal(b"Contact: *\r\nContact: <sip:a@b>\r\n"), 400),
        (minimal(b"Date: 13 Nov 2010 23:29:00 GMT\r\n"), 400),
        (minimal(b"Bad\rHeader: x\r\n"), 400),
        (minimal(b"X-Value: a\rb\r\n"), 400),
        (minimal(b"No-Colon-Here\r\n"), 400),
        (minimal(b"Sp ace: x\r\n"), 400),
        (minimal(b"Subject: caf\xe9\r\n"), 400),
        (MINIMAL.replace(b"Call-ID: minimal@192.0.2.1", b"Call-ID: has space") + b"\r\n", 400),
        (MINIMAL.replace(b"Call-ID: minimal@192.0.2.1", b"Call-ID:") + b"\r\n", 400),
        (MINIMAL.replace(b"CSeq: 1 OPTIONS", b"CSeq: 4294967296 OPTIONS") + b"\r\n", 400),
        (MINIMAL.replace(b"CSeq: 1 OPTIONS", b"CSeq: OPTIONS") + b"\r\n", 400),
        (MINIMAL.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 OPTIONS x") + b"\r\n", 400),
        (
            MINIMAL.replace(b"To: <sip:user@example.com>", b"To: <sip:user@example.com") + b"\r\n",
            400,
        ),
        (MINIMAL.replace(b"From: <sip:caller@example.com>;tag=1", b"") + b"\r\n", 400),
        (MINIMAL.replace(b";branch=z9hG4bKmin", b";branch=z9hG4bK") + b"\r\n", 400),
    ],
)
def test_bad_messages(data: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status == status, info.value.reason


def test_response_parses_with_and_without_reason() -> None:
    head = MINIMAL.split(b"\r\n", 1)[1]
    for start, reason in [(b"SIP/2.0 200 OK", "OK"), (b"SIP/2.0 183 ", ""), (b"SIP/2.0 183", "")]:
        message = parse_message(start + b"\r\n" + head + b"\r\n")
        assert isinstance(message, Response)
        assert message.reason == reason


def test_date_in_gmt_is_accepted() -> None:
    message = parse_message(minimal(b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"))
    assert message.headers.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"


def test_folded_value_is_unfolded() -> None:
    message = parse_message(minimal(b"Subject: first\r\n\tsecond\r\n   third\r\n"))
    assert message.headers.get("Subject") == "first second third"


# ---------------------------------------------------------------- accessors


def bare_request(*fields: tuple[str, str]) -> Request:
    return Request("OPTIONS", SipUri(host="example.com"), Headers(fields))


@pytest.mark.parametrize(
    "accessor",
    [
        lambda m: m.call_id,
        lambda m: m.cseq,
        lambda m: m.vias,
        lambda m: m.top_via,
        lambda m: m.from_,
        lambda m: m.to,
    ],
)
def test_missing_required_header(accessor: Callable[[Request], object]) -> None:
    message = bare_request(("Subject", "x"))
    with pytest.raises(RemoteProtocolError) as info:
        accessor(message)
    assert info.value.status == 400
    assert info.value.headers is message.headers


@pytest.mark.parametrize(
    ("name", "value", "accessor"),
    [
        ("Via", "SIP/2.0/UDP", lambda m: m.vias),
        ("Via", "SIP/2.0/UDP", lambda m: m.top_via),
        ("From", "<sip:a@b", lambda m: m.from_),
        ("To", "junk", lambda m: m.to),
        ("Contact", "<sip:a@b>;;", lambda m: m.contacts),
        ("Max-Forwards", "x", lambda m: m.max_forwards),
        ("Expires", "-1", lambda m: m.expires),
        ("CSeq", "1", lambda m: m.cseq),
    ],
)
def test_bad_header_raises_on_access(
    name: str, value: str, accessor: Callable[[Request], object]
) -> None:
    message = bare_request((name, value))
    with pytest.raises(RemoteProtocolError) as info:
        accessor(message)
    assert info.value.status == 400
    assert info.value.headers is message.headers
    assert name in info.value.reason


def test_optional_accessors() -> None:
    message = bare_request()
    assert message.max_forwards is None
    assert message.expires is None
    assert message.content_type is None
    assert message.contacts == []
    assert not message.is_wildcard_contact
    message = bare_request(
        ("Expires", "3600"),
        ("Max-Forwards", "70"),
        ("Content-Type", "Application/SDP ; charset=UTF-8"),
    )
    assert (message.expires, message.max_forwards, message.content_type) == (
        3600,
        70,
        "application/sdp",
    )


def test_expires_overlarge_is_clamped() -> None:
    # RFC 3261 §20.19 / RFC 4475 §3.1.2.4: delta-seconds stop at 2**32-1.
    assert bare_request(("Expires", "1" + "0" * 40)).expires == 2**32 - 1
    assert bare_request(("Expires", "4294967296")).expires == 2**32 - 1


def test_wildcard_contact() -> None:
    message = bare_request(("Contact", "*"), ("Expires", "0"))
    assert message.is_wildcard_contact
    assert message.contacts == []


def test_contacts_split_and_combined() -> None:
    message = bare_request(
        ("Contact", '"Doe, John" <sip:j@example.com>;q=0.7, <sip:k@example.com>'),
        ("m", "sip:l@example.com;expires=60"),
    )
    assert [str(c.uri) for c in message.contacts] == [
        "sip:j@example.com",
        "sip:k@example.com",
        "sip:l@example.com",
    ]
    assert message.contacts[0].display == "Doe, John"
    assert message.contacts[2].params == {"expires": "60"}


# ---------------------------------------------------------------- serialising


def test_bytes_writes_the_real_content_length() -> None:
    message = parse_message(minimal(b"Content-Length: 3\r\nX-After: 1\r\n", b"abc"))
    message.body = b"hello"
    wire = bytes(message)
    assert b"\r\nContent-Length: 5\r\nX-After: 1\r\n\r\nhello" in wire
    assert wire.count(b"Content-Length") == 1
    message.headers.add("Content-Length", "99")
    assert bytes(message).count(b"Content-Length") == 1


def test_bytes_of_built_messages() -> None:
    request_ = Request(
        "INVITE",
        SipUri(user="bob", host="biloxi.example.com"),
        Headers([("v", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds")]),
        b"v=0\r\n",
    )
    assert bytes(request_) == (
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"v=0\r\n"
    )
    response_ = Response(486, "Busy Here", Headers())
    assert bytes(response_) == b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n"
    assert bytes(Response(100, "", Headers())).startswith(b"SIP/2.0 100 \r\n")


def test_bytes_refuses_what_cannot_go_on_the_wire() -> None:
    uri = SipUri(host="example.com")
    with pytest.raises(LocalProtocolError):
        bytes(Request("BAD METHOD", uri, Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(Request("OPTIONS", SipUri(host="exa mple.com"), Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(Response(1000, "Huge", Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(Response(200, "OK\r\nVia: x", Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(Response(200, "OK", Headers([("Subject", "\udce9")])))


# ---------------------------------------------------------------- make_response


def test_make_response_copies_the_right_headers() -> None:
    invite = request("rfc3665-call-f2")
    invite.headers.add("Timestamp", "54")
    ringing = make_response(invite, 180, to_tag="314159", headers=[("Contact", "<sip:bob@b>")])
    assert (ringing.status, ringing.reason, ringing.body) == (180, "Ringing", b"")
    assert list(ringing.headers) == [
        ("Via", "SIP/2.0/TCP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1"),
        (
            "Via",
            "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9 ;received=192.0.2.101",
        ),
        ("From", "Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl"),
        ("To", "Bob <sip:bob@biloxi.example.com>;tag=314159"),
        ("Call-ID", "3848276298220188511@atlanta.example.com"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:bob@b>"),
    ]
    assert ringing.to.tag == "314159"
    # The response is itself a valid message.
    again = parse_message(bytes(ringing))
    assert without_length(again) == ringing


def test_make_response_keeps_an_existing_to_tag() -> None:
    bye = request("rfc3665-call-f6")
    ok = make_response(bye, 200, to_tag="other")
    assert ok.to.tag == "9fxced76sl"
    assert ok.headers.get("To") == bye.headers.get("To")


def test_make_response_to_tag_on_addr_spec_to() -> None:
    message = request("lwsdisp")
    ok = make_response(message, 200, to_tag="abc")
    assert ok.headers.get("To") == "sip:user@example.com;tag=abc"
    assert ok.to.tag == "abc"
    assert ok.to.uri.params == {}


def test_make_response_keeps_comma_combined_vias() -> None:
    message = request("wsinv")
    response_ = make_response(message, 100)
    assert [v.host for v in response_.vias] == [v.host for v in message.vias]
    assert response_.reason == "Trying"
    assert response_.to.tag == "1918181833n"


def test_make_response_timestamp_only_on_100() -> None:
    message = request("rfc3665-call-f1")
    message.headers.add("Timestamp", "54 0.2")
    assert make_response(message, 100).headers.get("Timestamp") == "54 0.2"
    assert "Timestamp" not in make_response(message, 180).headers


def test_make_response_reason_and_body() -> None:
    message = request("rfc3665-call-f1")
    assert make_response(message, 603).reason == "Decline"
    assert make_response(message, 499).reason == ""
    assert make_response(message, 486, "Agent Busy").reason == "Agent Busy"
    ok = make_response(message, 200, body=b"v=0\r\n", headers=[("c", "application/sdp")])
    assert ok.body == b"v=0\r\n"
    assert ok.content_type == "application/sdp"
    assert b"Content-Length: 5\r\n" in bytes(ok)
    for name in ("Max-Forwards", "Contact", "Content-Type", "Record-Route"):
        assert name not in make_response(request("rfc3665-call-f2"), 404).headers


def test_reasons_cover_the_pbx_codes() -> None:
    codes = [100, 180, 181, 182, 183, 200, 202, 300, 301, 302, 305, 380]
    codes += [400, 401, 403, 404, 405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421]
    codes += [422, 423, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489, 491]
    codes += [500, 501, 502, 503, 504, 505, 513, 600, 603, 604, 606]
    for code in codes:
        assert REASONS[code]
    assert REASONS[487] == "Request Terminated"
    assert REASONS[481] == "Call/Transaction Does Not Exist"


def test_identifiers() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith("z9hG4bK") and len(b) > 12 for b in branches)
    tags = {new_tag() for _ in range(100)}
    assert len(tags) == 100
    call_id = new_call_id("cc.example.com")
    assert call_id.endswith("@cc.example.com")
    assert new_call_id("cc.example.com") != call_id
    # They survive the parser.
    headers = MINIMAL.replace(b"z9hG4bKmin", new_branch().encode())
    headers = headers.replace(b"minimal@192.0.2.1", new_call_id("[2001:db8::1]").encode())
    message = parse_message(headers.replace(b"tag=1", f"tag={new_tag()}".encode()) + b"\r\n")
    assert message.top_via.branch is not None


# ---------------------------------------------------------------- StreamParser

STREAMABLE = [
    p for p in VALID if b"\r\nContent-Length" in p.read_bytes() or b"\r\nl:" in p.read_bytes()
]
STREAMABLE = [p for p in STREAMABLE if p.stem != "dblreq"]


class Feeder:
    """Feeds data whole or in pieces (Twisted's test_sip reruns byte by byte)."""

    def __init__(self, chunk: int | None) -> None:
        self.chunk = chunk

    def __call__(self, parser: StreamParser, data: bytes) -> list[Message]:
        pieces = (
            [data]
            if self.chunk is None
            else [data[i : i + self.chunk] for i in range(0, len(data), self.chunk)]
        )
        out: list[Message] = []
        for piece in pieces:
            parser.feed(piece)
            while (message := parser.next_message()) is not None:
                out.append(message)
        return out


@pytest.fixture(params=[None, 1, 7], ids=["whole", "bytewise", "chunks7"])
def feed(request: pytest.FixtureRequest) -> Feeder:
    return Feeder(request.param)


def framed(name: str, body: bytes = b"") -> bytes:
    return minimal(f"Content-Length: {len(body)}\r\n".encode(), body).replace(
        b"minimal@", f"{name}@".encode()
    )


class TestStreamParser:
    def test_one_message(self, feed: Feeder) -> None:
        parser = StreamParser()
        [message] = feed(parser, framed("one", b"hello\r\n\r\nworld"))
        assert message.call_id == "one@192.0.2.1"
        assert message.body == b"hello\r\n\r\nworld"
        assert parser.next_message() is None

    def test_partial_message_waits(self, feed: Feeder) -> None:
        parser = StreamParser()
        data = framed("partial", b"0123456789")
        assert feed(parser, data[:-1]) == []
        assert parser.next_message() is None
        [message] = feed(parser, data[-1:])
        assert message.body == b"0123456789"

    def test_two_messages_back_to_back(self, feed: Feeder) -> None:
        parser = StreamParser()
        messages = feed(parser, framed("first", b"a") + framed("second", b"bb"))
        assert [(m.call_id, m.body) for m in messages] == [
            ("first@192.0.2.1", b"a"),
            ("second@192.0.2.1", b"bb"),
        ]

    def test_keepalives_between_messages(self, feed: Feeder) -> None:
        # RFC 5626 §3.5.1: CRLFCRLF pings between messages.
        parser = StreamParser()
        data = b"\r\n\r\n" + framed("first") + b"\r\n\r\n\r\n\r\n" + framed("second") + b"\r\n\r\n"
        messages = feed(parser, data)
        assert [m.call_id for m in messages] == ["first@192.0.2.1", "second@192.0.2.1"]
        assert parser.pings == 4

    def test_only_keepalives(self, feed: Feeder) -> None:
        parser = StreamParser()
        assert feed(parser, b"\r\n\r\n" * 3) == []
        assert parser.pings == 3
        assert feed(parser, b"\r\n") == []
        assert parser.pings == 3

    def test_every_fixture_in_one_stream(self, feed: Feeder) -> None:
        parser = StreamParser()
        data = b"\r\n\r\n".join(p.read_bytes() for p in STREAMABLE)
        messages = feed(parser, data)
        assert messages == [parse_message(p.read_bytes()) for p in STREAMABLE]
        assert len(messages) == len(STREAMABLE) > 25

    def test_content_length_is_mandatory(self, feed: Feeder) -> None:
        parser = StreamParser()
        with pytest.raises(RemoteProtocolError) as info:
            feed(parser, minimal() + framed("next"))
        assert info.value.status == 400
        assert info.value.headers is not None
        assert info.value.headers.get("Call-ID") == "minimal@192.0.2.1"
        # The framing is lost: the stream stays broken.
        with pytest.raises(RemoteProtocolError):
            feed(parser, framed("later"))
        with pytest.raises(RemoteProtocolError):
            parser.next_message()

    @pytest.mark.parametrize("value", [b"-1", b"x", b"1, 2", b"12345678901"])
    def test_bad_content_length_breaks_the_stream(self, feed: Feeder, value: bytes) -> None:
        parser = StreamParser()
        with pytest.raises(RemoteProtocolError) as info:
            feed(parser, minimal(b"Content-Length: " + value + b"\r\n") + framed("next"))
        assert info.value.status == 400
        with pytest.raises(RemoteProtocolError):
            parser.next_message()

    def test_bad_message_with_good_framing_is_skipped(self, feed: Feeder) -> None:
        parser = StreamParser()
        bad = framed("bad").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
        with pytest.raises(RemoteProtocolError) as info:
            feed(parser, bad)
        assert info.value.status == 400
        assert info.value.headers is not None
        assert info.value.headers.get("Call-ID") == "bad@192.0.2.1"
        # The bad message was consumed and the stream is still readable.
        messages = feed(parser, b"\r\n\r\n" + framed("good"))
        assert [m.call_id for m in messages] == ["good@192.0.2.1"]

    def test_bad_message_then_good_in_one_read(self) -> None:
        parser = StreamParser()
        bad = framed("bad").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
        parser.feed(bad + framed("good"))
        with pytest.raises(RemoteProtocolError):
            parser.next_message()
        message = parser.next_message()
        assert message is not None
        assert message.call_id == "good@192.0.2.1"

    def test_header_section_too_large(self, feed: Feeder) -> None:
        parser = StreamParser(max_size=1000)
        with pytest.raises(RemoteProtocolError) as info:
            feed(parser, MINIMAL + b"X-Filler: " + b"a" * 2000)
        assert info.value.status == 513
        with pytest.raises(RemoteProtocolError):
            parser.next_message()

    def test_body_too_large(self, feed: Feeder) -> None:
        parser = StreamParser(max_size=1000)
        with pytest.raises(RemoteProtocolError) as info:
            feed(parser, framed("big", b"x" * 1000))
        assert info.value.status == 513
        assert info.value.headers is not None

    def test_message_at_the_size_limit(self, feed: Feeder) -> None:
        data = framed("limit", b"x" * 100)
        parser = StreamParser(max_size=len(data))
        [message] = feed(parser, data)
        assert len(message.body) == 100

    def test_not_utf8_breaks_the_stream(self, feed: Feeder) -> None:
        parser = StreamParser()
        with pytest.raises(RemoteProtocolError) as info:
            feed(parser, framed("x").replace(b"tag=1", b"tag=\xff"))
        assert info.value.status == 400
        assert info.value.headers is not None
        assert info.value.headers.get("CSeq") == "1 OPTIONS"

    def test_bare_lf_framing(self, feed: Feeder) -> None:
        parser = StreamParser()
        data = framed("lf", b"body").replace(b"\r\n", b"\n")
        [message] = feed(parser, data + data)[:1]
        assert message.body == b"body"
