"""How many reservations per second the live-state backends make.

A reservation is the one cross-node step of every offer (`LiveState.reserve`:
check call and agent, mark both, announce it), so its rate bounds how many
offers a cluster can make. Three loops per backend, each timed for
``--seconds``:

- ``serial``: one client, one request in flight: reserve, then release the
  same pair. The round-trip cost (Redis: one EVALSHA on loopback).
- ``parallel``: ``--tasks`` requests in flight over two clients, each task on
  its own pair: what the server sustains when nodes are busy.
- ``contended``: three clients race ``--tasks`` tasks for 8 agents and 8 calls
  at random; a won pair is released at once. Counts attempts and wins.

The Redis run starts its own ``redis-server`` on a free loopback port
(``--save ''``, no persistence) unless ``--redis-url`` names one; it uses a
fresh key prefix either way. Prints a table and JSON lines.

    .venv/bin/python bench/acd_state.py [--seconds 2] [--tasks 32] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from acd.state import AVAILABLE, AgentRecord, LiveState, QueuedCall
from acd.state_memory import MemoryLiveState, MemoryStore
from acd.state_redis import RedisLiveState

Connect = Callable[[], LiveState]


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on 127.0.0.1; yields its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (Debian package redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        args += ["no", "--dir", workdir, "--logfile", ""]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the server says when it is ready
                if "Ready to accept connections" in line:
                    break
            else:
                raise SystemExit(f"redis-server exited with status {proc.wait()}")
            proc.stdout.close()  # nothing more to read; the server logs little after start
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


async def setup(connect: Connect, clients: int, pairs: int) -> list[LiveState]:
    states = [connect() for _ in range(clients)]
    for s in states:
        await s.start()
    for i in range(pairs):
        await states[0].add_call(QueuedCall(f"c{i}", "q", "n0", 0, 1000.0 + i))
        await states[0].set_agent(AgentRecord(f"a{i}", AVAILABLE, None, 1.0, "n0"))
    return states


async def timed(worker: Callable[[], Awaitable[tuple[int, int]]], n: int) -> dict[str, float]:
    """Run `n` workers to their deadline; each returns (attempts, wins)."""
    start = time.perf_counter()
    results = await asyncio.gather(*(worker() for _ in range(n)))
    elapsed = time.perf_counter() - start
    attempts = sum(r[0] for r in results)
    wins = sum(r[1] for r in results)
    return {"attempts_per_s": attempts / elapsed, "wins_per_s": wins / elapsed}


async def serial(connect: Connect, seconds: float) -> dict[str, float]:
    (s,) = await setup(connect, 1, 1)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            ok = await s.reserve("c0", "a0", "n0", 30.0)
            latencies.append(time.perf_counter() - t0)
            assert ok
            await s.release("c0", "a0")
    finally:
        await s.close()
    total = sum(latencies)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "reserves_per_s": len(latencies) / total,
        "cycles_per_s": len(latencies) / seconds,
        "p50_us": cuts[49] * 1e6,
        "p99_us": cuts[98] * 1e6,
    }


async def parallel(connect: Connect, seconds: float, tasks: int) -> dict[str, float]:
    states = await setup(connect, 2, tasks)
    deadline = time.perf_counter() + seconds
    ids = iter(range(tasks))

    async def worker() -> tuple[int, int]:
        i = next(ids)
        s = states[i % 2]
        n = 0
        while time.perf_counter() < deadline:
            assert await s.reserve(f"c{i}", f"a{i}", "n0", 30.0)
            await s.release(f"c{i}", f"a{i}")
            n += 1
        return n, n

    try:
        return await timed(worker, tasks)
    finally:
        for s in states:
            await s.close()


async def contended(connect: Connect, seconds: float, tasks: int) -> dict[str, float]:
    states = await setup(connect, 3, 8)
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)

    async def worker() -> tuple[int, int]:
        s = states[rng.randrange(3)]
        attempts = wins = 0
        while time.perf_counter() < deadline:
            c, a = f"c{rng.randrange(8)}", f"a{rng.randrange(8)}"
            attempts += 1
            if await s.reserve(c, a, "n0", 30.0):
                wins += 1
                await s.release(c, a)
        return attempts, wins

    try:
        return await timed(worker, tasks)
    finally:
        for s in states:
            await s.close()


async def run(name: str, connect: Callable[[], Connect], seconds: float, tasks: int) -> None:
    rows = [
        ("serial", await serial(connect(), seconds)),
        (f"parallel x{tasks}", await parallel(connect(), seconds, tasks)),
        (f"contended x{tasks}", await contended(connect(), seconds, tasks)),
    ]
    for loop, figures in rows:
        if "reserves_per_s" in figures:
            text = (
                f"{figures['reserves_per_s']:>10,.0f} reserves/s "
                f"(p50 {figures['p50_us']:,.0f} µs, p99 {figures['p99_us']:,.0f} µs; "
                f"{figures['cycles_per_s']:,.0f} reserve+release/s)"
            )
        else:
            text = (
                f"{figures['attempts_per_s']:>10,.0f} attempts/s, "
                f"{figures['wins_per_s']:,.0f} reservations/s"
            )
        print(f"{name:<7} {loop:<14} {text}")
    for loop, figures in rows:
        print(
            json.dumps(
                {"backend": name, "loop": loop, **{k: round(v, 1) for k, v in figures.items()}}
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each loop")
    parser.add_argument("--tasks", type=int, default=32, help="requests in flight")
    parser.add_argument("--redis-url", help="an existing Redis (default: start one)")
    args = parser.parse_args()

    def memory() -> Connect:
        store = MemoryStore()
        return lambda: MemoryLiveState(store)

    def redis_at(url: str) -> Callable[[], Connect]:
        def fresh() -> Connect:
            prefix = f"bench:{uuid.uuid4().hex[:8]}:"
            return lambda: RedisLiveState(url, prefix=prefix)

        return fresh

    asyncio.run(run("memory", memory, args.seconds, args.tasks))
    if args.redis_url:
        asyncio.run(run("redis", redis_at(args.redis_url), args.seconds, args.tasks))
    else:
        with redis_server() as url:
            asyncio.run(run("redis", redis_at(url), args.seconds, args.tasks))


if __name__ == "__main__":
    main()
