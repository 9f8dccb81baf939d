"""Skills-based routing: required skills, proficiency ranking, escalation, several queues."""

from __future__ import annotations

import pytest

from acd.router import (
    AVAILABLE,
    AcdError,
    EscalationStep,
    Offer,
    QueueSpec,
    Router,
)
from acd.skills import merge, relax, satisfies, score

SKILLS = {
    "emma": {"cards": 9, "english": 9},
    "li": {"cards": 7, "mandarin": 9},
    "frank": {"cards": 4, "english": 8},
    "bob": {"english": 7},
}


def router(strategy: str = "skill-weighted", **spec: object) -> Router:
    queues = {
        "cards": QueueSpec("cards", ("emma", "li", "frank"), strategy=strategy, **spec),  # type: ignore[arg-type]
        "general": QueueSpec("general", ("bob", "emma")),
    }
    return Router(queues, skills=SKILLS)


def test_profiles_merge_relax_and_score() -> None:
    profile = merge({"cards": 5}, {"cards": 7, "english": 3})
    assert profile == (("cards", 7), ("english", 3))
    assert satisfies({"cards": 7, "english": 9}, profile)
    assert not satisfies({"cards": 6, "english": 9}, profile)
    assert score({"cards": 7, "english": 9}, profile) == 16
    assert relax(profile, lower_by=5) == (("cards", 2), ("english", 1))
    assert relax(profile, drop=["cards"]) == (("english", 3),)


def test_skill_weighted_rings_the_most_proficient_agent() -> None:
    r = router(required_skills={"cards": 5})
    for i, ext in enumerate(("li", "frank", "emma")):
        r.login(ext, i)
    assert r.enqueue("c1", "cards", 10) == [Offer("c1", "emma", "cards")]
    assert r.enqueue("c2", "cards", 11) == [Offer("c2", "li", "cards")]
    # frank (cards 4) is below the queue's minimum: the call waits.
    assert r.enqueue("c3", "cards", 12) == []
    assert [w.call_id for w in r.waiting("cards")] == ["c3"]


def test_call_skills_add_to_the_queue_requirement() -> None:
    r = router(required_skills={"cards": 3})
    for i, ext in enumerate(("emma", "li", "frank")):
        r.login(ext, i)
    assert r.enqueue("mandarin", "cards", 10, skills={"mandarin": 5}) == [
        Offer("mandarin", "li", "cards")
    ]
    assert r.enqueue("english", "cards", 11, skills={"english": 8}) == [
        Offer("english", "emma", "cards")
    ]
    assert r.calls["english"].profile == (("cards", 3), ("english", 8))


def test_other_strategies_filter_by_skill_but_keep_their_order() -> None:
    r = router("top-down", required_skills={"cards": 5})
    for i, ext in enumerate(("frank", "li", "emma")):
        r.login(ext, i)
    # Top-down over the qualified members: emma is listed first, frank is not qualified.
    assert [r.enqueue(c, "cards", 10)[0].agent for c in ("c1", "c2")] == ["emma", "li"]
    assert r.enqueue("c3", "cards", 10) == []


def test_a_freed_agent_takes_the_first_call_it_qualifies_for() -> None:
    r = router(required_skills={"cards": 1})
    r.enqueue("needs-mandarin", "cards", 0, skills={"mandarin": 5})
    r.enqueue("plain", "cards", 1)
    # frank cannot take the first call in line, so he takes the second.
    assert r.login("frank", 2) == [Offer("plain", "frank", "cards")]
    assert r.login("li", 3) == [Offer("needs-mandarin", "li", "cards")]


def test_escalation_lowers_the_minimum_then_drops_the_skill() -> None:
    steps = (
        EscalationStep(after=30, lower_by=2),
        EscalationStep(after=60, drop=("cards",), add_queues=("general",)),
    )
    r = router(required_skills={"cards": 7}, escalation=steps)
    r.login("frank", 0)  # cards 4
    r.login("bob", 0)  # general only, no cards at all
    assert r.enqueue("c1", "cards", 1) == []
    assert r.get_timer() == 31
    assert r.handle_timer(31) == []  # minimum 5 now: still not frank
    assert r.calls["c1"].profile == (("cards", 5),)
    assert r.get_timer() == 61
    # No skill needed any more, and general's members may help: frank, home queue, first.
    assert r.handle_timer(61) == [Offer("c1", "frank", "cards")]
    assert not r.calls["c1"].profile
    assert r.calls["c1"].queues == ("cards", "general")


def test_escalation_reaches_a_qualified_agent_and_then_another_queue() -> None:
    steps = (
        EscalationStep(after=30, lower_by=3),
        EscalationStep(after=60, drop=("cards",), add_queues=("general",)),
    )
    r = router(required_skills={"cards": 7}, escalation=steps)
    r.login("bob", 0)
    r.enqueue("c1", "cards", 1)
    r.enqueue("c2", "cards", 2)
    r.login("frank", 3)  # cards 4: not enough before the first step
    assert r.handle_timer(31) == [Offer("c1", "frank", "cards")]
    assert r.calls["c2"].profile == (("cards", 7),)
    assert r.handle_timer(32) == []  # c2's own step comes at 32
    assert r.calls["c2"].profile == (("cards", 4),)
    assert r.handle_timer(62) == [Offer("c2", "bob", "general")]
    assert r.queue_of("c2") == "cards"  # still the caller's queue


def test_escalation_while_ringing_applies_when_the_call_returns() -> None:
    r = router(required_skills={"cards": 8}, escalation=(EscalationStep(30, lower_by=1),))
    r.login("emma", 0)
    r.login("li", 0)
    r.enqueue("c1", "cards", 1)
    r.handle_timer(31)  # escalates while emma's phone rings
    assert r.calls["c1"].profile == (("cards", 7),)
    assert r.no_answer("c1", 32) == [Offer("c1", "li", "cards")]


def test_an_agent_serves_its_lowest_penalty_queue_first() -> None:
    queues = {
        "main": QueueSpec("main", ("a",)),
        "backup": QueueSpec("backup", ("a",), penalties={"a": 1}),
    }
    r = Router(queues)
    r.enqueue("b1", "backup", 0, priority=50)
    r.enqueue("m1", "main", 10)
    assert r.login("a", 11) == [Offer("m1", "a", "main")]


def test_skills_and_membership_change_at_run_time() -> None:
    r = router(required_skills={"cards": 5})
    r.login("frank", 0)
    r.enqueue("c1", "cards", 1)
    assert r.set_skills("frank", {"cards": 6}, 2) == [Offer("c1", "frank", "cards")]
    r.login("bob", 3)
    r.enqueue("c2", "cards", 4)
    assert r.add_member("cards", "bob", 5) == []  # a member now, but no cards skill
    assert r.set_skills("bob", {"cards": 5, "english": 7}, 6) == [Offer("c2", "bob", "cards")]
    assert r.members("cards") == ["emma", "li", "frank", "bob"]
    r.remove_member("cards", "bob", 7)
    assert r.members("cards") == ["emma", "li", "frank"]
    assert r.agents["bob"].queues == {"general": 0}


def test_bad_skill_levels_are_refused() -> None:
    with pytest.raises(AcdError, match="outside 1-10"):
        Router({}, skills={"a": {"cards": 11}})
    r = router()
    with pytest.raises(AcdError, match="outside 1-10"):
        r.enqueue("c1", "cards", 0, skills={"cards": 0})
    assert r.agents["emma"].state != AVAILABLE
