"""A sans-IO audio mixer for calls of three or more parties.

Two parties are relayed packet by packet (`ccserver.media.endpoint`); a third
party needs real mixing, because a G.711 packet cannot be added to another
without decoding. Each participant feeds the payloads it receives; every
packet time the owner calls `Mixer.tick`, which decodes to linear once per
participant, sums for each listener what it *hears* (never itself), clips to
16 bits and encodes in the listener's law. Who hears whom is a relation set
per participant, so a supervisor can listen (hears both, heard by nobody),
whisper (heard by the agent only) or barge (heard by everyone).

No I/O and no clock here: `ccserver.media.mixbridge` receives the packets and
arms the 20 ms timer. A participant whose packets are late or lost simply
contributes silence for that tick; each input buffer holds at most
`max_buffered` samples (the oldest are dropped), so a peer sending faster
than the clock never makes latency or memory grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ccserver.media.g711 import alaw_encode, decoder_for, encoder_for, ulaw_encode

__all__ = ["Mixer", "Participant"]

SAMPLES = 160  # 20 ms at 8 kHz (RFC 3551 §4.5: G.711 frames are 8,000 samples/s)
_ENCODERS = {"PCMU": ulaw_encode, "PCMA": alaw_encode}


@dataclass(eq=False)
class Participant:
    """One party of the mix: the law it speaks, whom it hears, and what it sent lately."""

    name: str
    codec: str
    hears: set[str] = field(default_factory=set)
    buffer: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    fill: int = 0  # samples waiting in `buffer`
    dropped: int = 0  # samples dropped because the buffer was full
    output: bool = True  # False: only a source (what it hears reaches it another way)


class Mixer:
    """Participants, who hears whom, and one mixed frame per participant per tick."""

    def __init__(self, samples: int = SAMPLES, max_buffered: int = 4 * SAMPLES) -> None:
        if max_buffered < samples:
            raise ValueError(f"max_buffered {max_buffered} is smaller than one frame ({samples})")
        self.samples = samples
        self.max_buffered = max_buffered
        self.participants: dict[str, Participant] = {}

    # -- who is in the mix ----------------------------------------------------------
    def add(
        self, name: str, codec: str, hears: Iterable[str] = (), *, output: bool = True
    ) -> Participant:
        """Add a participant (or update its law and hearing if already there); with
        ``output=False`` it is only heard, and `tick` makes no frame for it."""
        encoder_for(codec)  # refuse an unknown law now, not on the first tick
        codec = codec.upper()
        part = self.participants.get(name)
        if part is None:
            part = Participant(name, codec, buffer=np.zeros(self.max_buffered, dtype=np.int16))
            self.participants[name] = part
        part.codec = codec
        part.hears = set(hears) - {name}
        part.output = output
        return part

    def remove(self, name: str) -> None:
        self.participants.pop(name, None)
        for part in self.participants.values():
            part.hears.discard(name)

    def set_hears(self, name: str, sources: Iterable[str]) -> None:
        """Whom `name` hears; itself is always left out (no echo of one's own voice)."""
        self.participants[name].hears = set(sources) - {name}

    def set_codec(self, name: str, codec: str) -> None:
        encoder_for(codec)
        self.participants[name].codec = codec.upper()

    # -- audio in -----------------------------------------------------------------------
    def feed(self, name: str, payload: bytes, codec: str | None = None) -> None:
        """A G.711 payload received from `name` (any length: 10, 20, 30 ms packets)."""
        part = self.participants.get(name)
        if part is None or not payload:
            return
        pcm = decoder_for(codec or part.codec)(payload)
        self._append(part, pcm)

    def feed_pcm(self, name: str, pcm: npt.NDArray[np.int16]) -> None:
        """Linear samples from `name` (a prompt or hold music mixed in, for instance)."""
        part = self.participants.get(name)
        if part is not None and len(pcm):
            self._append(part, pcm)

    def _append(self, part: Participant, pcm: npt.NDArray[np.int16]) -> None:
        cap = self.max_buffered
        if len(pcm) >= cap:
            part.dropped += part.fill + len(pcm) - cap
            part.buffer[:] = pcm[-cap:]
            part.fill = cap
            return
        overflow = part.fill + len(pcm) - cap
        if overflow > 0:
            # Too much waiting: drop the oldest samples so the delay stays bounded.
            part.buffer[: part.fill - overflow] = part.buffer[overflow : part.fill]
            part.fill -= overflow
            part.dropped += overflow
        part.buffer[part.fill : part.fill + len(pcm)] = pcm
        part.fill += len(pcm)

    # -- audio out ----------------------------------------------------------------------
    def _take(self, part: Participant) -> npt.NDArray[np.int32] | None:
        """The next frame of what `part` said, or None if it sent nothing in time."""
        n = min(part.fill, self.samples)
        if n == 0:
            return None
        frame = np.zeros(self.samples, dtype=np.int32)
        frame[:n] = part.buffer[:n]
        rest = part.fill - n
        if rest:
            part.buffer[:rest] = part.buffer[n : part.fill]
        part.fill = rest
        return frame

    def tick(self) -> dict[str, bytes]:
        """One packet time: the encoded frame each participant (with output) is to be sent."""
        spoken: dict[str, npt.NDArray[np.int32]] = {}
        for name, part in self.participants.items():
            frame = self._take(part)
            if frame is not None:
                spoken[name] = frame
        # Most listeners hear every other party: the sum of all minus their own
        # voice, one subtraction each instead of a sum per listener.
        total = np.sum(list(spoken.values()), axis=0) if len(spoken) > 1 else None
        out: dict[str, bytes] = {}
        for name, part in self.participants.items():
            if not part.output:
                continue
            heard = [s for s in spoken if s in part.hears]
            if not heard:
                mixed = np.zeros(self.samples, dtype=np.int32)
            elif len(heard) == 1:
                mixed = spoken[heard[0]]
            elif total is not None and len(heard) == len(spoken) - (name in spoken):
                mixed = total - spoken[name] if name in spoken else total
            else:
                mixed = np.sum([spoken[s] for s in heard], axis=0)
            pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
            out[name] = _ENCODERS[part.codec](pcm)
        return out

    def hearing(self) -> Mapping[str, frozenset[str]]:
        """Who hears whom, for logs and views."""
        return {name: frozenset(p.hears) for name, p in self.participants.items()}
