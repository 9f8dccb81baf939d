"""Input nodes in detail: digits collected, spoken answers, barge-in by voice.

Speech results are `ivr.speech.SpeechResult` values, as the recogniser
returns them; the flow never sees audio.
"""

from __future__ import annotations

import tomllib
from typing import Any

from ccserver.config.flows import Flow
from ivr.flow import (
    SPEECH_RESULT_WAIT,
    Enqueue,
    FlowRun,
    Hangup,
    Play,
    SetAttribute,
    StartSpeech,
    Step,
    StopPrompt,
    StopSpeech,
    Wait,
)
from ivr.speech import SpeechResult


def make_flow(text: str, name: str = "t") -> Flow:
    data = tomllib.loads(text)
    settings = dict(data.get("flow", {}))
    settings.setdefault("language", "en")
    return Flow.model_validate({"name": name, **settings, "nodes": data["nodes"]})


def plays(actions: list[Any]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Play)]


def steps(actions: list[Any], kind: str) -> list[dict[str, Any]]:
    return [a.data for a in actions if isinstance(a, Step) and a.type == kind]


def kinds(actions: list[Any]) -> list[str]:
    return [a.type if isinstance(a, Step) else type(a).__name__ for a in actions]


def heard(phrase: str | None, confidence: float = 0.95, outcome: str = "match") -> SpeechResult:
    return SpeechResult(outcome, phrase, confidence, phrase or "", 1.0)  # type: ignore[arg-type]


NOTHING = SpeechResult("no-input", None, 0.0, "", 5.0)


# -- collect --------------------------------------------------------------------------------

COLLECT = """
[flow]
start = "ask"
attach = ["account"]
[flow.defaults]
fallback = "agent"
[nodes.ask]
kind = "collect"
prompt = "Enter your account number, then hash."
variable = "account"
min_length = 4
max_length = 8
inter_digit_timeout = 2
timeout = 6
pattern = "[1-9][0-9]*"
next = "done"
[nodes.done]
kind = "play"
prompt = "Account {account:digits}."
[nodes.agent]
kind = "queue"
queue = "general"
"""


def collecting(text: str = COLLECT) -> FlowRun:
    run = FlowRun(make_flow(text))
    run.start(0.0)
    return run


def test_digits_until_the_terminator() -> None:
    run = collecting()
    first = run.digit("1", 1.0)  # barges into the prompt
    assert kinds(first) == ["digit", "StopPrompt", "Wait"]
    assert first[-1] == Wait(3.0)  # the inter-digit timeout now
    for n, key in enumerate("2345"):
        assert run.digit(key, 1.5 + n * 0.5)[-1] == Wait(3.5 + n * 0.5)
    out = run.digit("#", 4.0)
    assert steps(out, "collected") == [
        {"node": "ask", "variable": "account", "value": "12345", "ended_by": "terminator"}
    ]
    assert SetAttribute("account", "12345") in out
    assert plays(out) == ["Account 1 2 3 4 5."]
    assert run.variables["account"] == "12345"


def test_max_length_ends_at_once() -> None:
    run = collecting()
    for key in "1234567":
        run.digit(key, 1.0)
    out = run.digit("8", 1.1)
    assert steps(out, "collected")[0]["ended_by"] == "max_length"


def test_inter_digit_timeout_ends_the_input() -> None:
    run = collecting()
    run.prompt_finished(2.0)
    for n, key in enumerate("98765"):
        run.digit(key, 3.0 + n)
    assert run.handle_timer(8.9) == []
    out = run.handle_timer(9.0)
    assert steps(out, "collected")[0] == {
        "node": "ask",
        "variable": "account",
        "value": "98765",
        "ended_by": "timeout",
    }


def test_first_digit_timeout_is_no_input() -> None:
    run = collecting()
    assert run.prompt_finished(2.0) == [Wait(8.0)]
    out = run.handle_timer(8.0)
    assert steps(out, "no_input") == [{"node": "ask", "attempt": 1}]


def test_too_short_and_pattern_are_no_match() -> None:
    run = collecting()
    run.digit("1", 1.0)
    out = run.digit("#", 1.5)
    assert steps(out, "no_match") == [
        {"node": "ask", "attempt": 1, "input": "1", "reason": "too short"}
    ]
    for key in "0123":
        run.digit(key, 3.0)
    out = run.digit("#", 3.5)
    assert steps(out, "no_match")[0]["reason"] == "pattern"
    for key in "0000":
        run.digit(key, 5.0)
    out = run.digit("#", 5.5)  # third wrong attempt: the default fallback
    assert out[-1] == Enqueue("general")


def test_terminator_alone_is_no_match() -> None:
    run = collecting()
    out = run.digit("#", 1.0)
    assert steps(out, "no_match") == [{"node": "ask", "attempt": 1, "reason": "empty"}]


