"""What the router asks the call model to do.

Decisions are plain frozen records. The event methods of
:class:`acd.router.Router` return the :class:`Offer` s they cause,
``answered`` the :class:`Withdraw` s of a ring-all and ``abandon`` a
:class:`Departure`; what timers and joins decide on their own
(:class:`Announce`, :class:`Overflow`) is appended to ``Router.decisions``
for the call model to drain, as it drains ``Router.changes``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DESTINATION_KINDS",
    "Announce",
    "Decision",
    "Departure",
    "Offer",
    "Overflow",
    "Withdraw",
]

DESTINATION_KINDS = ("queue", "flow", "voicemail", "callback", "hangup")
"""Where an overflowing call goes. ``queue`` is done by the router itself (the
call is already waiting in the new queue when the decision is read);
``callback`` leaves the call in place and asks the call model to offer the
caller a call back; ``hangup`` means no destination is left: end the call."""


@dataclass(frozen=True, slots=True)
class Offer:
    """Ring ``agent`` for ``call_id`` from ``queue``.

    ``callback`` is the customer's number when the call is a queue callback:
    ring the agent, and when it answers call the customer back. ``ring_all``
    says other agents may be ringing for the same call: report the winner with
    ``answered(call_id, now, agent=...)``.
    """

    call_id: str
    agent: str
    queue: str
    callback: str | None = None
    ring_all: bool = False


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Stop ringing ``agent`` for ``call_id`` (CANCEL its INVITE): someone else answered."""

    call_id: str
    agent: str
    queue: str
    reason: str


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell a waiting caller its place in line and/or the estimated wait in seconds.

    Either may be None: not configured for the queue, or unknown (no recent
    handled call to estimate from, nobody staffed).
    """

    call_id: str
    position: int | None
    estimated_wait: float | None
    queue: str


@dataclass(frozen=True, slots=True)
class Overflow:
    """The call leaves ``queue`` for a destination (see :data:`DESTINATION_KINDS`)."""

    call_id: str
    destination_kind: str
    destination: str
    queue: str
    reason: str
    """``max-wait``, ``join-empty`` or ``leave-empty``."""
    waited: float
    """Seconds the call waited in ``queue``."""


@dataclass(frozen=True, slots=True)
class Departure:
    """A caller left while queued or ringing: what its contact record needs."""

    call_id: str
    queue: str
    waited: float
    position: int | None
    """Its place in line when it left (None while ringing or as a callback)."""
    agents: tuple[str, ...]
    """Agents whose ringing phone the call model must now cancel."""


Decision = Offer | Withdraw | Announce | Overflow
