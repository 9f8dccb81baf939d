"""The ACD router's decisions, fed events with explicit times."""

from __future__ import annotations

import pytest

from acd.router import (
    AVAILABLE,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    AcdError,
    Offer,
    QueueSpec,
    Router,
)


def router(wrap: float = 5.0) -> Router:
    return Router({"q": QueueSpec("q", ("a1", "a2", "a3"), ring_timeout=10, wrap_up=wrap)})


def test_call_waits_until_an_agent_logs_in() -> None:
    r = router()
    assert r.enqueue("c1", "q", 0.0) == []
    assert r.login("a2", 1.0) == [Offer("c1", "a2", "q")]
    assert r.agents["a2"].state == RESERVED


def test_longest_idle_agent_gets_the_call() -> None:
    r = router()
    r.login("a3", 0.0)
    r.login("a1", 1.0)
    r.login("a2", 2.0)
    assert r.enqueue("c1", "q", 3.0) == [Offer("c1", "a3", "q")]
    assert r.enqueue("c2", "q", 3.0) == [Offer("c2", "a1", "q")]


def test_no_answer_makes_agent_not_ready_and_call_goes_to_head() -> None:
    r = router()
    r.login("a1", 0.0)
    r.enqueue("c1", "q", 1.0)
    r.enqueue("c2", "q", 2.0)
    assert r.no_answer("c1", 11.0) == []
    assert r.agents["a1"].state == NOT_READY and r.agents["a1"].reason == "no answer"
    assert [w.call_id for w in r.waiting("q")] == ["c1", "c2"]
    assert r.login("a2", 12.0) == [Offer("c1", "a2", "q")]


def test_wrap_up_delays_next_offer_by_queue_time() -> None:
    r = router(wrap=5.0)
    r.login("a1", 0.0)
    r.enqueue("c1", "q", 0.0)
    r.answered("c1", 1.0)
    assert r.agents["a1"].state == ON_CALL
    assert r.hangup("a1", 10.0) == []
    assert r.agents["a1"].state == WRAP_UP
    assert r.enqueue("c2", "q", 11.0) == []
    assert r.get_timer() == 15.0
    assert r.handle_timer(14.9) == []
    assert r.handle_timer(15.0) == [Offer("c2", "a1", "q")]


def test_caller_hangup_withdraws_offer() -> None:
    r = router()
    r.login("a1", 0.0)
    r.enqueue("c1", "q", 0.0)
    assert r.remove("c1", 2.0) == "a1"
    assert r.agents["a1"].state == AVAILABLE
    assert r.waiting("q") == []


def test_priority_overtakes_fifo_within_priority() -> None:
    r = router()
    r.enqueue("c1", "q", 0.0)
    r.enqueue("c2", "q", 1.0)
    r.enqueue("vip", "q", 2.0, priority=10)
    assert [w.call_id for w in r.waiting("q")] == ["vip", "c1", "c2"]


def test_illegal_transition_is_our_bug() -> None:
    r = router()
    with pytest.raises(AcdError):
        r.answered("nope", 0.0)


def test_every_change_is_reported() -> None:
    r = router()
    r.login("a1", 0.0)
    r.enqueue("c1", "q", 1.0)
    assert [(c.agent, c.old, c.new) for c in r.changes] == [
        ("a1", "logged-out", "available"),
        ("a1", "available", "reserved"),
    ]


def test_an_agent_dialling_out_gets_no_queue_call_until_it_hangs_up() -> None:
    r = router(wrap=5.0)
    r.login("a1", 0.0)
    r.dial("a1", 1.0, "out1")
    assert r.agents["a1"].state == ON_CALL and r.agents["a1"].call_id == "out1"
    assert r.enqueue("c1", "q", 2.0) == []  # nobody free
    assert r.hangup("a1", 10.0) == []
    assert r.agents["a1"].state == WRAP_UP
    assert r.handle_timer(15.0) == [Offer("c1", "a1", "q")]
    # The queue's statistics count queue calls only.
    assert r.queue_stats("q", 15.0).answered == 0
    with pytest.raises(AcdError, match="reserved"):
        r.dial("a1", 16.0, "out2")


def test_an_agent_on_a_break_returns_to_it_after_dialling_out() -> None:
    r = router(wrap=0.0)
    r.login("a1", 0.0, reason="lunch")
    r.dial("a1", 1.0, "out1")
    assert r.agents["a1"].state == ON_CALL
    r.enqueue("c1", "q", 2.0)
    assert r.hangup("a1", 3.0) == []
    assert r.agents["a1"].state == NOT_READY and r.agents["a1"].reason == "lunch"
    r.logout("a1", 4.0)
    with pytest.raises(AcdError, match="logged-out"):
        r.dial("a1", 5.0, "out2")
