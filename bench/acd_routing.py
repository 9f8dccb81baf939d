"""How long one ACD routing decision takes, and how that grows with agents and calls.

Builds a router in process (no sockets): 50 skills, 20 queues using every
strategy, each agent a member of two queues (penalty 0 and 1) with four
skills, calls needing one of their queue's skills at a random minimum. All
agents log in, the line is filled to the target number of waiting calls, and
then a steady state runs: an agent hangs up and is at once offered the best
call it may take (``free agent``), the agent answers (``answer``), a new
call arrives to keep the line full (``new call``), and now and then a caller
abandons or a ring goes unanswered. Each operation is timed on its own.

Prints a table and JSON lines for every size in the grid, then the growth
of the median from the smallest to the largest size.

    .venv/bin/python bench/acd_routing.py [--ops 20000] [--agents 1000,2000,5000]
                                          [--calls 2000,5000,10000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from acd.router import (
    ON_CALL,
    RESERVED,
    STRATEGIES,
    AcdSettings,
    Offer,
    QueueSpec,
    Router,
)

SKILLS = [f"skill{i:02d}" for i in range(50)]
QUEUES = 20
SKILLS_PER_QUEUE = 5


def build(agents: int, seed: int) -> tuple[Router, dict[str, list[str]]]:
    """A router and, per queue, the skills its calls ask for."""
    rng = random.Random(seed)
    queue_skills = {
        f"q{i:02d}": [SKILLS[(i * 3 + k * 7) % len(SKILLS)] for k in range(SKILLS_PER_QUEUE)]
        for i in range(QUEUES)
    }
    members: dict[str, list[str]] = {q: [] for q in queue_skills}
    penalties: dict[str, dict[str, int]] = {q: {} for q in queue_skills}
    skills: dict[str, dict[str, int]] = {}
    names = sorted(queue_skills)
    for n in range(agents):
        ext = f"{10000 + n}"
        home, backup = rng.sample(names, 2)
        members[home].append(ext)
        members[backup].append(ext)
        penalties[backup][ext] = 1
        pool = queue_skills[home] + queue_skills[backup]
        skills[ext] = {s: rng.randint(1, 10) for s in rng.sample(pool, 4)}
    specs = {
        q: QueueSpec(
            q,
            tuple(members[q]),
            strategy=STRATEGIES[i % len(STRATEGIES)],
            wrap_up=0,
            penalties=penalties[q],
        )
        for i, q in enumerate(names)
    }
    return Router(specs, skills=skills, settings=AcdSettings(seed=seed)), queue_skills


class Timings:
    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {}

    def run(self, name: str, fn: Callable[..., list[Offer]], *args: object) -> list[Offer]:
        start = time.perf_counter_ns()
        result = fn(*args)
        self.samples.setdefault(name, []).append(time.perf_counter_ns() - start)
        return result


def percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1000.0


def measure(agents: int, calls: int, ops: int, seed: int = 1) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    r, queue_skills = build(agents, seed)
    names = sorted(queue_skills)
    now = 0.0
    n = 0

    def new_call() -> Callable[[], list[Offer]]:
        nonlocal n
        n += 1
        queue = rng.choice(names)
        wanted = {} if rng.random() < 0.2 else {rng.choice(queue_skills[queue]): rng.randint(1, 5)}
        tier = rng.choice(["standard", "standard", "silver", "gold", "vip"])
        call = f"c{n}"
        return lambda: r.enqueue(call, queue, now, skills=wanted, tier=tier)

    ringing: dict[str, str] = {}  # call -> agent

    def note(offers: list[Offer]) -> None:
        for o in offers:
            ringing.setdefault(o.call_id, o.agent)  # ring-all: the first one answers

    def answer(call: str, agent: str) -> list[Offer]:
        r.answered(call, now, agent=agent)
        talking.append(agent)
        return []

    def abandon(call: str) -> list[Offer]:
        r.abandon(call, now)
        return []

    for ext in r.agents:
        note(r.login(ext, now))
    waiting = 0
    while waiting < calls:
        now += 0.001
        note(new_call()())
        waiting = sum(len(r.waiting(q)) for q in names) if n % 500 == 0 else waiting + 1
    talking: list[str] = []
    while ringing:
        for call, agent in list(ringing.items()):
            del ringing[call]
            answer(call, agent)
        note(r.handle_timer(now))  # ring-all losers are matched again
    assert sorted(talking) == sorted(ext for ext, a in r.agents.items() if a.state == ON_CALL)
    r.changes.clear()

    t = Timings()
    for i in range(ops):
        now += 0.01
        ext = talking.pop(rng.randrange(len(talking)))
        offers = t.run("free agent", r.hangup, ext, now)
        note(offers)
        for o in offers:
            if rng.random() < 0.05:
                note(t.run("no answer", r.no_answer, o.call_id, now))
                r.ready(o.agent, now)
        for call, agent in list(ringing.items()):
            del ringing[call]
            if r.agents[agent].state == RESERVED and r.agents[agent].call_id == call:
                t.run("answer", answer, call, agent)
        note(t.run("new call", new_call()))
        if rng.random() < 0.1:
            victim = next(iter(r.calls))  # the oldest caller gives up
            t.run("abandon", abandon, victim)
            note(new_call()())
        note(r.handle_timer(now))
        for call, agent in list(ringing.items()):  # offers made outside the timed steps
            del ringing[call]
            if r.agents[agent].state == RESERVED and r.agents[agent].call_id == call:
                answer(call, agent)
        if i % 1000 == 0:
            r.changes.clear()
    t.samples["decision"] = t.samples["free agent"] + t.samples["new call"]
    return {
        name: {
            "n": float(len(values)),
            "p50_us": percentile(values, 0.50),
            "p99_us": percentile(values, 0.99),
            "max_us": max(values) / 1000.0,
            "mean_us": statistics.fmean(values) / 1000.0,
        }
        for name, values in t.samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20000, help="steady-state rounds per size")
    parser.add_argument("--agents", default="1000,2000,5000")
    parser.add_argument("--calls", default="2000,5000,10000")
    args = parser.parse_args()
    sizes = [(int(a), int(c)) for a in args.agents.split(",") for c in args.calls.split(",")]
    order = ["decision", "free agent", "new call", "answer", "no answer", "abandon"]
    print(f"{'agents':>6} {'calls':>6}  {'operation':<11} {'n':>6} {'p50 µs':>8} {'p99 µs':>8}")
    rows: list[dict[str, object]] = []
    results: dict[tuple[int, int], dict[str, dict[str, float]]] = {}
    for agents, calls in sizes:
        result = results[(agents, calls)] = measure(agents, calls, args.ops)
        for op in order:
            m = result.get(op)
            if m is None:
                continue
            print(
                f"{agents:>6} {calls:>6}  {op:<11} {int(m['n']):>6} "
                f"{m['p50_us']:>8.1f} {m['p99_us']:>8.1f}"
            )
            rows.append({"bench": "acd_routing", "agents": agents, "calls": calls, "op": op, **m})
    for row in rows:
        print(json.dumps(row))
    small, large = sizes[0], sizes[-1]
    a, b = results[small]["decision"], results[large]["decision"]
    scale = (large[0] * large[1]) / (small[0] * small[1])
    print(
        f"decision p50 {a['p50_us']:.1f} -> {b['p50_us']:.1f} µs, p99 {a['p99_us']:.1f} -> "
        f"{b['p99_us']:.1f} µs from {small[0]}x{small[1]} to {large[0]}x{large[1]} "
        f"(agents x calls grew {scale:.0f}-fold)"
    )


if __name__ == "__main__":
    main()
