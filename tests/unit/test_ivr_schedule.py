"""Business hours at injected dates: time zones, day ranges, holidays, the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ccserver.config.flows import Flow, ScheduleNode
from ivr.flow import FlowRun, Play, Step
from ivr.schedule import fixed_wall_clock, is_open, system_wall_clock

PARIS = ZoneInfo("Europe/Paris")
SEOUL = ZoneInfo("Asia/Seoul")


def schedule(**changes: Any) -> ScheduleNode:
    data: dict[str, Any] = {
        "kind": "schedule",
        "timezone": "Europe/Paris",
        "hours": {"mon-fri": ["08:30-12:00", "13:00-18:00"], "sat": "09:00-12:00"},
        "holidays": [date(2025, 7, 14), "12-25"],
        "open": "open",
        "closed": "closed",
    }
    data.update(changes)
    return ScheduleNode.model_validate(data)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (datetime(2025, 6, 2, 8, 29), False),  # Monday, before opening
        (datetime(2025, 6, 2, 8, 30), True),  # opening minute
        (datetime(2025, 6, 2, 12, 0), False),  # lunch: the end is exclusive
        (datetime(2025, 6, 2, 13, 0), True),
        (datetime(2025, 6, 6, 17, 59), True),  # Friday
        (datetime(2025, 6, 7, 10, 0), True),  # Saturday morning
        (datetime(2025, 6, 7, 12, 30), False),
        (datetime(2025, 6, 8, 10, 0), False),  # Sunday: not listed
    ],
)
def test_weekly_hours(local: datetime, expected: bool) -> None:
    assert is_open(schedule(), local.replace(tzinfo=PARIS)).open is expected


def test_the_time_zone_decides_the_day_and_the_hour() -> None:
    # 23:30 UTC on a Friday is already Saturday 08:30 in Seoul.
    moment = datetime(2025, 6, 6, 23, 30, tzinfo=UTC)
    seoul = schedule(timezone="Asia/Seoul", hours={"mon-fri": "08:00-18:00", "sat": "08:00-12:00"})
    opening = is_open(seoul, moment)
    assert opening.open and opening.local.weekday() == 5 and opening.local.hour == 8
    assert not is_open(schedule(), moment).open  # Paris: Saturday 01:30


def test_daylight_saving_is_followed() -> None:
    node = schedule(hours={"mon-sun": "09:00-10:00"})
    winter = datetime(2025, 1, 15, 8, 30, tzinfo=UTC)  # 09:30 in Paris (UTC+1)
    summer = datetime(2025, 7, 15, 8, 30, tzinfo=UTC)  # 10:30 in Paris (UTC+2)
    assert is_open(node, winter).open and not is_open(node, summer).open


def test_holidays_dated_and_every_year() -> None:
    node = schedule()
    bastille = is_open(node, datetime(2025, 7, 14, 10, 0, tzinfo=PARIS))  # a Monday
    assert not bastille.open and bastille.holiday
    assert is_open(node, datetime(2026, 7, 14, 10, 0, tzinfo=PARIS)).open  # only 2025
    christmas = is_open(node, datetime(2026, 12, 25, 10, 0, tzinfo=PARIS))
    assert christmas.holiday and not christmas.open


def test_day_ranges_may_wrap_the_week() -> None:
    node = schedule(hours={"fri-mon": "10:00-11:00"})
    days = [d for d in range(7) if node.hours[d]]
    assert days == [0, 4, 5, 6]


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"monday": "09:00-17:00"}, "'monday' is not a day"),
        ({"mon": "9-17"}, "mon: '9-17' is not a time range such as '09:00-17:00'"),
        ({"mon": "18:00-09:00"}, "mon: '18:00-09:00' ends before it starts"),
        ({"mon": "09:00-24:30"}, "'09:00-24:30' is not a time range"),
        ({"mon": ["09:00-12:00", "11:00-14:00"]}, "mon: the ranges overlap"),
        ({"mon-fri": "09:00-17:00", "wed": "10:00-12:00"}, "wed is given twice"),
        ({"mon": 9}, "mon: expected '09:00-17:00', 'closed' or an array of ranges"),
    ],
)
def test_bad_hours(hours: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        schedule(hours=hours)


def test_closed_days_and_midnight_end() -> None:
    node = schedule(hours={"mon": "closed", "tue": "00:00-24:00"})
    assert node.hours[0] == () and node.hours[1] == ((0, 1440),)


@pytest.mark.parametrize("holiday", ["2025-02-30", "13-01", "25/12", 20251225])
def test_bad_holidays(holiday: Any) -> None:
    with pytest.raises(ValidationError, match="is not a date"):
        schedule(holidays=[holiday])


def test_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Pariss'"):
        schedule(timezone="Europe/Pariss")


# -- in a flow, with the clock injected -------------------------------------------------------

FLOW = {
    "name": "f",
    "language": "en",
    "start": "when",
    "nodes": {
        "when": {
            "kind": "schedule",
            "timezone": "Asia/Seoul",
            "hours": {"mon-fri": "09:00-18:00"},
            "holidays": ["01-01"],
            "open": "open",
            "closed": "closed",
            "holiday": "holiday",
        },
        "open": {"kind": "play", "prompt": "We are open."},
        "closed": {"kind": "play", "prompt": "We are closed."},
        "holiday": {"kind": "play", "prompt": "Happy new year."},
    },
}


def run_at(moment: datetime, now: float = 500.0) -> list[Any]:
    run = FlowRun(Flow.model_validate(FLOW), wall_clock=fixed_wall_clock(moment, now))
    return run.start(now)


def test_schedule_node_branches_on_the_injected_date() -> None:
    out = run_at(datetime(2025, 6, 2, 1, 0, tzinfo=UTC))  # Monday 10:00 in Seoul
    assert (
        Step(
            "schedule",
            {
                "node": "when",
                "open": True,
                "holiday": False,
                "local": "2025-06-02T10:00+09:00",
                "to": "open",
            },
        )
        in out
    )
    assert out[-1] == Play("We are open.", "en")
    assert run_at(datetime(2025, 6, 2, 10, 0, tzinfo=UTC))[-1] == Play("We are closed.", "en")
    assert run_at(datetime(2026, 1, 1, 1, 0, tzinfo=UTC))[-1] == Play("Happy new year.", "en")


def test_fixed_wall_clock_moves_with_now() -> None:
    wall = fixed_wall_clock(datetime(2025, 1, 1, tzinfo=UTC), now=100.0)
    assert wall(160.0) == datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        fixed_wall_clock(datetime(2025, 1, 1))


def test_system_wall_clock_maps_loop_time_to_now() -> None:
    wall = system_wall_clock(lambda: 1000.0)
    there = wall(990.0)  # ten seconds ago on the loop's clock
    expected = datetime.fromtimestamp(time.time(), UTC) - timedelta(seconds=10)
    assert abs((there - expected).total_seconds()) < 1.0
    assert wall(990.0).tzinfo is UTC
