"""Header fields: canonical names, compact forms and an ordered multi-map.

Names are case-insensitive (RFC 3261 §7.3.1) and may arrive in compact form
(§7.3.3), so every name is mapped to one canonical spelling on the way in;
serialising then always writes the long form.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ccserver.sip.errors import LocalProtocolError

__all__ = ["COMPACT_FORMS", "LIST_HEADERS", "Headers", "canonical_name", "split_list"]

# RFC 3261 §7.3.3 and the IANA registry of compact forms (RFC 3265, 3515,
# 3841, 3892, 3903, 4028, 4474, 4538, 5839 ...).
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Names whose spelling is not Title-Case-By-Dash.
_SPECIAL_NAMES: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "content-id": "Content-ID",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "target-dialog": "Target-Dialog",
}

# Header fields whose grammar is a comma-separated list, so that several
# fields may be combined into one (RFC 3261 §7.3.1). The authentication
# headers, Date and Subject contain commas but are not lists.
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Content-Language",
        "Allow-Events",
        "In-Reply-To",
        "Warning",
        "Error-Info",
        "Alert-Info",
        "Call-Info",
        "Path",
        "Service-Route",
        "P-Asserted-Identity",
        "Accept-Contact",
        "Reject-Contact",
    }
)

# RFC 3261 §25.1: token characters.
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")

_canonical_cache: dict[str, str] = {}


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 §25.1 token."""
    return bool(text) and all(ch in _TOKEN_CHARS for ch in text)


def canonical_name(name: str) -> str:
    """Return the one spelling used for a header name, expanding compact forms."""
    cached = _canonical_cache.get(name)
    if cached is not None:
        return cached
    lower = name.lower()
    if lower in COMPACT_FORMS:
        result = COMPACT_FORMS[lower]
    elif lower in _SPECIAL_NAMES:
        result = _SPECIAL_NAMES[lower]
    else:
        result = "-".join(part[:1].upper() + part[1:] for part in lower.split("-"))
    if len(_canonical_cache) < 1024:
        _canonical_cache[name] = result
    return result


def split_list(value: str) -> list[str]:
    """Split a list-valued header on commas outside quotes and ``<...>``.

    RFC 3261 §7.3.1: a comma inside a quoted display name or inside a
    bracketed URI does not separate elements. Empty elements are dropped.
    """
    items: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quotes:
            if ch == "\\":
                i += 1  # quoted-pair (§25.1): skip the escaped character
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == ",":
            item = value[start:i].strip()
            if item:
                items.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        items.append(item)
    return items


def _check_field(name: str, value: str) -> None:
    if not is_token(name):
        raise LocalProtocolError(f"illegal header name {name!r}")
    # RFC 3261 §25.1 allows control characters in quoted-pairs, but a bare
    # CR or LF would end the field on the wire (header injection).
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"illegal character in {name} header value")


class Headers:
    """Ordered multi-map of header fields with canonical names.

    Field order matters: Via and Route are processed top first
    (RFC 3261 §7.3.1), so fields are kept in a list, not a dict.
    """

    __slots__ = ("_fields",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, fields: list[tuple[str, str]]) -> Headers:
        """Build from already canonical, already checked fields (the parser's path)."""
        headers = cls.__new__(cls)
        headers._fields = fields
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """First field value as received (no list splitting)."""
        key = canonical_name(name)
        for field_name, value in self._fields:
            if field_name == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value, with comma-combined fields of list headers split."""
        key = canonical_name(name)
        values = [value for field_name, value in self._fields if field_name == key]
        if key not in LIST_HEADERS:
            return values
        result: list[str] = []
        for value in values:
            result.extend(split_list(value))
        return result

    def count(self, name: str) -> int:
        """Number of fields (not list elements) with that name."""
        key = canonical_name(name)
        return sum(1 for field_name, _ in self._fields if field_name == key)

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        _check_field(name, value)
        self._fields.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first field of that name, or at the top.

        Used for Via (RFC 3261 §16.6 step 8) and Record-Route (§16.6 step 4).
        """
        _check_field(name, value)
        key = canonical_name(name)
        for index, (field_name, _) in enumerate(self._fields):
            if field_name == key:
                self._fields.insert(index, (key, value))
                return
        self._fields.insert(0, (key, value))

    def set(self, name: str, value: str) -> None:
        """Replace all fields of that name, keeping the position of the first."""
        _check_field(name, value)
        key = canonical_name(name)
        new: list[tuple[str, str]] = []
        placed = False
        for field in self._fields:
            if field[0] == key:
                if not placed:
                    new.append((key, value))
                    placed = True
            else:
                new.append(field)
        if not placed:
            new.append((key, value))
        self._fields = new

    def remove(self, name: str) -> None:
        """Drop every field of that name (no error when there is none)."""
        key = canonical_name(name)
        self._fields = [field for field in self._fields if field[0] != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(field_name == key for field_name, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def copy(self) -> Headers:
        """A shallow copy; values are strings so it is independent."""
        return Headers._trusted(list(self._fields))