def test_masked_digits_stay_out_of_the_timeline() -> None:
    run = collecting(COLLECT.replace('variable = "account"', 'variable = "account"\nmask = true'))
    for key in "4321#":
        out = run.digit(key, 1.0)
    assert steps(out, "collected")[0]["value"] == "****"
    assert run.variables["account"] == "4321"


def test_digits_typed_ahead_feed_a_collect() -> None:
    text = COLLECT.replace('start = "ask"', 'start = "intro"') + (
        '[nodes.intro]\nkind = "play"\nprompt = "Hello."\nnext = "ask"\n'
    )
    run = FlowRun(make_flow(text))
    run.start(0.0)
    out = run.digit("5", 0.5)  # stops the greeting; the prompt of 'ask' is skipped
    assert kinds(out) == ["digit", "StopPrompt", "node", "Wait"]
    for key in "555":
        run.digit(key, 0.6)
    assert steps(run.digit("#", 0.7), "collected")[0]["value"] == "5555"


def test_no_terminator_configured_makes_hash_a_digit() -> None:
    text = COLLECT.replace('pattern = "[1-9][0-9]*"', 'terminator = ""')
    run = collecting(text)
    for key in "12#4":
        run.digit(key, 1.0)
    out = run.handle_timer(3.0)
    assert steps(out, "collected")[0]["value"] == "12#4"


# -- menus by voice ------------------------------------------------------------------------

VOICE_MENU = """
[flow]
start = "menu"
[nodes.menu]
kind = "menu"
prompt = { en = "Say agent, or press 0.", ko = "상담원 연결이라고 말씀하세요." }
choices = { "0" = "agent", "1" = "cards" }
phrases.en = { "agent" = "agent", "card services" = "cards" }
phrases.ko = { "상담원 연결" = "agent" }
min_confidence = 0.6
timeout = 5
retries = 1
no_match = "cards"
[nodes.agent]
kind = "queue"
queue = "general"
[nodes.cards]
kind = "queue"
queue = "cards"
"""


def voice_menu(language: str = "en") -> tuple[FlowRun, list[Any]]:
    run = FlowRun(make_flow(VOICE_MENU), variables={"language": language})
    return run, run.start(0.0)


def test_listening_starts_with_a_prompt_that_allows_barge_in() -> None:
    _, out = voice_menu()
    assert kinds(out) == ["node", "prompt", "Play", "StartSpeech"]
    assert out[-1] == StartSpeech(("agent", "card services"), "en", 5.0, 0.6)


def test_the_grammar_is_in_the_callers_language() -> None:
    _, out = voice_menu("ko-KR")
    assert out[-1] == StartSpeech(("상담원 연결",), "ko-KR", 5.0, 0.6)
    assert plays(out) == ["상담원 연결이라고 말씀하세요."]


def test_no_phrases_in_the_callers_language_means_keys_only() -> None:
    _, out = voice_menu("zh")
    assert not any(isinstance(a, StartSpeech) for a in out)


def test_the_start_of_speech_stops_the_prompt() -> None:
    run, _ = voice_menu("ko")
    out = run.speech_started(1.2)
    assert out == [
        Step("speech_started", {"node": "menu"}),
        StopPrompt(),
        Wait(1.2 + SPEECH_RESULT_WAIT),
    ]
    result = run.speech_result(heard("상담원 연결", 0.93), 2.5)
    assert steps(result, "speech") == [
        {
            "node": "menu",
            "outcome": "match",
            "phrase": "상담원 연결",
            "confidence": 0.93,
            "text": "상담원 연결",
        }
    ]
    assert steps(result, "branch") == [{"node": "menu", "phrase": "상담원 연결", "to": "agent"}]
    assert result[-1] == Enqueue("general")


def test_a_match_without_speech_started_still_stops_the_prompt() -> None:
    run, _ = voice_menu()
    out = run.speech_result(heard("card services"), 1.0)
    assert kinds(out) == ["speech", "StopPrompt", "branch", "node", "Enqueue"]


def test_low_confidence_is_a_no_match() -> None:
    run, _ = voice_menu()
    run.prompt_finished(2.0)
    out = run.speech_result(heard("agent", 0.41), 3.0)
    assert steps(out, "speech")[0]["low_confidence"] is True
    assert steps(out, "no_match") == [{"node": "menu", "attempt": 1, "by": "speech"}]
    # Asked again: apology, prompt, and a fresh recogniser.
    assert plays(out) == ["Sorry, I did not understand."]
    assert isinstance(out[-1], StartSpeech)


