"""Erlang C against the closed formula in exact arithmetic, a published example, and properties."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.erlang import (
    agents_required,
    asa,
    erlang_b,
    erlang_c,
    offered_load,
    service_level,
)


def closed_form_c(n: int, a: Fraction) -> Fraction:
    """Erlang C from its textbook definition, in exact rationals:

    C = (Aᴺ/N! · N/(N−A)) / (Σₖ₌₀ᴺ⁻¹ Aᵏ/k! + Aᴺ/N! · N/(N−A)).
    Independent of the module's Erlang B recurrence.
    """
    top = a**n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def closed_form_b(n: int, a: Fraction) -> Fraction:
    """Erlang B = (Aᴺ/N!) / Σₖ₌₀ᴺ Aᵏ/k!."""
    return (a**n / math.factorial(n)) / sum(a**k / math.factorial(k) for k in range(n + 1))


@pytest.mark.parametrize(("n", "a"), [(1, "0.5"), (3, "2"), (11, "10"), (14, "10"), (40, "31.7")])
def test_erlang_b_and_c_match_the_closed_formulas(n: int, a: str) -> None:
    load = Fraction(a)
    assert erlang_b(n, float(load)) == pytest.approx(float(closed_form_b(n, load)), rel=1e-12)
    assert erlang_c(n, float(load)) == pytest.approx(float(closed_form_c(n, load)), rel=1e-12)


def test_the_published_worked_example() -> None:
    """100 calls in 30 minutes, 3 minutes each, 80 % answered within 20 s.

    The widely reprinted worked example (e.g. Call Centre Helper's Erlang C
    walkthrough) finds A = 10 Erlangs, 68.2 % waiting and 39.0 % in time with
    11 agents, and 14 agents needed (88.8 %, ASA 7.8 s). Every figure is
    recomputed here from the closed formula; the published ones are rounded.
    """
    load = offered_load(100, 1800, 180)
    assert load == 10
    exact = Fraction(10)

    def exact_sl(n: int) -> float:
        return 1 - float(closed_form_c(n, exact)) * math.exp(-(n - 10) * 20 / 180)

    assert erlang_c(11, load) == pytest.approx(float(closed_form_c(11, exact)), rel=1e-12)
    assert round(erlang_c(11, load), 3) == 0.682  # published: 68.2 %
    assert service_level(11, load, 180, 20) == pytest.approx(exact_sl(11), rel=1e-12)
    assert round(service_level(11, load, 180, 20), 3) == 0.390  # published: 39.0 %
    needed = next(n for n in range(11, 100) if exact_sl(n) >= 0.8)
    staffing = agents_required(load, 180, target=0.8, threshold=20)
    assert staffing.agents == needed == 14  # published: 14 agents
    assert staffing.service_level == pytest.approx(exact_sl(14), rel=1e-12)
    assert staffing.asa == pytest.approx(float(closed_form_c(14, exact)) * 180 / 4, rel=1e-12)
    assert round(staffing.asa, 1) == 7.8
    assert staffing.occupancy == pytest.approx(10 / 14)


def test_max_occupancy_adds_agents() -> None:
    base = agents_required(10, 180, target=0.8, threshold=20)
    capped = agents_required(10, 180, target=0.8, threshold=20, max_occupancy=0.7)
    assert capped.agents == math.ceil(10 / 0.7) > base.agents
    assert capped.occupancy <= 0.7


def test_large_loads_are_stable() -> None:
    """5,000 Erlangs: Aᴺ/N! would overflow a float many times over; the recurrence does not."""
    staffing = agents_required(5000, 180, target=0.8, threshold=20)
    assert 5000 < staffing.agents < 5100
    assert 0 < staffing.probability_wait < 1
    assert staffing.service_level >= 0.8
    below = service_level(staffing.agents - 1, 5000, 180, 20)
    assert below < 0.8


def test_overloaded_and_idle_queues() -> None:
    assert erlang_c(10, 10) == 1.0
    assert erlang_c(5, 12.5) == 1.0
    assert service_level(10, 10, 180, 20) == 0.0
    assert asa(9, 10, 180) == math.inf
    zero = agents_required(0, 180, target=0.8, threshold=20)
    assert zero.agents == 0 and zero.service_level == 1.0


@pytest.mark.parametrize(
    "kw",
    [
        {"load": -1.0, "aht": 180.0, "target": 0.8, "threshold": 20.0},
        {"load": 10.0, "aht": 0.0, "target": 0.8, "threshold": 20.0},
        {"load": 10.0, "aht": 180.0, "target": 1.0, "threshold": 20.0},
        {"load": 10.0, "aht": 180.0, "target": 0.8, "threshold": -1.0},
        {"load": math.nan, "aht": 180.0, "target": 0.8, "threshold": 20.0},
    ],
)
def test_bad_forecasts_are_refused(kw: dict[str, float]) -> None:
    load = kw.pop("load")
    aht = kw.pop("aht")
    with pytest.raises(ValueError):
        agents_required(load, aht, **kw)


loads = st.floats(min_value=0.01, max_value=400, allow_nan=False)
ahts = st.floats(min_value=1, max_value=3600, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(load=loads, extra=st.integers(1, 60), aht=ahts, t=st.floats(0, 600, allow_nan=False))
def test_more_agents_never_hurt(load: float, extra: int, aht: float, t: float) -> None:
    n = math.floor(load) + extra
    c0, c1 = erlang_c(n, load), erlang_c(n + 1, load)
    assert 0 <= c1 <= c0 <= 1
    assert erlang_b(n, load) <= c0
    assert service_level(n + 1, load, aht, t) >= service_level(n, load, aht, t) - 1e-12
    assert asa(n + 1, load, aht) <= asa(n, load, aht) + 1e-9


@settings(max_examples=150, deadline=None)
@given(load=loads, aht=ahts, target=st.floats(0.05, 0.99), t=st.floats(1, 300))
def test_agents_required_is_the_smallest_that_meets_the_target(
    load: float, aht: float, target: float, t: float
) -> None:
    staffing = agents_required(load, aht, target=target, threshold=t)
    assert staffing.agents > load
    assert staffing.service_level >= target
    fewer = staffing.agents - 1
    assert fewer <= load or service_level(fewer, load, aht, t) < target


@settings(max_examples=100, deadline=None)
@given(load=loads, aht=ahts, t=st.floats(1, 300))
def test_a_higher_target_or_a_longer_handle_time_needs_no_fewer_agents(
    load: float, aht: float, t: float
) -> None:
    low = agents_required(load, aht, target=0.6, threshold=t).agents
    high = agents_required(load, aht, target=0.9, threshold=t).agents
    assert high >= low
    # Same load, a shorter threshold relative to the handle time: harder.
    assert (
        agents_required(load, aht, target=0.8, threshold=t / 2).agents
        >= agents_required(load, aht, target=0.8, threshold=t).agents
    )
