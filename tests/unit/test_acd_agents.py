"""The agent state table and what every change records."""

from __future__ import annotations

import pytest

from acd.agents import AGENT_STATES, AGENT_TRANSITIONS, AcdError, next_state
from acd.router import (
    AVAILABLE,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    AcdSettings,
    QueueSpec,
    Router,
)


def test_the_table_covers_every_state_and_stays_inside_it() -> None:
    assert set(AGENT_TRANSITIONS) == set(AGENT_STATES)
    for moves in AGENT_TRANSITIONS.values():
        assert set(moves.values()) <= set(AGENT_STATES)
        assert moves.get("logout", "logged-out") == "logged-out"


def test_moves_outside_the_table_are_our_bug() -> None:
    assert next_state("a1", AVAILABLE, "offer") == RESERVED
    with pytest.raises(AcdError, match="'answer' not allowed in state available"):
        next_state("a1", AVAILABLE, "answer")


def test_every_change_has_its_event_time_reason_and_call() -> None:
    r = Router({"q": QueueSpec("q", ("a1",), wrap_up=2)})
    r.login("a1", 0)
    r.enqueue("c1", "q", 1)
    r.answered("c1", 2)
    r.hangup("a1", 30)
    r.handle_timer(32)
    r.pause("a1", 33, "lunch")
    assert [(c.event, c.new, c.at, c.reason, c.call_id) for c in r.changes] == [
        ("login", AVAILABLE, 0, None, None),
        ("offer", RESERVED, 1, None, "c1"),
        ("answer", ON_CALL, 2, None, "c1"),
        ("hangup", WRAP_UP, 30, None, "c1"),
        ("wrap_done", AVAILABLE, 32, None, None),
        ("pause", NOT_READY, 33, "lunch", None),
    ]


def test_hold_time_is_not_talk_time() -> None:
    r = Router({"q": QueueSpec("q", ("a1",), wrap_up=5)}, settings=AcdSettings(stats_window=600))
    r.login("a1", 0)
    r.enqueue("c1", "q", 0)
    r.answered("c1", 10)
    r.hold("a1", 20)
    r.retrieve("a1", 50)
    r.hangup("a1", 100)
    r.ready("a1", 103)
    stats = r.agent_stats("a1", 110)
    assert (stats.calls, stats.talk, stats.hold, stats.wrap) == (1, 60.0, 30.0, 3.0)
    assert r.agents["a1"].talk_time == 60.0
    assert stats.occupancy == pytest.approx(103 / 110)
    assert r.queue_stats("q", 110).aht == 93.0


def test_unknown_agents_are_ignored_by_phone_events_and_refused_by_supervisor_ones() -> None:
    r = Router({"q": QueueSpec("q", ("a1",))})
    assert r.login("zz", 0) == [] and r.logout("zz", 0) == [] and r.hangup("zz", 0) == []
    with pytest.raises(AcdError):
        r.pause("zz", 0, "break")
    with pytest.raises(AcdError, match="logged out"):
        r.pause("a1", 0, "break")
