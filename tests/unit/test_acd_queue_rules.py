"""Queue rules: priority and aging, overflow, empty queues, announcements, callbacks, refusals."""

from __future__ import annotations

import pytest

from acd.router import (
    AVAILABLE,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    AcdError,
    AcdSettings,
    Announce,
    Departure,
    Destination,
    Offer,
    Overflow,
    QueueSpec,
    Router,
)


def one_queue(*, aging: float = 0.1, **spec: object) -> Router:
    queue = QueueSpec("q", ("a1", "a2"), **spec)  # type: ignore[arg-type]
    return Router({"q": queue}, settings=AcdSettings(aging_rate=aging))


def line(r: Router, queue: str = "q") -> list[str]:
    return [w.call_id for w in r.waiting(queue)]


# -- priority ---------------------------------------------------------------------


def test_tiers_set_the_base_priority() -> None:
    r = one_queue(aging=0.0)
    r.enqueue("std", "q", 0)
    r.enqueue("silver", "q", 1, tier="silver")
    r.enqueue("vip", "q", 2, tier="vip")
    r.enqueue("gold", "q", 3, tier="gold")
    assert line(r) == ["vip", "gold", "silver", "std"]
    assert r.calls["vip"].priority == 30


def test_unknown_tier_is_the_default_tier() -> None:
    r = one_queue()
    r.enqueue("c1", "q", 0, tier="platinum")
    assert r.calls["c1"].priority == 0


def test_waiting_ages_priority_so_nobody_starves() -> None:
    r = one_queue(aging=0.1)  # 10 s of waiting is worth one priority point
    r.enqueue("old", "q", 0)
    r.enqueue("silver", "q", 50, tier="silver")  # 10 points, but 'old' has 5 by now
    assert line(r) == ["silver", "old"]
    r.enqueue("silver-late", "q", 150, tier="silver")  # 'old' has 15 by now
    assert line(r) == ["silver", "old", "silver-late"]


def test_equal_effective_priority_is_first_come_first_served() -> None:
    r = one_queue(aging=0.1)
    r.enqueue("std", "q", 0)  # at t=100 its effective priority is 10
    r.enqueue("silver", "q", 100, tier="silver")  # 10 as well, but later
    assert line(r) == ["std", "silver"]
    assert r.calls["std"].effective_priority(0.1, 100) == r.calls["silver"].effective_priority(
        0.1, 100
    )


# -- ring no answer, refusals, abandon --------------------------------------------


def test_refusing_phone_is_not_rung_again_for_the_same_call_before_retry() -> None:
    r = one_queue(retry=5.0)
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    assert r.declined("c1", 2) == []
    assert r.agents["a1"].state == AVAILABLE
    assert r.enqueue("c2", "q", 3) == [Offer("c2", "a1", "q")]  # other calls, yes
    r.answered("c2", 4)
    r.hangup("a1", 5)
    assert r.handle_timer(10) == [Offer("c1", "a1", "q")]  # wrap-up over, retry passed


def test_refusal_retry_timer_offers_the_call_again() -> None:
    r = one_queue(retry=5.0)
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.declined("c1", 2)
    assert r.get_timer() == 7
    assert r.handle_timer(7) == [Offer("c1", "a1", "q")]


def test_refusal_hold_off_survives_the_timer_being_read_in_between() -> None:
    """The adapter reads get_timer after every event; that must not lose a retry."""
    r = one_queue(retry=5.0)
    r.login("a1", 0)
    r.login("a2", 0)
    r.enqueue("c1", "q", 1)  # a1
    assert r.declined("c1", 2) == [Offer("c1", "a2", "q")]
    assert r.get_timer() == 7
    r.no_answer("c1", 3)  # a2 rings out: c1 waits for a1's hold-off to end
    r.pause("a1", 4, "break")
    assert r.get_timer() == 7
    r.ready("a1", 5)
    assert r.handle_timer(7) == [Offer("c1", "a1", "q")]


def test_abandon_reports_the_wait_and_the_place() -> None:
    r = one_queue()
    r.enqueue("c1", "q", 0)
    r.enqueue("c2", "q", 5)
    assert r.abandon("c2", 35) == Departure("c2", "q", 30.0, 2, ())
    r.login("a1", 40)
    assert r.abandon("c1", 41) == Departure("c1", "q", 41.0, None, ("a1",))
    assert r.agents["a1"].state == AVAILABLE
    assert r.abandon("c1", 42) is None


