"""Live statistics a supervisor reads: per queue over a rolling window, per agent since start.

Fed by the router at the same points where it decides (a call answered,
abandoned, overflowed; an agent's state change; the end of a wrap-up), so the
figures cannot drift from what happened. Rolling sums are kept with the
events that make them, and events older than the window are dropped when
the figures are read or a new event arrives: O(1) amortised per event.

Definitions (over the window, calls counted when they leave the queue):

- *offered* = answered + abandoned + overflowed;
- *service level* = answered within the queue's threshold / offered
  (abandons and overflows count against it);
- *ASA* = mean wait of the answered calls;
- *AHT* = mean of talk + hold + wrap-up of the calls whose wrap-up ended;
- *abandon rate* = abandoned / offered;
- agent *occupancy* = time reserved, on a call or in wrap-up / that time
  plus the time available (not-ready and logged-out time do not count).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from acd.agents import AVAILABLE, LOGGED_OUT, ON_CALL, RESERVED, WRAP_UP

__all__ = ["AgentStats", "QueueStats", "QueueTally", "Stats", "merge_tallies"]

_BUSY = (RESERVED, ON_CALL, WRAP_UP)
"""States that count as working for occupancy; not-ready (a break) is not idle capacity."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's live figures."""

    queue: str
    waiting: int
    """Calls in line, including callbacks keeping their place."""
    callbacks: int
    longest_wait: float
    """Seconds the oldest call still in the queue (waiting or ringing) has waited."""
    agents: dict[str, int]
    """Members by agent state."""
    answered: int
    answered_in_time: int
    abandoned: int
    overflowed: int
    service_level: float | None
    service_level_target: float
    asa: float | None
    aht: float | None
    abandon_rate: float | None
    window: float


@dataclass(frozen=True, slots=True)
class QueueTally:
    """One queue's rolling-window counts and sums, which add up across nodes.

    The figures of `QueueStats` are ratios; a cluster adds each node's tally
    and divides once (`merge_tallies`), so a node with more calls weighs more.
    """

    answered: int = 0
    answered_in_time: int = 0
    wait_total: float = 0.0
    """Seconds the answered calls waited, together (ASA = wait_total / answered)."""
    abandoned: int = 0
    overflowed: int = 0
    handled: int = 0
    handle_total: float = 0.0
    """Talk + hold + wrap-up of the handled calls, together (AHT = handle_total / handled)."""

    def __add__(self, other: QueueTally) -> QueueTally:
        return QueueTally(
            self.answered + other.answered,
            self.answered_in_time + other.answered_in_time,
            self.wait_total + other.wait_total,
            self.abandoned + other.abandoned,
            self.overflowed + other.overflowed,
            self.handled + other.handled,
            self.handle_total + other.handle_total,
        )

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> QueueTally:
        def num(key: str) -> float:
            value = data.get(key, 0)
            return float(value) if isinstance(value, (int, float, str)) else 0.0

        return cls(
            answered=int(num("answered")),
            answered_in_time=int(num("answered_in_time")),
            wait_total=num("wait_total"),
            abandoned=int(num("abandoned")),
            overflowed=int(num("overflowed")),
            handled=int(num("handled")),
            handle_total=num("handle_total"),
        )


def merge_tallies(stats: QueueStats, tally: QueueTally) -> QueueStats:
    """`stats` (one node's view of the line and its agents) with the figures of `tally`."""
    offered = tally.answered + tally.abandoned + tally.overflowed
    return replace(
        stats,
        answered=tally.answered,
        answered_in_time=tally.answered_in_time,
        abandoned=tally.abandoned,
        overflowed=tally.overflowed,
        service_level=tally.answered_in_time / offered if offered else None,
        asa=tally.wait_total / tally.answered if tally.answered else None,
        aht=tally.handle_total / tally.handled if tally.handled else None,
        abandon_rate=tally.abandoned / offered if offered else None,
    )


@dataclass(frozen=True, slots=True)
class AgentStats:
    """One agent's figures since the router started."""

    agent: str
    state: str
    calls: int
    talk: float
    hold: float
    wrap: float
    occupancy: float | None
    time_in_state: dict[str, float]


