"""The ACD's decisions, sans-IO: feed it events, read back offers.

The router never touches a socket or a clock: the call model tells it that a
call joined a queue, that an agent became free, that an offer was answered
or not, and passes `now`. It answers with `Offer`s (ring this agent for that
call). Timers (wrap-up ending) are exposed through `get_timer` and
`handle_timer(now)` for one adapter to arm.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LOGGED_OUT = "logged-out"
AVAILABLE = "available"
RESERVED = "reserved"  # an offer is ringing the agent's phone
ON_CALL = "on-call"
WRAP_UP = "wrap-up"
NOT_READY = "not-ready"

#: Agent state machine: which event moves which state where (STYLE habit 3).
AGENT_TRANSITIONS: dict[str, dict[str, str]] = {
    LOGGED_OUT: {"login": AVAILABLE},
    AVAILABLE: {"offer": RESERVED, "logout": LOGGED_OUT, "pause": NOT_READY},
    RESERVED: {
        "answer": ON_CALL,
        "no_answer": NOT_READY,
        "decline": AVAILABLE,
        "withdraw": AVAILABLE,
        "logout": LOGGED_OUT,
    },
    ON_CALL: {"hangup": WRAP_UP, "logout": LOGGED_OUT},
    WRAP_UP: {"wrap_done": AVAILABLE, "pause": NOT_READY, "logout": LOGGED_OUT},
    NOT_READY: {"ready": AVAILABLE, "logout": LOGGED_OUT},
}


class AcdError(Exception):
    """An event that makes no sense in the current state (a bug on our side)."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    members: tuple[str, ...]
    ring_timeout: float = 15.0
    wrap_up: float = 5.0
    strategy: str = "longest-idle"


@dataclass(frozen=True, slots=True)
class Offer:
    """Ring `agent` for `call_id` from `queue`."""

    call_id: str
    agent: str
    queue: str


@dataclass(frozen=True, slots=True)
class AgentChange:
    """An agent state change, for the contact-center event log."""

    agent: str
    old: str
    new: str
    reason: str | None
    at: float


@dataclass(slots=True)
class Agent:
    ext: str
    state: str = LOGGED_OUT
    since: float = 0.0
    idle_since: float = 0.0
    reason: str | None = None
    call_id: str | None = None
    queue: str | None = None  # the queue of the call being offered or talked
    wrap_until: float | None = None
    calls: int = 0


@dataclass(slots=True)
class WaitingCall:
    call_id: str
    queue: str
    priority: int
    joined_at: float