def test_logout_while_ringing_puts_the_call_back_first() -> None:
    r = one_queue()
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.enqueue("c2", "q", 2)
    assert r.logout("a1", 3, "unregistered") == []
    assert line(r) == ["c1", "c2"]
    assert r.agents["a1"].reason == "unregistered"


# -- agents: reasons, pending breaks, wrap-up ---------------------------------------


def test_breaks_need_a_configured_reason_code() -> None:
    r = one_queue()
    r.login("a1", 0, reason="training")
    assert r.agents["a1"].state == NOT_READY and r.agents["a1"].reason == "training"
    with pytest.raises(AcdError, match="unknown not-ready reason 'nap'"):
        r.pause("a1", 1, "nap")
    r.pause("a1", 2, "lunch")
    assert r.agents["a1"].reason == "lunch"
    assert [c.event for c in r.changes] == ["login_paused", "pause"]


def test_break_asked_during_a_call_starts_after_its_wrap_up() -> None:
    r = one_queue(wrap_up=10)
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.answered("c1", 2)
    r.pause("a1", 3, "break")
    assert r.agents["a1"].state == ON_CALL
    r.hangup("a1", 60)
    r.enqueue("c2", "q", 61)
    assert r.handle_timer(70) == []
    assert r.agents["a1"].state == NOT_READY and r.agents["a1"].reason == "break"
    assert r.ready("a1", 80) == [Offer("c2", "a1", "q")]


def test_break_asked_while_ringing_starts_if_the_offer_is_withdrawn() -> None:
    r = one_queue()
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.pause("a1", 2, "break")
    assert r.agents["a1"].state == RESERVED
    r.remove("c1", 3)
    assert r.agents["a1"].state == NOT_READY


def test_ready_ends_wrap_up_early() -> None:
    r = one_queue(wrap_up=30)
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.answered("c1", 2)
    r.hangup("a1", 10)
    r.enqueue("c2", "q", 11)
    assert r.agents["a1"].state == WRAP_UP
    assert r.ready("a1", 12) == [Offer("c2", "a1", "q")]
    assert r.get_timer() is None  # the wrap-up timer died with the wrap-up


# -- overflow and empty queues ----------------------------------------------------------


def two_queues(**first: object) -> Router:
    queues = {
        "sales": QueueSpec("sales", ("a1",), **first),  # type: ignore[arg-type]
        "support": QueueSpec("support", ("a2",)),
    }
    return Router(queues)


def test_max_wait_overflows_to_another_queue_keeping_priority_age() -> None:
    r = two_queues(max_wait=60, overflow=Destination("queue", "support"))
    r.enqueue("early", "support", 30)
    r.enqueue("c1", "sales", 0)
    assert r.get_timer() == 60
    assert r.handle_timer(60) == []
    assert r.take_decisions() == [Overflow("c1", "queue", "support", "sales", "max-wait", 60.0)]
    assert r.queue_of("c1") == "support"
    assert line(r, "support") == ["c1", "early"]  # it has waited longest in all
    assert r.login("a2", 61) == [Offer("c1", "a2", "support")]


def test_max_wait_while_ringing_overflows_when_the_offer_fails() -> None:
    r = two_queues(max_wait=60, overflow=Destination("flow", "bank"))
    r.login("a1", 0)
    r.enqueue("c1", "sales", 0)
    r.handle_timer(60)
    assert r.decisions == []
    r.no_answer("c1", 61)
    assert r.take_decisions() == [Overflow("c1", "flow", "bank", "sales", "max-wait", 61.0)]
    assert r.queue_of("c1") is None


def test_overflow_to_callback_keeps_the_caller_in_place() -> None:
    r = two_queues(max_wait=60, overflow=Destination("callback"))
    r.enqueue("c1", "sales", 0)
    r.handle_timer(60)
    assert r.take_decisions() == [Overflow("c1", "callback", "sales", "sales", "max-wait", 60.0)]
    assert line(r, "sales") == ["c1"]
    assert r.request_callback("c1", 65, "+33123456789")
    assert r.login("a1", 70) == [Offer("c1", "a1", "sales", callback="+33123456789")]


