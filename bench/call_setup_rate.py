"""Calls per second the platform sustains with no failed call: straight to a queue, and via the IVR.

Starts a real `ccserver run` (a copy of the demo config, speech off, free
loopback ports) pinned to one core (``--core``, default 1), with bench
agents 2001, 2002, ... in the `general` queue (no wrap-up, no
announcements). One SIPp process registers them all from an injection file
(digest auth, one Contact) and answers every call the platform offers
(bench/scenarios/bench_agents.xml with bench_agent_call.xml out of call).

Then, for each rate R of a step list, a SIPp caller from the carrier
trunk's address 127.0.0.2 places R calls/s for ``--seconds`` (default 60):

* DID 5001: straight into the general queue; an agent answers; the caller
  hangs up ``--hold`` seconds after its own answer.
* DID 5000: the demo bank IVR: the caller hears the greeting for
  ``--greet`` seconds, presses 0 (RFC 4733) for an agent, is queued, an
  agent answers; the caller hangs up ``--hold`` seconds after the key.

A step is clean when SIPp counts every call successful (no timeout, no
unexpected message, no error response) and the supervisor's event stream
shows every call ended "answered" by an agent. Stepping stops at the first
step that is not clean; each path's figure is its highest clean rate.
Targets on one core: 300/s (queue) and 100/s (IVR).

    .venv/bin/python bench/call_setup_rate.py [--queue-rates 50,100,200,300]
        [--ivr-rates 25,50,100] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_to_prompt import LOOPBACK, running_server
from bridged_calls import bench_queue, cpu_seconds, pin, profiled
from offer_to_pop import FIRST_AGENT, SUPERVISOR_TOKEN

from tests.integration.peers.sipp import SippProcess, render_digits

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CARRIER = "127.0.0.2"
TARGETS = {"5001": 300.0, "5000": 100.0}


class Events:
    """The supervisor's stream: which agents are registered, how each call ended."""

    def __init__(self) -> None:
        self.registered: set[str] = set()
        self.ended: dict[str, int] = {}
        self.answered = 0
        self.dropped = 0
        self.ready = asyncio.Event()

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            kind = event.get("type")
            data = event.get("data") or {}
            if kind == "stream.ready":
                self.ready.set()
            elif kind == "stream.dropped":
                self.dropped += data.get("dropped", 0)
            elif kind == "agent.phone" and data.get("registered"):
                self.registered.add(str(event.get("agent")))
            elif kind == "call.ended":
                outcome = str(data.get("outcome"))
                self.ended[outcome] = self.ended.get(outcome, 0) + 1
                if outcome == "answered" and event.get("agent"):
                    self.answered += 1

    def total(self) -> int:
        return sum(self.ended.values())


