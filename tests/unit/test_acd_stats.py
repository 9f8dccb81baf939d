"""Live statistics equal the same figures recomputed naively from an event log."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from acd.router import (
    AVAILABLE,
    LOGGED_OUT,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    AcdSettings,
    Destination,
    Offer,
    Overflow,
    QueueSpec,
    Router,
)
from acd.stats import QueueTally, Stats, merge_tallies

WINDOW = 300.0
AGENTS = ("a1", "a2", "a3", "a4", "a5")


def make_router() -> Router:
    queues = {
        "sales": QueueSpec(
            "sales",
            ("a1", "a2", "a3"),
            wrap_up=8,
            service_level=15,
            max_wait=90,
            overflow=Destination("queue", "support"),
        ),
        "support": QueueSpec("support", ("a3", "a4", "a5"), wrap_up=0, service_level=30),
    }
    return Router(queues, settings=AcdSettings(stats_window=WINDOW, seed=3))


@dataclass
class Log:
    """What the test saw happen, in its own words: the input to the naive recomputation."""

    joined: dict[str, tuple[str, float]] = field(default_factory=dict)  # call -> (queue, at)
    left: list[tuple[str, str, float, float]] = field(default_factory=list)  # queue, how, at, wait
    ringing: dict[str, str] = field(default_factory=dict)  # call -> agent
    offer_queue: dict[str, str] = field(default_factory=dict)  # call -> queue it was offered from
    talking: dict[str, tuple[str, float]] = field(default_factory=dict)  # agent -> (queue, since)
    holds: dict[str, float] = field(default_factory=dict)  # agent -> hold started
    held: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    wrapping: dict[str, tuple[str, float, float, float]] = field(default_factory=dict)
    handled: list[tuple[str, str, float, float, float, float]] = field(default_factory=list)
    calls: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


def run_scenario(seed: int) -> tuple[Router, Log, float]:
    rng = random.Random(seed)
    r = make_router()
    log = Log()
    now = 0.0
    n = 0

    def offers(result: list[Offer]) -> None:
        for o in result:
            log.ringing[o.call_id] = o.agent
            log.offer_queue[o.call_id] = o.queue

    def decisions() -> None:
        for d in r.take_decisions():
            assert isinstance(d, Overflow) and d.destination_kind == "queue"
            queue, at = log.joined[d.call_id]
            log.left.append((queue, "overflowed", now, now - at))
            log.joined[d.call_id] = (d.destination, now)

    def wrap_ended(ext: str) -> None:
        if ext in log.wrapping and r.agents[ext].state != WRAP_UP:
            queue, talk, hold, since = log.wrapping.pop(ext)
            log.handled.append((queue, ext, talk, hold, now - since, now))

    for ext in AGENTS:
        offers(r.login(ext, now))
    for _ in range(600):
        now += rng.choice([0.0, 0.5, 1.0, 3.0, 7.0])
        offers(r.handle_timer(now))
        decisions()
        for ext in AGENTS:
            wrap_ended(ext)
        action = rng.random()
        if action < 0.3:
            n += 1
            call = f"c{n}"
            queue = rng.choice(["sales", "support"])
            log.joined[call] = (queue, now)
            offers(r.enqueue(call, queue, now, priority=rng.choice([0, 0, 5])))
        elif action < 0.5 and log.ringing:
            call = rng.choice(sorted(log.ringing))
            ext = log.ringing.pop(call)
            queue, at = log.joined.pop(call)
            r.answered(call, now)
            log.left.append((queue, "answered", now, now - at))
            log.calls[ext] += 1
            log.talking[ext] = (log.offer_queue[call], now)
        elif action < 0.6 and log.ringing:
            call = rng.choice(sorted(log.ringing))
            log.ringing.pop(call)
            offers(r.no_answer(call, now))
        elif action < 0.75 and log.talking:
            ext = rng.choice(sorted(log.talking))
            if ext in log.holds:
                r.retrieve(ext, now)
                log.held[ext] += now - log.holds.pop(ext)
            elif rng.random() < 0.3:
                r.hold(ext, now)
                log.holds[ext] = now
                continue
            queue, since = log.talking.pop(ext)
            hold = log.held.pop(ext, 0.0)
            log.wrapping[ext] = (queue, now - since - hold, hold, now)
            offers(r.hangup(ext, now))
        elif action < 0.85:
            waiting = [c for c in log.joined if c not in log.ringing]
            if waiting:
                call = rng.choice(sorted(waiting))
                queue, at = log.joined.pop(call)
                r.abandon(call, now)
                log.left.append((queue, "abandoned", now, now - at))
        else:
            ext = rng.choice(AGENTS)
            state = r.agents[ext].state
            if state == NOT_READY:
                offers(r.ready(ext, now))
            elif state in (AVAILABLE, WRAP_UP):
                r.pause(ext, now, "break")
        decisions()
        for ext in AGENTS:
            wrap_ended(ext)
        for call in [c for c, ext in log.ringing.items() if r.agents[ext].state != RESERVED]:
            del log.ringing[call]  # withdrawn by an abandon, or ringing again elsewhere
        for c, ext in ((c, a.ext) for a in r.agents.values() for c in [a.call_id]):
            if c is not None and r.agents[ext].state == RESERVED:
                log.ringing[c] = ext
    return r, log, now


def expected_queue(log: Log, queue: str, now: float, service_level: float) -> dict[str, object]:
    recent = [e for e in log.left if e[0] == queue and e[2] > now - WINDOW]
    answered = [e[3] for e in recent if e[1] == "answered"]
    abandoned = sum(1 for e in recent if e[1] == "abandoned")
    overflowed = sum(1 for e in recent if e[1] == "overflowed")
    offered = len(answered) + abandoned + overflowed
    handled = [t + h + w for q, _, t, h, w, at in log.handled if q == queue and at > now - WINDOW]
    return {
        "answered": len(answered),
        "abandoned": abandoned,
        "overflowed": overflowed,
        "service_level": sum(w <= service_level for w in answered) / offered if offered else None,
        "asa": sum(answered) / len(answered) if answered else None,
        "aht": sum(handled) / len(handled) if handled else None,
        "abandon_rate": abandoned / offered if offered else None,
    }


def expected_agent(r: Router, log: Log, ext: str, now: float) -> dict[str, object]:
    time_in: defaultdict[str, float] = defaultdict(float)
    state, since = LOGGED_OUT, 0.0
    for change in r.changes:
        if change.agent == ext:
            assert change.old == state
            time_in[state] += change.at - since
            state, since = change.new, change.at
    time_in[state] += now - since
    busy = time_in[RESERVED] + time_in[ON_CALL] + time_in[WRAP_UP]
    mine = [h for h in log.handled if h[1] == ext]
    return {
        "calls": log.calls[ext],
        "talk": sum(h[2] for h in mine),
        "hold": sum(h[3] for h in mine),
        "wrap": sum(h[4] for h in mine),
        "occupancy": busy / (busy + time_in[AVAILABLE]) if busy + time_in[AVAILABLE] else None,
    }


def approx(value: object) -> object:
    return value if value is None else pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_live_figures_match_a_recomputation_from_the_event_log(seed: int) -> None:
    r, log, now = run_scenario(seed)
    assert log.left, "the scenario should have calls leaving queues"
    for queue, level in (("sales", 15.0), ("support", 30.0)):
        live = r.queue_stats(queue, now)
        want = expected_queue(log, queue, now, level)
        got = {key: getattr(live, key) for key in want}
        assert got == {key: approx(value) for key, value in want.items()}, queue
        waiting = [c for c, (q, _) in log.joined.items() if q == queue]
        assert live.waiting == len([c for c in waiting if c not in log.ringing])
        if waiting:
            oldest = min(log.joined[c][1] for c in waiting)
            assert live.longest_wait == pytest.approx(now - oldest)
        counts: defaultdict[str, int] = defaultdict(int)
        for ext in r.members(queue):
            counts[r.agents[ext].state] += 1
        assert live.agents == dict(counts)
    for ext in AGENTS:
        live_agent = r.agent_stats(ext, now)
        want = expected_agent(r, log, ext, now)
        got = {key: getattr(live_agent, key) for key in want}
        assert got == {key: approx(value) for key, value in want.items()}, ext


def test_window_forgets_old_calls() -> None:
    r = make_router()
    r.login("a4", 0)
    r.enqueue("c1", "support", 0)
    r.answered("c1", 10)
    r.enqueue("c2", "support", 20)
    r.abandon("c2", 50)
    stats = r.queue_stats("support", 60)
    assert (stats.answered, stats.abandoned, stats.service_level, stats.asa) == (1, 1, 0.5, 10)
    later = r.queue_stats("support", 10 + WINDOW + 1)
    assert (later.answered, later.abandoned, later.abandon_rate) == (0, 1, 1.0)
    assert r.queue_stats("support", 50 + WINDOW).service_level is None


def test_tallies_add_up_to_the_figures_of_the_nodes_together() -> None:
    """Two nodes' windows merged weigh each call once: ratios of sums, not means of ratios."""
    a, b = Stats(window=900), Stats(window=900)
    for stats in (a, b):
        stats.add_queue("q", 20.0, 0.8)
        stats.add_agent("1001")
    a.answered("q", "1001", 10.0, 100.0)
    a.answered("q", "1001", 30.0, 101.0)
    a.abandoned("q", 5.0, 102.0)
    b.answered("q", "1001", 2.0, 103.0)
    b.handled("q", "1001", 60.0, 0.0, 15.0, 104.0)
    both = a.tally("q", 105.0) + b.tally("q", 105.0)
    assert both == QueueTally(3, 2, 42.0, 1, 0, 1, 75.0)
    assert QueueTally.from_dict(both.as_dict()) == both
    line = a.queue("q", 105.0, waiting=0, callbacks=0, longest_wait=0.0)
    merged = merge_tallies(line, both)
    assert (merged.answered, merged.abandoned, merged.asa, merged.aht) == (3, 1, 14.0, 75.0)
    assert (merged.service_level, merged.abandon_rate) == (2 / 4, 1 / 4)
    # One node's own tally gives back its own figures.
    assert merge_tallies(line, a.tally("q", 105.0)) == line
    assert a.tally("q", 105.0 + 900.0) == QueueTally()  # the window moved on
