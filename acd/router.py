"""The ACD's decisions, sans-IO: feed it events, read back offers.

The router never touches a socket or a clock: the call model tells it that a
call joined a queue, that an agent logged in or became free, that an offer
was answered or not, and passes ``now``. It answers with :class:`Offer` s
(ring this agent for that call). Everything else it wants done
(:class:`Announce`, :class:`Overflow`) is appended to :attr:`Router.decisions`,
and every agent state change to :attr:`Router.changes`; the call model drains
both after each call. Timers (wrap-up ends, escalation, max wait,
announcements, retries after a refusal) are exposed through :meth:`Router.get_timer` and
:meth:`Router.handle_timer` for one adapter to arm.

Routing never scans all agents or all calls. Each queue keeps, per skill
profile in use, a pool of its available matching agents sorted by the
queue's strategy and a line of its waiting calls sorted by effective
priority (see :mod:`acd.index`, :mod:`acd.strategies`, :mod:`acd.queues`). A new call takes the
first agent of its pool; a freed agent takes the best first call of the lines
it qualifies for. After every event no waiting call has an available agent
that could take it, except one that just refused it (held off for the
queue's ``retry``) or one freed by :meth:`Router.answered` or
:meth:`Router.remove`, which is matched on the next :meth:`Router.handle_timer`
(its deadline is ``now``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from acd.agents import (
    AGENT_STATES,
    AGENT_TRANSITIONS,
    AVAILABLE,
    LOGGED_OUT,
    NO_ANSWER,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    AcdError,
    Agent,
    AgentChange,
    next_state,
)
from acd.decisions import (
    DESTINATION_KINDS,
    Announce,
    Decision,
    Departure,
    Offer,
    Overflow,
    Withdraw,
)
from acd.index import QueueState, RoutingIndex
from acd.queues import (
    OFFERED,
    WAITING,
    Destination,
    EscalationStep,
    QueueSpec,
    WaitingCall,
    call_key,
)
from acd.skills import check_skills, merge, relax
from acd.stats import AgentStats, QueueStats, Stats
from acd.strategies import RING_ALL, STRATEGIES

__all__ = [
    "AGENT_STATES",
    "AGENT_TRANSITIONS",
    "AVAILABLE",
    "DEFAULT_REASON_CODES",
    "DEFAULT_TIERS",
    "DESTINATION_KINDS",
    "LOGGED_OUT",
    "NOT_READY",
    "NO_ANSWER",
    "ON_CALL",
    "RESERVED",
    "STRATEGIES",
    "WRAP_UP",
    "AcdError",
    "AcdSettings",
    "Agent",
    "AgentChange",
    "AgentStats",
    "Announce",
    "Decision",
    "Departure",
    "Destination",
    "EscalationStep",
    "Offer",
    "Overflow",
    "QueueSpec",
    "QueueStats",
    "Router",
    "WaitingCall",
    "Withdraw",
]

log = logging.getLogger(__name__)

DEFAULT_TIERS: Mapping[str, int] = MappingProxyType(
    {"vip": 30, "gold": 20, "silver": 10, "standard": 0}
)
DEFAULT_REASON_CODES: Mapping[str, str] = MappingProxyType(
    {"break": "Break", "lunch": "Lunch", "training": "Training", "meeting": "Meeting"}
)


@dataclass(frozen=True, slots=True)
class AcdSettings:
    """Router-wide settings (``[acd]`` in ``ccserver.toml``)."""

    aging_rate: float = 0.1
    """Priority points a call gains per second waited, so nobody starves."""
    tiers: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    """Customer tier -> base priority."""
    default_tier: str = "standard"
    reason_codes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REASON_CODES))
    """Not-ready reasons an agent may choose -> label."""
    stats_window: float = 900.0
    """Seconds of history behind service level, ASA, AHT, abandon rate and estimated waits."""
    seed: int | None = None
    """Seed of the random strategy; the same seed and events give the same decisions."""


@dataclass(slots=True)
class _Wrap:
    queue: str
    talk: float
    hold: float
    started: float


_Timer = tuple[float, int, str, str, int, int]
"""(deadline, sequence, kind, agent or call id, call stint, escalation step)."""


class Router:
    """Queues, agents and the decisions between them, for one node."""

    def __init__(
        self,
        queues: Mapping[str, QueueSpec],
        *,
        skills: Mapping[str, Mapping[str, int]] | None = None,
        settings: AcdSettings | None = None,
    ) -> None:
        """``skills`` lists agents (extension -> skill levels), also those in no queue yet."""
        self.queues: dict[str, QueueSpec] = dict(queues)
        self.settings = settings if settings is not None else AcdSettings()
        if self.settings.default_tier not in self.settings.tiers:
            raise AcdError(f"default tier {self.settings.default_tier!r} is not a tier")
        self.agents: dict[str, Agent] = {}
        self.changes: list[AgentChange] = []
        self.decisions: list[Announce | Overflow] = []
        self.stats = Stats(self.settings.stats_window)
        self._aging = self.settings.aging_rate
        self._index = RoutingIndex(self.agents, random.Random(self.settings.seed))
        self._queues = self._index.queues
        self._calls: dict[str, WaitingCall] = {}
        self._wrapping: dict[str, _Wrap] = {}
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        for ext, levels in (skills or {}).items():
            self._add_agent(ext, levels)
        for name, spec in self.queues.items():
            if spec.name != name:
                raise AcdError(f"queue {name!r} is given the spec of {spec.name!r}")
            q = self._queues[name] = QueueState(spec)
            self.stats.add_queue(name, spec.service_level, spec.service_level_target)
            for ext in spec.members:
                if ext not in q.order:
                    agent = self._add_agent(ext)
                    self._index.add_member(q, agent, spec.penalties.get(ext, 0))
                    self.stats.member_added(name, agent.state)
        for spec in self.queues.values():
            targets = [q for step in spec.escalation for q in step.add_queues]
            if spec.overflow is not None and spec.overflow.kind == "queue":
                targets.append(spec.overflow.target)
            for target in targets:
                if target not in self._queues:
                    raise AcdError(f"queue {spec.name}: unknown queue {target!r}")
        for q in self._queues.values():
            self._index.slot(q, merge(q.spec.required_skills))
        for agent in self.agents.values():
            self._index.refresh(agent)

    # -- set-up and membership -------------------------------------------------
    def _add_agent(self, ext: str, skills: Mapping[str, int] | None = None) -> Agent:
        agent = self.agents.get(ext)
        if agent is None:
            agent = self.agents[ext] = Agent(ext)
            self.stats.add_agent(ext)
        if skills is not None:
            try:
                agent.skills = check_skills(skills, f"agent {ext}")
            except ValueError as exc:
                raise AcdError(str(exc)) from None
        return agent

    def set_skills(self, ext: str, skills: Mapping[str, int], now: float) -> list[Offer]:
        """Change an agent's skills at run time (a supervisor's edit)."""
        agent = self._add_agent(ext, skills)
        self._index.refresh(agent)
        return self._match_agent(agent, now)

    def add_member(self, queue: str, ext: str, now: float, penalty: int = 0) -> list[Offer]:
        """Make an agent a member of a queue (or change its penalty there)."""
        q = self._queue(queue)
        agent = self._add_agent(ext)
        if queue in agent.queues:
            self.stats.member_removed(queue, agent.state)
            if agent.state != LOGGED_OUT:
                q.logged_in -= 1
        self._index.add_member(q, agent, penalty)
        self.stats.member_added(queue, agent.state)
        self._index.refresh(agent)
        return self._match_agent(agent, now)

    def remove_member(self, queue: str, ext: str, now: float) -> list[Offer]:
        """Take an agent out of a queue; its current call, if any, goes on."""
        q = self._queue(queue)
        agent = self.agents.get(ext)
        if agent is None or queue not in agent.queues:
            return []
        del agent.queues[queue]
        self.stats.member_removed(queue, agent.state)
        if agent.state != LOGGED_OUT:
            q.logged_in -= 1
        self._index.refresh(agent)
        return self._leave_if_empty([q], now)

    # -- agent side ---------------------------------------------------------------
    def _move(
        self,
        agent: Agent,
        event: str,
        now: float,
        reason: str | None = None,
        call_id: str | None = None,
        *,
        keep_idle: bool = False,
    ) -> None:
        old = agent.state
        new = next_state(agent.ext, old, event)
        if old == AVAILABLE and new != AVAILABLE:
            self._index.unindex(agent)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "agent %s: %s -> %s (%s, %s) call %s", agent.ext, old, new, event, reason, call_id
            )
        self.changes.append(AgentChange(agent.ext, old, new, reason, now, event, call_id))
        self.stats.agent_changed(agent.ext, old, new, now, agent.queues)
        agent.state = new
        agent.since = now
        agent.reason = reason
        if old == LOGGED_OUT or new == LOGGED_OUT:
            step = 1 if old == LOGGED_OUT else -1
            for name in agent.queues:
                self._queues[name].logged_in += step
        if new == AVAILABLE and old != AVAILABLE:
            if not keep_idle:
                agent.idle_since = now
            self._index.index(agent)

    def _agent(self, ext: str) -> Agent:
        agent = self.agents.get(ext)
        if agent is None:
            raise AcdError(f"unknown agent {ext!r}")
        return agent

    def _check_reason(self, reason: str) -> None:
        if reason not in self.settings.reason_codes:
            known = ", ".join(self.settings.reason_codes) or "none"
            raise AcdError(f"unknown not-ready reason {reason!r} (configured: {known})")

    def login(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        """The agent logs in: available, or not ready with ``reason`` (a configured code)."""
        agent = self.agents.get(ext)
        if agent is None or agent.state != LOGGED_OUT:
            return []
        if reason is not None:
            self._check_reason(reason)
            self._move(agent, "login_paused", now, reason)
            return []
        self._move(agent, "login", now)
        return self._match_agent(agent, now)

    def logout(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        """The agent logs out; a call ringing it goes back to the head of its queue."""
        agent = self.agents.get(ext)
        if agent is None or agent.state == LOGGED_OUT:
            return []
        call = None
        if agent.state == RESERVED and agent.call_id is not None:
            call = self._calls.get(agent.call_id)
            if call is not None:
                call.offered.pop(ext, None)
        elif agent.state == ON_CALL:
            self._finish_talk(agent, now)
        if agent.ext in self._wrapping:
            self._count_handled(agent, now)
        agent.pending_reason = None
        agent.wrap_until = None
        agent.call_id = None
        self._move(agent, "logout", now, reason)
        offers: list[Offer] = []
        if call is not None and not call.offered:
            offers += self._requeue(call, now)
        offers += self._leave_if_empty([self._queues[name] for name in agent.queues], now)
        return offers

    def ready(self, ext: str, now: float) -> list[Offer]:
        """The agent is ready: ends a break or the wrap-up early, cancels a pending break."""
        agent = self._agent(ext)
        agent.pending_reason = None
        if agent.state == NOT_READY:
            self._move(agent, "ready", now)
            return self._match_agent(agent, now)
        if agent.state == WRAP_UP:
            return self._end_wrap(agent, now)
        return []

    def pause(self, ext: str, now: float, reason: str) -> None:
        """The agent goes not ready with a configured reason code.

        During a call (ringing or talking) the break starts when the call and
        its wrap-up end, as a supervisor expects of "after this call".
        """
        self._check_reason(reason)
        agent = self._agent(ext)
        if agent.state in (AVAILABLE, NOT_READY):
            self._move(agent, "pause", now, reason)
        elif agent.state == WRAP_UP:
            agent.pending_reason = reason
            self._end_wrap(agent, now)
        elif agent.state in (RESERVED, ON_CALL):
            agent.pending_reason = reason
        else:
            raise AcdError(f"agent {ext} is logged out: log in with a reason instead")

    def hold(self, ext: str, now: float) -> None:
        """The agent put its caller on hold (for hold time in the statistics)."""
        agent = self._agent(ext)
        if agent.state == ON_CALL and agent.hold_since is None:
            agent.hold_since = now

    def retrieve(self, ext: str, now: float) -> None:
        """The agent took its caller off hold."""
        agent = self._agent(ext)
        if agent.hold_since is not None:
            agent.hold_time += now - agent.hold_since
            agent.hold_since = None

    def hangup(self, ext: str, now: float) -> list[Offer]:
        """The agent's call ended: wrap-up for the queue's time."""
        agent = self.agents.get(ext)
        if agent is None or agent.state != ON_CALL:
            return []
        self._finish_talk(agent, now)
        self._move(agent, "hangup", now, call_id=agent.call_id)
        agent.call_id = None
        wrap = self._wrap_time(agent, agent.queue)
        if wrap <= 0:
            return self._end_wrap(agent, now)
        agent.wrap_until = now + wrap
        self._timer(agent.wrap_until, "wrap", ext)
        return []

    def dial(self, ext: str, now: float, call_id: str) -> None:
        """The agent is on a call outside the queues (click-to-call, a direct transfer).

        No queue call is offered until :meth:`hangup`, which then runs the
        wrap-up of the agent's queues. An agent on a break returns to it
        afterwards; a wrap-up in progress is counted as ended.
        """
        agent = self._agent(ext)
        if agent.state not in (AVAILABLE, NOT_READY, WRAP_UP):
            raise AcdError(f"agent {ext} is {agent.state}: cannot take another call")
        if agent.state == NOT_READY:
            agent.pending_reason = agent.reason
        elif agent.state == WRAP_UP:
            self._count_handled(agent, now)
            agent.wrap_until = None
        self._move(agent, "dial", now, "outside the queues", call_id)
        agent.call_id = call_id
        agent.queue = None
        agent.answered_at = now
        agent.hold_time = 0.0
        agent.hold_since = None

    def _finish_talk(self, agent: Agent, now: float) -> None:
        if agent.hold_since is not None:
            agent.hold_time += now - agent.hold_since
            agent.hold_since = None
        started = agent.answered_at if agent.answered_at is not None else agent.since
        talk = max(0.0, now - started - agent.hold_time)
        agent.talk_time += talk
        self._wrapping[agent.ext] = _Wrap(agent.queue or "", talk, agent.hold_time, now)
        agent.answered_at = None
        agent.hold_time = 0.0

    def _count_handled(self, agent: Agent, now: float) -> None:
        wrap = self._wrapping.pop(agent.ext)
        if wrap.queue in self._queues:
            self.stats.handled(wrap.queue, agent.ext, wrap.talk, wrap.hold, now - wrap.started, now)

    def _end_wrap(self, agent: Agent, now: float) -> list[Offer]:
        self._count_handled(agent, now)
        agent.wrap_until = None
        if agent.pending_reason is not None:
            reason, agent.pending_reason = agent.pending_reason, None
            self._move(agent, "pause", now, reason)
            return []
        self._move(agent, "wrap_done", now)
        return self._match_agent(agent, now)

    def _wrap_time(self, agent: Agent, queue: str | None) -> float:
        spec = self.queues.get(queue or "")
        if spec is not None:
            return spec.wrap_up
        return max((self.queues[name].wrap_up for name in agent.queues), default=0.0)

    # -- call side ------------------------------------------------------------------
    def enqueue(
        self,
        call_id: str,
        queue: str,
        now: float,
        priority: int = 0,
        *,
        skills: Mapping[str, int] | None = None,
        tier: str | None = None,
    ) -> list[Offer]:
        """A caller joins ``queue``, needing ``skills``; ``tier`` adds its priority."""
        self._queue(queue)
        if call_id in self._calls:
            raise AcdError(f"call {call_id} already queued")
        try:
            wanted = check_skills(skills or {}, f"call {call_id}")
        except ValueError as exc:
            raise AcdError(str(exc)) from None
        seq = next(self._seq)
        base = priority + self._tier_priority(call_id, tier)
        call = WaitingCall(
            call_id,
            queue,
            base,
            now,
            first_joined=now,
            tier=tier,
            skills=wanted,
            seq=seq,
            key=call_key(self._aging, base, now, seq),
        )
        self._calls[call_id] = call
        return self._join(call, queue, now)

    def _tier_priority(self, call_id: str, tier: str | None) -> int:
        tiers = self.settings.tiers
        if tier is None:
            return tiers[self.settings.default_tier]
        if tier not in tiers:
            # The tier comes from customer data: a stale one must not drop the call.
            log.warning(
                "call %s: unknown customer tier %r, using %r",
                call_id,
                tier,
                self.settings.default_tier,
            )
            return tiers[self.settings.default_tier]
        return tiers[tier]

    def _join(self, call: WaitingCall, queue: str, now: float) -> list[Offer]:
        q = self._queues[queue]
        spec = q.spec
        call.queue = queue
        call.joined_at = now
        call.visited += (queue,)
        call.step = 0
        call.profile = merge(spec.required_skills, call.skills)
        call.queues = (queue,)
        call.state = WAITING
        call.overflow_due = False
        call.next_announce = None
        q.calls[call.call_id] = call
        if call.callback is not None:
            q.callbacks += 1
        stint = len(call.visited)
        if spec.max_wait is not None:
            self._timer(now + spec.max_wait, "overflow", call.call_id, stint)
        if spec.escalation:
            self._timer(now + spec.escalation[0].after, "escalate", call.call_id, stint, 0)
        self._index.line_in(call)
        if not spec.join_empty and q.logged_in == 0:
            return self._overflow(call, "join-empty", now)
        offers = self._match_call(call, now)
        if call.state == WAITING and call.callback is None and spec.announces:
            self._announce(call, now)
        return offers

    def _requeue(self, call: WaitingCall, now: float) -> list[Offer]:
        """The call's offer ended unanswered: back to its place (the head, as it was first)."""
        call.state = WAITING
        self._index.line_in(call)
        if call.overflow_due:
            call.overflow_due = False
            return self._overflow(call, "max-wait", now)
        return self._match_call(call, now)

    def _offered_call(self, call_id: str) -> WaitingCall:
        call = self._calls.get(call_id)
        if call is None or not call.offered:
            raise AcdError(f"call {call_id} has no offer")
        return call

    def _offer_agents(self, call: WaitingCall, agent: str | None) -> list[str]:
        if agent is None:
            return list(call.offered)
        if agent not in call.offered:
            raise AcdError(f"call {call.call_id} is not ringing agent {agent}")
        return [agent]

    def answered(self, call_id: str, now: float, agent: str | None = None) -> list[Withdraw]:
        """An agent answered. With ring-all say which; the others are withdrawn (cancel them)."""
        call = self._offered_call(call_id)
        if agent is None and len(call.offered) > 1:
            raise AcdError(f"call {call_id} rings {len(call.offered)} agents: say which answered")
        (ext,) = self._offer_agents(call, agent)
        queue = call.offered.pop(ext)
        winner = self.agents[ext]
        self._move(winner, "answer", now, call_id=call_id)
        winner.calls += 1
        winner.queue = queue
        winner.answered_at = now
        winner.hold_time = 0.0
        winner.hold_since = None
        self.stats.answered(call.queue, ext, now - call.joined_at, now)
        withdrawn = [
            Withdraw(call_id, other, q, "answered elsewhere") for other, q in call.offered.items()
        ]
        for w in withdrawn:
            self._release(self.agents[w.agent], "withdraw", now, w.reason, call_id)
        call.offered.clear()
        self._drop(call)
        return withdrawn

    def _release(self, agent: Agent, event: str, now: float, reason: str, call_id: str) -> None:
        """An offer was taken back from a ringing agent: it is free, matched on the next timer."""
        agent.call_id = None
        self._move(agent, event, now, reason, call_id, keep_idle=True)
        if agent.pending_reason is not None:
            pending, agent.pending_reason = agent.pending_reason, None
            self._move(agent, "pause", now, pending)
        else:
            self._timer(now, "agent", agent.ext)

    def no_answer(
        self, call_id: str, now: float, reason: str = NO_ANSWER, agent: str | None = None
    ) -> list[Offer]:
        """The offer rang out: the agent goes not ready, the call back to the head of the line.

        Ring-all is the exception: nobody answering is not one agent's
        absence, so the agents stay available and the call rings them again
        after the queue's ``retry``.
        """
        call = self._offered_call(call_id)
        exts = self._offer_agents(call, agent)
        for ext in exts:
            queue = call.offered.pop(ext)
            a = self.agents[ext]
            a.call_id = None
            if self.queues[queue].strategy == RING_ALL:
                self._move(a, "withdraw", now, f"ring-all: {reason}", call_id, keep_idle=True)
                self._hold_off(call, ext, queue, now)
            else:
                self._move(a, "no_answer", now, reason, call_id)
        return self._after_offer(call, exts, now)

    def declined(self, call_id: str, now: float, agent: str | None = None) -> list[Offer]:
        """The phone refused (busy, error): the agent stays available for other calls."""
        call = self._offered_call(call_id)
        exts = self._offer_agents(call, agent)
        for ext in exts:
            queue = call.offered.pop(ext)
            a = self.agents[ext]
            a.call_id = None
            self._move(a, "decline", now, call_id=call_id)
            self._hold_off(call, ext, queue, now)
        return self._after_offer(call, exts, now)

    def _hold_off(self, call: WaitingCall, ext: str, queue: str, now: float) -> None:
        """Do not ring ``ext`` for this call again before the queue's retry time."""
        until = now + self.queues[queue].retry
        call.skip[ext] = until
        # Then the agent chooses again: other calls may have become its better choice.
        self._timer(until, "agent", ext)

    def _after_offer(self, call: WaitingCall, exts: list[str], now: float) -> list[Offer]:
        offers: list[Offer] = []
        if not call.offered:
            offers += self._requeue(call, now)
        for ext in exts:
            agent = self.agents[ext]
            if agent.state == AVAILABLE and agent.pending_reason is not None:
                reason, agent.pending_reason = agent.pending_reason, None
                self._move(agent, "pause", now, reason)
            offers += self._match_agent(agent, now)
        return offers

    def request_callback(self, call_id: str, now: float, number: str) -> bool:
        """The caller hangs up and keeps its place: when its turn comes, offer a callback.

        False when an agent is already ringing for the call (keep the caller
        on the line). A virtual call hears no announcements and does not
        overflow on max wait; escalation still widens who may take it.
        """
        call = self._calls.get(call_id)
        if call is None:
            raise AcdError(f"call {call_id} is not queued")
        if call.state == OFFERED:
            return False
        if call.callback is None:
            self._queues[call.queue].callbacks += 1
        call.callback = number
        call.next_announce = None
        log.info("call %s: callback to %s keeps its place in %s", call_id, number, call.queue)
        return True

    def remove(self, call_id: str, now: float) -> str | None:
        """The caller left (hung up, overflowed). Returns the agent being rung, if any."""
        departure = self.abandon(call_id, now)
        if departure is None or not departure.agents:
            return None
        return departure.agents[0]

    def abandon(self, call_id: str, now: float) -> Departure | None:
        """The caller hung up while queued or ringing: its wait, place and agents to cancel."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        position = None
        if call.state == WAITING and call.callback is None:
            position = self._index.position(call)
        agents = tuple(call.offered)
        for ext in agents:
            self._release(self.agents[ext], "withdraw", now, "caller left", call_id)
        call.offered.clear()
        waited = now - call.joined_at
        self.stats.abandoned(call.queue, waited, now)
        self._drop(call)
        log.debug("call %s: left %s after %.1f s", call_id, call.queue, waited)
        return Departure(call_id, call.queue, waited, position, agents)

    def _drop(self, call: WaitingCall) -> None:
        """Forget a call that left the ACD (answered, abandoned, overflowed out)."""
        self._leave_queue(call)
        del self._calls[call.call_id]
        self._index.by_seq.pop(call.seq, None)

    def _leave_queue(self, call: WaitingCall) -> None:
        self._index.line_out(call)
        q = self._queues[call.queue]
        q.calls.pop(call.call_id, None)
        if call.callback is not None:
            q.callbacks -= 1

    # -- decisions ----------------------------------------------------------------
    def _match_call(self, call: WaitingCall, now: float) -> list[Offer]:
        """Offer a waiting call to the best available agent(s) of its queues, home first."""
        if call.state != WAITING:
            return []
        found = self._index.best_agents(call, now)
        return [] if found is None else self._offer(call, found[1], found[0], now)

    def _match_agent(self, agent: Agent, now: float) -> list[Offer]:
        """Give a free agent the best waiting call it may take."""
        if agent.state != AVAILABLE:
            return []
        found = self._index.best_call(agent, now)
        if found is None:
            return []
        call, q = found
        if q.spec.strategy != RING_ALL:
            return self._offer(call, [agent.ext], q, now)
        # Ring-all rings every free member it may, not only the one who asked.
        offers = self._offer(call, self._index.group(call, q, now), q, now)
        return offers + self._match_agent(agent, now)

    def _offer(self, call: WaitingCall, exts: list[str], q: QueueState, now: float) -> list[Offer]:
        self._index.line_out(call)
        call.state = OFFERED
        ring_all = q.spec.strategy == RING_ALL
        offers = []
        for ext in exts:
            agent = self.agents[ext]
            self._move(agent, "offer", now, call_id=call.call_id)
            agent.call_id = call.call_id
            agent.queue = q.name
            call.offered[ext] = q.name
            q.rr_last = q.order[ext]
            offers.append(Offer(call.call_id, ext, q.name, call.callback, ring_all))
        return offers

    def _announce(self, call: WaitingCall, now: float) -> None:
        spec = self.queues[call.queue]
        position = self._index.position(call)
        self.decisions.append(
            Announce(
                call.call_id,
                position if spec.announce_position else None,
                self.estimated_wait(call.queue, now, position) if spec.announce_wait else None,
                call.queue,
            )
        )
        if spec.announce_every is not None:
            call.next_announce = now + spec.announce_every
            self._timer(call.next_announce, "announce", call.call_id, len(call.visited))

    def _overflow(self, call: WaitingCall, reason: str, now: float) -> list[Offer]:
        """The call leaves its queue for the configured destination (or is told to hang up)."""
        spec = self.queues[call.queue]
        dest = spec.overflow if spec.overflow is not None else Destination("hangup")
        waited = now - call.joined_at
        if dest.kind == "callback":
            # The call keeps its place; the call model offers the caller a callback.
            self.decisions.append(
                Overflow(
                    call.call_id, "callback", dest.target or call.queue, call.queue, reason, waited
                )
            )
            return []
        if dest.kind == "queue" and dest.target in call.visited:
            dest = Destination("hangup")  # been there: no loops between queues
        log.info(
            "call %s: overflow from %s to %s %s (%s)",
            call.call_id,
            call.queue,
            dest.kind,
            dest.target,
            reason,
        )
        self.decisions.append(
            Overflow(call.call_id, dest.kind, dest.target, call.queue, reason, waited)
        )
        self.stats.overflowed(call.queue, waited, now)
        if dest.kind == "queue":
            self._leave_queue(call)
            return self._join(call, dest.target, now)
        self._drop(call)
        return []

    def _leave_if_empty(self, queues: Iterable[QueueState], now: float) -> list[Offer]:
        offers: list[Offer] = []
        for q in queues:
            if q.logged_in == 0 and q.spec.leave_empty:
                for call in list(q.calls.values()):
                    if call.state == WAITING and call.callback is None and call.queue == q.name:
                        offers += self._overflow(call, "leave-empty", now)
        return offers

    def _escalate(self, call: WaitingCall, now: float) -> list[Offer]:
        steps = self.queues[call.queue].escalation
        step = steps[call.step]
        call.step += 1
        if call.step < len(steps):
            at = call.joined_at + steps[call.step].after
            self._timer(at, "escalate", call.call_id, len(call.visited), call.step)
        waiting = call.state == WAITING
        if waiting:
            self._index.line_out(call)
        call.profile = relax(call.profile, step.lower_by, step.drop)
        call.queues += tuple(name for name in step.add_queues if name not in call.queues)
        log.debug("call %s: escalated to %s via %s", call.call_id, call.profile, call.queues)
        if not waiting:
            return []
        self._index.line_in(call)
        return self._match_call(call, now)

    # -- time -----------------------------------------------------------------------
    def _timer(self, at: float, kind: str, subject: str, stint: int = 0, step: int = 0) -> None:
        heapq.heappush(self._timers, (at, next(self._seq), kind, subject, stint, step))

    def _live(self, timer: _Timer) -> bool:
        """Whether a timer still means something (timers are never cancelled, only outlived)."""
        at, _, kind, subject, stint, step = timer
        if kind == "wrap":
            agent = self.agents[subject]
            return agent.state == WRAP_UP and agent.wrap_until == at
        if kind == "agent":
            # Not "is available now": an agent on a break now may be back by then.
            return True
        call = self._calls.get(subject)
        if call is None or len(call.visited) != stint:
            return False
        if kind == "escalate":
            return call.step == step
        if kind == "announce":
            return call.next_announce == at
        return True  # overflow

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due, or None."""
        timers = self._timers
        while timers and not self._live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> list[Offer]:
        """Run the timers due at ``now``: wrap-ups, escalations, overflows, announcements."""
        offers: list[Offer] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)
            if self._live(timer):
                offers += self._fire(timer, now)
        return offers

    def _fire(self, timer: _Timer, now: float) -> list[Offer]:
        kind, subject = timer[2], timer[3]
        if kind == "wrap":
            return self._end_wrap(self.agents[subject], now)
        if kind == "agent":
            return self._match_agent(self.agents[subject], now)
        call = self._calls[subject]
        if kind == "escalate":
            return self._escalate(call, now)
        if kind == "announce":
            if call.callback is not None:
                return []
            if call.state == WAITING:
                self._announce(call, now)
            else:  # ringing an agent: try again at the next period
                every = self.queues[call.queue].announce_every or 0.0
                call.next_announce = now + every
                self._timer(call.next_announce, "announce", call.call_id, len(call.visited))
            return []
        # overflow: max_wait reached
        if call.callback is not None:
            return []
        if call.state == OFFERED:
            call.overflow_due = True
            return []
        return self._overflow(call, "max-wait", now)

    # -- views ------------------------------------------------------------------------
    def _queue(self, name: str) -> QueueState:
        q = self._queues.get(name)
        if q is None:
            raise AcdError(f"unknown queue {name!r}")
        return q

    def waiting(self, queue: str) -> list[WaitingCall]:
        """The calls waiting in ``queue`` (its own, not visitors), first in line first."""
        return self._index.waiting(self._queue(queue))

    def queue_of(self, call_id: str) -> str | None:
        call = self._calls.get(call_id)
        return call.queue if call else None

    @property
    def calls(self) -> Mapping[str, WaitingCall]:
        """Every call the router holds (waiting or ringing), by id."""
        return MappingProxyType(self._calls)

    def members(self, queue: str) -> list[str]:
        """The queue's current members, in list order."""
        q = self._queue(queue)
        return [ext for ext in q.order if q.name in self.agents[ext].queues]

    def position(self, call_id: str) -> int | None:
        """The call's place in its queue's line (1 is next), None unless waiting."""
        call = self._calls.get(call_id)
        if call is None or call.state != WAITING:
            return None
        return self._index.position(call)

    def estimated_wait(self, queue: str, now: float, position: int | None = None) -> float | None:
        """Seconds until the caller at ``position`` is served (a new caller by default).

        Recent handle time spread over the staffed members; None when there
        is no recent call to learn from or nobody is staffed.
        """
        q = self._queue(queue)
        aht = self.stats.aht(queue, now)
        staffed = self.stats.staffed(queue)
        if aht is None or staffed == 0:
            return None
        if position is None:
            position = len(q.line) + 1
        return position * aht / staffed

    def queue_stats(self, queue: str, now: float) -> QueueStats:
        q = self._queue(queue)
        oldest = next(iter(q.calls.values()), None)
        return self.stats.queue(
            queue,
            now,
            waiting=len(q.line),
            callbacks=q.callbacks,
            longest_wait=now - oldest.joined_at if oldest is not None else 0.0,
        )

    def agent_stats(self, ext: str, now: float) -> AgentStats:
        self._agent(ext)
        return self.stats.agent(ext, now)

    def take_decisions(self) -> list[Announce | Overflow]:
        """The pending announcements and overflows, oldest first; the list is emptied."""
        decisions, self.decisions = self.decisions, []
        return decisions
