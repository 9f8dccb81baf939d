"""Queue settings and the calls waiting in them.

:class:`QueueSpec` is what a queue promises (strategy, members, skills,
service level, overflow, announcements, escalation); :class:`WaitingCall` is
one caller's place. A call's place is a sort key that does not change with
time even though its priority ages: with an aging rate ``r``, the effective
priority ``base + r * waited`` orders calls exactly as
``r * first_joined - base`` does (the ``r * now`` term is common to all), so
a sorted list stays sorted as the clock runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acd.agents import AcdError
from acd.decisions import DESTINATION_KINDS
from acd.skills import Profile, check_skills
from acd.strategies import STRATEGIES

__all__ = [
    "OFFERED",
    "WAITING",
    "Destination",
    "EscalationStep",
    "QueueSpec",
    "WaitingCall",
    "call_key",
]

WAITING = "waiting"
OFFERED = "offered"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where overflowing calls go: a kind from :data:`DESTINATION_KINDS` and a name."""

    kind: str
    target: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DESTINATION_KINDS:
            raise AcdError(f"unknown overflow kind {self.kind!r}")


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """After ``after`` seconds in the queue: relax the call's skills and/or widen its queues."""

    after: float
    lower_by: int = 0
    """Lower every required minimum proficiency by this much (not below 1)."""
    drop: tuple[str, ...] = ()
    """Stop requiring these skills."""
    add_queues: tuple[str, ...] = ()
    """Also offer the call to the members of these queues (after the home queue's)."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue's settings (built from ``queues.toml`` by :mod:`acd.config`)."""

    name: str
    members: tuple[str, ...]
    ring_timeout: float = 15.0
    wrap_up: float = 5.0
    strategy: str = "longest-idle"
    penalties: Mapping[str, int] = field(default_factory=dict)
    """Member -> penalty; absent members have 0. Lower penalties are offered calls first."""
    required_skills: Mapping[str, int] = field(default_factory=dict)
    """Skill -> minimum proficiency every call of the queue needs."""
    retry: float = 5.0
    """Seconds before a call is offered again to an agent whose phone refused it."""
    max_wait: float | None = None
    overflow: Destination | None = None
    """Where calls go after ``max_wait``, or when refused by the empty rules."""
    join_empty: bool = True
    """Whether a call may join while no member is logged in."""
    leave_empty: bool = False
    """Whether waiting calls leave when the last member logs out."""
    service_level: float = 20.0
    """Calls answered within this many seconds meet the service level."""
    service_level_target: float = 0.8
    announce_position: bool = False
    announce_wait: bool = False
    announce_every: float | None = None
    """Repeat the announcement every this many seconds; None: only when joining."""
    escalation: tuple[EscalationStep, ...] = ()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise AcdError(f"queue {self.name}: unknown strategy {self.strategy!r}")
        stray = set(self.penalties) - set(self.members)
        if stray:
            raise AcdError(f"queue {self.name}: penalties for non-members {sorted(stray)}")
        try:
            check_skills(self.required_skills, f"queue {self.name}")
        except ValueError as exc:
            raise AcdError(str(exc)) from None
        afters = [step.after for step in self.escalation]
        if afters != sorted(afters):
            raise AcdError(f"queue {self.name}: escalation steps must be in time order")

    @property
    def announces(self) -> bool:
        """Whether waiting callers hear anything about their wait."""
        return self.announce_position or self.announce_wait


def call_key(aging_rate: float, base: int, first_joined: float, seq: int) -> tuple[Any, ...]:
    """A call's place in line: higher effective priority first, then first come first served.

    Rounded so two calls of equal effective priority compare equal despite
    floating point, and fall back to their arrival order.
    """
    return (round(aging_rate * first_joined - base, 9), first_joined, seq)


@dataclass(slots=True)
class WaitingCall:
    """One caller in the ACD: plain data, inspectable and copyable by a state backend."""

    call_id: str
    queue: str
    """Its home queue (where it joined or last overflowed to)."""
    priority: int
    """Base priority: the tier's plus the one given at enqueue."""
    joined_at: float
    """When it joined its home queue (wait, max_wait, escalation)."""
    first_joined: float = 0.0
    """When it first joined any queue (priority ages from here)."""
    tier: str | None = None
    skills: dict[str, int] = field(default_factory=dict)
    """Skills the call itself asked for (from the IVR or the DID)."""
    profile: Profile = ()
    """What an agent needs now: queue and call skills, relaxed by escalation."""
    queues: tuple[str, ...] = ()
    """Queues whose members may take it: the home queue, then escalation's."""
    seq: int = 0
    key: tuple[Any, ...] = ()
    state: str = WAITING
    offered: dict[str, str] = field(default_factory=dict)
    """Agents ringing for it now -> the queue each was chosen through."""
    callback: str | None = None
    """The number to call back: the caller hung up and keeps its place virtually."""
    step: int = 0
    """Index of the next escalation step."""
    skip: dict[str, float] = field(default_factory=dict)
    """Agents whose phone refused the call -> when they may be tried again."""
    overflow_due: bool = False
    """max_wait passed while an agent was ringing: overflow when the offer ends."""
    visited: tuple[str, ...] = ()
    """Queues it has been in (to stop overflow loops)."""
    next_announce: float | None = None

    def effective_priority(self, aging_rate: float, now: float) -> float:
        """Base priority plus the aging earned since it first joined."""
        return self.priority + aging_rate * (now - self.first_joined)
