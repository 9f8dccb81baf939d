"""Agents: their states, the one table of legal moves, and the record of every move.

An agent is an extension that takes queue calls. Its state says whether the
router may offer it a call; only the transitions listed in
:data:`AGENT_TRANSITIONS` are possible (STYLE habit 3), and each one becomes an
:class:`AgentChange` the call model writes to the agent's event log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AGENT_STATES",
    "AGENT_TRANSITIONS",
    "AVAILABLE",
    "LOGGED_OUT",
    "NOT_READY",
    "NO_ANSWER",
    "ON_CALL",
    "RESERVED",
    "WRAP_UP",
    "AcdError",
    "Agent",
    "AgentChange",
    "next_state",
]

LOGGED_OUT = "logged-out"
AVAILABLE = "available"
RESERVED = "reserved"  # an offer is ringing the agent's phone
ON_CALL = "on-call"
WRAP_UP = "wrap-up"
NOT_READY = "not-ready"
AGENT_STATES = (LOGGED_OUT, AVAILABLE, RESERVED, ON_CALL, WRAP_UP, NOT_READY)

NO_ANSWER = "no answer"
"""The not-ready reason the router sets itself when an offer rings out."""

#: Agent state machine: which event moves which state where (STYLE habit 3).
#: ``dial``: the agent places or takes a call outside the queues (click-to-call,
#: a transfer to the agent's extension); ``hangup`` ends it like a queue call.
AGENT_TRANSITIONS: dict[str, dict[str, str]] = {
    LOGGED_OUT: {"login": AVAILABLE, "login_paused": NOT_READY},
    AVAILABLE: {"offer": RESERVED, "dial": ON_CALL, "pause": NOT_READY, "logout": LOGGED_OUT},
    RESERVED: {
        "answer": ON_CALL,
        "no_answer": NOT_READY,
        "decline": AVAILABLE,
        "withdraw": AVAILABLE,
        "logout": LOGGED_OUT,
    },
    ON_CALL: {"hangup": WRAP_UP, "logout": LOGGED_OUT},
    WRAP_UP: {"wrap_done": AVAILABLE, "dial": ON_CALL, "pause": NOT_READY, "logout": LOGGED_OUT},
    NOT_READY: {"ready": AVAILABLE, "dial": ON_CALL, "pause": NOT_READY, "logout": LOGGED_OUT},
}


class AcdError(Exception):
    """An event that makes no sense in the current state (a bug on our side)."""


def next_state(ext: str, state: str, event: str) -> str:
    """Where ``event`` takes an agent in ``state``; AcdError if the table has no such move."""
    new = AGENT_TRANSITIONS[state].get(event)
    if new is None:
        raise AcdError(f"agent {ext}: {event!r} not allowed in state {state}")
    return new


@dataclass(frozen=True, slots=True)
class AgentChange:
    """An agent state change, for the contact-center event log."""

    agent: str
    old: str
    new: str
    reason: str | None
    at: float
    event: str = ""
    """The table's event name (``offer``, ``no_answer``, ``pause``...)."""
    call_id: str | None = None
    """The call the change is about, when there is one."""


@dataclass(slots=True)
class Agent:
    """One agent's live state: plain data, so a state backend can copy it as is."""

    ext: str
    state: str = LOGGED_OUT
    since: float = 0.0
    """When the current state began."""
    idle_since: float = 0.0
    """When the agent last became available (longest-idle order)."""
    reason: str | None = None
    """The reason given with the last change (not-ready code, logout reason)."""
    call_id: str | None = None
    """The call being offered or talked, if any."""
    queue: str | None = None
    """The queue of that call (through which the agent was chosen)."""
    wrap_until: float | None = None
    calls: int = 0
    """Calls answered since the router started (fewest-calls order)."""
    talk_time: float = 0.0
    """Seconds talked since the router started (least-talk-time order)."""
    skills: dict[str, int] = field(default_factory=dict)
    """Skill name -> proficiency 1 (novice) to 10 (expert)."""
    queues: dict[str, int] = field(default_factory=dict)
    """Queues the agent is a member of -> penalty (0 is tried first)."""
    pending_reason: str | None = None
    """A not-ready reason asked for during a call: applied when it and its wrap-up end."""
    answered_at: float | None = None
    hold_since: float | None = None
    hold_time: float = 0.0
    """Seconds on hold during the current call."""
