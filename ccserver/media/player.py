"""Prompt playback paced by one media clock for the whole node.

A single `loop.call_at` tick every packet time serves every playing leg:
each tick sends the frames that are due by the clock (catching up after a
late tick), so pacing never depends on one sleep per packet per call.
Prompts are encoded once per codec and kept as lists of ready payloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from ccserver.media.endpoint import RtpEndpoint
from ccserver.media.g711 import encoder_for

log = logging.getLogger(__name__)

PTIME = 0.020
SAMPLES = 160  # 20 ms at 8 kHz


def encode_frames(pcm: np.ndarray, codec: str, samples: int = SAMPLES) -> tuple[bytes, ...]:
    """8 kHz int16 PCM -> G.711 payloads of one packet each (last one padded)."""
    if len(pcm) % samples:
        pad = samples - len(pcm) % samples
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
    data = encoder_for(codec)(pcm.astype(np.int16, copy=False))
    return tuple(data[i : i + samples] for i in range(0, len(data), samples))


class EncodedAudio:
    """One piece of audio, encoded lazily once per codec and then shared by all calls."""

    def __init__(self, pcm: np.ndarray, name: str = "") -> None:
        self.pcm = pcm
        self.name = name
        self._frames: dict[str, tuple[bytes, ...]] = {}

    def frames(self, codec: str) -> tuple[bytes, ...]:
        frames = self._frames.get(codec)
        if frames is None:
            frames = self._frames[codec] = encode_frames(self.pcm, codec)
        return frames

    @property
    def duration(self) -> float:
        return len(self.pcm) / 8000


class Playback:
    """A playing item on one leg; `done` resolves True when it played out, False if stopped."""

    def __init__(
        self, endpoint: RtpEndpoint, items: Sequence[EncodedAudio], loop_forever: bool
    ) -> None:
        self.endpoint = endpoint
        self._items = list(items)
        self._loop_forever = loop_forever
        self._item = 0
        self._frames = self._items[0].frames(endpoint.codec) if self._items else ()
        self._index = 0
        self._marker = True
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def send_next(self) -> bool:
        """Send one frame; False once the playback has nothing left."""
        while self._index >= len(self._frames):
            self._item += 1
            if self._item >= len(self._items):
                if not self._loop_forever or not self._items:
                    return False
                self._item = 0
            self._frames = self._items[self._item].frames(self.endpoint.codec)
            self._index = 0
        self.endpoint.send_audio(self._frames[self._index], SAMPLES, self._marker)
        self._marker = False
        self._index += 1
        return True

    def finish(self, completed: bool) -> None:
        if not self.done.done():
            self.done.set_result(completed)


class MediaClock:
    """Ticks every 20 ms while anything plays; owned by the node's media service."""

    def __init__(self) -> None:
        self._playing: dict[RtpEndpoint, Playback] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def play(
        self, endpoint: RtpEndpoint, items: Sequence[EncodedAudio], *, loop: bool = False
    ) -> Playback:
        """Start playing on a leg, replacing whatever it played before."""
        self.stop(endpoint)
        pb = Playback(endpoint, items, loop)
        self._playing[endpoint] = pb
        if self._handle is None:
            ev = asyncio.get_running_loop()
            self._next = ev.time()
            self._tick()
        else:
            # Start at once rather than on the next tick, so the first packet
            # leaves as soon as the caller is answered.
            if not pb.send_next():
                self._finish(endpoint, True)
        return pb

    def stop(self, endpoint: RtpEndpoint) -> None:
        pb = self._playing.pop(endpoint, None)
        if pb is not None:
            pb.finish(False)

    def is_playing(self, endpoint: RtpEndpoint) -> bool:
        return endpoint in self._playing

    def _finish(self, endpoint: RtpEndpoint, completed: bool) -> None:
        pb = self._playing.pop(endpoint, None)
        if pb is not None:
            pb.finish(completed)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Send every frame that is due by the clock; a late tick catches up
        # (bounded, so a stalled loop does not burst seconds of audio).
        due = 0
        while self._next <= now and due < 10:
            due += 1
            self._next += PTIME
        if self._next <= now:
            self._next = now + PTIME
        for endpoint, pb in list(self._playing.items()):
            if endpoint.closed:
                self._finish(endpoint, False)
                continue
            for _ in range(due):
                if not pb.send_next():
                    self._finish(endpoint, True)
                    break
        if self._playing:
            self._handle = loop.call_at(self._next, self._tick)
        else:
            self._handle = None

    def close(self) -> None:
        for endpoint in list(self._playing):
            self.stop(endpoint)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
