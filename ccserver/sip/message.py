"""SIP requests and responses: parsing, serialising and stream framing.

Sans-IO like h11: ``parse_message`` reads one datagram, ``StreamParser``
frames a TCP/TLS byte stream, ``bytes(message)`` gives the wire form. The
parser checks what every later layer relies on (start line, Via, From, To,
Call-ID, CSeq, Content-Length, Max-Forwards) and answers anything else lazily
through the accessors.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ccserver.sip.errors import LocalProtocolError, RemoteProtocolError
from ccserver.sip.headers import Headers, canonical_name, is_token
from ccserver.sip.uri import NameAddr, SipUri, Via

__all__ = [
    "REASONS",
    "Message",
    "Request",
    "Response",
    "StreamParser",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
]

# RFC 3261 §21, plus RFC 3262/3311/3329/4028/6665/3903/5360/8599 codes.
REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
}

_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_LINE_RE = re.compile(r"\r?\n")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_STATUS_RE = re.compile(r"[1-6][0-9][0-9]\Z")
# RFC 3261 §20.17 / RFC 2616 §3.3.1: rfc1123-date, and only GMT.
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z",
    re.IGNORECASE,  # ABNF literals are case-insensitive (RFC 5234 §2.3)
)
# Fields a request or response cannot be processed without (RFC 3261 §8.1.1).
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
# Fields that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.9/3.3.10).
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards", "Content-Type")
_MAX_CSEQ = 2**32 - 1  # §20.16: a 32-bit unsigned integer
_MAX_DELTA = 2**32 - 1  # §20.19: delta-seconds beyond this are clamped
_MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7


def _int_field(headers: Headers, name: str, limit: int | None) -> int | None:
    """Read a 1*DIGIT field; beyond ``limit`` is an error, None clamps to 2**32-1."""
    value = headers.get(name)
    if value is None:
        return None
    if not _DIGITS_RE.match(value):
        raise RemoteProtocolError(f"bad {name} header", 400, headers)
    number = int(value) if len(value) < 20 else _MAX_DELTA + 1
    if limit is not None:
        if number > limit:
            raise RemoteProtocolError(f"{name} out of range", 400, headers)
        return number
    return min(number, _MAX_DELTA)


class _Fields:
    """Typed read access to the header fields shared by requests and responses.

    Values are parsed on every access so that the message stays a plain,
    freely mutable record; callers keep the result if they need it twice.
    """

    __slots__ = ()
    headers: Headers

    def _need(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise RemoteProtocolError(f"Missing {name} header", 400, self.headers)
        return value

    def _wrap(self, exc: RemoteProtocolError, name: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"bad {name} header: {exc.reason}", exc.status, self.headers)

    @property
    def call_id(self) -> str:
        """Call-ID (RFC 3261 §20.8); must be one word without whitespace."""
        value = self._need("Call-ID")
        if not value or any(ch in value for ch in " \t"):
            raise RemoteProtocolError("bad Call-ID header", 400, self.headers)
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) from CSeq (RFC 3261 §20.16)."""
        parts = self._need("CSeq").split()
        if len(parts) != 2 or not _DIGITS_RE.match(parts[0]) or not is_token(parts[1]):
            raise RemoteProtocolError("bad CSeq header", 400, self.headers)
        if len(parts[0]) > 10 or int(parts[0]) > _MAX_CSEQ:
            raise RemoteProtocolError("CSeq number out of range", 400, self.headers)
        return int(parts[0]), parts[1]

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top (most recent hop) first."""
        values = self.headers.get_all("Via")
        if not values:
            raise RemoteProtocolError("Missing Via header", 400, self.headers)
        try:
            return [Via.parse(value) for value in values]
        except RemoteProtocolError as exc:
            raise self._wrap(exc, "Via") from None

    @property
    def top_via(self) -> Via:
        """The topmost Via, the one that identifies the transaction (§17.2.3)."""
        values = self.headers.get_all("Via")
        if not values:
            raise RemoteProtocolError("Missing Via header", 400, self.headers)
        try:
            return Via.parse(values[0])
        except RemoteProtocolError as exc:
            raise self._wrap(exc, "Via") from None

    def _name_addr(self, name: str) -> NameAddr:
        value = self._need(name)
        try:
            return NameAddr.parse(value)
        except RemoteProtocolError as exc:
            raise self._wrap(exc, name) from None

    @property
    def from_(self) -> NameAddr:
        """The From header (RFC 3261 §20.20)."""
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        """The To header (RFC 3261 §20.39)."""
        return self._name_addr("To")

    @property
    def is_wildcard_contact(self) -> bool:
        """True for ``Contact: *``, used to remove all bindings (§10.2.2)."""
        return any(value == "*" for value in self.headers.get_all("Contact"))

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value; a ``*`` Contact gives [] (see is_wildcard_contact)."""
        values = self.headers.get_all("Contact")
        if "*" in values:
            if len(values) > 1:
                raise RemoteProtocolError("'*' Contact mixed with addresses", 400, self.headers)
            return []
        try:
            return [NameAddr.parse(value) for value in values]
        except RemoteProtocolError as exc:
            raise self._wrap(exc, "Contact") from None

    @property
    def content_type(self) -> str | None:
        """Media type of the body, lower-cased, parameters stripped (§20.15)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        media = value.split(";", 1)[0].strip().lower()
        return media or None

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (RFC 3261 §20.22, 0-255), None when absent."""
        return _int_field(self.headers, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        """Expires in seconds (RFC 3261 §20.19), clamped to 2**32-1; None when absent."""
        return _int_field(self.headers, "Expires", None)

    def _serialize(self, start_line: str, body: bytes) -> bytes:
        lines = [start_line]
        length_written = False
        for name, value in self.headers:
            if name == "Content-Length":
                if length_written:
                    continue
                value = str(len(body))
                length_written = True
            lines.append(f"{name}: {value}")
        if not length_written:
            # §20.14: always present on streams, harmless on datagrams.
            lines.append(f"Content-Length: {len(body)}")
        lines.append("")
        lines.append("")
        try:
            return "\r\n".join(lines).encode("utf-8") + body
        except UnicodeEncodeError as exc:
            # §7: the header section is UTF-8; lone surrogates cannot be sent.
            raise LocalProtocolError(f"cannot encode message: {exc}") from None


@dataclass(slots=True)
class Request(_Fields):
    """A SIP request (RFC 3261 §7.1)."""

    method: str
    uri: SipUri
    headers: Headers
    body: bytes = b""

    def __bytes__(self) -> bytes:
        if not is_token(self.method):
            raise LocalProtocolError(f"illegal method {self.method!r}")
        uri = str(self.uri)
        if any(ch <= " " for ch in uri):
            raise LocalProtocolError(f"illegal Request-URI {uri!r}")
        return self._serialize(f"{self.method} {uri} SIP/2.0", self.body)


@dataclass(slots=True)
class Response(_Fields):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def __bytes__(self) -> bytes:
        if not 100 <= self.status <= 699:
            raise LocalProtocolError(f"illegal status code {self.status}")
        if "\r" in self.reason or "\n" in self.reason:
            raise LocalProtocolError("line break in reason phrase")
        return self._serialize(f"SIP/2.0 {self.status} {self.reason}", self.body)


Message = Request | Response


def _skip_crlf(data: bytes | bytearray, pos: int = 0) -> int:
    """RFC 3261 §7.5: CRLFs before the start line are ignored."""
    n = len(data)
    while pos < n and data[pos] in b"\r\n":
        pos += 1
    return pos


def _parse_head(head: bytes) -> tuple[str, Headers]:
    """Split the header section into the start line and unfolded header fields."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 3261 §7: the header section is UTF-8. Still try to read the
        # fields so the 400 can carry Via, From, To, Call-ID and CSeq.
        headers: Headers | None
        try:
            headers = _parse_fields(head.decode("utf-8", "replace"))[1]
        except RemoteProtocolError as exc:
            headers = exc.headers
        raise RemoteProtocolError("header section is not UTF-8", 400, headers) from None
    return _parse_fields(text)


def _parse_fields(text: str) -> tuple[str, Headers]:
    lines = _LINE_RE.split(text)
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            # §7.3.1: a line starting with whitespace continues the field
            # above; the line break and the whitespace become one SP.
            if not fields:
                raise RemoteProtocolError("continuation line before any header", 400)
            name, value = fields[-1]
            more = line.strip(" \t")
            fields[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise RemoteProtocolError(
                f"bad header line {line[:40]!r}", 400, Headers._trusted(fields)
            )
        if "\r" in value:
            raise RemoteProtocolError(f"bare CR in {name} header", 400, Headers._trusted(fields))
        fields.append((canonical_name(name), value.strip(" \t")))
    return lines[0], Headers._trusted(fields)


def _content_length(headers: Headers) -> int | None:
    values = [value for name, value in headers if name == "Content-Length"]
    if not values:
        return None
    if len(values) > 1:
        raise RemoteProtocolError("multiple Content-Length headers", 400, headers)
    value = values[0]
    # §20.14: 1*DIGIT, so a sign is junk (RFC 4475 §3.1.2.3 ncl).
    if not _DIGITS_RE.match(value):
        raise RemoteProtocolError("bad Content-Length header", 400, headers)
    if len(value) > 10:
        raise RemoteProtocolError("Content-Length too large", 400, headers)
    return int(value)


def _check(message: Request | Response) -> None:
    """Reject what no later layer can cope with (RFC 3261 §8.2, RFC 4475 §3.1.2)."""
    headers = message.headers
    for name in _REQUIRED:
        if name not in headers:
            raise RemoteProtocolError(f"Missing {name} header", 400, headers)
    for name in _SINGLE:
        if headers.count(name) > 1:
            raise RemoteProtocolError(f"multiple {name} headers", 400, headers)
    message.call_id  # noqa: B018 - parsed for validation
    method = message.cseq[1]
    vias = message.vias
    message.from_  # noqa: B018
    message.to  # noqa: B018
    message.max_forwards  # noqa: B018
    date = headers.get("Date")
    if date is not None and not _DATE_RE.match(date):
        raise RemoteProtocolError("bad Date header", 400, headers)
    if isinstance(message, Request):
        # §8.1.1.5 and RFC 4475 §3.1.2.17/18: the CSeq method must match
        # the request method.
        if method != message.method:
            raise RemoteProtocolError("CSeq method does not match the request", 400, headers)
        # RFC 4475 §3.2.1: a bare magic cookie is no transaction id.
        if vias[0].params.get("branch") == _MAGIC_COOKIE:
            raise RemoteProtocolError("Via branch has no transaction id", 400, headers)
        message.contacts  # noqa: B018


def _request(start_line: str, headers: Headers, body: bytes) -> Request:
    # §7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF, with
    # exactly one SP between elements (RFC 4475 §3.1.2.8-10).
    parts = start_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise RemoteProtocolError("bad request line", 400, headers)
    method, uri_text, version = parts
    if not is_token(method) or not _VERSION_RE.match(version):
        raise RemoteProtocolError("bad request line", 400, headers)
    if version.upper() != "SIP/2.0":
        raise RemoteProtocolError("Version Not Supported", 505, headers)
    try:
        uri = SipUri.parse(uri_text)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"bad Request-URI: {exc.reason}", exc.status, headers) from None
    if uri.scheme not in ("sip", "sips", "tel"):
        raise RemoteProtocolError("Unsupported URI Scheme", 416, headers)
    if uri.headers:
        # §19.1.5: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        raise RemoteProtocolError("headers in Request-URI", 400, headers)
    request = Request(method, uri, headers, body)
    _check(request)
    return request


def _response(start_line: str, headers: Headers, body: bytes) -> Response:
    # §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF.
    # The reason phrase may be empty (RFC 4475 §3.1.1.13); a missing final
    # SP is tolerated.
    parts = start_line.split(" ", 2)
    if len(parts) < 2 or not _VERSION_RE.match(parts[0]):
        raise RemoteProtocolError("bad status line", 400, headers)
    if parts[0].upper() != "SIP/2.0":
        raise RemoteProtocolError("Version Not Supported", 505, headers)
    if not _STATUS_RE.match(parts[1]):
        raise RemoteProtocolError("bad status code", 400, headers)
    response = Response(int(parts[1]), parts[2] if len(parts) == 3 else "", headers, body)
    _check(response)
    return response


def _make_message(start_line: str, headers: Headers, body: bytes) -> Request | Response:
    if start_line[:4].upper() == "SIP/":
        return _response(start_line, headers, body)
    return _request(start_line, headers, body)


def parse_message(data: bytes, *, max_size: int = 65_535) -> Request | Response:
    """Parse one datagram holding one message (RFC 3261 §18.3, §7).

    Without Content-Length the body is the rest of the datagram; bytes after
    the body are ignored (RFC 4475 §3.1.1.8).
    """
    if len(data) > max_size:
        raise RemoteProtocolError("Message Too Large", 513)
    pos = _skip_crlf(data)
    if pos == len(data):
        raise RemoteProtocolError("empty message", 400)
    match = _HEAD_END_RE.search(data, pos)
    head = data[pos : match.start()] if match else data[pos:].rstrip(b"\r\n")
    start_line, headers = _parse_head(head)
    if match is None:
        # §7: the empty line ends the header section even without a body.
        raise RemoteProtocolError("header section not terminated", 400, headers)
    body_start = match.end()
    length = _content_length(headers)
    if length is None:
        body = data[body_start:]
    else:
        if body_start + length > len(data):
            # §18.3: a datagram shorter than Content-Length is an error
            # (RFC 4475 §3.1.2.2).
            raise RemoteProtocolError("Content-Length larger than the body", 400, headers)
        body = data[body_start : body_start + length]
    return _make_message(start_line, headers, bytes(body))


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response from a request as RFC 3261 §8.2.6.2 prescribes.

    Via fields are copied in order, then From, To (with ``to_tag`` added if
    To has none yet), Call-ID and CSeq, then ``headers``. A 100 also echoes
    Timestamp (§8.2.6.1). Record-Route copying (§12.1.1) is left to the
    dialog layer.
    """
    src = request.headers
    out = Headers()
    for name, value in src:
        if name == "Via":
            out.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = src.get(name)
        if copied is None:
            continue
        if name == "To" and to_tag is not None and request.to.tag is None:
            copied = f"{copied};tag={to_tag}"
        out.add(name, copied)
    if status == 100:
        timestamp = src.get("Timestamp")
        if timestamp is not None:
            out.add("Timestamp", timestamp)
    for name, value in headers:
        out.add(name, value)
    return Response(status, reason if reason is not None else REASONS.get(status, ""), out, body)


class StreamParser:
    """Frames messages on a stream transport (TCP) by Content-Length (RFC 3261 §18.3).

    After an error that loses the framing (no or bad Content-Length, size
    limit) every later call raises the same error: the caller answers if it
    can and closes the connection. Errors found inside a well-framed message
    consume that message and leave the stream usable.

    ``pings`` counts the CRLFCRLF keep-alives skipped between messages
    (RFC 5626 §3.5.1); the transport answers each with a single CRLF.
    """

    def __init__(self, *, max_size: int = 65_535) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._scanned = 0  # bytes already searched for the end of the header section
        self._head: tuple[int, int, str, Headers] | None = None
        self._error: RemoteProtocolError | None = None
        self._newlines = 0  # line ends seen since the last message or ping
        self.pings = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the stream."""
        self._buffer += data

    def _fail(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        self._error = exc
        return exc

    def _read_head(self) -> bool:
        buf = self._buffer
        skip = _skip_crlf(buf)
        if skip:
            self._newlines += buf.count(b"\n", 0, skip)
            self.pings += self._newlines // 2
            self._newlines %= 2
            del buf[:skip]
            self._scanned = 0
        if not buf:
            return False
        self._newlines = 0
        match = _HEAD_END_RE.search(buf, max(0, self._scanned - 3))
        if match is None:
            self._scanned = len(buf)
            if len(buf) > self._max_size:
                raise self._fail(RemoteProtocolError("Message Too Large", 513))
            return False
        if match.start() > self._max_size:
            raise self._fail(RemoteProtocolError("Message Too Large", 513))
        try:
            start_line, headers = _parse_head(bytes(buf[: match.start()]))
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None
        try:
            length = _content_length(headers)
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None
        if length is None:
            raise self._fail(
                RemoteProtocolError("Content-Length is required on streams", 400, headers)
            )
        if match.end() + length > self._max_size:
            raise self._fail(RemoteProtocolError("Message Too Large", 513, headers))
        self._head = (match.end(), length, start_line, headers)
        return True

    def next_message(self) -> Request | Response | None:
        """The next complete message, or None until more data is fed."""
        if self._error is not None:
            raise self._error
        if self._head is None and not self._read_head():
            return None
        assert self._head is not None
        body_start, length, start_line, headers = self._head
        end = body_start + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[body_start:end])
        del self._buffer[:end]
        self._head = None
        self._scanned = 0
        return _make_message(start_line, headers, body)


def new_branch() -> str:
    """A fresh Via branch with the RFC 3261 §8.1.1.7 magic cookie."""
    return _MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag: 48 random bits, §19.3 asks for at least 32."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A fresh globally unique Call-ID (RFC 3261 §8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"
