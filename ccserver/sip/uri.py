"""SIP and tel URIs, name-addr values and Via values (RFC 3261 §19.1, §20, §25.1).

These parsers read one header value each; they never see the wire framing.
Malformed input raises RemoteProtocolError with the status to answer.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from ccserver.sip.errors import RemoteProtocolError
from ccserver.sip.headers import is_token

__all__ = [
    "NameAddr",
    "SipUri",
    "Via",
    "parse_params",
    "quote_string",
    "quoted_string_end",
    "unquote_string",
]

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# RFC 3261 §25.1: unreserved = alphanum / mark
_UNRESERVED = _ALNUM + "-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved )
_USER_CHARS = frozenset(_UNRESERVED + "&=+$,;?/%")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_CHARS = frozenset(_UNRESERVED + "&=+$,%")
# paramchar = param-unreserved / unreserved / escaped
_PARAM_CHARS = frozenset(_UNRESERVED + "[]/:&+$%")
# hname / hvalue = *( hnv-unreserved / unreserved / escaped )
_HEADER_CHARS = frozenset(_UNRESERVED + "[]/?:+$%")
# uric = reserved / unreserved / escaped (RFC 2396 §2), plus "[]" and "#"
# which real absolute URIs carry.
_URIC_CHARS = frozenset(_UNRESERVED + ";/?:@&=+$,%[]#")
# RFC 3966 §3: phonedigit-hex and visual separators of a telephone-subscriber.
_TEL_CHARS = frozenset("0123456789abcdefABCDEF*#+-.()pPwW")
# Characters written without escaping (quote() never escapes _.-~ and alnum).
_USER_SAFE = "!*'()&=+$,;?/"
_PASSWORD_SAFE = "!*'()&=+$,"

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?\.?\Z"
)
_PORT_RE = re.compile(r"[0-9]{1,5}\Z")
_WS = " \t"
# Values of generic params (gen-value = token / host / quoted-string) are
# read leniently: anything visible except the separators.
_GEN_VALUE_STOP = frozenset(' \t;,"<>')


def _bad(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(what, 400)


def _unescape(text: str, allowed: frozenset[str], what: str) -> str:
    """Check the characters of a URI component and decode its %XX escapes."""
    for ch in text:
        if ch not in allowed:
            raise _bad(f"illegal character {ch!r} in URI {what}")
    if _ESCAPE_RE.search(text):
        raise _bad(f"bad escape in URI {what}")
    # surrogateescape keeps escaped bytes that are not UTF-8 (RFC 4475
    # §3.1.1.4 escnull) so that they are written back unchanged.
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


def _check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    for ch in text:
        if ch not in allowed:
            raise _bad(f"illegal character {ch!r} in URI {what}")
    if _ESCAPE_RE.search(text):
        raise _bad(f"bad escape in URI {what}")


def _parse_host(text: str, what: str) -> str:
    """Validate a hostname, IPv4 address or bracket-less IPv6 address; lower-case it."""
    if not text:
        raise _bad(f"missing host in {what}")
    if ":" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise _bad(f"bad IPv6 address in {what}") from None
        # Kept as written (lower-cased), not compressed: §19.1.4 compares
        # addresses, and the text is what the peer expects to see again.
        return text.lower()
    if not _HOSTNAME_RE.match(text):
        raise _bad(f"bad host {text!r} in {what}")
    return text.lower()


def _parse_port(text: str, what: str) -> int:
    if not _PORT_RE.match(text):
        raise _bad(f"bad port in {what}")
    port = int(text)
    if port > 65535:
        raise _bad(f"port out of range in {what}")
    return port


def _format_host(host: str) -> str:
    # RFC 3261 §25.1: IPv6reference = "[" IPv6address "]"
    return f"[{host}]" if ":" in host else host


def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _bad(f"unterminated IPv6 reference in {what}")
        host = text[1:close]
        if ":" not in host:
            raise _bad(f"bad IPv6 reference in {what}")
        rest = text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise _bad(f"junk after IPv6 reference in {what}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
    port = _parse_port(port_text, what) if port_text is not None else None
    return _parse_host(host, what), port


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def quoted_string_end(text: str, start: int) -> int:
    """Index just past the quoted-string opening at ``text[start]``.

    RFC 3261 §25.1: quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE.
    """
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise _bad("unterminated quoted string")


def unquote_string(text: str) -> str:
    """Strip the quotes of a quoted-string and resolve its quoted-pairs."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)


