"""The demo traffic's plan: bounded, reproducible, and within the ranges it was given."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccserver.demo_traffic import DemoPlan, DemoSettings


def run(plan: DemoPlan, busy: set[str] | None = None) -> list[tuple[float, object]]:
    out = []
    while (due := plan.next_time()) is not None:
        script = plan.take(due, busy or set())
        out.append((due, script))
    return out


def test_stops_after_the_call_count() -> None:
    plan = DemoPlan(DemoSettings(calls=5, rate=600, duration=3600, seed=1), 100.0)
    calls = run(plan)
    assert len(calls) == 5 and plan.finished and plan.next_time() is None
    times = [t for t, _ in calls]
    assert times == sorted(times) and times[0] > 100.0


def test_stops_after_the_duration() -> None:
    plan = DemoPlan(DemoSettings(calls=10_000, rate=60, duration=120, seed=3), 0.0)
    calls = run(plan)
    assert all(t < 120 for t, _ in calls)
    # About one a second for two minutes (Poisson: well inside 60..180).
    assert 60 < len(calls) < 180


def test_nothing_is_due_before_its_time() -> None:
    plan = DemoPlan(DemoSettings(seed=4), 0.0)
    due = plan.next_time()
    assert due is not None
    assert plan.take(due - 0.001, set()) is None
    assert plan.take(due, set()) is not None
    assert plan.placed == 1


def test_the_same_seed_replays_the_same_scripts_whatever_is_busy() -> None:
    a = run(DemoPlan(DemoSettings(calls=20, seed=9), 0.0))
    b = run(DemoPlan(DemoSettings(calls=20, seed=9), 0.0), busy={"0600000001", "0600000002"})
    strip = [(t, s.dialed, s.keys, s.survey, s.patience) for t, s in a]  # type: ignore[attr-defined]
    assert strip == [(t, s.dialed, s.keys, s.survey, s.patience) for t, s in b]  # type: ignore[attr-defined]


def test_busy_numbers_are_not_used_and_a_full_line_skips_the_call() -> None:
    numbers = ("0600000001", "0600000002")
    plan = DemoPlan(DemoSettings(calls=3, numbers=numbers, seed=5), 0.0)
    due = plan.next_time()
    assert due is not None
    script = plan.take(due, {"0600000001"})
    assert script is not None and script.number == "0600000002"
    due = plan.next_time()
    assert due is not None
    assert plan.take(due, set(numbers)) is None
    assert plan.placed == 1


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), share=st.floats(0, 1))
def test_scripts_stay_within_their_settings(seed: int, share: float) -> None:
    s = DemoSettings(calls=30, rate=30, seed=seed, ivr_share=share)
    plan = DemoPlan(s, 0.0)
    for _, script in run(plan):
        assert script is not None
        assert script.number in s.numbers
        assert script.dialed in (s.service_line, s.queue_line)
        assert s.patience[0] <= script.patience <= s.patience[1]
        if script.dialed == s.queue_line:
            assert script.keys == () and script.survey is None
        else:
            assert script.keys[-1].digit == "0"  # always ends asking for an agent
            assert script.survey is None or script.survey in "12345"
        times = plan.agent_times()
        assert s.answer_delay[0] <= times.ring <= s.answer_delay[1]
        assert s.talk[0] <= times.talk <= s.talk[1]


@pytest.mark.parametrize(
    "kw",
    [
        {"calls": 0},
        {"rate": 0},
        {"duration": -1},
        {"agents": ()},
        {"talk": (5.0, 1.0)},
        {"ivr_share": 1.5},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DemoSettings(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--demo-agents", "1001,9999"], "9999 are not agents of the config"),
        (["--demo-talk", "20-5"], "talk must be a range"),
        (["--demo-talk", "soon"], "could not convert"),
    ],
)
def test_run_refuses_bad_demo_options_before_starting(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from ccserver.cli import cli

    result = CliRunner().invoke(cli, ["run", "--demo-traffic", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
