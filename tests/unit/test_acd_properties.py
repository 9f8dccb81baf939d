"""Random event sequences never break the promises a supervisor relies on.

A hypothesis state machine logs agents in and out, queues calls with tiers
and skills, answers, rings out, refuses, hangs up, abandons, asks for
callbacks and lets time pass. After every step (once the timers due *now*
have run, as the call model's adapter would do):

- an agent rings for at most one call and talks on at most one; a call rings
  several agents only in a ring-all queue;
- no waiting call has a free agent that may take it (unless that agent just
  refused it and the queue's retry has not passed);
- every offer went to the best call for its agent: no call it could have
  taken in the same queue was ahead, by effective priority then arrival;
- agent states only move along ``AGENT_TRANSITIONS``.

At the end every agent comes to work and every call that was queued ends
answered, abandoned or overflowed out of the ACD.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd.router import (
    AGENT_TRANSITIONS,
    AVAILABLE,
    LOGGED_OUT,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    AcdSettings,
    Destination,
    EscalationStep,
    Offer,
    Overflow,
    QueueSpec,
    Router,
    WaitingCall,
)
from acd.skills import satisfies

AGING = 0.1
AGENTS = ("a1", "a2", "a3", "a4", "a5")
SKILLS = {
    "a1": {"english": 5, "cards": 7},
    "a2": {"english": 2},
    "a3": {"english": 8, "cards": 3},
    "a4": {"cards": 9},
    "a5": {"english": 9, "cards": 5},
}
QUEUES = {
    "sales": QueueSpec(
        "sales",
        ("a1", "a2", "a3"),
        wrap_up=5,
        required_skills={"english": 3},
        escalation=(
            EscalationStep(20, lower_by=2),
            EscalationStep(40, drop=("english",), add_queues=("support",)),
        ),
        max_wait=120,
        overflow=Destination("queue", "support"),
    ),
    "support": QueueSpec(
        "support",
        ("a3", "a4"),
        strategy="ring-all",
        wrap_up=0,
        penalties={"a4": 1},
        # A callback keeps its place past max_wait: only escalation reaches everyone.
        escalation=(EscalationStep(100, drop=("english", "cards")),),
        max_wait=200,
        overflow=Destination("flow", "bank"),
        leave_empty=True,
    ),
    "vip": QueueSpec(
        "vip",
        ("a1", "a4", "a5"),
        strategy="skill-weighted",
        required_skills={"cards": 5},
        join_empty=False,
        overflow=Destination("voicemail"),
        retry=3,
    ),
    "rr": QueueSpec(
        "rr",
        ("a2", "a5"),
        strategy="round-robin",
        announce_position=True,
        announce_every=30,
        escalation=(EscalationStep(60, drop=("english", "cards")),),
        max_wait=300,
        overflow=Destination("callback"),
    ),
}

call_skills = st.one_of(
    st.just({}),
    st.builds(lambda n: {"english": n}, st.integers(1, 9)),
    st.builds(lambda n: {"cards": n}, st.integers(1, 9)),
)


@dataclass
class Snapshot:
    """A waiting call as it was before a step."""

    call: str
    queues: tuple[str, ...]
    profile: tuple[tuple[str, int], ...]
    priority: int
    first_joined: float
    seq: int
    skip: dict[str, float]


def ahead(d: Snapshot | WaitingCall, c: WaitingCall, now: float) -> bool:
    """Whether ``d`` goes first: higher effective priority, then earlier, then queued first."""
    eff_d = d.priority + AGING * (now - d.first_joined)
    eff_c = c.priority + AGING * (now - c.first_joined)
    if abs(eff_d - eff_c) > 1e-6:
        return eff_d > eff_c
    return (d.first_joined, d.seq) < (c.first_joined, c.seq)


def may_take(r: Router, ext: str, queues: tuple[str, ...], profile: object, now: float) -> bool:
    agent = r.agents[ext]
    return any(q in agent.queues for q in queues) and satisfies(agent.skills, profile)  # type: ignore[arg-type]


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = Router(QUEUES, skills=SKILLS, settings=AcdSettings(aging_rate=AGING, seed=5))
        self.now = 0.0
        self.n = 0
        self.queued: set[str] = set()
        self.answered: set[str] = set()
        self.abandoned: set[str] = set()
        self.overflowed: set[str] = set()
        self.seen_changes = 0
        self.last_state = dict.fromkeys(AGENTS, LOGGED_OUT)

    # -- plumbing
    def snapshot(self) -> list[Snapshot]:
        return [
            Snapshot(
                c.call_id, c.queues, c.profile, c.priority, c.first_joined, c.seq, dict(c.skip)
            )
            for c in self.r.calls.values()
            if c.state == "waiting"
        ]

    def step(self, action: object) -> None:
        before = self.snapshot()
        assert callable(action)
        offers: list[Offer] = list(action() or [])
        while (due := self.r.get_timer()) is not None and due <= self.now:
            offers += self.r.handle_timer(self.now)
        for d in self.r.take_decisions():
            if isinstance(d, Overflow) and d.destination_kind not in ("queue", "callback"):
                self.overflowed.add(d.call_id)
        self.check_offers(offers, before)

    def check_offers(self, offers: list[Offer], before: list[Snapshot]) -> None:
        for o in offers:
            call = self.r.calls.get(o.call_id)
            if call is None or self.r.agents[o.agent].call_id != o.call_id:
                continue  # already settled within the same step
            for d in before:
                still = self.r.calls.get(d.call)
                if still is None or still.state != "waiting" or d.call == o.call_id:
                    continue
                if o.queue not in d.queues or d.skip.get(o.agent, -1.0) > self.now:
                    continue
                if may_take(self.r, o.agent, (o.queue,), d.profile, self.now):
                    assert not ahead(d, call, self.now), (o, d)

    def ringing(self) -> list[str]:
        return sorted(c.call_id for c in self.r.calls.values() if c.offered)

    def waiting(self) -> list[str]:
        return sorted(c.call_id for c in self.r.calls.values() if c.state == "waiting")

    # -- rules
    @rule(ext=st.sampled_from(AGENTS), paused=st.booleans())
    def login(self, ext: str, paused: bool) -> None:
        self.step(lambda: self.r.login(ext, self.now, "training" if paused else None))

    @rule(ext=st.sampled_from(AGENTS))
    def logout(self, ext: str) -> None:
        self.step(lambda: self.r.logout(ext, self.now, "end of shift"))

    @rule(ext=st.sampled_from(AGENTS), reason=st.sampled_from(["break", "lunch"]))
    def pause(self, ext: str, reason: str) -> None:
        if self.r.agents[ext].state != LOGGED_OUT:
            self.step(lambda: self.r.pause(ext, self.now, reason))

    @rule(ext=st.sampled_from(AGENTS))
    def ready(self, ext: str) -> None:
        self.step(lambda: self.r.ready(ext, self.now))

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        priority=st.sampled_from([0, 0, 5, 20]),
        tier=st.sampled_from([None, "silver", "vip"]),
        skills=call_skills,
    )
    def enqueue(self, queue: str, priority: int, tier: str | None, skills: dict[str, int]) -> None:
        self.n += 1
        call = f"c{self.n}"
        self.queued.add(call)
        self.step(lambda: self.r.enqueue(call, queue, self.now, priority, skills=skills, tier=tier))

    @precondition(lambda self: self.ringing())
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(self.ringing()))
        ext = data.draw(st.sampled_from(sorted(self.r.calls[call].offered)))
        self.answered.add(call)
        self.step(lambda: (self.r.answered(call, self.now, agent=ext), [])[1])

    @precondition(lambda self: self.ringing())
    @rule(data=st.data(), refuse=st.booleans(), one=st.booleans())
    def ring_fails(self, data: st.DataObject, refuse: bool, one: bool) -> None:
        call = data.draw(st.sampled_from(self.ringing()))
        ext = data.draw(st.sampled_from(sorted(self.r.calls[call].offered))) if one else None
        if refuse:
            self.step(lambda: self.r.declined(call, self.now, agent=ext))
        else:
            self.step(lambda: self.r.no_answer(call, self.now, agent=ext))

    @rule(ext=st.sampled_from(AGENTS))
    def hangup(self, ext: str) -> None:
        self.step(lambda: self.r.hangup(ext, self.now))

    @precondition(lambda self: self.r.calls)
    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(sorted(self.r.calls)))
        self.abandoned.add(call)
        self.step(lambda: (self.r.abandon(call, self.now), [])[1])

    @precondition(lambda self: self.waiting())
    @rule(data=st.data())
    def callback(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(self.waiting()))
        self.step(lambda: (self.r.request_callback(call, self.now, "0600000001"), [])[1])

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 10.0, 25.0, 60.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.step(lambda: self.r.handle_timer(self.now))

    # -- invariants
    @invariant()
    def one_call_per_agent_and_one_agent_per_call(self) -> None:
        holder: dict[str, str] = {}
        for call in self.r.calls.values():
            if len(call.offered) > 1:
                assert all(QUEUES[q].strategy == "ring-all" for q in call.offered.values())
            for ext in call.offered:
                assert ext not in holder, f"{ext} rings for {holder[ext]} and {call.call_id}"
                holder[ext] = call.call_id
                assert self.r.agents[ext].state == RESERVED
                assert self.r.agents[ext].call_id == call.call_id
            assert (call.state == "offered") == bool(call.offered)
        for agent in self.r.agents.values():
            if agent.state == RESERVED:
                assert holder.get(agent.ext) == agent.call_id
            if agent.state in (AVAILABLE, NOT_READY, LOGGED_OUT, WRAP_UP):
                assert agent.call_id is None
            if agent.state == ON_CALL:
                assert agent.call_id is not None and agent.call_id not in self.r.calls

    @invariant()
    def no_free_agent_while_a_call_it_may_take_waits(self) -> None:
        free = [a.ext for a in self.r.agents.values() if a.state == AVAILABLE]
        for call in self.r.calls.values():
            if call.state != "waiting":
                continue
            for ext in free:
                if call.skip.get(ext, -1.0) > self.now:
                    continue
                assert not may_take(self.r, ext, call.queues, call.profile, self.now), (
                    call,
                    ext,
                )

    @invariant()
    def states_move_along_the_table(self) -> None:
        for change in self.r.changes[self.seen_changes :]:
            assert change.old == self.last_state[change.agent], change
            assert AGENT_TRANSITIONS[change.old][change.event] == change.new, change
            self.last_state[change.agent] = change.new
        self.seen_changes = len(self.r.changes)
        assert {ext: a.state for ext, a in self.r.agents.items()} == self.last_state

    @invariant()
    def lines_are_in_priority_order(self) -> None:
        for queue in QUEUES:
            line = self.r.waiting(queue)
            for first, second in itertools.pairwise(line):
                assert not ahead(second, first, self.now)

    def teardown(self) -> None:
        """Everyone comes to work: every queued call must leave the ACD, one way or another."""
        r = self.r
        for _ in range(200):
            self.now += 10
            for ext in AGENTS:
                self.step(lambda ext=ext: r.login(ext, self.now) + r.ready(ext, self.now))
            for call in self.ringing():
                ext = sorted(r.calls[call].offered)[0]
                self.answered.add(call)
                self.step(lambda call=call, ext=ext: (r.answered(call, self.now, agent=ext), [])[1])
            for ext in AGENTS:
                self.step(lambda ext=ext: r.hangup(ext, self.now))
            self.step(lambda: r.handle_timer(self.now))
            if not r.calls:
                break
        assert not r.calls, r.calls
        assert self.queued == self.answered | self.abandoned | self.overflowed


AcdMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAcd = AcdMachine.TestCase
