"""Memory per bridged call, and a soak that shows whether anything grows.

Part 1 (``--calls``, default 500): a real `ccserver run` with as many bench
agents; its resident memory (VmRSS) once they are registered and no call is
up, then with that many bridged calls up (real SIP dialogs, DID 5001 to an
agent, set up as in relay_capacity.py) after a few seconds of G.711 both
ways on every call. Per call: (with calls - idle) / calls. Target < 100 KB.

Part 2 (``--minutes``, default 10): a fresh server, SIPp agents and a SIPp
caller placing ``--rate`` calls/s to DID 5001 for the whole time (each
caller hangs up ``--hold`` seconds after its answer). Every ``--every``
seconds it samples the server's RSS, open file descriptors (/proc/PID/fd)
and asyncio tasks (``tasks`` of /api/health). The first fifth is warm-up;
over the rest it fits a line to each series and reports the slope per
minute. Steady traffic should show none: RSS within 1 % per 10 minutes, fds
and tasks flat. ``--stats-window`` shortens the ACD's statistics history and
``--numbers`` makes the callers reuse that many numbers, to tell history and
caches kept by design from a leak. ``--tracemalloc N`` runs the server with
``CCSERVER_TRACEMALLOC=N`` (ccserver/diagnostics.py), signals it at the end of
the warm-up and of the soak, and prints what grew in between: the source
lines holding the new memory, the object types that multiplied, and the
kinds of descriptors left open.

    .venv/bin/python bench/memory_soak.py [--calls 500] [--minutes 10] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_to_prompt import LOOPBACK, running_server
from bridged_calls import bench_queue, ccserver_calls, pin
from call_setup_rate import Events, agent_phones, sipp_caller, wait_until
from offer_to_pop import SUPERVISOR_TOKEN
from rtp_load import RtpLoad

TARGET_KB_PER_CALL = 100.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points, per unit of x."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


async def per_call(args: argparse.Namespace, core: int | None) -> dict[str, Any]:
    idle: dict[str, int] = {}

    async def note_idle(pid: int) -> None:
        await asyncio.sleep(1.0)
        idle["rss_kb"] = rss_kb(pid)
        idle["fds"] = open_fds(pid)

    async with (
        RtpLoad(2 * args.calls, None if args.load_core < 0 else args.load_core) as load,
        ccserver_calls(args.calls, load.ports, core, on_idle=note_idle) as bridged,
    ):
        traffic = await load.run(bridged.calls(args.calls), args.traffic)
        await asyncio.sleep(1.0)
        up = rss_kb(bridged.pid)
        fds = open_fds(bridged.pid)
    kb = (up - idle["rss_kb"]) / args.calls
    return {
        "bench": "memory_soak",
        "part": "per_call",
        "calls": args.calls,
        "rss_idle_kb": idle["rss_kb"],
        "rss_with_calls_kb": up,
        "kb_per_call": round(kb, 1),
        "fds_idle": idle["fds"],
        "fds_with_calls": fds,
        "traffic_loss_pct": traffic["loss_pct"],
        "target_kb_per_call": TARGET_KB_PER_CALL,
        "met": kb < TARGET_KB_PER_CALL,
    }


async def soak(args: argparse.Namespace, core: int | None) -> dict[str, Any]:
    seconds = args.minutes * 60
    calls = max(1, int(args.rate * seconds))
    agents = int(args.rate * (args.hold + 1.0) * 1.5) + 10
    samples: list[dict[str, float]] = []
    events = Events()
    queue = bench_queue(agents)

    def configure(cfg: Path) -> None:
        queue(cfg)
        if args.stats_window:
            toml = cfg / "ccserver.toml"
            text, n = re.subn(
                r"(?m)^stats_window = \S+",
                f"stats_window = {args.stats_window:g}",
                toml.read_text(),
            )
            assert n == 1, "the demo config's [acd] stats_window moved: update the bench"
            toml.write_text(text)

    dumps: list[str] = []
    if args.tracemalloc:
        os.environ["CCSERVER_TRACEMALLOC"] = str(args.tracemalloc)
    with tempfile.TemporaryDirectory(prefix="ccbench-soak-") as tmp:
        workdir = Path(tmp)
        async with running_server(configure, rtp_ports=4 * agents + 400) as server:
            assert server.proc is not None
            pid = server.proc.pid
            warm = seconds / 5

            async def memory_dump(n: int) -> None:
                """SIGUSR2: the server logs what grew since the last one (1: baseline)."""
                if not args.tracemalloc:
                    return
                assert server.proc is not None
                mark = len(server.lines)
                server.proc.send_signal(signal.SIGUSR2)
                await server.wait_log(rf"memory dump {n} done", 120.0, start=mark)
                dumps.extend(line for line in server.lines[mark:] if "memory dump" in line)

            pin(pid, core)
            base = f"http://{LOOPBACK}:{server.http_port}"
            url = f"{base}/api/events?token={SUPERVISOR_TOKEN}&types=call.ended,agent.phone"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                reader = asyncio.create_task(events.read(ws))
                try:
                    await asyncio.wait_for(events.ready.wait(), 10)
                    async with agent_phones(workdir, server.sip_port, agents) as phones:
                        if not await wait_until(lambda: len(events.registered) >= agents, 60):
                            raise RuntimeError("agents not registered\n" + phones.diagnostics())
                        caller = sipp_caller(
                            workdir,
                            server.sip_port,
                            "5001",
                            args.rate,
                            calls,
                            args.hold,
                            0,
                            numbers=args.numbers,
                        )
                        start = time.monotonic()
                        await caller.start()
                        done = asyncio.create_task(caller.wait(check=False))
                        baseline = False
                        while not done.done():
                            if not baseline and time.monotonic() - start >= warm:
                                await memory_dump(1)
                                baseline = True
                            async with session.get(f"{base}/api/health") as resp:
                                health = await resp.json()
                            sample = {
                                "t": round(time.monotonic() - start, 1),
                                "rss_kb": rss_kb(pid),
                                "fds": open_fds(pid),
                                "tasks": health.get("tasks", -1),
                                "active_calls": health.get("active_calls", -1),
                                "ended": events.total(),
                            }
                            samples.append(sample)
                            print(json.dumps({"bench": "memory_soak", "sample": sample}))
                            await asyncio.wait({done}, timeout=args.every)
                        result = done.result()
                        await wait_until(lambda: events.total() >= calls, 15)
                        if baseline:
                            await memory_dump(2)
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
    for line in dumps:
        print(line, flush=True)
    steady = [s for s in samples if s["t"] >= warm] or samples
    fitted = {
        key: slope([(s["t"] / 60, s[key]) for s in steady]) for key in ("rss_kb", "fds", "tasks")
    }
    rss_mean = sum(s["rss_kb"] for s in steady) / len(steady)
    rss_slope = fitted["rss_kb"] or 0.0
    stats = result.stats
    return {
        "bench": "memory_soak",
        "part": "soak",
        "minutes": args.minutes,
        "rate": args.rate,
        "calls": calls,
        "distinct_numbers": args.numbers or calls,
        "sipp_successful": stats.successful if stats else None,
        "sipp_failed": stats.failed if stats else None,
        "answered_by_agent": events.answered,
        "samples": len(samples),
        "warm_up_s": warm,
        "rss_kb_first_last": [steady[0]["rss_kb"], steady[-1]["rss_kb"]],
        "memory_dump": [line.split("memory dump ", 1)[1] for line in dumps],
        "slope_per_min": {k: None if v is None else round(v, 2) for k, v in fitted.items()},
        "rss_growth_pct_per_10min": round(100 * rss_slope * 10 / rss_mean, 2),
        "no_growth": abs(rss_slope * 10) < 0.01 * rss_mean
        and abs(fitted["fds"] or 0) * 10 < 1
        and abs(fitted["tasks"] or 0) * 10 < 1,
    }


async def main_async(args: argparse.Namespace) -> int:
    core = None if args.core < 0 else args.core
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = []
    if args.calls > 0:
        row = await per_call(args, core)
        rows.append(row)
        print(
            f"memory per bridged call: {row['kb_per_call']:.1f} KB "
            f"(RSS {row['rss_idle_kb']} KB idle, {row['rss_with_calls_kb']} KB with "
            f"{row['calls']} calls; target < {TARGET_KB_PER_CALL:.0f} KB)",
            flush=True,
        )
    if args.minutes > 0:
        row = await soak(args, core)
        rows.append(row)
        per_min = row["slope_per_min"]
        print(
            f"soak {row['minutes']:g} min at {row['rate']:g} calls/s: {row['calls']} calls, "
            f"{row['sipp_failed']} failed, {row['answered_by_agent']} answered by agents; "
            f"slope per minute after warm-up: RSS {per_min['rss_kb']} KB, "
            f"fds {per_min['fds']}, tasks {per_min['tasks']} "
            f"({row['rss_growth_pct_per_10min']} % RSS per 10 min); "
            f"{'no growth' if row['no_growth'] else 'GROWTH'}",
            flush=True,
        )
    for row in rows:
        print(json.dumps({**row, "load_avg_after": os.getloadavg()}))
    return 0 if rows else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=500, help="bridged calls for part 1 (0: skip)")
    ap.add_argument("--traffic", type=float, default=3.0, help="seconds of RTP on them")
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length (0: skip)")
    ap.add_argument("--rate", type=float, default=20.0, help="soak calls per second")
    ap.add_argument("--hold", type=float, default=2.0, help="seconds a soak call stays up")
    ap.add_argument(
        "--stats-window",
        type=float,
        default=0,
        help="[acd] stats_window for the soak, seconds (0: the demo's 900)",
    )
    ap.add_argument(
        "--numbers", type=int, default=0, help="distinct caller numbers (0: one per call)"
    )
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        help="frames per allocation traced in the server, and dump growth (0: off)",
    )
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--core", type=int, default=1, help="core for the server (-1: any)")
    ap.add_argument("--load-core", type=int, default=0, help="core for the RTP generator")
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
