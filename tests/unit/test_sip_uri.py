"""SIP/tel URIs, name-addr and Via values (RFC 3261 §19.1, §20, §25.1; RFC 4475)."""

from __future__ import annotations

import pytest

from ccserver.sip.errors import RemoteProtocolError
from ccserver.sip.uri import NameAddr, SipUri, Via

# ---------------------------------------------------------------- SipUri


@pytest.mark.parametrize(
    "text",
    [
        # RFC 3261 §19.1.3 examples
        "sip:alice@atlanta.com",
        "sip:alice:secretword@atlanta.com;transport=tcp",
        "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sips:1212@gateway.com",
        "sip:alice@192.0.2.4",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice;day=tuesday@atlanta.com",
        # RFC 4475 request-URIs
        "sip:vivekg@chair-dnrc.example.com;unknownparam",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
        ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        "sip:sips%3Auser%40example.com@example.net",
        "sip:null-%00-null@example.com",
        "sip:user;par=u%40example.net@example.com",
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value",
        # ports, IPv6, tel, other schemes
        "sip:bob@biloxi.example.com:5070",
        "sip:[2001:db8::10]:5070;transport=tcp",
        "sip:user@[::1]",
        "tel:+1-201-555-0123",
        "tel:7042;phone-context=example.com",
        "http://www.example.com",
        "isbn:2983792873",
    ],
)
def test_round_trip(text: str) -> None:
    uri = SipUri.parse(text)
    assert str(uri) == text
    assert SipUri.parse(str(uri)) == uri


def test_fields() -> None:
    uri = SipUri.parse(
        "sips:alice:secretword@AtLanTa.CoM:5061;Transport=TCP;LR;maddr=239.255.255.1"
    )
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secretword"
    assert uri.host == "atlanta.com"
    assert uri.port == 5061
    assert list(uri.params.items()) == [
        ("transport", "TCP"),
        ("lr", None),
        ("maddr", "239.255.255.1"),
    ]
    assert uri.transport == "tcp"
    assert uri.host_port() == ("atlanta.com", 5061)


def test_scheme_lower_cased_user_case_kept() -> None:
    uri = SipUri.parse("SIP:Alice@Example.COM")
    assert uri.scheme == "sip"
    assert uri.user == "Alice"
    assert str(uri) == "sip:Alice@example.com"


def test_defaults() -> None:
    uri = SipUri.parse("sip:example.com")
    assert uri.user is None
    assert uri.port is None
    assert uri.transport == "udp"
    assert uri.host_port() == ("example.com", 5060)
    assert uri.host_port(5061) == ("example.com", 5061)
    assert str(SipUri(host="example.com")) == "sip:example.com"


@pytest.mark.parametrize(
    ("text", "user", "again"),
    [
        # RFC 4475 §3.1.1.3: escaped ':' and '@' in the user part
        ("sip:sips%3Auser%40example.com@example.net", "sips:user@example.com", None),
        ("sip:%75se%72@example.com", "user", "sip:user@example.com"),
        ("sip:I%20have%20spaces@example.net", "I have spaces", None),
        # RFC 4475 §3.1.1.4: an escaped NUL is a legal character
        ("sip:null-%00-null@example.com", "null-\x00-null", None),
        ("sip:%00%00@host5.example.com", "\x00\x00", None),
        # RFC 4475 §3.1.1.9: ';' in the user part, escaped '@'
        ("sip:user;par=u%40example.net@example.com", "user;par=u@example.net", None),
        ("sip:caf%C3%A9@example.com", "café", None),
        # escaped bytes that are not UTF-8 are written back unchanged
        ("sip:%FF%fe@example.com", "\udcff\udcfe", "sip:%FF%FE@example.com"),
    ],
)
def test_escapes(text: str, user: str, again: str | None) -> None:
    uri = SipUri.parse(text)
    assert uri.user == user
    assert str(uri) == (again or text)


def test_password_escapes() -> None:
    uri = SipUri.parse("sip:bob:p%40ss%20word@example.com")
    assert uri.password == "p@ss word"
    assert str(uri) == "sip:bob:p%40ss%20word@example.com"


def test_user_is_escaped_on_output() -> None:
    uri = SipUri(user="a b<c>@d", host="example.com")
    assert str(uri) == "sip:a%20b%3Cc%3E%40d@example.com"
    assert SipUri.parse(str(uri)).user == "a b<c>@d"