def test_join_empty_refused_and_loops_end_in_hangup() -> None:
    queues = {
        "a": QueueSpec("a", ("x",), join_empty=False, overflow=Destination("queue", "b")),
        "b": QueueSpec("b", ("y",), join_empty=False, overflow=Destination("queue", "a")),
    }
    r = Router(queues)
    assert r.enqueue("c1", "a", 0) == []
    assert r.take_decisions() == [
        Overflow("c1", "queue", "b", "a", "join-empty", 0.0),
        Overflow("c1", "hangup", "", "b", "join-empty", 0.0),
    ]
    assert r.calls == {}
    r.login("y", 1)
    assert r.enqueue("c2", "a", 2) == [Offer("c2", "y", "b")]


def test_leave_empty_sends_waiting_callers_away_when_the_last_member_leaves() -> None:
    r = two_queues(leave_empty=True, overflow=Destination("voicemail", "sales"))
    r.login("a1", 0)
    r.enqueue("c1", "sales", 1)
    r.enqueue("c2", "sales", 2)
    r.enqueue("c3", "sales", 3)
    r.request_callback("c3", 4, "1234")
    r.logout("a1", 10)  # c1 was ringing a1: it comes back, then leaves with c2
    assert r.take_decisions() == [
        Overflow("c1", "voicemail", "sales", "sales", "leave-empty", 9.0),
        Overflow("c2", "voicemail", "sales", "sales", "leave-empty", 8.0),
    ]
    assert line(r, "sales") == ["c3"]  # a promised callback stays


# -- announcements -----------------------------------------------------------------------


def test_announcements_at_join_and_every_period() -> None:
    r = one_queue(
        announce_position=True, announce_wait=True, announce_every=30, wrap_up=0, service_level=20
    )
    r.login("a1", 0)
    r.enqueue("c0", "q", 0)
    r.answered("c0", 0)
    r.hangup("a1", 120)  # one handled call of 120 s teaches the estimate
    r.enqueue("busy", "q", 120)
    r.answered("busy", 120)
    r.enqueue("c1", "q", 121)
    r.enqueue("c2", "q", 122)
    assert r.take_decisions() == [Announce("c1", 1, 120.0, "q"), Announce("c2", 2, 240.0, "q")]
    r.abandon("c1", 140)
    assert r.handle_timer(152) == []
    assert r.take_decisions() == [Announce("c2", 1, 120.0, "q")]
    assert r.get_timer() == 182


def test_no_announcement_for_a_call_answered_at_once_or_called_back() -> None:
    r = one_queue(announce_position=True, announce_every=30)
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.enqueue("c2", "q", 2)
    assert r.take_decisions() == [Announce("c2", 1, None, "q")]
    r.request_callback("c2", 3, "555")
    r.handle_timer(100)
    assert r.decisions == []


def test_estimated_wait_is_unknown_without_history() -> None:
    r = one_queue(announce_wait=True)
    r.login("a1", 0)
    r.pause("a1", 0, "break")
    r.enqueue("c1", "q", 1)
    assert r.take_decisions() == [Announce("c1", None, None, "q")]


# -- callbacks -------------------------------------------------------------------------


def test_callback_keeps_the_place_and_is_offered_with_its_number() -> None:
    r = one_queue()
    r.enqueue("c1", "q", 0)
    r.enqueue("c2", "q", 1)
    assert r.request_callback("c1", 10, "0600000001")
    assert line(r) == ["c1", "c2"]
    assert r.login("a2", 20) == [Offer("c1", "a2", "q", callback="0600000001")]
    assert not r.request_callback("c1", 21, "0600000001")  # already ringing an agent
    r.answered("c1", 25)
    assert r.queue_stats("q", 25).callbacks == 0


def test_unknown_calls_and_queues_are_our_bugs() -> None:
    r = one_queue()
    with pytest.raises(AcdError):
        r.enqueue("c1", "nope", 0)
    r.enqueue("c1", "q", 0)
    with pytest.raises(AcdError):
        r.enqueue("c1", "q", 0)
    with pytest.raises(AcdError):
        r.request_callback("c9", 0, "1")
    with pytest.raises(AcdError):
        r.ready("zz", 0)