async def wait_until(predicate: Any, timeout: float) -> bool:
    """Poll ``predicate`` (the stream gives no event for "n calls ended")."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def run_step(
    did: str,
    rate: float,
    args: argparse.Namespace,
    server_port: int,
    pid: int,
    events: Events,
    workdir: Path,
) -> dict[str, Any]:
    calls = max(1, int(rate * args.seconds))
    caller = sipp_caller(workdir, server_port, did, rate, calls, args.hold, args.greet)
    ended_before, answered_before = events.total(), events.answered
    outcomes_before = dict(events.ended)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    async with profiled(args.profile, f"setup-{did}-{rate:g}", pid):
        await caller.start()
        result = await caller.wait(check=False)
    elapsed = time.monotonic() - t0
    cpu = (cpu_seconds(pid) - cpu0) / elapsed
    await wait_until(lambda: events.total() - ended_before >= calls, 15)
    stats = result.stats
    outcomes = {
        k: v - outcomes_before.get(k, 0)
        for k, v in events.ended.items()
        if v - outcomes_before.get(k, 0)
    }
    answered = events.answered - answered_before
    row: dict[str, Any] = {
        "bench": "call_setup_rate",
        "did": did,
        "path": "ivr" if did == "5000" else "queue",
        "rate": rate,
        "seconds": args.seconds,
        "calls": calls,
        "sipp_successful": stats.successful if stats else None,
        "sipp_failed": stats.failed if stats else None,
        "sipp_failures": dict(stats.failures) if stats else None,
        "answered_by_agent": answered,
        "outcomes": outcomes,
        "elapsed_s": round(elapsed, 1),
        "server_cpu_pct": round(100 * cpu, 1),
        "cpu_ms_per_call": round(1000 * cpu * elapsed / calls, 2),
        "load_avg": os.getloadavg()[0],
    }
    row["clean"] = (
        stats is not None and stats.failed == 0 and stats.successful == calls and answered == calls
    )
    return row


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['path']:<6} {row['rate']:>6g} {row['calls']:>7} {row['sipp_successful']!s:>7} "
        f"{row['sipp_failed']!s:>6} {row['answered_by_agent']:>8} {row['server_cpu_pct']:>6.0f} "
        f"{row['cpu_ms_per_call']:>7.2f} {row['load_avg']:>5.1f} "
        f"{'yes' if row['clean'] else 'no':>5}",
        flush=True,
    )


def sipp_caller(
    workdir: Path,
    server_port: int,
    did: str,
    rate: float,
    calls: int,
    hold: float,
    greet: float,
    numbers: int = 0,
) -> SippProcess:
    """SIPp placing ``calls`` calls to ``did`` at ``rate``/s from the carrier's address.

    Through the IVR (DID 5000) each caller waits ``greet`` seconds and presses 0.
    The callers' numbers are all different, or ``numbers`` of them used in turn.
    """
    distinct = numbers if numbers > 0 else calls
    callers = workdir / f"callers-{did}-{rate:g}.csv"
    callers.write_text("SEQUENTIAL\n" + "".join(f"07{i:08d};\n" for i in range(distinct)))
    scenario = SCENARIOS / "bench_caller.xml"
    greet_ms = 0
    if did == "5000":
        scenario = render_digits(scenario, "0", workdir / f"ivr-{rate:g}", gap_ms=300)
        greet_ms = int(greet * 1000)
    return SippProcess(
        scenario,
        workdir=workdir,
        remote=f"{LOOPBACK}:{server_port}",
        name=f"caller-{did}-{rate:g}",
        service=did,
        calls=calls,
        rate=rate,
        variables={"greet_ms": greet_ms, "hold_ms": int(hold * 1000)},
        timeout=calls / rate + greet + hold + 60,
        trace_msg=False,
        local_ip=CARRIER,
        extra_args=["-inf", str(callers)],
    )


def agent_phones(workdir: Path, server_port: int, agents: int) -> SippProcess:
    """One SIPp registering ``agents`` bench agents and answering every call they get."""
    return SippProcess(
        SCENARIOS / "bench_agents.xml",
        workdir=workdir,
        remote=f"{LOOPBACK}:{server_port}",
        name="agents",
        ooc_scenario=SCENARIOS / "bench_agent_call.xml",
        calls=agents,
        # Each registration stays up (a SIPp "call"): allow all at once, not 3 s' worth.
        limit=agents,
        rate=200,
        variables={"wait_ms": 3_600_000},
        timeout=3600,
        trace_msg=False,
        default_behaviors="all,-bye",
        extra_args=["-inf", str(agent_file(workdir / "agents.csv", agents))],
    )


def agent_file(path: Path, count: int) -> Path:
    """SIPp injection file: one agent a line, its extension and its digest credentials."""
    lines = ["SEQUENTIAL"]
    for n in range(FIRST_AGENT, FIRST_AGENT + count):
        lines.append(f"{n};[authentication username={n} password=bench{n}pw];")
    path.write_text("\n".join(lines) + "\n")
    return path


async def main_async(args: argparse.Namespace) -> int:
    plans: list[tuple[str, list[float]]] = []
    if args.queue_rates:
        plans.append(("5001", [float(r) for r in args.queue_rates.split(",")]))
    if args.ivr_rates:
        plans.append(("5000", [float(r) for r in args.ivr_rates.split(",")]))
    top = max(r for _, rates in plans for r in rates)
    # Each agent holds one call from its answer to the caller's BYE.
    agents = args.agents or int(top * (args.hold + 1.0) * 1.5) + 10
    core = None if args.core < 0 else args.core
    print(f"load average before: {os.getloadavg()}, {agents} agents", flush=True)
    rows: list[dict[str, Any]] = []
    events = Events()
    with tempfile.TemporaryDirectory(prefix="ccbench-sipp-") as tmp:
        workdir = Path(tmp)
        async with running_server(bench_queue(agents), rtp_ports=4 * agents + 400) as server:
            assert server.proc is not None
            pin(server.proc.pid, core)
            url = (
                f"http://{LOOPBACK}:{server.http_port}/api/events?token={SUPERVISOR_TOKEN}"
                "&types=call.ended,agent.phone"
            )
            sipp_agents = agent_phones(workdir, server.sip_port, agents)
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                reader = asyncio.create_task(events.read(ws))
                try:
                    await asyncio.wait_for(events.ready.wait(), 10)
                    async with sipp_agents:
                        if not await wait_until(lambda: len(events.registered) >= agents, 60):
                            raise RuntimeError(
                                f"{len(events.registered)}/{agents} agents registered\n"
                                + sipp_agents.diagnostics()
                            )
                        print(
                            f"{'path':<6} {'rate':>6} {'calls':>7} {'ok':>7} {'failed':>6} "
                            f"{'answered':>8} {'cpu %':>6} {'ms/call':>7} {'load':>5} {'clean':>5}",
                            flush=True,
                        )
                        for did, rates in plans:
                            for rate in rates:
                                row = await run_step(
                                    did, rate, args, server.sip_port, server.proc.pid, events,
                                    workdir,
                                )  # fmt: skip
                                rows.append(row)
                                print_row(row)
                                if not row["clean"]:
                                    break
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
    best: dict[str, float] = {}
    for did, _ in plans:
        clean = [r["rate"] for r in rows if r["did"] == did and r["clean"]]
        best[did] = max(clean, default=0.0)
    for row in rows:
        print(json.dumps(row))
    summary = {
        "bench": "call_setup_rate",
        "summary": True,
        "highest_clean_rate": best,
        "targets": {d: TARGETS[d] for d in best},
        "met": {d: best[d] >= TARGETS[d] for d in best},
        "agents": agents,
        "core": core,
        "stream_dropped": events.dropped,
        "load_avg_after": os.getloadavg(),
    }
    print(
        "highest clean rate: "
        + ", ".join(f"DID {d} {r:g}/s (target {TARGETS[d]:g})" for d, r in best.items())
    )
    print(json.dumps(summary))
    return 0 if rows and any(r["clean"] for r in rows) else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queue-rates", default="50,100,200,300", help="calls/s steps to DID 5001")
    ap.add_argument("--ivr-rates", default="25,50,100", help="calls/s steps to DID 5000")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each rate is held")
    ap.add_argument("--hold", type=float, default=0.5, help="seconds a caller stays after answer")
    ap.add_argument("--greet", type=float, default=2.0, help="IVR: seconds before pressing 0")
    ap.add_argument(
        "--agents", type=int, default=0, help="bench agents (0: enough for the top rate)"
    )
    ap.add_argument(
        "--profile", metavar="DIR", help="record the server with py-spy into DIR, one file a step"
    )
    ap.add_argument("--core", type=int, default=1, help="core for the server (-1: any)")
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
