"""The I/O side of a mixed call: RTP endpoints in, a 20 ms timer, mixed frames out.

A `MixBridge` takes over the media of a call's legs while three or more
parties are connected (a supervisor listening, a conference). Each leg's
endpoint hands its audio to the bridge through a listener; the bridge's timer
runs the sans-IO `Mixer` once per packet time and sends each leg its frame
through the leg's own `RtpSender`, so the phone sees one continuous stream
before, during and after the mix (RFC 3550 §5.1: sequence numbers and
timestamps keep counting). The call service owns the bridge and closes it
when the call goes back to two parties or ends.

A leg that hears exactly one other leg needs no mixing: that leg's packets
are relayed to it as in a two-party call (no added delay, key presses pass),
while they also feed the mix for the others. So while a supervisor listens,
caller and agent keep the packet relay between them and only the supervisor
is sent mixed audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from ccserver.media.endpoint import AudioListener, RtpEndpoint
from ccserver.media.mixer import SAMPLES, Mixer

log = logging.getLogger(__name__)

PTIME = SAMPLES / 8000
#: Ticks run at most this many times in a row to catch up after a stalled loop.
MAX_CATCH_UP = 5


class MixBridge:
    """The legs of one mixed call, keyed by a role name (caller, agent, supervisor...)."""

    def __init__(self, clock: MixClock, label: str = "") -> None:
        self.clock = clock
        self.label = label
        self.mixer = Mixer()
        self.endpoints: dict[str, RtpEndpoint] = {}
        self._listeners: dict[str, AudioListener] = {}
        self._fresh: set[str] = set()  # legs whose next frame starts a talkspurt (marker)
        self.relays: dict[str, str] = {}  # source -> the one leg its packets are relayed to
        self.ticks = 0

    def update(self, endpoints: Mapping[str, RtpEndpoint], hears: Mapping[str, set[str]]) -> None:
        """Make the mix these legs with this hearing relation (adds, removes, re-wires)."""
        for name in list(self.endpoints):
            if name not in endpoints or endpoints[name] is not self.endpoints[name]:
                self._detach(name)
        for name, endpoint in endpoints.items():
            if name not in self.endpoints:
                self._attach(name, endpoint)
        relays = self._relays_for(hears)
        for source in list(self.relays):
            if relays.get(source) != self.relays[source] and source in self.endpoints:
                self.endpoints[source].unbridge()
        for source, listener in relays.items():
            if self.relays.get(source) != listener:
                self.endpoints[source].bridge(self.endpoints[listener])
        relayed = set(relays.values())
        for name, endpoint in endpoints.items():
            part = self.mixer.participants.get(name)
            if part is not None and part.output is False and name not in relayed:
                self._fresh.add(name)  # from relayed packets to mixed frames
            self.mixer.add(name, endpoint.codec, hears.get(name, ()), output=name not in relayed)
        self.relays = relays
        if self.endpoints:
            self.clock.add(self)

    @staticmethod
    def _relays_for(hears: Mapping[str, set[str]]) -> dict[str, str]:
        """Source -> listener for listeners that hear exactly one source (one relay per
        source: an endpoint forwards to a single peer)."""
        relays: dict[str, str] = {}
        for listener in sorted(hears):
            heard = hears[listener] - {listener}
            if len(heard) == 1:
                (source,) = heard
                if source in hears and source not in relays:
                    relays[source] = listener
        return relays

    def _attach(self, name: str, endpoint: RtpEndpoint) -> None:
        endpoint.unbridge()  # its audio now goes into the mix (and maybe one relay)
        mixer = self.mixer

        def listener(payload: bytes, codec: str) -> None:
            mixer.feed(name, payload, codec)

        endpoint.listeners.append(listener)
        self.endpoints[name] = endpoint
        self._listeners[name] = listener
        self._fresh.add(name)

    def _detach(self, name: str) -> None:
        if name in self.relays:
            self.endpoints[name].unbridge()
            del self.relays[name]
        for source, target in list(self.relays.items()):
            if target == name:
                self.endpoints[source].unbridge()
                del self.relays[source]
        endpoint = self.endpoints.pop(name)
        listener = self._listeners.pop(name)
        if listener in endpoint.listeners:
            endpoint.listeners.remove(listener)
        self.mixer.remove(name)
        self._fresh.discard(name)

    def send_tick(self) -> None:
        """One packet time: mix and send every leg its frame."""
        self.ticks += 1
        for name, endpoint in self.endpoints.items():
            if endpoint.codec != self.mixer.participants[name].codec:
                self.mixer.set_codec(name, endpoint.codec)  # a re-INVITE changed the law
        for name, frame in self.mixer.tick().items():
            endpoint = self.endpoints[name]
            if endpoint.closed:
                continue
            marker = name in self._fresh
            self._fresh.discard(name)
            endpoint.send_audio(frame, SAMPLES, marker)

    def close(self) -> None:
        """Give the legs back (no listener, off the clock); the caller re-bridges them."""
        for name in list(self.endpoints):
            self._detach(name)
        self.clock.remove(self)


class MixClock:
    """One tick every packet time for every mixed call of the node (as `MediaClock`
    does for prompts), running only while a mix exists; each `MixBridge` takes
    itself off when closed, so the timer stops with the last mixed call."""

    def __init__(self) -> None:
        self._bridges: dict[MixBridge, None] = {}  # ordered, so ticks go round fairly
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def add(self, bridge: MixBridge) -> None:
        self._bridges[bridge] = None
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._next = loop.time()
            self._handle = loop.call_at(self._next, self._tick)

    def remove(self, bridge: MixBridge) -> None:
        self._bridges.pop(bridge, None)
        if not self._bridges and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Every frame due by the clock; a late tick catches up, boundedly.
        due = 0
        while self._next <= now and due < MAX_CATCH_UP:
            due += 1
            self._next += PTIME
        if self._next <= now:
            self._next = now + PTIME
        for bridge in list(self._bridges):
            for _ in range(due):
                bridge.send_tick()
        self._handle = loop.call_at(self._next, self._tick) if self._bridges else None