@dataclass
class Router:
    queues: dict[str, QueueSpec]
    agents: dict[str, Agent] = field(default_factory=dict)
    changes: list[AgentChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._waiting: dict[str, deque[WaitingCall]] = {q: deque() for q in self.queues}
        self._calls: dict[str, WaitingCall] = {}
        self._offered: dict[str, str] = {}  # call_id -> agent
        for spec in self.queues.values():
            for ext in spec.members:
                self.agents.setdefault(ext, Agent(ext))

    # -- agent side ---------------------------------------------------------
    def _move(self, agent: Agent, event: str, now: float, reason: str | None = None) -> None:
        new = AGENT_TRANSITIONS[agent.state].get(event)
        if new is None:
            raise AcdError(f"agent {agent.ext}: {event!r} not allowed in state {agent.state}")
        log.debug("agent %s: %s -> %s (%s)", agent.ext, agent.state, new, event)
        self.changes.append(AgentChange(agent.ext, agent.state, new, reason, now))
        agent.state = new
        agent.since = now
        agent.reason = reason
        if new == AVAILABLE:
            agent.idle_since = now

    def login(self, ext: str, now: float) -> list[Offer]:
        agent = self.agents.get(ext)
        if agent is None or agent.state != LOGGED_OUT:
            return []
        self._move(agent, "login", now)
        return self._dispatch(now)

    def logout(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        agent = self.agents.get(ext)
        if agent is None or agent.state == LOGGED_OUT:
            return []
        offers: list[Offer] = []
        if agent.state == RESERVED and agent.call_id is not None:
            offers = self._requeue(agent.call_id, now)
        self._move(agent, "logout", now, reason)
        agent.call_id = None
        return offers + self._dispatch(now)

    def ready(self, ext: str, now: float) -> list[Offer]:
        agent = self.agents[ext]
        if agent.state in (NOT_READY,):
            self._move(agent, "ready", now)
        elif agent.state == WRAP_UP:
            self._move(agent, "wrap_done", now)
            agent.wrap_until = None
        return self._dispatch(now)

    # -- call side ----------------------------------------------------------
    def enqueue(self, call_id: str, queue: str, now: float, priority: int = 0) -> list[Offer]:
        if queue not in self.queues:
            raise AcdError(f"unknown queue {queue!r}")
        if call_id in self._calls:
            raise AcdError(f"call {call_id} already queued")
        wc = WaitingCall(call_id, queue, priority, now)
        self._calls[call_id] = wc
        self._insert(wc, head=False)
        return self._dispatch(now)

    def _insert(self, wc: WaitingCall, *, head: bool) -> None:
        q = self._waiting[wc.queue]
        # Higher priority first; FIFO within a priority, or at the head of
        # its priority band when an offer came back unanswered.
        index = len(q)
        for i, other in enumerate(q):
            if other.priority < wc.priority or (head and other.priority == wc.priority):
                index = i
                break
        q.insert(index, wc)

    def answered(self, call_id: str, now: float) -> None:
        agent = self._agent_for(call_id)
        self._move(agent, "answer", now)
        agent.calls += 1
        self._offered.pop(call_id, None)
        self._calls.pop(call_id, None)

    def no_answer(self, call_id: str, now: float, reason: str = "no answer") -> list[Offer]:
        """The agent did not answer in time: not ready, call back to the head of the line."""
        agent = self._agent_for(call_id)
        self._move(agent, "no_answer", now, reason)
        agent.call_id = None
        return self._requeue(call_id, now)

    def declined(self, call_id: str, now: float) -> list[Offer]:
        """The phone refused (busy, error): the agent stays available for others."""
        agent = self._agent_for(call_id)
        self._move(agent, "decline", now)
        agent.call_id = None
        agent.idle_since = now
        offers = self._requeue(call_id, now, skip=agent.ext)
        return offers

    def _requeue(self, call_id: str, now: float, skip: str | None = None) -> list[Offer]:
        self._offered.pop(call_id, None)
        wc = self._calls.get(call_id)
        if wc is None:
            return []
        self._insert(wc, head=True)
        return self._dispatch(now, skip=skip)

    def hangup(self, ext: str, now: float) -> list[Offer]:
        """The agent's call ended: wrap-up for the queue's time."""
        agent = self.agents.get(ext)
        if agent is None or agent.state != ON_CALL:
            return []
        self._move(agent, "hangup", now)
        wrap = self._wrap_time(agent, agent.queue)
        agent.call_id = None
        if wrap <= 0:
            self._move(agent, "wrap_done", now)
            return self._dispatch(now)
        agent.wrap_until = now + wrap
        return []

    def _wrap_time(self, agent: Agent, queue: str | None) -> float:
        spec = self.queues.get(queue or "")
        if spec is not None:
            return spec.wrap_up
        times = [q.wrap_up for q in self.queues.values() if agent.ext in q.members]
        return max(times, default=0.0)

    def remove(self, call_id: str, now: float) -> str | None:
        """The caller left (hung up, overflowed). Returns the agent being rung, if any."""
        wc = self._calls.pop(call_id, None)
        if wc is not None:
            try:
                self._waiting[wc.queue].remove(wc)
            except ValueError:
                pass
        ext = self._offered.pop(call_id, None)
        if ext is not None:
            agent = self.agents[ext]
            if agent.state == RESERVED:
                self._move(agent, "withdraw", now)
                agent.call_id = None
        return ext

    def _agent_for(self, call_id: str) -> Agent:
        ext = self._offered.get(call_id)
        if ext is None:
            raise AcdError(f"call {call_id} has no offer")
        return self.agents[ext]

    # -- decisions ----------------------------------------------------------
    def _dispatch(self, now: float, skip: str | None = None) -> list[Offer]:
        offers: list[Offer] = []
        for name, q in self._waiting.items():
            spec = self.queues[name]
            while q:
                agent = self._pick(spec, skip)
                if agent is None:
                    break
                wc = q.popleft()
                self._move(agent, "offer", now)
                agent.call_id = wc.call_id
                agent.queue = name
                self._offered[wc.call_id] = agent.ext
                offers.append(Offer(wc.call_id, agent.ext, name))
        return offers

    def _pick(self, spec: QueueSpec, skip: str | None) -> Agent | None:
        best: Agent | None = None
        for ext in spec.members:
            agent = self.agents[ext]
            if agent.state != AVAILABLE or ext == skip:
                continue
            if best is None or agent.idle_since < best.idle_since:
                best = agent  # longest idle first
        return best

    # -- time -----------------------------------------------------------------
    def get_timer(self) -> float | None:
        times = [a.wrap_until for a in self.agents.values() if a.wrap_until is not None]
        return min(times, default=None)

    def handle_timer(self, now: float) -> list[Offer]:
        for agent in self.agents.values():
            if agent.wrap_until is not None and agent.wrap_until <= now:
                agent.wrap_until = None
                if agent.state == WRAP_UP:
                    self._move(agent, "wrap_done", now)
        return self._dispatch(now)

    # -- views ------------------------------------------------------------------
    def waiting(self, queue: str) -> list[WaitingCall]:
        return list(self._waiting[queue])

    def queue_of(self, call_id: str) -> str | None:
        wc = self._calls.get(call_id)
        return wc.queue if wc else None
