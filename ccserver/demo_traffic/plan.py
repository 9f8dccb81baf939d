"""What the demo traffic does, decided apart from any socket: who calls when, what they press.

Sans-IO: a :class:`DemoPlan` is asked for the next call with the time now,
and draws everything random from its own seeded generator, so a test can
replay a run and check that it stays inside its bounds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["AgentTimes", "CallScript", "DemoPlan", "DemoSettings", "KeyPress"]


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How much demo traffic, and how its people behave (``ccserver run --demo-traffic``)."""

    calls: int = 30
    """Stop placing calls after this many."""
    duration: float = 600.0
    """Stop placing calls after this many seconds."""
    rate: float = 4.0
    """Mean calls placed per minute (arrivals at random, as a Poisson stream)."""
    agents: tuple[str, ...] = ("1001", "1002", "1003")
    """Agent extensions the demo registers and answers for."""
    numbers: tuple[str, ...] = tuple(f"06000000{i:02d}" for i in range(1, 21))
    """Caller numbers: the demo customers of config/customers.csv."""
    service_line: str = "5000"
    """The IVR line; calls to it press keys in the menu."""
    queue_line: str = "5001"
    """The direct queue line."""
    ivr_share: float = 0.4
    """Share of the calls made to the IVR line."""
    answer_delay: tuple[float, float] = (1.0, 4.0)
    """Seconds an agent lets the phone ring."""
    talk: tuple[float, float] = (5.0, 20.0)
    """Seconds an agent talks before hanging up."""
    patience: tuple[float, float] = (20.0, 90.0)
    """Seconds a caller waits for an agent before hanging up (an abandoned call)."""
    survey_share: float = 0.7
    """Share of IVR callers who rate the call when the survey asks."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("demo traffic needs at least one call")
        if self.duration <= 0 or self.rate <= 0:
            raise ValueError("the demo duration and call rate must be positive")
        if not self.agents or not self.numbers:
            raise ValueError("demo traffic needs agents and caller numbers")
        for name in ("answer_delay", "talk", "patience"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range low <= high of seconds ≥ 0")
        for name in ("ivr_share", "survey_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class KeyPress:
    """A key sent as an RFC 4733 event this many seconds after the call is answered."""

    after: float
    digit: str


@dataclass(frozen=True, slots=True)
class CallScript:
    """One demo customer's call."""

    number: str
    """The caller's number (From)."""
    dialed: str
    keys: tuple[KeyPress, ...]
    patience: float
    survey: str | None
    """The score pressed when the survey asks, or None to hang up instead."""


@dataclass(frozen=True, slots=True)
class AgentTimes:
    """How long an agent rings and talks on one call."""

    ring: float
    talk: float


@dataclass
class DemoPlan:
    """Hands out the calls of one bounded run, in order."""

    settings: DemoSettings
    started: float
    placed: int = 0
    _next_at: float = 0.0
    _rng: random.Random = field(init=False)
    _numbers: random.Random = field(init=False)
    _agents: random.Random = field(init=False)

    def __post_init__(self) -> None:
        # Three streams, so the calls' scripts do not depend on which numbers
        # were busy or on the order agents answered: a seed replays them.
        seed = self.settings.seed
        self._rng = random.Random(seed)
        self._numbers = random.Random(None if seed is None else seed + 1)
        self._agents = random.Random(None if seed is None else seed + 2)
        self._next_at = self.started + self._gap()

    def _gap(self) -> float:
        return self._rng.expovariate(self.settings.rate / 60.0)

    @property
    def finished(self) -> bool:
        """No call will be placed any more: the count or the duration is reached."""
        s = self.settings
        return self.placed >= s.calls or self._next_at >= self.started + s.duration

    def next_time(self) -> float | None:
        """When the next call is due, or None when the run is over."""
        return None if self.finished else self._next_at

    def take(self, now: float, busy_numbers: set[str]) -> CallScript | None:
        """The call due at ``now`` (None if none is due), from a number not in a call now."""
        if self.finished or now < self._next_at:
            return None
        free = [n for n in self.settings.numbers if n not in busy_numbers]
        self._next_at = max(self._next_at, now) + self._gap()
        if not free:
            return None  # every demo customer is on the line: skip this arrival
        self.placed += 1
        rng = self._rng
        s = self.settings
        ivr = rng.random() < s.ivr_share
        keys: tuple[KeyPress, ...] = ()
        if ivr:
            # The greeting, then the language menu: 0 is "an agent at once"
            # (open or closed); sometimes English first, which then needs a 0
            # in the main menu (or a 2 to refuse a call back after hours).
            if rng.random() < 0.5:
                keys = (KeyPress(rng.uniform(3.0, 5.0), "0"),)
            else:
                keys = (KeyPress(rng.uniform(3.0, 5.0), "1"), KeyPress(12.0, "0"))
        return CallScript(
            number=self._numbers.choice(free),
            dialed=s.service_line if ivr else s.queue_line,
            keys=keys,
            patience=rng.uniform(*s.patience),
            survey=str(rng.randint(1, 5)) if ivr and rng.random() < s.survey_share else None,
        )

    def agent_times(self) -> AgentTimes:
        s = self.settings
        return AgentTimes(self._agents.uniform(*s.answer_delay), self._agents.uniform(*s.talk))
