"""DTMF as RFC 4733 telephone-events: the 4-byte payload, a receiver that turns
a call's event packets into digits, and a sender that makes one key press."""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["DTMF_EVENTS", "DtmfReceiver", "DtmfSender", "TelephoneEvent", "event_code"]

#: RFC 4733 §3.2: event codes 0..15 are the DTMF keys in this order.
DTMF_EVENTS = "0123456789*#ABCD"

_EVENT = struct.Struct("!BBH")
_TS_MASK = 0xFFFFFFFF
_HALF_TS = 0x80000000


def event_code(digit: str) -> int:
    """The event code of a DTMF key ("0".."9", "*", "#", "A".."D", any case)."""
    code = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF key: {digit!r}")
    return code


@dataclass(slots=True)
class TelephoneEvent:
    """The payload of one RFC 4733 event packet (§2.3)."""

    event: int
    end: bool = False
    volume: int = 10  # power level as -dBm0, 0..63 (§2.3.4)
    duration: int = 0  # timestamp units since the event's start (§2.3.5)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Decode the first 4 bytes; longer payloads are rare (RFC 2198
        redundancy uses its own payload type) and their tail is ignored."""
        if len(payload) < 4:
            raise ValueError(f"telephone-event payload too short: {len(payload)} bytes, need 4")
        event, flags, duration = _EVENT.unpack_from(payload)
        # §2.3: E bit, then the reserved R bit (ignored by receivers), then volume.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code must be 0..255, got {self.event}")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume must be 0..63, got {self.volume}")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration must be 0..65535, got {self.duration}")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str:
        """The DTMF key, or "" for events that are not keys (flash, tones)."""
        return DTMF_EVENTS[self.event] if self.event < 16 else ""


class DtmfReceiver:
    """Turns the RFC 4733 packet stream of one call into digits, once each.

    A key press is reported on the first packet of its event that arrives,
    so barge-in reacts at once, and never again for the duration updates or
    the repeated end packets (§2.5.1.4). Events are told apart by their RTP
    timestamp, which stays the event's start time in all its packets
    (§2.5.1.2): this survives a lost first packet (no marker needed) and
    makes two presses of the same key two events.

    A packet older than the last event (timestamp behind it, in serial
    arithmetic) is a late repeat and ignored; after ``stale_after`` seconds
    of quiet, or with the marker bit, any new timestamp starts an event, so
    a sender that restarted its clock is not locked out.
    """

    __slots__ = (
        "_ended",
        "_event",
        "_event_end",
        "_event_ts",
        "_last_seen",
        "clock_rate",
        "stale_after",
    )

    def __init__(self, clock_rate: int = 8000, stale_after: float = 2.0) -> None:
        self.clock_rate = clock_rate
        self.stale_after = stale_after
        self.reset()

    def reset(self) -> None:
        """Forget the current event (a new source, a re-negotiation)."""
        self._event_ts: int | None = None
        self._event = -1
        self._event_end = 0  # start + duration: where a next segment would begin
        self._ended = False
        self._last_seen = float("-inf")

    def feed(self, payload: bytes, timestamp: int, marker: bool, now: float) -> str | None:
        """One telephone-event packet; the digit when it starts a key press.

        Malformed payloads and non-DTMF events yield None: this sits on the
        media path and a peer's garbage must not stop it.
        """
        if len(payload) < 4:
            return None
        event, flags, duration = _EVENT.unpack_from(payload)
        end = bool(flags & 0x80)
        previous = self._event_ts
        stale = now - self._last_seen > self.stale_after
        self._last_seen = now
        if previous is not None:
            ahead = (timestamp - previous) & _TS_MASK
            if ahead == 0:
                self._event_end = (timestamp + duration) & _TS_MASK
                self._ended = self._ended or end
                return None  # an update or end repeat of the current event
            if ahead >= _HALF_TS and not marker and not stale:
                return None  # a late packet of an earlier event
            if (
                not marker
                and not self._ended
                and event == self._event
                and timestamp == self._event_end
            ):
                # §2.5.1.3: a press too long for the 16-bit duration goes on
                # as a new segment starting where the previous one stopped.
                self._event_ts = timestamp
                self._ended = end
                return None
        self._event_ts = timestamp
        self._event = event
        self._event_end = (timestamp + duration) & _TS_MASK
        self._ended = end
        return DTMF_EVENTS[event] if event < 16 else None


class DtmfSender:
    """Packets for one key press (RFC 4733 §2.5.1): the marker on the first,
    one packet per ``packet_ms`` with the duration so far, then the final
    packet with the E bit sent three times (§2.5.1.4).

    The caller stamps them all with one timestamp, the event start, through
    `RtpSender.event_packet`, sends one every ``packet_ms``, then lets the
    stream clock move on by `samples(duration_ms)`.
    """

    __slots__ = ("clock_rate", "packet_ms")

    def __init__(self, clock_rate: int = 8000, packet_ms: int = 20) -> None:
        if packet_ms <= 0:
            raise ValueError(f"packet_ms must be positive, got {packet_ms}")
        self.clock_rate = clock_rate
        self.packet_ms = packet_ms

    def samples(self, duration_ms: int) -> int:
        return duration_ms * self.clock_rate // 1000

    def packets(
        self, digit: str, duration_ms: int = 100, volume: int = 10
    ) -> list[tuple[bytes, bool]]:
        """(payload, marker) in send order, the three end packets included."""
        code = event_code(digit)
        total = self.samples(duration_ms)
        if not 0 < total <= 0xFFFF:
            # Longer presses need segments (§2.5.1.3); a key press never does.
            raise ValueError(f"duration must be 1..{0xFFFF} timestamp units, got {total}")
        step = self.samples(self.packet_ms)
        packets: list[tuple[bytes, bool]] = []
        elapsed = step
        while elapsed < total:
            packets.append((bytes(TelephoneEvent(code, False, volume, elapsed)), not packets))
            elapsed += step
        final = bytes(TelephoneEvent(code, True, volume, total))
        packets.append((final, not packets))
        packets.append((final, False))
        packets.append((final, False))
        return packets