class _Rolling:
    """Values with their time, summed over the last ``window`` seconds."""

    __slots__ = ("_items", "count_flag", "total", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._items: deque[tuple[float, float, bool]] = deque()
        self.total = 0.0
        self.count_flag = 0

    def add(self, now: float, value: float, flag: bool = False) -> None:
        self._items.append((now, value, flag))
        self.total += value
        self.count_flag += flag
        self.prune(now)

    def prune(self, now: float) -> None:
        horizon = now - self.window
        items = self._items
        while items and items[0][0] <= horizon:
            _, value, flag = items.popleft()
            self.total -= value
            self.count_flag -= flag
        if not items:
            self.total = 0.0  # no float residue once empty

    def __len__(self) -> int:
        return len(self._items)

    def mean(self, now: float) -> float | None:
        self.prune(now)
        return self.total / len(self._items) if self._items else None


@dataclass(slots=True)
class _QueueTally:
    service_level: float
    target: float
    answered: _Rolling
    abandoned: _Rolling
    overflowed: _Rolling
    handled: _Rolling
    agents: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _AgentTally:
    state: str = LOGGED_OUT
    since: float = 0.0
    calls: int = 0
    talk: float = 0.0
    hold: float = 0.0
    wrap: float = 0.0
    time_in: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


class Stats:
    """Per-queue and per-agent figures, updated by the router's events."""

    def __init__(self, window: float = 900.0) -> None:
        if window <= 0:
            raise ValueError("the statistics window must be positive")
        self.window = window
        self._queues: dict[str, _QueueTally] = {}
        self._agents: dict[str, _AgentTally] = {}

    # -- set-up
    def add_queue(self, name: str, service_level: float, target: float) -> None:
        w = self.window
        self._queues[name] = _QueueTally(
            service_level, target, _Rolling(w), _Rolling(w), _Rolling(w), _Rolling(w)
        )

    def add_agent(self, ext: str, now: float = 0.0) -> None:
        self._agents.setdefault(ext, _AgentTally(since=now))

    def member_added(self, queue: str, state: str) -> None:
        self._queues[queue].agents[state] += 1

    def member_removed(self, queue: str, state: str) -> None:
        self._queues[queue].agents[state] -= 1

    # -- events
    def agent_changed(
        self, ext: str, old: str, new: str, now: float, queues: Iterable[str]
    ) -> None:
        tally = self._agents[ext]
        tally.time_in[old] += now - tally.since
        tally.state = new
        tally.since = now
        if old != new:
            for queue in queues:
                counts = self._queues[queue].agents
                counts[old] -= 1
                counts[new] += 1

    def answered(self, queue: str, agent: str, waited: float, now: float) -> None:
        tally = self._queues[queue]
        tally.answered.add(now, waited, waited <= tally.service_level)
        self._agents[agent].calls += 1

    def abandoned(self, queue: str, waited: float, now: float) -> None:
        self._queues[queue].abandoned.add(now, waited)

    def overflowed(self, queue: str, waited: float, now: float) -> None:
        self._queues[queue].overflowed.add(now, waited)

    def handled(
        self, queue: str, agent: str, talk: float, hold: float, wrap: float, now: float
    ) -> None:
        """A call's work is over (its wrap-up ended): it counts towards AHT."""
        self._queues[queue].handled.add(now, talk + hold + wrap)
        tally = self._agents[agent]
        tally.talk += talk
        tally.hold += hold
        tally.wrap += wrap

    # -- figures
    def aht(self, queue: str, now: float) -> float | None:
        """Mean handle time of the queue's calls in the window, None without any."""
        return self._queues[queue].handled.mean(now)

    def agents_in(self, queue: str, state: str) -> int:
        return self._queues[queue].agents[state]

    def staffed(self, queue: str) -> int:
        """Members logged in and not on a break: the ones working the line."""
        counts = self._queues[queue].agents
        return sum(counts[s] for s in (AVAILABLE, RESERVED, ON_CALL, WRAP_UP))

    def queue(
        self, name: str, now: float, *, waiting: int, callbacks: int, longest_wait: float
    ) -> QueueStats:
        """The queue's figures at ``now``; the line itself is the router's to report."""
        tally = self._queues[name]
        for rolling in (tally.answered, tally.abandoned, tally.overflowed, tally.handled):
            rolling.prune(now)
        answered = len(tally.answered)
        abandoned = len(tally.abandoned)
        overflowed = len(tally.overflowed)
        offered = answered + abandoned + overflowed
        return QueueStats(
            queue=name,
            waiting=waiting,
            callbacks=callbacks,
            longest_wait=longest_wait,
            agents={state: count for state, count in tally.agents.items() if count},
            answered=answered,
            answered_in_time=tally.answered.count_flag,
            abandoned=abandoned,
            overflowed=overflowed,
            service_level=tally.answered.count_flag / offered if offered else None,
            service_level_target=tally.target,
            asa=tally.answered.mean(now),
            aht=tally.handled.mean(now),
            abandon_rate=abandoned / offered if offered else None,
            window=self.window,
        )

    def tally(self, name: str, now: float) -> QueueTally:
        """The queue's window as counts and sums, for adding up across nodes."""
        t = self._queues[name]
        for rolling in (t.answered, t.abandoned, t.overflowed, t.handled):
            rolling.prune(now)
        return QueueTally(
            answered=len(t.answered),
            answered_in_time=t.answered.count_flag,
            wait_total=t.answered.total if t.answered else 0.0,
            abandoned=len(t.abandoned),
            overflowed=len(t.overflowed),
            handled=len(t.handled),
            handle_total=t.handled.total if t.handled else 0.0,
        )

    def agent(self, ext: str, now: float) -> AgentStats:
        """The agent's figures at ``now``, the current state counted up to now."""
        tally = self._agents[ext]
        time_in = defaultdict(float, tally.time_in)
        time_in[tally.state] += now - tally.since
        busy = sum(time_in[s] for s in _BUSY)
        worked = busy + time_in[AVAILABLE]
        return AgentStats(
            agent=ext,
            state=tally.state,
            calls=tally.calls,
            talk=tally.talk,
            hold=tally.hold,
            wrap=tally.wrap,
            occupancy=busy / worked if worked > 0 else None,
            time_in_state={s: t for s, t in time_in.items() if t and s != LOGGED_OUT},
        )
