"""How much CPU the sans-IO mixer costs per mixed call.

A call with three or more parties (a supervisor listening, whispering or
barging; a conference) leaves the packet relay for the mixer, which decodes,
sums and re-encodes every 20 ms. This prints, per shape of call, the cost of
one 20 ms tick including feeding every party's packet (decode), and what that
means in mixed calls per core (20 ms of CPU per 20 ms of audio). Socket I/O is
not included: the relay's figures are in bench/README.md.

    .venv/bin/python bench/mixer.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ccserver.media.g711 import encoder_for
from ccserver.media.mixer import SAMPLES, Mixer

PARTIES = ("caller", "agent", "supervisor", "third")

SHAPES: dict[str, dict[str, set[str]]] = {
    "listen (3 parties)": {
        "caller": {"agent"},
        "agent": {"caller"},
        "supervisor": {"caller", "agent"},
    },
    "barge / conference (3)": {p: set(PARTIES[:3]) for p in PARTIES[:3]},
    "conference + listen (4)": {
        "caller": {"agent", "third"},
        "agent": {"caller", "third"},
        "third": {"caller", "agent"},
        "supervisor": {"caller", "agent", "third"},
    },
}


def measure(hears: dict[str, set[str]], seconds: float) -> tuple[float, int]:
    mixer = Mixer()
    frames = {}
    for i, name in enumerate(hears):
        codec = "PCMA" if i % 2 else "PCMU"
        mixer.add(name, codec, hears[name])
        n = np.arange(SAMPLES)
        pcm = (6000 * np.sin(2 * np.pi * (300 + 400 * i) * n / 8000)).astype(np.int16)
        frames[name] = encoder_for(codec)(pcm)
    ticks = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            for name, frame in frames.items():
                mixer.feed(name, frame)
            mixer.tick()
        ticks += 100
    return (time.perf_counter() - start) / ticks, ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per shape")
    args = parser.parse_args()
    print(f"{'call shape':28} {'µs per tick':>12} {'calls per core':>15}")
    rows = []
    for shape, hears in SHAPES.items():
        per_tick, ticks = measure(hears, args.seconds)
        calls = 0.020 / per_tick
        print(f"{shape:28} {per_tick * 1e6:12.1f} {calls:15.0f}")
        rows.append({"bench": "mixer", "shape": shape, "parties": len(hears),
                     "us_per_tick": round(per_tick * 1e6, 2), "calls_per_core": round(calls),
                     "ticks": ticks})  # fmt: skip
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
