"""Business hours: is the line open at a given moment, in the line's own time zone.

The flow runs on the event loop's monotonic clock (``now``), which says
nothing about the date. A *wall clock* maps ``now`` to an aware datetime; the
call model passes the system's (`system_wall_clock`), tests pass any date
they like (`fixed_wall_clock`). The opening hours are then read in the
node's time zone, so a line in Seoul is judged on Seoul's weekday, and
daylight-saving changes are zoneinfo's business, not ours.
"""

from __future__ import annotations

import functools
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ccserver.config.flows import ScheduleNode

__all__ = ["Opening", "WallClock", "fixed_wall_clock", "is_open", "system_wall_clock"]

WallClock = Callable[[float], datetime]
"""Maps the loop's ``now`` to an aware datetime."""


def system_wall_clock(monotonic: Callable[[], float] = time.monotonic) -> WallClock:
    """The real date for a ``now`` read from ``monotonic`` (the asyncio loop's clock)."""

    def wall(now: float) -> datetime:
        return datetime.fromtimestamp(time.time() - (monotonic() - now), UTC)

    return wall


def fixed_wall_clock(at: datetime, now: float = 0.0) -> WallClock:
    """A clock that reads ``at`` when ``now`` is ``now``, and moves with it (tests)."""
    if at.tzinfo is None:
        raise ValueError("give an aware datetime (with tzinfo)")

    def wall(moment: float) -> datetime:
        return at + timedelta(seconds=moment - now)

    return wall


@dataclass(frozen=True, slots=True)
class Opening:
    """The answer, with what the timeline should say about it."""

    open: bool
    holiday: bool
    local: datetime


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def is_open(node: ScheduleNode, when: datetime) -> Opening:
    """Whether ``node``'s hours hold at ``when`` (any time zone), holidays first."""
    local = when.astimezone(_zone(node.timezone))
    day = local.date()
    if day.isoformat() in node.holidays or day.strftime("%m-%d") in node.holidays:
        return Opening(False, True, local)
    minute = local.hour * 60 + local.minute
    spans = node.hours[local.weekday()]
    return Opening(any(start <= minute < end for start, end in spans), False, local)
