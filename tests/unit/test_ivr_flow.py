"""The IVR flow runner, driven by events and a fake clock over the shipped demo flow."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ccserver.config import load_config
from ivr.flow import Enqueue, FlowRun, Hangup, Play, Step, StopPrompt, Wait


@pytest.fixture(scope="module")
def bank():  # type: ignore[no-untyped-def]
    return load_config().flows["bank"]


def plays(actions: list[object]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Play)]


def steps(actions: list[object], kind: str) -> list[Step]:
    return [a for a in actions if isinstance(a, Step) and a.type == kind]


def test_greeting_then_menu_then_key_enqueues(bank) -> None:  # type: ignore[no-untyped-def]
    run = FlowRun(bank, "bank")
    first = run.start(0.0)
    assert plays(first) == ["Welcome to Demo Bank."]
    menu = run.prompt_finished(1.5)
    assert plays(menu) and "press 1" in plays(menu)[0]
    waited = run.prompt_finished(8.0)
    assert waited == [Wait(13.0)]
    out = run.digit("0", 9.0)
    assert Enqueue("general", 0) in out
    assert steps(out, "branch")[0].data == {"node": "main_menu", "digit": "0", "to": "agent"}
    assert run.finished


def test_key_during_menu_prompt_barges_in(bank) -> None:  # type: ignore[no-untyped-def]
    run = FlowRun(bank, "bank")
    run.start(0.0)
    run.prompt_finished(1.0)  # menu prompt now playing
    out = run.digit("1", 2.0)
    assert isinstance(out[1], StopPrompt)
    assert Enqueue("cards", 0) in out


def test_type_ahead_during_greeting_skips_to_choice(bank) -> None:  # type: ignore[no-untyped-def]
    run = FlowRun(bank, "bank")
    run.start(0.0)
    out = run.digit("0", 0.5)
    assert any(isinstance(a, StopPrompt) for a in out)
    assert Enqueue("general", 0) in out
    assert plays(out) == []  # the menu prompt is not played at all


def test_no_input_repeats_then_falls_back(bank) -> None:  # type: ignore[no-untyped-def]
    run = FlowRun(bank, "bank")
    run.start(0.0)
    run.prompt_finished(1.0)
    (wait,) = run.prompt_finished(5.0)
    assert isinstance(wait, Wait)
    assert run.handle_timer(wait.deadline - 0.001) == []  # not yet
    again = run.handle_timer(wait.deadline)
    assert steps(again, "no_input") and len(plays(again)) == 1  # one repeat (retries = 1)
    (wait2,) = run.prompt_finished(20.0)
    out = run.handle_timer(wait2.deadline)
    assert Enqueue("general", 0) in out  # no_input = "agent"


def test_wrong_key_counts_as_attempt(bank) -> None:  # type: ignore[no-untyped-def]
    run = FlowRun(bank, "bank")
    run.start(0.0)
    run.prompt_finished(1.0)
    first = run.digit("7", 2.0)
    assert steps(first, "no_match") and plays(first)  # prompt again
    second = run.digit("9", 3.0)
    assert Enqueue("general", 0) in second  # no_match = "agent" after two attempts


def test_hours_returns_to_menu(bank) -> None:  # type: ignore[no-untyped-def]
    run = FlowRun(bank, "bank")
    run.start(0.0)
    run.prompt_finished(1.0)
    out = run.digit("2", 2.0)
    assert plays(out) == ["Our branches are open Monday to Friday, nine to five."]
    back = run.prompt_finished(6.0)
    assert "press 1" in plays(back)[0]


def test_missing_node_ends_call() -> None:
    class N:
        kind = "play"
        prompt = "hi"
        next = "nowhere"

    class F:
        start = "a"
        language = "en"
        nodes: ClassVar[dict[str, N]] = {"a": N()}

    run = FlowRun(F(), "f")
    run.start(0.0)
    out = run.prompt_finished(1.0)
    assert isinstance(out[-1], Hangup) and out[-1].reason == "missing-node:nowhere"
