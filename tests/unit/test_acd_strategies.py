"""Each queue strategy picks the agent a supervisor expects, penalties first."""

from __future__ import annotations

import pytest

from acd.router import (
    AVAILABLE,
    NOT_READY,
    ON_CALL,
    RESERVED,
    AcdError,
    AcdSettings,
    Offer,
    QueueSpec,
    Router,
    Withdraw,
)

AGENTS = ("a1", "a2", "a3", "a4")


def router(strategy: str, *, seed: int | None = None, **spec: object) -> Router:
    queue = QueueSpec("q", AGENTS, strategy=strategy, wrap_up=0, **spec)  # type: ignore[arg-type]
    return Router({"q": queue}, settings=AcdSettings(seed=seed))


def take_call(r: Router, call: str, now: float) -> str:
    """Enqueue a call, answer it and hang up at once; the agent who took it."""
    (offer,) = r.enqueue(call, "q", now)
    r.answered(call, now)
    r.hangup(offer.agent, now + 1)
    return offer.agent


def login_all(r: Router, order: tuple[str, ...] = AGENTS, start: float = 0.0) -> None:
    for i, ext in enumerate(order):
        assert r.login(ext, start + i) == []


def test_top_down_always_starts_from_the_first_member() -> None:
    r = router("top-down")
    login_all(r, ("a3", "a2", "a1", "a4"))
    assert [take_call(r, f"c{i}", 10 + 2 * i) for i in range(3)] == ["a1", "a1", "a1"]
    r.enqueue("x", "q", 20)
    assert r.enqueue("y", "q", 20) == [Offer("y", "a2", "q")]


def test_round_robin_remembers_where_it_left_off() -> None:
    r = router("round-robin")
    login_all(r)
    taken = [take_call(r, f"c{i}", 10 + 2 * i) for i in range(6)]
    assert taken == ["a1", "a2", "a3", "a4", "a1", "a2"]


def test_round_robin_skips_busy_members_and_wraps() -> None:
    r = router("round-robin")
    login_all(r)
    assert r.enqueue("c1", "q", 10) == [Offer("c1", "a1", "q")]
    r.pause("a2", 10, "break")
    assert r.enqueue("c2", "q", 11) == [Offer("c2", "a3", "q")]
    assert r.enqueue("c3", "q", 12) == [Offer("c3", "a4", "q")]
    r.ready("a2", 13)  # a2 is free again: the next call after a4 wraps to a2 (a1 rings)
    assert r.enqueue("c4", "q", 14) == [Offer("c4", "a2", "q")]


def test_longest_idle_orders_by_the_end_of_the_last_call() -> None:
    r = router("longest-idle")
    login_all(r)
    assert take_call(r, "c1", 10) == "a1"  # a1 free again at 11: now the most recent
    assert take_call(r, "c2", 12) == "a2"
    assert r.enqueue("c3", "q", 20) == [Offer("c3", "a3", "q")]


def test_fewest_calls_prefers_the_least_loaded_agent() -> None:
    r = router("fewest-calls")
    login_all(r)
    for i in range(3):
        assert take_call(r, f"a{i}", 10 + 2 * i) in AGENTS
    counts = {ext: r.agents[ext].calls for ext in AGENTS}
    assert sorted(counts.values()) == [0, 1, 1, 1]
    idle = next(ext for ext, n in counts.items() if n == 0)
    assert r.enqueue("next", "q", 30) == [Offer("next", idle, "q")]


def test_least_talk_time_prefers_the_agent_who_talked_least() -> None:
    r = router("least-talk-time")
    login_all(r)
    talks = {"a1": 300.0, "a2": 30.0, "a3": 120.0, "a4": 600.0}
    now = 10.0
    for ext in AGENTS:  # every agent takes one call of a known length
        for other in AGENTS:
            if other != ext and r.agents[other].state == AVAILABLE:
                r.pause(other, now, "break")
        (offer,) = r.enqueue(f"c-{ext}", "q", now)
        assert offer.agent == ext
        r.answered(offer.call_id, now)
        r.hangup(ext, now + talks[ext])
        for other in AGENTS:
            if r.agents[other].state == NOT_READY:
                r.ready(other, now + talks[ext])
        now += talks[ext] + 1
    assert [r.enqueue(f"n{i}", "q", now)[0].agent for i in range(4)] == ["a2", "a3", "a1", "a4"]


