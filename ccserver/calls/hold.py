"""Hold accounting of a contact: one count and one clock for every way a caller is held.

A caller is held by a phone (its own or the agent's: a sendonly or inactive
re-INVITE, RFC 3264 §8.4), from the agent's software (console, REST API,
AMI: `CallControl.hold`) and by a consult transfer. These can overlap: an
agent presses hold on the phone and in the console, a caller holds while the
agent consults. The contact is on hold while anything holds it, so

- ``holds`` counts the times it went on hold (not each holder),
- ``hold_seconds`` is the time it spent on hold (the union of the holders' periods),
- the ACD router hears one ``hold`` and one ``retrieve`` per period, for the
  agent's handle time (AHT = talk + hold + wrap-up).

The rule is the two pure functions `begin_hold` and `end_hold` (time is an
argument); `HoldAccounting` adds what follows from them: the contact's row and
the router. Media (who hears hold music) stays with each mechanism; the
timeline keeps each holder's own ``hold``/``resume`` steps.
"""

from __future__ import annotations

from ccserver.calls.core import CallCore
from ccserver.calls.leg import Leg
from ccserver.calls.model import Call

__all__ = ["CONSULT", "CONTROL", "HoldAccounting", "begin_hold", "end_hold", "phone_holder"]

#: Held from the agent's software (console, API, AMI).
CONTROL = "control"
#: Held while the agent consults a transfer target.
CONSULT = "consult"


def phone_holder(leg: Leg) -> str:
    """A phone's hold is its leg's: a leg that ends takes its hold along."""
    return f"phone:{leg.call_id}"


def begin_hold(call: Call, holder: str, now: float) -> bool:
    """``holder`` holds the caller: True when the contact goes on hold with it
    (nothing held it before), which starts a hold period."""
    first = not call.holders and call.hold_started is None
    call.holders.add(holder)
    if first:
        call.holds += 1
        call.hold_started = now
    return first


def end_hold(call: Call, holder: str | None, now: float) -> bool:
    """``holder`` lets go (None: every holder, the call is over): True when
    nothing holds the contact any more, which ends the hold period and adds it
    to ``hold_seconds``."""
    if holder is None:
        call.holders.clear()
    call.holders.discard(holder or "")
    if call.holders or call.hold_started is None:
        return False
    call.hold_seconds += max(0.0, now - call.hold_started)
    call.hold_started = None
    return True


class HoldAccounting(CallCore):
    """Keeps the contact's hold figures and the router's hold clock for every holder."""

    def _hold_begins(self, call: Call, holder: str) -> None:
        now = self.now()
        if not begin_hold(call, holder, now):
            return
        leg = call.agent_leg
        agent = leg.agent if leg is not None else None
        if agent is not None and agent in self.router.agents:
            self.router.hold(agent, now)
            call.hold_agent = agent
        self._store_holds(call)

    def _hold_ends(self, call: Call, holder: str | None) -> None:
        now = self.now()
        if not end_hold(call, holder, now):
            return
        agent, call.hold_agent = call.hold_agent, None
        leg = call.agent_leg
        # Only the agent still on the call: one who left settled its hold
        # when the router heard its hangup, and may be on another call now.
        if agent is not None and leg is not None and leg.agent == agent:
            self.router.retrieve(agent, now)
        self._store_holds(call)

    def _store_holds(self, call: Call) -> None:
        self.recorder.update(
            call.contact_id, holds=call.holds, hold_seconds=round(call.hold_seconds, 3)
        )
