"""Header names, compact forms, list splitting and the Headers multi-map (RFC 3261 §7.3)."""

from __future__ import annotations

import pytest

from ccserver.sip.errors import LocalProtocolError
from ccserver.sip.headers import COMPACT_FORMS, Headers, canonical_name, split_list


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("call-id", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("Call-Id", "Call-ID"),
        ("i", "Call-ID"),
        ("I", "Call-ID"),
        ("cseq", "CSeq"),
        ("CSEQ", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("Www-Authenticate", "WWW-Authenticate"),
        ("mime-version", "MIME-Version"),
        ("rack", "RAck"),
        ("rseq", "RSeq"),
        ("sip-etag", "SIP-ETag"),
        ("content-type", "Content-Type"),
        ("c", "Content-Type"),
        ("C", "Content-Type"),
        ("MaX-fOrWaRdS", "Max-Forwards"),
        ("proxy-authorization", "Proxy-Authorization"),
        ("record-route", "Record-Route"),
        ("x-queue-id", "X-Queue-Id"),
        ("p-asserted-identity", "P-Asserted-Identity"),
        ("NewFangledHeader", "Newfangledheader"),
        ("C%6Fntact", "C%6fntact"),
        ("v", "Via"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("L", "Content-Length"),
        ("f", "From"),
        ("t", "To"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
        ("y", "Identity"),
    ],
)
def test_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_compact_forms_map_to_canonical_names() -> None:
    for short, full in COMPACT_FORMS.items():
        assert len(short) == 1
        assert canonical_name(full) == full
        assert canonical_name(full.lower()) == full
        assert canonical_name(short.upper()) == full


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("INVITE, ACK,CANCEL ,  BYE", ["INVITE", "ACK", "CANCEL", "BYE"]),
        ("INVITE", ["INVITE"]),
        ("", []),
        (" , ,", []),
        (
            '"Watson, Thomas" <sip:t@example.org>, <sip:a,b@example.org>;q=0.5',
            ['"Watson, Thomas" <sip:t@example.org>', "<sip:a,b@example.org>;q=0.5"],
        ),
        (
            '"say \\"a, b\\"" <sip:x@y>, <sip:z@y>',
            ['"say \\"a, b\\"" <sip:x@y>', "<sip:z@y>"],
        ),
        (
            'SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b;x="p,q"',
            ["SIP/2.0/UDP a;branch=1", 'SIP/2.0/TCP b;x="p,q"'],
        ),
        ('399 host "Incompatible, really"', ['399 host "Incompatible, really"']),
        ('"unterminated, quote', ['"unterminated, quote']),
    ],
)
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


VIAS = "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2"


def _sample() -> Headers:
    return Headers(
        [
            ("v", VIAS),
            ("Via", "SIP/2.0/UDP c.example.com;branch=z9hG4bK3"),
            ("From", "<sip:alice@example.com>;tag=1"),
            ("to", "<sip:bob@example.com>"),
            ("WWW-Authenticate", 'Digest realm="example.com", qop="auth", nonce="abc"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Subject", "Hello, world"),
            ("Allow", "INVITE, ACK"),
            ("allow", "BYE"),
            ("Contact", '"Doe, John" <sip:j@example.com>, <sip:k@example.com>'),
            ("Content-Length", "0"),
        ]
    )


def test_get_returns_first_raw_value() -> None:
    headers = _sample()
    assert headers.get("Via") == VIAS
    assert headers.get("t") == "<sip:bob@example.com>"
    assert headers.get("Max-Forwards") is None
    assert headers.get("Max-Forwards", "70") == "70"


def test_get_all_splits_list_headers_only() -> None:
    headers = _sample()
    assert headers.get_all("via") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        "SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
        "SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    ]
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get_all("m") == ['"Doe, John" <sip:j@example.com>', "<sip:k@example.com>"]
    assert headers.get_all("WWW-Authenticate") == [
        'Digest realm="example.com", qop="auth", nonce="abc"'
    ]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("s") == ["Hello, world"]
    assert headers.get_all("Route") == []


@pytest.mark.parametrize(
    "name",
    ["Authorization", "Proxy-Authenticate", "Proxy-Authorization", "WWW-Authenticate"],
)
def test_auth_headers_never_split(name: str) -> None:
    value = 'Digest username="bob", realm="a.example.com", nonce="x", uri="sip:a", response="y"'
    assert Headers([(name, value)]).get_all(name) == [value]


def test_names_are_canonical_and_order_kept() -> None:
    headers = _sample()
    names = [name for name, _ in headers]
    assert names == [
        "Via",
        "Via",
        "From",
        "To",
        "WWW-Authenticate",
        "Date",
        "Subject",
        "Allow",
        "Allow",
        "Contact",
        "Content-Length",
    ]
    assert len(headers) == 11


def test_contains() -> None:
    headers = _sample()
    assert "via" in headers
    assert "v" in headers
    assert "f" in headers
    assert "Call-ID" not in headers
    assert "i" not in headers
    assert 42 not in headers


def test_add_appends() -> None:
    headers = _sample()
    headers.add("Route", "<sip:p1.example.com;lr>")
    headers.add("route", "<sip:p2.example.com;lr>")
    assert list(headers)[-2:] == [
        ("Route", "<sip:p1.example.com;lr>"),
        ("Route", "<sip:p2.example.com;lr>"),
    ]


def test_prepend_goes_before_first_of_its_name() -> None:
    headers = Headers([("From", "a"), ("Via", "v1"), ("To", "b"), ("Via", "v2")])
    headers.prepend("v", "v0")
    assert list(headers) == [
        ("From", "a"),
        ("Via", "v0"),
        ("Via", "v1"),
        ("To", "b"),
        ("Via", "v2"),
    ]
    headers.prepend("Record-Route", "<sip:p.example.com;lr>")
    assert next(iter(headers)) == ("Record-Route", "<sip:p.example.com;lr>")


def test_set_replaces_all_and_keeps_position() -> None:
    headers = Headers([("Via", "v1"), ("Contact", "c1"), ("From", "f"), ("m", "c2")])
    headers.set("Contact", "c3")
    assert list(headers) == [("Via", "v1"), ("Contact", "c3"), ("From", "f")]
    headers.set("Expires", "60")
    assert list(headers)[-1] == ("Expires", "60")


def test_remove() -> None:
    headers = _sample()
    headers.remove("v")
    headers.remove("Nonexistent")
    assert "Via" not in headers
    assert len(headers) == 9


def test_copy_is_independent_and_equal() -> None:
    headers = _sample()
    other = headers.copy()
    assert other == headers
    other.add("Subject", "x")
    assert other != headers
    assert len(headers) == 11
    assert headers != "not headers"


def test_iteration_is_a_snapshot() -> None:
    headers = Headers([("Via", "v1"), ("Via", "v2")])
    for name, value in headers:
        if value == "v1":
            headers.remove(name)
    assert len(headers) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "injected\r\nVia: SIP/2.0/UDP evil"),
        ("Subject", "line\nbreak"),
        ("Bad Name", "x"),
        ("Bad:Name", "x"),
        ("", "x"),
    ],
)
def test_illegal_fields_are_our_bug(name: str, value: str) -> None:
    headers = Headers()
    with pytest.raises(LocalProtocolError):
        headers.add(name, value)
    with pytest.raises(LocalProtocolError):
        headers.set(name, value)
    with pytest.raises(LocalProtocolError):
        headers.prepend(name, value)
    with pytest.raises(LocalProtocolError):
        Headers([(name, value)])