def test_random_is_uniform_enough_and_replays_with_the_same_seed() -> None:
    def picks(seed: int) -> list[str]:
        r = router("random", seed=seed)
        login_all(r)
        return [take_call(r, f"c{i}", 10 + 2 * i) for i in range(400)]

    first = picks(7)
    assert first == picks(7)
    assert first != picks(8)
    counts = {ext: first.count(ext) for ext in AGENTS}
    assert all(60 < n < 140 for n in counts.values()), counts


def test_penalty_tiers_come_before_the_strategy() -> None:
    r = router("top-down", penalties={"a1": 2, "a2": 1})
    login_all(r)
    assert [r.enqueue(f"c{i}", "q", 10)[0].agent for i in range(4)] == ["a3", "a4", "a2", "a1"]


def test_ring_all_rings_every_free_member_and_withdraws_the_losers() -> None:
    r = router("ring-all")
    login_all(r)
    r.pause("a4", 5, "lunch")
    offers = r.enqueue("c1", "q", 10)
    assert offers == [Offer("c1", ext, "q", ring_all=True) for ext in ("a1", "a2", "a3")]
    with pytest.raises(AcdError, match="say which"):
        r.answered("c1", 12)
    assert r.answered("c1", 12, agent="a2") == [
        Withdraw("c1", "a1", "q", "answered elsewhere"),
        Withdraw("c1", "a3", "q", "answered elsewhere"),
    ]
    assert {ext: r.agents[ext].state for ext in AGENTS} == {
        "a1": AVAILABLE,
        "a2": ON_CALL,
        "a3": AVAILABLE,
        "a4": NOT_READY,
    }
    # The losers are matched again on the next timer, due now.
    r.enqueue("c2", "q", 12)  # and a new call rings them both at once anyway
    assert r.agents["a1"].state == RESERVED and r.agents["a3"].state == RESERVED


def test_ring_all_at_the_lowest_penalty_only() -> None:
    r = router("ring-all", penalties={"a3": 1, "a4": 1})
    login_all(r)
    assert [o.agent for o in r.enqueue("c1", "q", 10)] == ["a1", "a2"]
    assert [o.agent for o in r.enqueue("c2", "q", 10)] == ["a3", "a4"]


def test_ring_all_nobody_answering_pauses_nobody_and_retries_later() -> None:
    r = router("ring-all", retry=5.0)
    login_all(r)
    r.enqueue("c1", "q", 10)
    assert r.no_answer("c1", 25) == []
    assert all(r.agents[ext].state == AVAILABLE for ext in AGENTS)
    assert [w.call_id for w in r.waiting("q")] == ["c1"]
    assert r.get_timer() == 30
    assert [o.agent for o in r.handle_timer(30)] == list(AGENTS)


def test_ring_all_group_member_refusing_leaves_the_others_ringing() -> None:
    r = router("ring-all")
    login_all(r)
    r.enqueue("c1", "q", 10)
    assert r.declined("c1", 11, agent="a1") == []
    assert r.calls["c1"].offered == {"a2": "q", "a3": "q", "a4": "q"}
    assert r.agents["a1"].state == AVAILABLE
    r.answered("c1", 12, agent="a3")
    assert r.agents["a3"].state == ON_CALL


@pytest.mark.parametrize(
    "strategy",
    ["longest-idle", "round-robin", "fewest-calls", "least-talk-time", "top-down", "random"],
)
def test_every_single_ring_strategy_rings_one_agent(strategy: str) -> None:
    r = router(strategy, seed=1)
    login_all(r)
    offers = r.enqueue("c1", "q", 10)
    assert len(offers) == 1 and not offers[0].ring_all
