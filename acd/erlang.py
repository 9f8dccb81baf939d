"""Erlang C staffing: how many agents a forecast needs for a service level.

Pure arithmetic, no I/O. The queue is M/M/N with infinite patience (the
Erlang C model): calls arrive at random, handle times are exponential, and
nobody abandons. Real queues lose callers to abandonment, so Erlang C errs on
the side of too many agents; that is the usual, safe, planning figure.

Numerically stable for large N: Erlang B is computed by its recurrence
``B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1))``, which never forms ``A^N`` or
``N!``, and Erlang C from it: ``C = N·B / (N − A·(1 − B))``. Thousands of
agents cost a few thousand multiplications and no overflow.

With ``A`` the offered load in Erlangs (calls per second × AHT) and ``N``
agents (N > A, else the queue grows without bound and C = 1):

- probability of waiting ``C(N, A)``;
- service level ``P(wait ≤ t) = 1 − C·e^(−(N−A)·t/AHT)``;
- ASA (mean wait over all calls) ``C·AHT / (N − A)``;
- occupancy ``A / N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MAX_AGENTS",
    "Staffing",
    "agents_required",
    "asa",
    "erlang_b",
    "erlang_c",
    "offered_load",
    "service_level",
]

MAX_AGENTS = 100_000
"""The largest staff :func:`agents_required` searches; beyond, the forecast is refused."""


def _check(agents: int, load: float) -> None:
    if agents < 0:
        raise ValueError(f"agents must be 0 or more, not {agents}")
    if not math.isfinite(load) or load < 0:
        raise ValueError(f"the offered load must be a finite number ≥ 0, not {load}")


def offered_load(calls: float, interval: float, aht: float) -> float:
    """Erlangs offered by ``calls`` arriving over ``interval`` seconds, each ``aht`` seconds."""
    if calls < 0 or not math.isfinite(calls):
        raise ValueError(f"calls must be a finite number ≥ 0, not {calls}")
    if interval <= 0 or not math.isfinite(interval):
        raise ValueError(f"the interval must be positive, not {interval}")
    if aht <= 0 or not math.isfinite(aht):
        raise ValueError(f"the handle time must be positive, not {aht}")
    return calls * aht / interval


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of N servers and A Erlangs with no queue (Erlang B)."""
    _check(agents, load)
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def _c_from_b(agents: int, load: float, b: float) -> float:
    if agents <= load:
        return 1.0
    return agents * b / (agents - load * (1.0 - b))


def erlang_c(agents: int, load: float) -> float:
    """Probability that a call waits (Erlang C); 1 when N ≤ A (the queue never empties)."""
    return _c_from_b(agents, load, erlang_b(agents, load))


def _sl(agents: int, load: float, c: float, aht: float, threshold: float) -> float:
    if agents <= load:
        return 0.0
    return max(0.0, 1.0 - c * math.exp(-(agents - load) * threshold / aht))


def service_level(agents: int, load: float, aht: float, threshold: float) -> float:
    """P(wait ≤ ``threshold`` seconds) with N agents; 0 when N ≤ A."""
    if aht <= 0 or threshold < 0:
        raise ValueError("the handle time must be positive and the threshold ≥ 0")
    return _sl(agents, load, erlang_c(agents, load), aht, threshold)


def asa(agents: int, load: float, aht: float) -> float:
    """Average speed of answer over all calls (those that do not wait count 0); inf when N ≤ A."""
    if aht <= 0:
        raise ValueError("the handle time must be positive")
    if agents <= load:
        return math.inf
    return erlang_c(agents, load) * aht / (agents - load)


@dataclass(frozen=True, slots=True)
class Staffing:
    """The smallest staff that meets a target, and what it gives."""

    agents: int
    load: float
    """Offered load in Erlangs."""
    probability_wait: float
    service_level: float
    asa: float
    occupancy: float


def agents_required(
    load: float,
    aht: float,
    *,
    target: float,
    threshold: float,
    max_occupancy: float = 1.0,
) -> Staffing:
    """The fewest agents giving P(wait ≤ ``threshold``) ≥ ``target`` and A/N ≤ ``max_occupancy``.

    Walks N upwards from ⌊A⌋ + 1 carrying Erlang B along, so the search costs
    one recurrence step per agent tried. A target of 1 is unreachable in this
    model (there is always some chance of waiting) unless the threshold is
    infinite: it is refused.
    """
    _check(0, load)
    if aht <= 0 or not math.isfinite(aht):
        raise ValueError(f"the handle time must be positive, not {aht}")
    if not 0 <= target < 1:
        raise ValueError(f"the service level target must be in [0, 1), not {target}")
    if threshold < 0:
        raise ValueError(f"the threshold must be ≥ 0, not {threshold}")
    if not 0 < max_occupancy <= 1:
        raise ValueError(f"the maximum occupancy must be in (0, 1], not {max_occupancy}")
    if load == 0:
        return Staffing(0, 0.0, 0.0, 1.0, 0.0, 0.0)
    n = math.floor(load) + 1
    b = erlang_b(n, load)
    while n <= MAX_AGENTS:
        c = _c_from_b(n, load, b)
        sl = _sl(n, load, c, aht, threshold)
        if sl >= target and load / n <= max_occupancy:
            return Staffing(n, load, c, sl, c * aht / (n - load), load / n)
        n += 1
        b = load * b / (n + load * b)
    raise ValueError(f"more than {MAX_AGENTS} agents would be needed for {load:.0f} Erlangs")
