"""SDP (RFC 8866) as plain data, and the offer/answer rules of RFC 3264 for the
one audio stream a contact-center leg carries (G.711 plus RFC 4733 events).

Known fields are decoded (connection, rtpmap, fmtp, ptime, direction); every
other line and attribute is kept in order, so an SDP survives a parse and
serialise round trip in meaning, and ours byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "MediaDescription",
    "NegotiatedAudio",
    "NotAcceptable",
    "Origin",
    "SessionDescription",
    "answer",
    "negotiate_answer",
    "offer",
]

#: RFC 3551 §6, Table 4: audio payload types usable without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, None),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

#: RFC 3264 §5.1 direction attributes, as (we may send, we may receive).
DIRECTIONS: dict[str, tuple[bool, bool]] = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_DIRECTION_OF = {flags: name for name, flags in DIRECTIONS.items()}

_G711 = {"PCMU": 0, "PCMA": 8}
_RTP_PROFILES = ("RTP/AVP", "RTP/AVPF")
_TELEPHONE_EVENT = "telephone-event"
_DTMF_EVENTS_FMTP = "0-15"  # RFC 4733 §7.1.1: the 16 DTMF keys
_DEFAULT_PTIME = 20

# RFC 8866 §5: the order of lines in the session and in each media section.
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"


class Origin(NamedTuple):
    """The o= line (RFC 8866 §5.2)."""

    username: str
    session_id: int
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return " ".join(str(part) for part in self)


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _is_null_address(address: str | None) -> bool:
    """RFC 3264 §8.4: c=0.0.0.0 is the RFC 2543 way of putting a stream on hold."""
    return address is not None and address.split("/", 1)[0] in ("0.0.0.0", "::")


@dataclass
class MediaDescription:
    """One m= section (RFC 8866 §5.14) with its attributes."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None  # the address of c=, with any /ttl suffix
    rtpmap: dict[int, tuple[str, int, int | None]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str = "sendrecv"  # the session-level one applies when the section has none
    ptime: int | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None  # m=audio 49170/2
    extra_lines: list[tuple[str, str]] = field(default_factory=list)  # i=, b=, k=

    @property
    def payload_types(self) -> list[int]:
        return [int(fmt) for fmt in self.formats if fmt.isdigit()]

    def codec(self, payload_type: int) -> tuple[str, int, int | None] | None:
        """The encoding of a payload type: its rtpmap, else the static table."""
        return self.rtpmap.get(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)

    def attribute(self, name: str) -> str | None:
        """The value of the first other attribute called ``name`` ("" for a flag)."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def _lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines: list[tuple[str, str]] = [
            ("m", " ".join([self.media, port, self.proto, *self.formats])),
            *self.extra_lines,
        ]
        if self.connection is not None:
            lines.append(("c", f"IN {_addrtype(self.connection)} {self.connection}"))
        attributes: list[str] = []
        listed = self.payload_types
        for pt in [*listed, *(pt for pt in self.rtpmap if pt not in listed)]:
            if pt in self.rtpmap:
                name, clock, channels = self.rtpmap[pt]
                suffix = "" if channels is None else f"/{channels}"
                attributes.append(f"rtpmap:{pt} {name}/{clock}{suffix}")
            if pt in self.fmtp:
                attributes.append(f"fmtp:{pt} {self.fmtp[pt]}")
        for pt, params in self.fmtp.items():
            if pt not in listed and pt not in self.rtpmap:
                attributes.append(f"fmtp:{pt} {params}")
        attributes.extend(_attribute_text(name, value) for name, value in self.attributes)
        if self.ptime is not None:
            attributes.append(f"ptime:{self.ptime}")
        if self.port != 0:  # a rejected stream needs no attributes (RFC 3264 §6)
            attributes.append(self.direction)
        lines.extend(("a", text) for text in attributes)
        lines.sort(key=lambda line: _MEDIA_ORDER.index(line[0]))  # stable: keeps order per type
        return [f"{kind}={value}" for kind, value in lines]


def _attribute_text(name: str, value: str | None) -> str:
    return name if value is None else f"{name}:{value}"


@dataclass
class SessionDescription:
    """A whole SDP body (RFC 8866)."""

    origin: Origin
    name: str = "-"
    connection: str | None = None
    timing: tuple[int, int] = (0, 0)
    media: list[MediaDescription] = field(default_factory=list)
    direction: str | None = None  # session-level direction attribute, if any
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)  # i u e p b r z k, more t
    version: int = 0

    @property
    def audio(self) -> MediaDescription | None:
        """The first audio stream that is not disabled."""
        for media in self.media:
            if media.media == "audio" and media.port != 0:
                return media
        return None

    def connection_for(self, media: MediaDescription) -> str | None:
        """RFC 8866 §5.7: a media-level c= overrides the session-level one."""
        return media.connection if media.connection is not None else self.connection

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
        return _Parser(text).parse()

    def __str__(self) -> str:
        lines: list[tuple[str, str]] = [
            ("v", str(self.version)),
            ("o", str(self.origin)),
            ("s", self.name or " "),  # s= must not be empty (RFC 8866 §5.3)
            *self.extra_lines,
        ]
        if self.connection is not None:
            lines.append(("c", f"IN {_addrtype(self.connection)} {self.connection}"))
        lines.append(("t", f"{self.timing[0]} {self.timing[1]}"))
        lines.extend(("a", _attribute_text(name, value)) for name, value in self.attributes)
        if self.direction is not None:
            lines.append(("a", self.direction))
        lines.sort(key=lambda line: _SESSION_ORDER.index(line[0]))
        out = [f"{kind}={value}" for kind, value in lines]
        for media in self.media:
            out.extend(media._lines())
        return "\r\n".join(out) + "\r\n"

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")


class _Parser:
    """One pass over the lines, with the line number for every error."""

    def __init__(self, text: str) -> None:
        self.lines = text.replace("\r\n", "\n").split("\n")
        self.number = 0

    def error(self, reason: str) -> ValueError:
        return ValueError(f"SDP line {self.number}: {reason}")

    def parse(self) -> SessionDescription:
        version: int | None = None
        origin: Origin | None = None
        name = "-"
        session_connection: str | None = None
        timing: tuple[int, int] | None = None
        session_direction: str | None = None
        session_attributes: list[tuple[str, str | None]] = []
        session_extra: list[tuple[str, str]] = []
        media: list[MediaDescription] = []
        explicit_direction: list[bool] = []
        current: MediaDescription | None = None

        for number, raw in enumerate(self.lines, start=1):
            self.number = number
            line = raw.rstrip("\r")
            if not line:
                continue  # tolerate blank lines, typically a trailing one
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise self.error(f"expected <type>=<value>, got {line[:40]!r}")
            kind, value = line[0], line[2:]
            if version is None:
                if kind != "v":
                    raise self.error(f"an SDP must start with v=, got {kind}=")
                if value.strip() != "0":
                    raise self.error(f"unsupported SDP version {value!r}")
                version = 0
                continue
            if kind == "m":
                current = self.media_line(value)
                media.append(current)
                explicit_direction.append(False)
            elif kind == "a":
                attr, attr_value = _split_attribute(value)
                if attr in DIRECTIONS and attr_value is None:
                    if current is None:
                        session_direction = attr
                    else:
                        current.direction = attr
                        explicit_direction[-1] = True
                elif current is None:
                    session_attributes.append((attr, attr_value))
                else:
                    self.media_attribute(current, attr, attr_value)
            elif kind == "c":
                address = self.connection_line(value)
                if current is None:
                    session_connection = address
                else:
                    current.connection = address
            elif current is not None:
                if kind not in "ibk":
                    raise self.error(f"{kind}= is not allowed in a media section")
                current.extra_lines.append((kind, value))
            elif kind == "o":
                origin = self.origin_line(value)
            elif kind == "s":
                name = value
            elif kind == "t":
                if timing is None:
                    timing = self.timing_line(value)
                else:
                    session_extra.append((kind, value))
            elif kind in "iuepbrzk":
                session_extra.append((kind, value))
            else:
                # RFC 8866 §5: a parser must ignore or reject an SDP with an unknown type.
                raise self.error(f"unknown line type {kind}=")

        if version is None:
            raise ValueError("SDP is empty")
        if origin is None:
            raise ValueError("SDP has no o= line")
        for item, explicit in zip(media, explicit_direction, strict=True):
            if not explicit and session_direction is not None:
                item.direction = session_direction  # RFC 3264 §5.1
        return SessionDescription(
            origin=origin,
            name=name,
            connection=session_connection,
            timing=timing or (0, 0),
            media=media,
            direction=session_direction,
            attributes=session_attributes,
            extra_lines=session_extra,
            version=version,
        )

    def origin_line(self, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise self.error(f"o= needs 6 fields, got {len(parts)}")
        username, session_id, session_version, nettype, addrtype, address = parts
        if not session_id.isdigit() or not session_version.isdigit():
            raise self.error("o= session id and version must be numeric")
        return Origin(username, int(session_id), int(session_version), nettype, addrtype, address)

    def timing_line(self, value: str) -> tuple[int, int]:
        parts = value.split()
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise self.error(f"t= needs two numbers, got {value!r}")
        return int(parts[0]), int(parts[1])

    def connection_line(self, value: str) -> str:
        parts = value.split()
        if len(parts) != 3:
            raise self.error(f"c= needs 3 fields, got {len(parts)}")
        if parts[0] != "IN":
            raise self.error(f"unsupported network type {parts[0]!r}")
        if parts[1] not in ("IP4", "IP6"):
            raise self.error(f"unsupported address type {parts[1]!r}")
        return parts[2]

    def media_line(self, value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 3:
            raise self.error(f"m= needs media, port, proto and formats, got {value!r}")
        media, port_text, proto, *formats = parts
        port_part, _, count_part = port_text.partition("/")
        if not port_part.isdigit() or int(port_part) > 65535:
            raise self.error(f"bad port {port_text!r}")
        port_count: int | None = None
        if count_part:
            if not count_part.isdigit():
                raise self.error(f"bad port count {port_text!r}")
            port_count = int(count_part)
        if proto.startswith("RTP/") or "/RTP/" in proto:
            for fmt in formats:
                if not fmt.isdigit() or int(fmt) > 127:
                    raise self.error(f"bad RTP payload type {fmt!r}")
        return MediaDescription(media, int(port_part), proto, formats, port_count=port_count)

    def media_attribute(self, media: MediaDescription, name: str, value: str | None) -> None:
        if name == "rtpmap":
            pt, codec = self.payload_attribute(name, value)
            pieces = codec.split("/")
            if len(pieces) not in (2, 3) or not all(p.isdigit() for p in pieces[1:]):
                raise self.error(
                    f"rtpmap needs <encoding>/<clock rate>[/<channels>], got {codec!r}"
                )
            channels = int(pieces[2]) if len(pieces) == 3 else None
            media.rtpmap[pt] = (pieces[0], int(pieces[1]), channels)
        elif name == "fmtp" and value is not None and value.split(" ", 1)[0].isdigit():
            pt, params = self.payload_attribute(name, value)
            media.fmtp[pt] = params
        elif name == "ptime":
            try:
                ptime = round(float(value or ""))
            except (ValueError, OverflowError):
                raise self.error(f"ptime must be a number of milliseconds, got {value!r}") from None
            media.ptime = ptime
        else:
            media.attributes.append((name, value))

    def payload_attribute(self, name: str, value: str | None) -> tuple[int, str]:
        pt_text, _, rest = (value or "").partition(" ")
        if not pt_text.isdigit() or int(pt_text) > 127:
            raise self.error(f"{name} needs a payload type 0..127, got {pt_text!r}")
        return int(pt_text), rest.strip()


def _split_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    return (name, rest) if colon else (name, None)


# ------------------------------------------------------------------ offer/answer


class NotAcceptable(ValueError):
    """No stream of the SDP can be accepted: answer 488 Not Acceptable Here."""

    status_code = 488


@dataclass(slots=True)
class NegotiatedAudio:
    """What a leg's media needs after offer/answer."""

    remote_addr: tuple[str, int]  # where to send RTP
    codec: str  # "PCMU" or "PCMA"
    payload_type: int  # the payload type to send the codec with
    dtmf_payload_type: int | None  # RFC 4733 events, both directions
    ptime: int  # packet duration (ms) the peer asked to receive
    direction: str  # OUR direction toward the peer after negotiation
    remote_direction: str  # the direction the peer stated
    on_hold: bool  # the peer put us on hold (RFC 3264 §8.4)

    @property
    def may_send(self) -> bool:
        return DIRECTIONS[self.direction][0]

    @property
    def may_receive(self) -> bool:
        return DIRECTIONS[self.direction][1]


def _local_codecs(codecs: Sequence[str]) -> list[str]:
    names = [codec.upper() for codec in codecs]
    for name in names:
        if name not in _G711:
            raise ValueError(f"unsupported local codec {name!r}: expected PCMU or PCMA")
    if not names:
        raise ValueError("no local codecs")
    return names


def _pick_codec(media: MediaDescription, acceptable: Sequence[str]) -> tuple[int, str] | None:
    """The first format in the other side's order that we can use (RFC 3264 §6.1)."""
    for pt in media.payload_types:
        codec = media.codec(pt)
        if codec is None:
            continue
        name, clock, channels = codec
        if name.upper() in acceptable and clock == 8000 and channels in (None, 1):
            return pt, name.upper()
    return None


def _pick_telephone_event(media: MediaDescription) -> int | None:
    for pt in media.payload_types:
        codec = media.rtpmap.get(pt)
        if codec is not None and codec[0].lower() == _TELEPHONE_EVENT and codec[1] == 8000:
            return pt
    return None


def _audio_section(
    *,
    port: int,
    proto: str,
    codecs: Sequence[tuple[int, str]],
    dtmf_payload_type: int | None,
    direction: str,
    ptime: int,
) -> MediaDescription:
    formats = [str(pt) for pt, _ in codecs]
    rtpmap: dict[int, tuple[str, int, int | None]] = {pt: (name, 8000, None) for pt, name in codecs}
    fmtp: dict[int, str] = {}
    if dtmf_payload_type is not None:
        formats.append(str(dtmf_payload_type))
        rtpmap[dtmf_payload_type] = (_TELEPHONE_EVENT, 8000, None)
        fmtp[dtmf_payload_type] = _DTMF_EVENTS_FMTP
    return MediaDescription(
        "audio", port, proto, formats, rtpmap=rtpmap, fmtp=fmtp, direction=direction, ptime=ptime
    )


def _session(
    local_ip: str, session_id: int, session_version: int, media: list[MediaDescription]
) -> SessionDescription:
    return SessionDescription(
        origin=Origin("-", session_id, session_version, "IN", _addrtype(local_ip), local_ip),
        name="-",
        connection=local_ip,
        media=media,
    )


def _remote_ptime(media: MediaDescription) -> int:
    return media.ptime if media.ptime is not None and media.ptime > 0 else _DEFAULT_PTIME


def offer(
    *,
    local_ip: str,
    local_port: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = 101,
    session_id: int,
    session_version: int = 0,
    direction: str = "sendrecv",
    ptime: int = _DEFAULT_PTIME,
) -> SessionDescription:
    """Our offer: one audio stream, G.711 in our preference order, RFC 4733 events.
    ``direction="sendonly"`` puts the peer on hold (RFC 3264 §8.4)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    names = _local_codecs(codecs)
    section = _audio_section(
        port=local_port,
        proto="RTP/AVP",
        codecs=[(_G711[name], name) for name in names],
        dtmf_payload_type=dtmf_payload_type,
        direction=direction,
        ptime=ptime,
    )
    return _session(local_ip, session_id, session_version, [section])


def answer(
    offer: SessionDescription,
    *,
    local_ip: str,
    local_port: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    session_id: int,
    session_version: int = 0,
    hold: bool = False,
) -> tuple[SessionDescription, NegotiatedAudio]:
    """Answer an offer (RFC 3264 §6): accept the first audio stream with a codec
    we have, choosing by the offerer's preference, and reject every other
    stream with port 0, keeping one m= line per offered one.

    Raises NotAcceptable (488) when no audio stream can be accepted.
    """
    acceptable = _local_codecs(codecs)
    sections: list[MediaDescription] = []
    negotiated: NegotiatedAudio | None = None
    for media in offer.media:
        if (
            negotiated is None
            and media.media == "audio"
            and media.port != 0
            and media.proto in _RTP_PROFILES
        ):
            picked = _pick_codec(media, acceptable)
            address = offer.connection_for(media)
            if picked is not None and address is not None:
                pt, codec = picked
                dtmf = _pick_telephone_event(media)
                their_send, their_receive = DIRECTIONS[media.direction]
                null_address = _is_null_address(address)
                # Our direction mirrors theirs (§6.1); hold=True withdraws our
                # receiving, the way a sendonly offer would (§8.4).
                ours = _DIRECTION_OF[(their_receive and not null_address, their_send and not hold)]
                sections.append(
                    _audio_section(
                        port=local_port,
                        proto=media.proto,
                        codecs=[(pt, codec)],
                        dtmf_payload_type=dtmf,
                        direction=ours,
                        ptime=_DEFAULT_PTIME,
                    )
                )
                negotiated = NegotiatedAudio(
                    remote_addr=(address.split("/", 1)[0], media.port),
                    codec=codec,
                    payload_type=pt,
                    dtmf_payload_type=dtmf,
                    ptime=_remote_ptime(media),
                    direction=ours,
                    remote_direction=media.direction,
                    on_hold=not their_receive or null_address,
                )
                continue
        # §6: a rejected stream is answered with port 0 and the offered formats.
        sections.append(MediaDescription(media.media, 0, media.proto, list(media.formats)))
    if negotiated is None:
        offered = [
            "/".join(str(part) for part in (media.codec(pt) or (str(pt),))[:2])
            for media in offer.media
            if media.media == "audio"
            for pt in media.payload_types
        ]
        raise NotAcceptable(
            f"no acceptable audio stream: offered {', '.join(offered) or 'no audio'}, "
            f"we support {', '.join(acceptable)}"
        )
    return _session(local_ip, session_id, session_version, sections), negotiated


def negotiate_answer(
    sent_offer: SessionDescription, received_answer: SessionDescription
) -> NegotiatedAudio:
    """The offerer's side of RFC 3264 §7: what the answer to our offer means."""
    if len(received_answer.media) != len(sent_offer.media):
        raise ValueError(
            f"the answer has {len(received_answer.media)} m= lines for "
            f"{len(sent_offer.media)} offered (RFC 3264 §6)"
        )
    for ours, theirs in zip(sent_offer.media, received_answer.media, strict=True):
        if ours.media != "audio" or ours.port == 0 or theirs.port == 0:
            continue
        offered = [
            mapping[0].upper()
            for pt in ours.payload_types
            if (mapping := ours.codec(pt)) is not None and mapping[0].upper() in _G711
        ]
        picked = _pick_codec(theirs, offered)
        address = received_answer.connection_for(theirs)
        if picked is None or address is None:
            continue
        pt, codec = picked
        our_send, our_receive = DIRECTIONS[ours.direction]
        their_send, their_receive = DIRECTIONS[theirs.direction]
        null_address = _is_null_address(address)
        dtmf = _pick_telephone_event(theirs) if _pick_telephone_event(ours) is not None else None
        return NegotiatedAudio(
            remote_addr=(address.split("/", 1)[0], theirs.port),
            codec=codec,
            payload_type=pt,
            dtmf_payload_type=dtmf,
            ptime=_remote_ptime(theirs),
            direction=_DIRECTION_OF[
                (our_send and their_receive and not null_address, our_receive and their_send)
            ],
            remote_direction=theirs.direction,
            on_hold=our_send and (not their_receive or null_address),
        )
    raise NotAcceptable("the answer accepted no audio stream with a codec we offered")