def test_out_of_grammar_speech_is_a_no_match_and_exhausts_to_no_match_path() -> None:
    run, _ = voice_menu()
    run.prompt_finished(2.0)
    run.speech_result(heard(None, 0.0, "no-match"), 3.0)
    out = run.speech_result(heard("agent agent", 0.9), 4.0)  # not one phrase
    assert out[-1] == Enqueue("cards")  # no_match = "cards"


def test_recogniser_no_input_during_the_prompt_only_restarts_listening() -> None:
    run, _ = voice_menu()
    out = run.speech_result(NOTHING, 4.0)  # a long prompt is still playing
    assert out == [StartSpeech(("agent", "card services"), "en", 5.0, 0.6)]
    run.prompt_finished(6.0)  # Wait(11.0): the flow times no-input from here
    assert run.speech_result(NOTHING, 9.0) == [
        StartSpeech(("agent", "card services"), "en", 5.0, 0.6)
    ]
    out = run.handle_timer(11.0)
    assert kinds(out)[:2] == ["StopSpeech", "no_input"]


def test_recogniser_no_input_once_speech_began_counts() -> None:
    run, _ = voice_menu()
    run.speech_started(1.0)
    out = run.speech_result(NOTHING, 3.0)
    assert steps(out, "no_input") == [{"node": "menu", "attempt": 1, "by": "speech"}]


def test_a_key_while_listening_stops_the_recogniser() -> None:
    run, _ = voice_menu()
    run.prompt_finished(2.0)
    out = run.digit("0", 3.0)
    assert kinds(out) == ["digit", "StopSpeech", "branch", "node", "Enqueue"]
    assert run.speech_result(heard("agent"), 3.1) == []  # dropped, as asked


def test_speech_that_never_resolves_is_a_no_match() -> None:
    run, _ = voice_menu()
    run.speech_started(1.0)
    out = run.handle_timer(1.0 + SPEECH_RESULT_WAIT)
    assert kinds(out)[:2] == ["StopSpeech", "no_match"]


def test_without_barge_in_listening_starts_after_the_prompt() -> None:
    run = FlowRun(make_flow(VOICE_MENU.replace("retries = 1", "retries = 1\nbarge_in = false")))
    out = run.start(0.0)
    assert not any(isinstance(a, StartSpeech) for a in out)
    assert run.speech_started(0.5) == []
    after = run.prompt_finished(2.0)
    assert after == [Wait(7.0), StartSpeech(("agent", "card services"), "en", 5.0, 0.6)]


def test_leaving_the_node_stops_the_recogniser() -> None:
    text = VOICE_MENU.replace('no_match = "cards"', 'no_match = "cards"\nretries = 0').replace(
        "retries = 1\n", ""
    )
    run = FlowRun(make_flow(text))
    run.start(0.0)
    run.prompt_finished(1.0)
    out = run.handle_timer(6.0)
    assert out[0] == StopSpeech()
    assert out[-1] == Hangup("no_input-exhausted")
    assert sum(isinstance(a, StopSpeech) for a in out) == 1


# -- the speech node ---------------------------------------------------------------------

SPEECH = """
[flow]
start = "confirm"
[nodes.confirm]
kind = "speech"
prompt = "Is that right? Say yes or no, or press 1 or 2."
variable = "confirmed"
phrases.en = { "yes" = "yes", "no" = "no" }
phrases.ko = ["네", "아니요"]
keys = { "1" = "yes", "2" = "no" }
next = "check"
[nodes.check]
kind = "branch"
cases = [{ var = "confirmed", one_of = ["yes", "네"], next = "ok" }]
default = "bye"
[nodes.ok]
kind = "play"
prompt = "Done."
[nodes.bye]
kind = "hangup"
"""


def test_speech_answer_goes_into_the_variable() -> None:
    run = FlowRun(make_flow(SPEECH))
    run.start(0.0)
    out = run.speech_result(heard("yes"), 2.0)
    assert steps(out, "answer") == [
        {"node": "confirm", "variable": "confirmed", "value": "yes", "phrase": "yes"}
    ]
    assert steps(out, "branch") == [{"node": "check", "to": "ok", "case": 0}]
    assert plays(out) == ["Done."]


def test_speech_node_phrase_lists_and_keys() -> None:
    run = FlowRun(make_flow(SPEECH), variables={"language": "ko"})
    assert run.start(0.0)[-1] == StartSpeech(("네", "아니요"), "ko", 5.0, 0.5)
    out = run.speech_result(heard("네"), 2.0)
    assert run.variables["confirmed"] == "네" and plays(out) == ["Done."]
    keyed = FlowRun(make_flow(SPEECH))
    keyed.start(0.0)
    out = keyed.digit("2", 1.0)
    assert steps(out, "answer")[0] == {
        "node": "confirm",
        "variable": "confirmed",
        "value": "no",
        "digit": "2",
    }
    assert out[-1] == Hangup("hangup-node")