def test_intmeth_userinfo() -> None:
    uri = SipUri.parse(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
        ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    )
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert uri.params == {}


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "2001:db8::10", None),
        ("sip:alice@[2001:DB8::10]:5070", "2001:db8::10", 5070),
        ("sips:[::ffff:192.0.2.1]:5061;transport=tls", "::ffff:192.0.2.1", 5061),
        ("sip:[fe80::1]:0", "fe80::1", 0),
    ],
)
def test_ipv6(text: str, host: str, port: int | None) -> None:
    uri = SipUri.parse(text)
    assert uri.host == host
    assert uri.port == port
    assert SipUri.parse(str(uri)) == uri
    assert f"[{host}]" in str(uri)


def test_ipv6_host_built_without_brackets() -> None:
    uri = SipUri(user="bob", host="2001:db8::1", port=5080)
    assert str(uri) == "sip:bob@[2001:db8::1]:5080"
    assert uri.host_port() == ("2001:db8::1", 5080)


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;Phone-Context=example.com;ext=22")
    assert uri.scheme == "tel"
    assert uri.user == "+1-201-555-0123"
    assert uri.host == ""
    assert uri.params == {"phone-context": "example.com", "ext": "22"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;ext=22"


def test_other_scheme_is_opaque() -> None:
    uri = SipUri.parse("urn:service:sos")
    assert (uri.scheme, uri.opaque, uri.host, uri.user) == ("urn", "service:sos", "", None)


def test_uri_headers() -> None:
    uri = SipUri.parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E&Subject=hi")
    assert uri.headers == {"Route": "%3Csip:sip.example.com%3E", "Subject": "hi"}


def test_copy_is_independent() -> None:
    uri = SipUri.parse("sip:alice@example.com;transport=tcp?x=y")
    other = uri.copy()
    assert other == uri
    other.params["lr"] = None
    other.headers["a"] = "b"
    other.port = 5080
    assert uri.params == {"transport": "tcp"}
    assert uri.headers == {"x": "y"}
    assert uri.port is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip",
        "sip:",
        ":alice@example.com",
        "1sip:alice@example.com",
        "<sip:user@example.com>",  # RFC 4475 §3.1.2.7
        "sip:user@example.com; lr",  # §3.1.2.8
        "sip: user@example.com",
        "sip:user@example.com\t",
        "sip:user@",
        "sip:@example.com",
        "sip:al ice@example.com",
        "sip:alice@exa mple.com",
        "sip:alice@example.com:",
        "sip:alice@example.com:port",
        "sip:alice@example.com:65536",
        "sip:alice@example.com:123456",
        "sip:alice@-example.com",
        "sip:alice@example..com",
        "sip:alice@[2001:db8::1",
        "sip:alice@[2001:db8::zz]",
        "sip:alice@[192.0.2.1]",
        "sip:alice@[::1]x",
        "sip:alice@2001:db8::1",
        "sip:al%zzice@example.com",
        "sip:alice%4@example.com",
        "sip:al<ice@example.com",
        'sip:al"ice@example.com',
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;=x",
        "sip:alice@example.com;transport=",
        "sip:alice@example.com;a=b<c",
        "sip:alice@example.com?",
        "sip:alice@example.com?noequals",
        "sip:alice@example.com?=x",
        "sip:alicé@example.com",
        "tel:",
        "tel:+1 555",
        "tel:+1-555-CALL-NOW",
        "http:",
        "http://exa mple.com",
    ],
)
def test_junk_is_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


# ---------------------------------------------------------------- NameAddr