def quote_string(text: str) -> str:
    """Make a quoted-string, escaping backslash and double quote (§25.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` as found after a header value's main part.

    RFC 3261 §25.1: SEMI and EQUAL allow whitespace on both sides. Names are
    lower-cased; values are kept as received (quoted values keep their quotes).
    """
    params: dict[str, str | None] = {}
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in _WS:
            i += 1
        if i >= n:
            return params
        if text[i] != ";":
            raise _bad(f"junk {text[i : i + 20]!r} in {what}")
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        start = i
        while i < n and text[i] not in _GEN_VALUE_STOP and text[i] != "=":
            i += 1
        name = text[start:i]
        if not is_token(name):
            raise _bad(f"bad parameter name {name!r} in {what}")
        while i < n and text[i] in _WS:
            i += 1
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] == '"':
                end = quoted_string_end(text, i)
                value = text[i:end]
                i = end
            else:
                start = i
                while i < n and text[i] not in _GEN_VALUE_STOP:
                    i += 1
                value = text[start:i]
                if not value:
                    raise _bad(f"empty value of parameter {name!r} in {what}")
        params[name.lower()] = value


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise _bad("empty URI parameter name")
        _check_chars(name, _PARAM_CHARS, "parameter")
        if eq:
            if not value:
                raise _bad(f"empty value of URI parameter {name!r}")
            _check_chars(value, _PARAM_CHARS, "parameter")
        params[name.lower()] = value if eq else None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq:
            raise _bad("bad URI header")
        _check_chars(name, _HEADER_CHARS, "header")
        _check_chars(value, _HEADER_CHARS, "header")
        headers[name] = value
    return headers


