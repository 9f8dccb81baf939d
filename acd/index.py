"""Where every available agent and every waiting call sits, so no decision scans.

Per queue and per skill profile in use, a :class:`Slot` holds the pool of
available members that meet the profile (in the queue strategy's order) and
the line of waiting calls that need it (in priority order). An agent is in
the pools of every slot it qualifies for, a call in the lines of its profile
in each queue it may be taken from. A call then takes the head of one pool,
an agent the best head among the lines of its slots: the work depends on how
many profiles an agent matches, not on how many agents or calls there are.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from acd.agents import AVAILABLE, LOGGED_OUT, Agent
from acd.queues import QueueSpec, WaitingCall
from acd.skills import Profile, satisfies
from acd.strategies import AgentPool, SortedKeys, agent_key

__all__ = ["QueueState", "RoutingIndex", "Slot"]


class Slot:
    """One queue's available agents and waiting calls for one skill profile."""

    __slots__ = ("line", "pool", "profile", "queue")

    def __init__(self, queue: QueueState, profile: Profile) -> None:
        self.queue = queue
        self.profile = profile
        self.pool = AgentPool(queue.spec.strategy)
        self.line = SortedKeys()


class QueueState:
    """A queue's live state next to its spec."""

    __slots__ = (
        "callbacks",
        "calls",
        "line",
        "logged_in",
        "name",
        "order",
        "rr_last",
        "slots",
        "spec",
    )

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.order: dict[str, int] = {}
        """Members (past and present) in list order, for top-down and round-robin."""
        self.slots: dict[Profile, Slot] = {}
        self.line = SortedKeys()
        """Every waiting call whose home this is, for positions."""
        self.calls: dict[str, WaitingCall] = {}
        """Home calls waiting or ringing, in joining order (oldest first)."""
        self.logged_in = 0
        self.callbacks = 0
        self.rr_last = -1
        """Member order of the agent offered a call last (round-robin memory)."""


class RoutingIndex:
    """The pools and lines of every queue; the router keeps them in step with states."""

    def __init__(self, agents: Mapping[str, Agent], rng: random.Random) -> None:
        self.agents = agents
        self.queues: dict[str, QueueState] = {}
        self.by_seq: dict[int, WaitingCall] = {}
        self._call_slots: dict[str, list[Slot]] = {}
        self._agent_slots: dict[str, list[tuple[Slot, int]]] = {}
        self._rng = rng

    # -- membership
    def add_member(self, q: QueueState, agent: Agent, penalty: int) -> None:
        q.order.setdefault(agent.ext, len(q.order))
        agent.queues[q.name] = penalty
        if agent.state != LOGGED_OUT:
            q.logged_in += 1

    def refresh(self, agent: Agent) -> None:
        """Recompute which slots the agent belongs in (after a skill or membership change)."""
        available = agent.state == AVAILABLE
        if available:
            self.unindex(agent)
        self._agent_slots[agent.ext] = [
            (slot, penalty)
            for name, penalty in agent.queues.items()
            for slot in self.queues[name].slots.values()
            if satisfies(agent.skills, slot.profile)
        ]
        if available:
            self.index(agent)

    def slot(self, q: QueueState, profile: Profile) -> Slot:
        """The queue's slot for a profile, built on first use by one pass over the members."""
        slot = q.slots.get(profile)
        if slot is None:
            slot = q.slots[profile] = Slot(q, profile)
            for ext in q.order:
                agent = self.agents[ext]
                if q.name in agent.queues and satisfies(agent.skills, profile):
                    penalty = agent.queues[q.name]
                    self._agent_slots.setdefault(ext, []).append((slot, penalty))
                    if agent.state == AVAILABLE:
                        slot.pool.add(ext, self._key(agent, slot, penalty))
        return slot

    # -- agents
    def _key(self, agent: Agent, slot: Slot, penalty: int) -> tuple[Any, ...]:
        q = slot.queue
        order = q.order[agent.ext]
        return agent_key(q.spec.strategy, agent, penalty, order, slot.profile)

    def index(self, agent: Agent) -> None:
        """The agent became available: into the pool of every slot it qualifies for."""
        for slot, penalty in self._agent_slots.get(agent.ext, ()):
            slot.pool.add(agent.ext, self._key(agent, slot, penalty))

    def unindex(self, agent: Agent) -> None:
        for slot, _ in self._agent_slots.get(agent.ext, ()):
            slot.pool.discard(agent.ext)

    # -- calls
    def line_in(self, call: WaitingCall) -> None:
        """The call waits: into its home line and the line of its profile in each of its queues."""
        self.by_seq[call.seq] = call
        self.queues[call.queue].line.add(call.key)
        slots = [self.slot(self.queues[name], call.profile) for name in call.queues]
        for slot in slots:
            slot.line.add(call.key)
        self._call_slots[call.call_id] = slots

    def line_out(self, call: WaitingCall) -> None:
        self.queues[call.queue].line.discard(call.key)
        for slot in self._call_slots.pop(call.call_id, ()):
            slot.line.discard(call.key)

    def position(self, call: WaitingCall) -> int:
        """The call's place in its home line, 1 first."""
        return self.queues[call.queue].line.rank(call.key) + 1

    def waiting(self, q: QueueState) -> list[WaitingCall]:
        return [self.by_seq[key[-1]] for key in q.line]

    # -- matching
    def best_agents(self, call: WaitingCall, now: float) -> tuple[QueueState, list[str]] | None:
        """The agent(s) to ring for a waiting call: its home queue first, then escalation's."""
        skip = {ext for ext, until in call.skip.items() if until > now}
        for name in call.queues:
            q = self.queues[name]
            exts = self.slot(q, call.profile).pool.pick(skip, q.rr_last, self._rng)
            if exts:
                return q, exts
        return None

    def group(self, call: WaitingCall, q: QueueState, now: float) -> list[str]:
        """Who rings for a call of a ring-all queue: every free member of the best penalty."""
        skip = {ext for ext, until in call.skip.items() if until > now}
        return self.slot(q, call.profile).pool.pick(skip, q.rr_last, self._rng)

    def best_call(self, agent: Agent, now: float) -> tuple[WaitingCall, QueueState] | None:
        """The call a free agent takes: its lowest-penalty queues first, then priority and age."""
        best: tuple[int, tuple[Any, ...]] | None = None
        chosen: tuple[WaitingCall, QueueState] | None = None
        ext = agent.ext
        for slot, penalty in self._agent_slots.get(ext, ()):
            for key in slot.line:
                call = self.by_seq[key[-1]]
                until = call.skip.get(ext)
                if until is not None and until > now:
                    continue  # it refused this call a moment ago
                if best is None or (penalty, key) < best:
                    best = (penalty, key)
                    chosen = (call, slot.queue)
                break
        return chosen