@pytest.mark.parametrize(
    ("text", "display", "uri", "params"),
    [
        ("<sip:alice@atlanta.com>", None, "sip:alice@atlanta.com", {}),
        (
            '"Alice Liddell" <sip:alice@atlanta.com>;tag=1928301774',
            "Alice Liddell",
            "sip:alice@atlanta.com",
            {"tag": "1928301774"},
        ),
        ("Bob <sips:bob@biloxi.example.com>", "Bob", "sips:bob@biloxi.example.com", {}),
        (
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x",
            "token1~` token2'+_ token3*%!.-",
            "sip:mundane@example.com",
            {"tag": "x"},
        ),
        # RFC 4475 §3.1.1.6: no LWS between display name and '<'
        (
            "caller<sip:caller@example.com>;tag=323",
            "caller",
            "sip:caller@example.com",
            {"tag": "323"},
        ),
        # RFC 4475 §3.1.1.1: whitespace around SEMI and EQUAL, escaped quotes
        (
            "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            None,
            "sip:vivekg@chair-dnrc.example.com",
            {"tag": "1918181833n"},
        ),
        (
            '"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8',
            'J Rosenberg \\"',
            "sip:jdrosen@example.com",
            {"tag": "98asjd8"},
        ),
        (
            '"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ;'
            " secondparam ; q = 0.33",
            'Quoted string ""',
            "sip:jdrosen@example.com",
            {"newparam": "newvalue", "secondparam": None, "q": "0.33"},
        ),
        # addr-spec form: the parameters belong to the header (§20.10)
        (
            "sip:+19725552222@gw1.example.net;unknownparam;Expires=60",
            None,
            "sip:+19725552222@gw1.example.net",
            {"unknownparam": None, "expires": "60"},
        ),
        (
            "<sip:+19725552222@gw1.example.net;unknownparam>",
            None,
            "sip:+19725552222@gw1.example.net;unknownparam",
            {},
        ),
        # quoted param values may hold ';', ',' and '<>'
        (
            '<sip:agent@192.0.2.4:5062;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1',
            None,
            "sip:agent@192.0.2.4:5062;ob",
            {
                "+sip.instance": '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
                "reg-id": "1",
            },
        ),
        ('"a;b,c<d>" <sip:x@y>', "a;b,c<d>", "sip:x@y", {}),
        ('"" <sip:x@y>', "", "sip:x@y", {}),
        ("<tel:+1-201-555-0123>;tag=9", None, "tel:+1-201-555-0123", {"tag": "9"}),
        ("isbn:2983792873", None, "isbn:2983792873", {}),
        (
            "<http://www.example.com>;tag=3234233",
            None,
            "http://www.example.com",
            {"tag": "3234233"},
        ),
        ("  <sip:[2001:db8::1]:5060>  ", None, "sip:[2001:db8::1]:5060", {}),
    ],
)
def test_name_addr_parse(
    text: str, display: str | None, uri: str, params: dict[str, str | None]
) -> None:
    value = NameAddr.parse(text)
    assert value.display == display
    assert str(value.uri) == uri
    assert value.params == params
    assert NameAddr.parse(str(value)) == NameAddr(value.uri, value.display or None, value.params)


def test_name_addr_str() -> None:
    value = NameAddr(SipUri(user="bob", host="biloxi.example.com"), "Bob", {"tag": "a6c85cf"})
    assert str(value) == '"Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf'
    value = NameAddr(SipUri(host="ss1.example.com", params={"lr": None}))
    assert str(value) == "<sip:ss1.example.com;lr>"
    value = NameAddr(SipUri(user="x", host="y"), 'say "hi" \\o/')
    assert str(value) == '"say \\"hi\\" \\\\o/" <sip:x@y>'
    assert NameAddr.parse(str(value)).display == 'say "hi" \\o/'


def test_name_addr_tag() -> None:
    assert NameAddr.parse("<sip:a@b>;TAG=abc").tag == "abc"
    assert NameAddr.parse("<sip:a@b>").tag is None
    assert NameAddr.parse("<sip:a@b>;tag").tag is None


def test_name_addr_copy_is_independent() -> None:
    value = NameAddr.parse('"A" <sip:a@b;lr>;tag=1')
    other = value.copy()
    other.params["tag"] = "2"
    other.uri.params.clear()
    assert value.tag == "1"
    assert value.uri.params == {"lr": None}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6 quotbal
        '"Watson, Thomas" < sip:t.watson@example.org >',  # §3.1.2.14 badaspec
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # §3.1.2.15 baddn
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # §3.1.2.13 regbadct
        "sip:caller@example.net;;tag=134161461246",  # §3.1.2.1 badinv01
        '"Joe" <sip:joe@example.org>;;;;',
        "sip:user@example.com, sip:other@example.net",
        '"Joe" sip:joe@example.org',
        "<sip:joe@example.org",
        "<sip:joe@example.org> junk",
        "<sip:joe@example.org>;tag=",
        '<sip:joe@example.org>;tag="unterminated',
        "<>",
        "*",
    ],
)
def test_name_addr_junk_is_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        NameAddr.parse(text)
    assert info.value.status == 400