@dataclass(slots=True)
class SipUri:
    """A sip:, sips: or tel: URI (RFC 3261 §19.1, RFC 3966).

    Other schemes (http:, urn: ...) keep everything after the colon in
    ``opaque`` and leave the other fields empty. The user part is stored
    unescaped so that comparisons and routing work on the real characters;
    parameter and header values are kept as received.
    For tel: URIs the number is in ``user`` and ``host`` is empty.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None  # everything after "scheme:" for other schemes

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; whitespace anywhere in it is an error (RFC 4475 §3.1.2.10)."""
        for ch in text:
            if ch <= " " or ch >= "\x7f":
                raise _bad("illegal character in URI")
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.match(scheme):
            raise _bad(f"bad URI {text[:60]!r}")
        scheme = scheme.lower()
        if scheme == "tel":
            return cls._parse_tel(rest)
        if scheme not in ("sip", "sips"):
            # Any absoluteURI may appear in From, To or Contact (RFC 4475
            # §3.3.2); only the Request-URI needs a scheme we support
            # (416, RFC 3261 §8.2.2.1), which the message parser checks.
            if not rest:
                raise _bad("empty URI")
            _check_chars(rest, _URIC_CHARS, "body")
            return cls(scheme, opaque=rest)
        user: str | None = None
        password: str | None = None
        # '@' is never legal unescaped after the userinfo, so the first one
        # ends it; the user part itself may contain ';' and '?' (§25.1).
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user_text, pcolon, password_text = userinfo.partition(":")
            if not user_text:
                raise _bad("empty user part in URI")
            user = _unescape(user_text, _USER_CHARS, "user part")
            if pcolon:
                password = _unescape(password_text, _PASSWORD_CHARS, "password")
        hostport, qmark, headers_text = rest.partition("?")
        hostport, semi, params_text = hostport.partition(";")
        host, port = _split_hostport(hostport, "URI")
        params = _parse_uri_params(params_text) if semi else {}
        headers = _parse_uri_headers(headers_text) if qmark else {}
        return cls(scheme, user, password, host, port, params, headers)

    @classmethod
    def _parse_tel(cls, rest: str) -> SipUri:
        number, semi, params_text = rest.partition(";")
        if not number or any(ch not in _TEL_CHARS for ch in number):
            raise _bad("bad telephone number in tel URI")
        params = _parse_uri_params(params_text) if semi else {}
        return cls("tel", number, None, "", None, params, {})

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{_format_params(self.params)}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":")
                parts.append(_escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(_format_host(self.host))
        if self.port is not None:
            parts.append(f":{self.port}")
        parts.append(_format_params(self.params))
        if self.headers:
            parts.append("?")
            parts.append("&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    @property
    def transport(self) -> str:
        """The transport parameter, lower-case; UDP when absent (RFC 3263 §4.1)."""
        value = self.params.get("transport")
        return value.lower() if value else "udp"

    def host_port(self, default_port: int = 5060) -> tuple[str, int]:
        """Host and port to reach, ``default_port`` when the URI has none.

        The caller picks the default: 5061 for sips or TLS (RFC 3261 §19.1.2).
        """
        return self.host, self.port if self.port is not None else default_port

    def copy(self) -> SipUri:
        """A copy whose params and headers can be changed independently."""
        return SipUri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            dict(self.params),
            dict(self.headers),
            self.opaque,
        )


def _find_unquoted(text: str, target: str) -> int:
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = quoted_string_end(text, i)
            continue
        if ch == target:
            return i
        i += 1
    return -1


@dataclass(slots=True)
class NameAddr:
    """From / To / Contact / Route / Record-Route / Refer-To value (RFC 3261 §20.10)."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse the name-addr and addr-spec forms.

        In the addr-spec form, parameters after the URI belong to the header
        and the URI may not contain ',', '?' or ';' (RFC 3261 §20.10).
        """
        s = text.strip(_WS)
        if not s:
            raise _bad("empty address")
        display: str | None = None
        if s[0] == '"':
            end = quoted_string_end(s, 0)
            display = unquote_string(s[:end])
            rest = s[end:].lstrip(_WS)
            if not rest.startswith("<"):
                raise _bad("quoted display name without <URI>")
            return cls._bracketed(rest, display)
        lt = _find_unquoted(s, "<")
        if lt >= 0:
            words = s[:lt].split()
            # RFC 3261 §25.1: display-name = *(token LWS) / quoted-string
            for word in words:
                if not is_token(word):
                    raise _bad(f"bad display name {s[:lt].strip()!r}")
            display = " ".join(words) or None
            return cls._bracketed(s[lt:], display)
        semi = s.find(";")
        uri_text = s if semi < 0 else s[:semi].rstrip(_WS)
        if "," in uri_text or "?" in uri_text:
            raise _bad("URI with ',' or '?' must be enclosed in <>")
        params = parse_params(s[semi:], "address") if semi >= 0 else {}
        return cls(SipUri.parse(uri_text), None, params)

    @classmethod
    def _bracketed(cls, text: str, display: str | None) -> NameAddr:
        gt = text.find(">")
        if gt < 0:
            raise _bad("missing '>' in address")
        uri = SipUri.parse(text[1:gt])
        return cls(uri, display, parse_params(text[gt + 1 :], "address"))

    def __str__(self) -> str:
        head = f"{quote_string(self.display)} " if self.display else ""
        return f"{head}<{self.uri}>{_format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The tag parameter (RFC 3261 §19.3), None when absent or empty."""
        return self.params.get("tag") or None

    def copy(self) -> NameAddr:
        """A copy whose URI and params can be changed independently."""
        return NameAddr(self.uri.copy(), self.display, dict(self.params))


_VIA_PROTOCOL_RE = re.compile(r"([^\s/]+)[ \t]*/[ \t]*([^\s/]+)[ \t]*/[ \t]*([^\s/;]+)[ \t]+")
_VIA_HOST_STOP = frozenset(" \t:;")


@dataclass(slots=True)
class Via:
    """One via-parm (RFC 3261 §20.42); comma lists are split by Headers.get_all."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse ``sent-protocol LWS sent-by *( SEMI via-params )``.

        SLASH and COLON may be surrounded by whitespace (RFC 3261 §25.1,
        exercised by RFC 4475 §3.1.1.1).
        """
        s = text.strip(_WS)
        m = _VIA_PROTOCOL_RE.match(s)
        if m is None:
            raise _bad("bad Via sent-protocol")
        name, version, transport = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise _bad(f"bad Via protocol {name}/{version}")
        if not is_token(transport):
            raise _bad("bad Via transport")
        i = m.end()
        n = len(s)
        if s.startswith("[", i):
            close = s.find("]", i)
            if close < 0:
                raise _bad("unterminated IPv6 reference in Via")
            host_text = s[i + 1 : close]
            if ":" not in host_text:
                raise _bad("bad IPv6 reference in Via")
            i = close + 1
        else:
            start = i
            while i < n and s[i] not in _VIA_HOST_STOP:
                i += 1
            host_text = s[start:i]
        host = _parse_host(host_text, "Via")
        j = i
        while j < n and s[j] in _WS:
            j += 1
        port: int | None = None
        if j < n and s[j] == ":":
            j += 1
            while j < n and s[j] in _WS:
                j += 1
            start = j
            while j < n and s[j].isdigit():
                j += 1
            port = _parse_port(s[start:j], "Via")
            i = j
        params = parse_params(s[i:], "Via")
        return cls(transport.upper(), host, port, params)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        params = _format_params(self.params)
        return f"SIP/2.0/{self.transport} {_format_host(self.host)}{port}{params}"

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 §8.1.1.7), None when absent or empty."""
        return self.params.get("branch") or None

    @property
    def sent_by(self) -> tuple[str, int]:
        """Host and port of sent-by; the default port follows the transport (§18.2.2)."""
        if self.port is not None:
            return self.host, self.port
        return self.host, 5061 if self.transport in ("TLS", "WSS") else 5060

    def copy(self) -> Via:
        """A copy whose params can be changed independently."""
        return Via(self.transport, self.host, self.port, dict(self.params))
