"""Bridged calls per core: ccserver's RTP relay beside rtpengine's, on the same traffic.

For each relay in turn (a real `ccserver run`, then Debian's userspace
``rtpengine``), pinned to one core (``--relay-core``, default 1), it sets up
the largest number of calls asked for: through ccserver, real SIP calls to
DID 5001 answered by bench agents; through rtpengine, ng offer/answer. The
media of every leg ends at a socket of the RTP generator (`rtp_load.py`,
pinned to ``--load-core``, default 0), which then sends G.711 both ways on
the first N calls for each step N: 50 packets/s per leg, each stamped with
its send time. Per step it reports loss, latency through the relay
(p50/p99/max, generator to relay to generator on loopback), the relay's CPU
share, and whether the generator kept its schedule.

A step is clean when loss < 0.1 %, p50 < 1 ms and p99 < 20 ms; each relay's
capacity is its largest clean step. Stepping stops after the first step
that is not clean, unless ``--all-steps``. The target: ccserver >= 1.5 x rtpengine.

    .venv/bin/python bench/relay_capacity.py [--steps 50,100,200,...] [--seconds 10]

The first row per relay, "direct", is the generator talking to itself with
no relay at the smallest step: the floor of what it can measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bridged_calls import Bridged, ccserver_calls, cpu_seconds, profiled, rtpengine_calls
from rtp_load import RtpLoad

MAX_LOSS_PCT = 0.1
MAX_P50_MS = 1.0
MAX_P99_MS = 20.0
TARGET_RATIO = 1.5


def clean(row: dict[str, Any]) -> bool:
    lat = row["latency_us"]
    return (
        row["loss_pct"] < MAX_LOSS_PCT
        and lat["p50"] is not None
        and lat["p50"] / 1000 < MAX_P50_MS
        and lat["p99"] / 1000 < MAX_P99_MS
    )


def clean_capacity(rows: list[dict[str, Any]]) -> int:
    """The last step of the unbroken run of clean steps from the smallest (0: none)."""
    best = 0
    for row in rows:
        if row["calls"] == "direct":
            continue
        if not row["clean"]:
            break
        best = row["calls"]
    return best


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def step_up(
    relay: str,
    bridged: Bridged,
    load: RtpLoad,
    steps: list[int],
    seconds: float,
    all_steps: bool = False,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # The generator alone (sockets paired with each other): what it adds by itself.
    n = steps[0]
    direct = [(2 * i, load.ports[2 * i + 1]) for i in range(n)]
    direct += [(2 * i + 1, load.ports[2 * i]) for i in range(n)]
    row = await load.run(direct, seconds)
    rows.append({"relay": relay, "calls": "direct", **row, "relay_cpu_pct": None})
    print_row(rows[0])
    for calls in steps:
        cpu0, t0 = cpu_seconds(bridged.pid), time.monotonic()
        row = await load.run(bridged.calls(calls), seconds)
        cpu = (cpu_seconds(bridged.pid) - cpu0) / (time.monotonic() - t0)
        row = {"relay": relay, "calls": calls, **row, "relay_cpu_pct": round(100 * cpu, 1)}
        # CPU per packet relayed is what the noise of a shared machine changes least.
        relayed = max(1, row["received"]) / row["seconds"]
        row["relay_cpu_us_per_packet"] = round(1e6 * cpu / relayed, 2)
        # 100 packets/s per call (50 each way): the calls one whole core would carry.
        row["calls_per_core_by_cpu"] = int(relayed / cpu / 100) if cpu > 0 else None
        row["clean"] = clean(row)
        row["load_avg"] = os.getloadavg()[0]
        rows.append(row)
        print_row(row)
        if not row["clean"] and not all_steps:
            break
    return rows


def print_header() -> None:
    print(
        f"{'relay':<10} {'calls':>6} {'pps in':>7} {'loss %':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'cpu %':>6} {'us/pkt':>6} {'gen lag':>8} {'clean':>5}",
        flush=True,
    )


def _clean_cell(row: dict[str, Any]) -> str:
    if "clean" not in row:
        return "-"
    return "yes" if row["clean"] else "no"


def print_row(row: dict[str, Any]) -> None:
    lat = row["latency_us"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v / 1000:.2f}"

    cpu = "-" if row["relay_cpu_pct"] is None else f"{row['relay_cpu_pct']:.0f}"
    per = row.get("relay_cpu_us_per_packet")
    per_cell = "-" if per is None else f"{per:.1f}"
    print(
        f"{row['relay']:<10} {row['calls']!s:>6} {row['sent'] / row['seconds']:>7.0f} "
        f"{row['loss_pct']:>7.3f} {ms(lat['p50']):>7} {ms(lat['p99']):>7} {ms(lat['max']):>7} "
        f"{cpu:>6} {per_cell:>6} {row['worst_send_lag_ms']:>6.1f}ms {_clean_cell(row):>5}",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> int:
    steps = sorted({int(x) for x in args.steps.split(",") if x.strip()})
    most = steps[-1]
    relay_core = None if args.relay_core < 0 else args.relay_core
    load_core = None if args.load_core < 0 else args.load_core
    print(f"load average before: {load_average()}, cpus {os.cpu_count()}", flush=True)
    print_header()
    results: dict[str, list[dict[str, Any]]] = {}
    async with RtpLoad(2 * most, load_core) as load:
        for relay in args.relays.split(","):
            setup = ccserver_calls if relay == "ccserver" else rtpengine_calls
            t0 = time.monotonic()
            async with setup(most, load.ports, relay_core) as bridged:
                setup_s = time.monotonic() - t0
                print(f"{relay}: {most} calls set up in {setup_s:.1f} s", flush=True)
                async with profiled(
                    args.profile if relay == "ccserver" else None, f"{relay}-relay", bridged.pid
                ):
                    rows = await step_up(relay, bridged, load, steps, args.seconds, args.all_steps)
                results[relay] = rows
    capacity = {relay: clean_capacity(rows) for relay, rows in results.items()}
    for rows in results.values():
        for row in rows:
            print(json.dumps({"bench": "relay_capacity", **row}))
    summary: dict[str, Any] = {
        "bench": "relay_capacity",
        "summary": True,
        "clean_capacity_calls": capacity,
        "steps": steps,
        "seconds": args.seconds,
        "relay_core": relay_core,
        "load_core": load_core,
        "load_avg_after": os.getloadavg(),
        "criteria": {"loss_pct_lt": MAX_LOSS_PCT, "p50_ms_lt": MAX_P50_MS, "p99_ms_lt": MAX_P99_MS},
    }
    if "ccserver" in capacity and capacity.get("rtpengine"):
        ratio = capacity["ccserver"] / capacity["rtpengine"]
        summary["ratio"] = round(ratio, 2)
        summary["met"] = ratio >= TARGET_RATIO
    print(
        "clean capacity (calls): "
        + ", ".join(f"{relay} {n}" for relay, n in capacity.items())
        + (f"; ratio {summary['ratio']} (target >= {TARGET_RATIO})" if "ratio" in summary else "")
    )
    print(json.dumps(summary))
    return 0 if all(len(rows) > 1 for rows in results.values()) else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--steps",
        default="50,100,200,300,400,500,600,700,800,1000",
        help="concurrent bridged calls per step, comma-separated",
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="traffic per step")
    ap.add_argument(
        "--all-steps",
        action="store_true",
        help="run every step, not only up to the first unclean one (CPU per packet throughout)",
    )
    ap.add_argument("--relays", default="ccserver,rtpengine", help="which relays, in order")
    ap.add_argument("--relay-core", type=int, default=1, help="core for the relay (-1: any)")
    ap.add_argument(
        "--profile", metavar="DIR", help="record ccserver with py-spy into DIR (collapsed stacks)"
    )
    ap.add_argument("--load-core", type=int, default=0, help="core for the generator (-1: any)")
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
