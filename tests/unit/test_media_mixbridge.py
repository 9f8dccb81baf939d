"""The mix's I/O side: legs in and out of a `MixBridge`, relays, markers, the node's clock.

Endpoints are real `RtpEndpoint` objects with a transport that records what
would be sent; ticks are run by hand (the clock's timer is only checked to be
armed while a mix exists and gone after the last one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ccserver.media.endpoint import RtpEndpoint
from ccserver.media.g711 import ulaw_encode
from ccserver.media.mixbridge import MixBridge, MixClock
from ccserver.media.rtp import RtpPacket


class Wire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass


def endpoint(name: str) -> tuple[RtpEndpoint, Wire]:
    ep = RtpEndpoint(name)
    wire = Wire()
    ep.transport = wire  # type: ignore[assignment]
    ep.remote = ("127.0.0.1", 4000)
    return ep, wire


def rtp(payload: bytes, seq: int) -> bytes:
    return bytes(RtpPacket(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=7,
                           payload=payload))  # fmt: skip


async def test_listen_keeps_the_relay_and_mixes_for_the_supervisor() -> None:
    clock = MixClock()
    bridge = MixBridge(clock, "c1")
    (caller, cw), (agent, aw), (sup, sw) = endpoint("c"), endpoint("a"), endpoint("s")
    caller.bridge(agent)
    agent.bridge(caller)
    hears = {"caller": {"agent"}, "agent": {"caller"}, "supervisor": {"caller", "agent"}}
    bridge.update({"caller": caller, "agent": agent, "supervisor": sup}, hears)
    assert caller.peer is agent and agent.peer is caller  # still relayed
    assert clock._handle is not None  # the node's clock runs while a mix exists
    voice = ulaw_encode(np.full(160, 3000, dtype=np.int16))
    caller.datagram_received(rtp(voice, 1), ("127.0.0.1", 4000))
    assert len(aw.sent) == 1  # relayed at once, not on the next tick
    bridge.send_tick()
    assert cw.sent == [] and len(aw.sent) == 1  # no mixed frames for relayed legs
    (frame,) = sw.sent
    packet = RtpPacket.parse(frame)
    assert packet.marker and packet.payload == voice  # the supervisor hears the caller
    # Whisper: the agent now gets a mix, and its first mixed frame starts a talkspurt.
    hears["agent"] = {"caller", "supervisor"}
    bridge.update({"caller": caller, "agent": agent, "supervisor": sup}, hears)
    assert caller.peer is None and agent.peer is caller
    bridge.send_tick()
    assert RtpPacket.parse(aw.sent[-1]).marker
    bridge.close()
    assert caller.peer is None and agent.peer is None and caller.listeners == []
    assert clock._handle is None  # the last mix closed: no timer left


async def test_the_clock_outlives_one_mix_of_two() -> None:
    clock = MixClock()
    first, second = MixBridge(clock, "1"), MixBridge(clock, "2")
    for bridge in (first, second):
        eps = {name: endpoint(name)[0] for name in ("a", "b", "c")}
        bridge.update(eps, {n: set(eps) - {n} for n in eps})
    first.close()
    assert clock._handle is not None
    second.close()
    assert clock._handle is None
