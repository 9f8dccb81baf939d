"""The Python cost of relaying one RTP packet, without sockets.

Two `RtpEndpoint`s bridged as in a call (the same codec; A-law to µ-law; and
the same codec from a caller offered no telephone-event, whose leg also
feeds the in-band DTMF detector every packet, as the platform does: with
loud audio, which is analysed, and with line noise, which is not; and, for
comparison, the detector fed and run on every packet, as it was before
`G711InbandDtmf` batched it),
with a transport that only counts what `sendto` gets: each loop iteration is
what the event loop calls per datagram, `datagram_received`, down to the one
`sendto`. The figure is the best of many 500-packet rounds, in CPU time of
this thread. What it leaves out (the kernel and uvloop's receive and send)
`relay_capacity.py` measures with real sockets; this part is the one the code
controls, and the one a noisy machine disturbs least.

    .venv/bin/python bench/relay_path.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from typing import Any

from ccserver.media.endpoint import RtpEndpoint
from ccserver.media.g711 import decoder_for
from ccserver.media.sdp import NegotiatedAudio
from ivr.inband import G711InbandDtmf, InbandDtmfDetector

CALLER = ("127.0.0.2", 40000)
AGENT = ("127.0.0.1", 40002)


class CountingTransport(asyncio.DatagramTransport):
    """Stands in for the socket: counts datagrams and bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.bytes = 0

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent += 1
        self.bytes += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 30000) if name == "sockname" else default

    def close(self) -> None:
        pass


def audio(codec: str, pt: int, addr: tuple[str, int]) -> NegotiatedAudio:
    return NegotiatedAudio(
        remote_addr=addr,
        codec=codec,
        payload_type=pt,
        dtmf_payload_type=101,
        ptime=20,
        direction="sendrecv",
        remote_direction="sendrecv",
        on_hold=False,
    )


def bridged(caller_codec: str, agent_codec: str) -> tuple[RtpEndpoint, CountingTransport]:
    a, b = RtpEndpoint("caller"), RtpEndpoint("agent")
    out = CountingTransport()
    a.connection_made(CountingTransport())
    b.connection_made(out)
    a.configure(audio(caller_codec, 0 if caller_codec == "PCMU" else 8, CALLER))
    b.configure(audio(agent_codec, 0 if agent_codec == "PCMU" else 8, AGENT))
    a.bridge(b)
    b.bridge(a)
    return a, out


LOUD = bytes(range(160))
"""Codes of every level, most of them loud: audio the detector must analyse."""
NOISE = bytes(0xF0 + (i * 7) % 16 for i in range(160))  # µ-law codes for |x| < 500
"""Line noise, peaks about -50 dBm0: a silent caller, skipped by the level test."""


def packets(pt: int, n: int = 500, payload: bytes = LOUD) -> list[bytes]:
    return [struct.pack("!BBHII", 0x80, pt, i, i * 160, 0x1234) + payload for i in range(n)]


def inband_listener(per_packet: bool) -> Any:
    """What the platform adds to a caller leg offered no telephone-event: tones in the audio."""
    if per_packet:
        detector = InbandDtmfDetector()

        def unbatched(payload: bytes, codec: str) -> None:
            detector.feed(decoder_for(codec)(payload))

        return unbatched
    tap = G711InbandDtmf()

    def inband(payload: bytes, codec: str) -> None:
        tap.feed(payload, codec)

    return inband


def measure(
    caller_codec: str, agent_codec: str, seconds: float, inband: str = ""
) -> dict[str, Any]:
    a, out = bridged(caller_codec, agent_codec)
    if inband:
        a.listeners.append(inband_listener(inband == "per packet"))
    payload = NOISE if inband == "noise" else LOUD
    data = packets(0 if caller_codec == "PCMU" else 8, payload=payload)
    receive = a.datagram_received
    n = 0
    best = float("inf")
    deadline = time.perf_counter() + seconds
    # The best of many short rounds of this thread's CPU time: other
    # processes only ever add to it (preemption, cold caches).
    while time.perf_counter() < deadline:
        start = time.thread_time()
        for p in data:
            receive(p, CALLER)
        best = min(best, (time.thread_time() - start) / len(data))
        n += len(data)
    assert out.sent == n, f"{out.sent} of {n} relayed"
    ns = best * 1e9
    return {
        "bench": "relay_path",
        "legs": f"{caller_codec}->{agent_codec}" + (f" in-band DTMF, {inband}" if inband else ""),
        "packets": n,
        "ns_per_packet": round(ns, 1),
        "packets_per_s": int(1e9 / ns),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per case")
    args = ap.parse_args()
    cases = [
        ("PCMU", "PCMU", ""),
        ("PCMA", "PCMU", ""),
        ("PCMU", "PCMU", "loud"),
        ("PCMU", "PCMU", "noise"),
        ("PCMU", "PCMU", "per packet"),
    ]
    rows = [measure(a, b, args.seconds, inband) for a, b, inband in cases]
    print(f"{'legs':<38} {'packets':>9} {'ns/packet':>10} {'packets/s':>10}")
    for r in rows:
        print(
            f"{r['legs']:<38} {r['packets']:>9} {r['ns_per_packet']:>10.0f} "
            f"{r['packets_per_s']:>10}"
        )
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