# ---------------------------------------------------------------- Via


def test_via_parse() -> None:
    via = Via.parse(
        "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;Received=192.0.2.1"
    )
    assert via.transport == "UDP"
    assert via.host == "pc33.atlanta.com"
    assert via.port == 5066
    assert via.params == {"branch": "z9hG4bK776asdhds", "rport": None, "received": "192.0.2.1"}
    assert via.branch == "z9hG4bK776asdhds"
    assert via.sent_by == ("pc33.atlanta.com", 5066)
    assert str(via) == (
        "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1"
    )


@pytest.mark.parametrize(
    ("text", "transport", "host", "port", "branch"),
    [
        # RFC 4475 §3.1.1.1, after unfolding
        (
            "SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw",
            "UDP",
            "192.0.2.2",
            None,
            "390skdjuw",
        ),
        (
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8",
            "TCP",
            "spindle.example.com",
            None,
            "z9hG4bK9ikj8",
        ),
        (
            "SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
            "UDP",
            "192.168.255.111",
            None,
            "z9hG4bK30239",
        ),
        (
            "sip/2.0/tls Host.Example.COM : 5061 ;branch=z9hG4bKx",
            "TLS",
            "host.example.com",
            5061,
            "z9hG4bKx",
        ),
        (
            "SIP/2.0/TCP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111",
            "TCP",
            "2001:db8::9:1",
            5070,
            "z9hG4bKas3-111",
        ),
        (
            "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
            "UNKNOWN",
            "t4.example.com",
            None,
            "z9hG4bKasd0f3en",
        ),
        (
            "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks",
            "WSS",
            "df7jal23ls0d.invalid",
            None,
            "z9hG4bK56sdasks",
        ),
        ("SIP/2.0/UDP 192.0.2.15", "UDP", "192.0.2.15", None, None),
        (
            "SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
            "TCP",
            "host1.example.com",
            None,
            "z9hG4bK-.!%66*_+`'~",
        ),
    ],
)
def test_via_forms(
    text: str, transport: str, host: str, port: int | None, branch: str | None
) -> None:
    via = Via.parse(text)
    assert (via.transport, via.host, via.port, via.branch) == (transport, host, port, branch)
    assert Via.parse(str(via)) == via


def test_via_sent_by_defaults() -> None:
    assert Via.parse("SIP/2.0/UDP a.example.com").sent_by == ("a.example.com", 5060)
    assert Via.parse("SIP/2.0/TCP a.example.com").sent_by == ("a.example.com", 5060)
    assert Via.parse("SIP/2.0/TLS a.example.com").sent_by == ("a.example.com", 5061)
    assert Via("UDP", "2001:db8::1", 5062).sent_by == ("2001:db8::1", 5062)
    assert str(Via("UDP", "2001:db8::1", 5062)) == "SIP/2.0/UDP [2001:db8::1]:5062"


def test_via_received_ipv6_and_quoted_param() -> None:
    via = Via.parse('SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;x="a b;c"')
    assert via.params == {"received": "2001:db8::9:255", "x": '"a b;c"'}


def test_via_copy_is_independent() -> None:
    via = Via.parse("SIP/2.0/UDP a.example.com;branch=z9hG4bK1")
    other = via.copy()
    other.params["received"] = "192.0.2.1"
    assert via.params == {"branch": "z9hG4bK1"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDPhost",
        "SIP/3.0/UDP host.example.com",
        "SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
        "HTTP/2.0/UDP host.example.com",
        "SIP/2.0/U<P host.example.com",
        "SIP/2.0/UDP host.example.com:99999",
        "SIP/2.0/UDP host.example.com:",
        "SIP/2.0/UDP host.example.com junk",
        "SIP/2.0/UDP host_with_$.example.com",
        "SIP/2.0/UDP 192.0.2.15;;",  # RFC 4475 §3.1.2.1
        "SIP/2.0/UDP 192.0.2.15;branch=",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP [2001:db8::zz]:5060",
    ],
)
def test_via_junk_is_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Via.parse(text)
    assert info.value.status == 400
