"""The IVR flow engine, driven by scripted events and a fake clock.

Each test writes the few nodes it needs as TOML, the way a flow author would,
and checks the actions (what the call model is asked to do) and the timeline
steps that come out.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from ccserver.config.flows import Flow
from ivr.flow import (
    MAX_SUBFLOWS,
    Enqueue,
    FlowError,
    FlowRun,
    Hangup,
    Lookup,
    Play,
    Record,
    RequestCallback,
    SetAttribute,
    Step,
    StopRecording,
    SurveyScore,
    Transfer,
    Wait,
)


def make_flow(text: str, name: str = "t") -> Flow:
    """A flow from the text of a flow file (without the config directory around it)."""
    data = tomllib.loads(text)
    settings = dict(data.get("flow", {}))
    settings.setdefault("language", "en")
    return Flow.model_validate({"name": name, **settings, "nodes": data["nodes"]})


def plays(actions: list[Any]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Play)]


def steps(actions: list[Any], kind: str) -> list[dict[str, Any]]:
    return [a.data for a in actions if isinstance(a, Step) and a.type == kind]


def kinds(actions: list[Any]) -> list[str]:
    """Actions by name, steps by their type: the shape of an answer at a glance."""
    return [a.type if isinstance(a, Step) else type(a).__name__ for a in actions]


MENU = """
[flow]
start = "welcome"
[flow.defaults]
fallback = "agent"

[nodes.welcome]
kind = "play"
prompt = "Welcome."
next = "menu"

[nodes.menu]
kind = "menu"
prompt = "Press 1 for cards, 0 for an agent."
choices = { "1" = "cards", "0" = "agent" }
timeout = 4
retries = 1

[nodes.cards]
kind = "queue"
queue = "cards"

[nodes.agent]
kind = "queue"
queue = "general"
"""


@pytest.fixture
def menu() -> FlowRun:
    return FlowRun(make_flow(MENU))


def at_menu(run: FlowRun) -> None:
    run.start(0.0)
    run.prompt_finished(1.0)


# -- play and menu -------------------------------------------------------------------


def test_greeting_then_menu_then_key_enqueues(menu: FlowRun) -> None:
    first = menu.start(0.0)
    assert kinds(first) == ["node", "prompt", "Play"]
    assert steps(first, "node") == [{"node": "welcome", "kind": "play"}]
    assert first[-1] == Play("Welcome.", "en", True)
    assert plays(menu.prompt_finished(1.5)) == ["Press 1 for cards, 0 for an agent."]
    assert menu.prompt_finished(6.0) == [Wait(10.0)]
    assert menu.deadline == 10.0
    out = menu.digit("0", 7.0)
    assert kinds(out) == ["digit", "branch", "node", "Enqueue"]
    assert steps(out, "branch") == [{"node": "menu", "digit": "0", "to": "agent"}]
    assert out[-1] == Enqueue("general", 0, {}, None)
    assert menu.finished and menu.status == "queued" and menu.deadline is None


def test_key_during_menu_prompt_barges_in(menu: FlowRun) -> None:
    at_menu(menu)
    out = menu.digit("1", 2.0, method="rfc4733")
    assert kinds(out) == ["digit", "StopPrompt", "branch", "node", "Enqueue"]
    assert steps(out, "digit") == [{"digit": "1", "node": "menu", "method": "rfc4733"}]
    assert out[-1] == Enqueue("cards")


def test_type_ahead_during_greeting_skips_the_menu_prompt(menu: FlowRun) -> None:
    menu.start(0.0)
    out = menu.digit("0", 0.5)
    assert kinds(out) == ["digit", "StopPrompt", "node", "branch", "node", "Enqueue"]
    assert plays(out) == []  # the menu prompt is not played at all


def test_type_ahead_is_kept_when_the_announcement_cannot_be_interrupted() -> None:
    run = FlowRun(
        make_flow(MENU.replace('prompt = "Welcome."', 'prompt = "Welcome."\nbarge_in = false'))
    )
    run.start(0.0)
    assert kinds(run.digit("1", 0.5)) == ["digit"]  # no StopPrompt: it must be heard
    out = run.prompt_finished(1.0)
    assert kinds(out) == ["node", "branch", "node", "Enqueue"]
    assert out[-1] == Enqueue("cards")


def test_several_keys_typed_ahead_cross_nested_menus() -> None:
    text = MENU.replace('"1" = "cards"', '"1" = "sub"').replace(
        'prompt = "Welcome."', 'prompt = "Welcome."\nbarge_in = false'
    )
    sub = '[nodes.sub]\nkind = "menu"\nprompt = "Press 2."\nchoices = { "2" = "cards" }\n'
    run = FlowRun(make_flow(text + sub))
    run.start(0.0)
    run.digit("1", 0.2)
    run.digit("2", 0.3)
    out = run.prompt_finished(1.0)
    assert kinds(out) == ["node", "branch", "node", "branch", "node", "Enqueue"]
    assert out[-1] == Enqueue("cards")
    assert plays(out) == []  # neither menu prompt


def test_no_input_apologises_repeats_then_falls_back(menu: FlowRun) -> None:
    at_menu(menu)
    (wait,) = menu.prompt_finished(5.0)
    assert isinstance(wait, Wait) and wait.deadline == 9.0
    assert menu.handle_timer(8.999) == []  # not yet
    again = menu.handle_timer(9.0)
    assert steps(again, "no_input") == [{"node": "menu", "attempt": 1}]
    assert plays(again) == ["Sorry, I did not hear anything."]  # the flow default
    assert plays(menu.prompt_finished(10.0)) == ["Press 1 for cards, 0 for an agent."]
    (wait2,) = menu.prompt_finished(14.0)
    out = menu.handle_timer(wait2.deadline)
    assert kinds(out) == ["no_input", "fallback", "node", "Enqueue"]
    assert steps(out, "fallback") == [{"node": "menu", "why": "no_input", "to": "agent"}]


def test_wrong_key_counts_as_an_attempt(menu: FlowRun) -> None:
    at_menu(menu)
    first = menu.digit("7", 2.0)
    assert steps(first, "no_match") == [{"node": "menu", "attempt": 1, "digit": "7"}]
    assert plays(first) == ["Sorry, I did not understand."]
    second = menu.digit("9", 3.0)  # barges into the apology
    assert kinds(second)[:3] == ["digit", "StopPrompt", "no_match"]
    assert second[-1] == Enqueue("general")  # flow default fallback


def test_silence_then_a_wrong_key_falls_back_by_the_last_reason() -> None:
    text = MENU.replace("retries = 1", 'retries = 1\nno_input = "cards"\nno_match = "agent"')
    run = FlowRun(make_flow(text))
    at_menu(run)
    (wait,) = run.prompt_finished(5.0)
    run.handle_timer(wait.deadline)
    out = run.digit("5", 12.0)
    assert steps(out, "fallback")[0]["why"] == "no_match"
    assert out[-1] == Enqueue("general")


def test_without_any_fallback_the_call_ends() -> None:
    text = MENU.replace('fallback = "agent"', "").replace("retries = 1", "retries = 0")
    run = FlowRun(make_flow(text))
    at_menu(run)
    out = run.digit("5", 2.0)
    assert out[-1] == Hangup("no_match-exhausted")
    assert run.finished and run.status == "ended"


def test_node_settings_beat_flow_defaults() -> None:
    text = MENU.replace("timeout = 4\n", "").replace(
        "[flow.defaults]\n", '[flow.defaults]\ntimeout = 7\nno_input_prompt = "Hello?"\n'
    )
    run = FlowRun(make_flow(text))
    at_menu(run)
    assert run.prompt_finished(3.0) == [Wait(10.0)]
    assert plays(run.handle_timer(10.0)) == ["Hello?"]


def test_key_is_ignored_during_a_prompt_without_barge_in() -> None:
    run = FlowRun(make_flow(MENU.replace("retries = 1", "retries = 1\nbarge_in = false")))
    at_menu(run)
    out = run.digit("1", 1.5)
    assert out == [Step("digit", {"digit": "1", "node": "menu", "ignored": True})]
    run.prompt_finished(3.0)
    assert run.digit("1", 3.5)[-1] == Enqueue("cards")


def test_stale_events_are_ignored(menu: FlowRun) -> None:
    at_menu(menu)
    menu.digit("1", 2.0)  # queued
    assert menu.prompt_finished(2.5) == []  # the stopped prompt reporting late
    assert menu.handle_timer(100.0) == []
    late = menu.digit("5", 3.0)
    assert late == [Step("digit", {"digit": "5", "node": "cards", "ignored": True})]


def test_a_timer_armed_before_the_key_does_nothing(menu: FlowRun) -> None:
    at_menu(menu)
    menu.prompt_finished(2.0)  # Wait(6.0)
    menu.digit("7", 3.0)  # wrong key: the apology plays, no deadline now
    assert menu.deadline is None
    assert menu.handle_timer(6.0) == []


def test_start_twice_is_our_bug(menu: FlowRun) -> None:
    menu.start(0.0)
    with pytest.raises(FlowError):
        menu.start(1.0)


def test_missing_node_ends_the_call() -> None:
    flow = make_flow('[flow]\nstart = "a"\n[nodes.a]\nkind = "play"\nprompt = "hi"\nnext = "x"\n')
    run = FlowRun(flow)
    run.start(0.0)
    assert run.prompt_finished(1.0)[-1] == Hangup("missing-node:x")


def test_a_loop_without_waiting_is_cut() -> None:
    flow = make_flow(
        '[flow]\nstart = "a"\n'
        '[nodes.a]\nkind = "set"\nadd = { n = 1 }\nnext = "b"\n'
        '[nodes.b]\nkind = "goto"\nnode = "a"\n'
    )
    out = FlowRun(flow).start(0.0)
    assert out[-1] == Hangup("loop")


def test_end_of_flow_hangs_up() -> None:
    run = FlowRun(make_flow('[flow]\nstart = "a"\n[nodes.a]\nkind = "play"\nprompt = "Bye."\n'))
    run.start(0.0)
    assert run.prompt_finished(1.0) == [Hangup("flow-end")]


def test_hangup_node_and_reason() -> None:
    flow = make_flow('[flow]\nstart = "a"\n[nodes.a]\nkind = "hangup"\nreason = "closed"\n')
    assert FlowRun(flow).start(0.0)[-1] == Hangup("closed")


# -- prompts, languages, voices ---------------------------------------------------------

LANGUAGES = """
[flow]
start = "choose"
attach = ["language"]

[nodes.choose]
kind = "menu"
prompt = [{ en = "For English, press 1." }, { ko = "한국어는 2번." }]
choices = { "1" = "hello", "2" = "korean" }

[nodes.korean]
kind = "set"
values = { language = "ko" }
next = "hello"

[nodes.hello]
kind = "play"
prompt = [{ en = "Hello {name}.", ko = "{name}님, 안녕하세요." }, "Goodbye."]
"""


def test_segments_play_one_after_the_other_each_in_its_voice() -> None:
    run = FlowRun(make_flow(LANGUAGES), variables={"name": "Kim"})
    first = run.start(0.0)
    assert first[-1] == Play("For English, press 1.", "en")
    second = run.prompt_finished(1.0)
    assert second == [
        Step("prompt", {"node": "choose", "voice": "ko", "text": "한국어는 2번."}),
        Play("한국어는 2번.", "ko"),
    ]
    assert run.prompt_finished(2.0) == [Wait(7.0)]


def test_setting_the_language_changes_later_prompts_and_their_voice() -> None:
    run = FlowRun(make_flow(LANGUAGES), variables={"name": "Kim"})
    run.start(0.0)
    out = run.digit("2", 0.5)
    assert SetAttribute("language", "ko") in out
    assert [a for a in out if isinstance(a, Play)] == [Play("Kim님, 안녕하세요.", "ko")]
    # Text written for any language is said in the caller's.
    assert run.prompt_finished(2.0)[-1] == Play("Goodbye.", "ko")


def test_a_prompt_missing_the_callers_language_uses_the_flows() -> None:
    run = FlowRun(make_flow(LANGUAGES), variables={"name": "Kim", "language": "zh"})
    run.start(0.0)
    out = run.digit("1", 0.5)
    assert out[-1] == Play("Hello Kim.", "en")


def test_an_unset_variable_is_left_out_and_noted() -> None:
    run = FlowRun(make_flow(LANGUAGES))
    run.start(0.0)
    out = run.digit("1", 0.5)
    assert steps(out, "prompt") == [
        {"node": "hello", "voice": "en", "text": "Hello .", "missing": ["name"]}
    ]


def test_audio_prompts_play_files() -> None:
    flow = make_flow(
        '[flow]\nstart = "a"\n[nodes.a]\nkind = "play"\n'
        'audio = { en = "prompts/hello-en.wav", ko = "prompts/hello-ko.wav" }\n'
    )
    out = FlowRun(flow, variables={"language": "ko"}).start(0.0)
    assert out[-1] == Play("", "ko", True, "prompts/hello-ko.wav")
    assert steps(out, "prompt") == [{"node": "a", "voice": "ko", "file": "prompts/hello-ko.wav"}]


# -- hand-offs: queue, transfer, callback, voicemail -------------------------------------


def test_queue_priority_skills_and_tier_come_from_variables() -> None:
    flow = make_flow(
        '[flow]\nstart = "q"\n[nodes.q]\nkind = "queue"\nqueue = "general"\n'
        'priority = "{priority}"\nskills = { "{skill}" = 5, cards = 3 }\n'
    )
    vip = FlowRun(flow, variables={"priority": 10, "skill": "korean", "tier": "VIP"})
    assert vip.start(0.0)[-1] == Enqueue("general", 10, {"korean": 5, "cards": 3}, "VIP")
    nobody = FlowRun(flow)
    assert nobody.start(0.0)[-1] == Enqueue("general", 0, {"cards": 3}, None)


def test_transfer_to_a_number_and_its_failure_path() -> None:
    flow = make_flow(
        '[flow]\nstart = "t"\n'
        '[nodes.t]\nkind = "transfer"\nnumber = "+33{manager}"\nfailed = "sorry"\n'
        '[nodes.sorry]\nkind = "play"\nprompt = "Nobody answers."\n'
    )
    run = FlowRun(flow, variables={"manager": "612345678"})
    out = run.start(0.0)
    assert out[-1] == Transfer("number", "+33612345678")
    assert run.status == "transferred" and not run.wants_survey
    back = run.transfer_failed(5.0, "486 Busy Here")
    assert steps(back, "transfer_failed") == [{"node": "t", "reason": "486 Busy Here"}]
    assert plays(back) == ["Nobody answers."]
    assert run.status == "running"


def test_transfer_to_an_extension_without_failure_path_hangs_up() -> None:
    flow = make_flow('[flow]\nstart = "t"\n[nodes.t]\nkind = "transfer"\nextension = "1001"\n')
    run = FlowRun(flow)
    assert run.start(0.0)[-1] == Transfer("extension", "1001")
    assert run.transfer_failed(1.0)[-1] == Hangup("transfer-failed")


def test_callback_to_the_callers_number_or_an_entered_one() -> None:
    text = (
        '[flow]\nstart = "c"\n[nodes.c]\nkind = "callback"\nqueue = "general"\nnext = "bye"\n'
        '[nodes.bye]\nkind = "hangup"\n'
    )
    out = FlowRun(make_flow(text), variables={"caller": "0600000001"}).start(0.0)
    assert RequestCallback("0600000001", "general") in out
    assert steps(out, "callback") == [{"node": "c", "number": "0600000001", "queue": "general"}]
    assert out[-1] == Hangup("hangup-node")
    entered = make_flow(text.replace('kind = "callback"', 'kind = "callback"\nnumber = "{other}"'))
    out = FlowRun(entered, variables={"other": "0611111111"}).start(0.0)
    assert RequestCallback("0611111111", "general") in out


def test_callback_without_a_number_is_noted_not_requested() -> None:
    flow = make_flow('[flow]\nstart = "c"\n[nodes.c]\nkind = "callback"\n')
    out = FlowRun(flow, variables={"caller": "anonymous"}).start(0.0)
    assert not any(isinstance(a, RequestCallback) for a in out)
    assert steps(out, "callback")[0]["error"] == "no number"


VOICEMAIL = """
[flow]
start = "vm"
[nodes.vm]
kind = "voicemail"
prompt = "Leave a message after the tone."
max_seconds = 60
next = "thanks"
[nodes.thanks]
kind = "play"
prompt = "Thank you."
"""


def test_voicemail_greets_records_and_goes_on() -> None:
    run = FlowRun(make_flow(VOICEMAIL))
    assert plays(run.start(0.0)) == ["Leave a message after the tone."]
    out = run.prompt_finished(2.0)
    assert out == [Step("record", {"node": "vm", "max_seconds": 60.0}), Record(60.0, True)]
    done = run.recording_done("/data/vm/1.wav", 12.345, 15.0)
    assert steps(done, "recorded") == [{"node": "vm", "path": "/data/vm/1.wav", "seconds": 12.35}]
    assert plays(done) == ["Thank you."]


def test_a_key_skips_the_greeting_and_another_ends_the_recording() -> None:
    run = FlowRun(make_flow(VOICEMAIL))
    run.start(0.0)
    out = run.digit("#", 0.5)
    assert kinds(out) == ["digit", "StopPrompt", "record", "Record"]
    assert run.digit("#", 5.0)[-1] == StopRecording()
    assert run.digit("#", 5.1) == [Step("digit", {"digit": "#", "node": "vm"})]  # once
    assert plays(run.recording_done("/data/vm/2.wav", 4.0, 5.2)) == ["Thank you."]


# -- survey after the agent hangs up ---------------------------------------------------------

SURVEY = """
[flow]
start = "agent"
survey = "rate"
[nodes.agent]
kind = "queue"
queue = "general"
[nodes.rate]
kind = "survey"
prompt = "Rate us from 1 to 5."
retries = 1
next = "thanks"
[nodes.thanks]
kind = "play"
prompt = "Thank you."
"""


def test_survey_runs_after_the_agent_hangs_up() -> None:
    run = FlowRun(make_flow(SURVEY))
    run.start(0.0)
    assert run.wants_survey
    assert run.digit("3", 10.0)[0].data["ignored"] is True  # talking to the agent
    out = run.agent_hung_up(60.0)
    assert steps(out, "node") == [{"node": "rate", "kind": "survey"}]
    assert plays(out) == ["Rate us from 1 to 5."]
    assert not run.finished
    run.prompt_finished(62.0)
    scored = run.digit("4", 63.0)
    assert steps(scored, "survey") == [{"node": "rate", "score": 4, "scale": 5}]
    assert SurveyScore(4, 5) in scored
    assert run.variables["survey_score"] == 4
    assert plays(scored) == ["Thank you."]
    assert run.prompt_finished(64.0) == [Hangup("flow-end")]


def test_survey_refuses_keys_outside_the_scale() -> None:
    run = FlowRun(make_flow(SURVEY))
    run.start(0.0)
    run.agent_hung_up(60.0)
    out = run.digit("7", 61.0)
    assert steps(out, "no_match") == [{"node": "rate", "attempt": 1, "digit": "7"}]
    assert run.digit("0", 62.0)[-1] == Hangup("no_match-exhausted")


def test_no_survey_without_one_declared(menu: FlowRun) -> None:
    at_menu(menu)
    menu.digit("0", 2.0)
    assert not menu.wants_survey
    assert menu.agent_hung_up(30.0) == []


# -- subflows and goto -------------------------------------------------------------------------

MAIN = """
[flow]
start = "ask"
[nodes.ask]
kind = "subflow"
flow = "identify"
next = "greet"
[nodes.greet]
kind = "play"
prompt = "Hello {customer_name}."
"""

IDENTIFY = """
[flow]
start = "who"
[nodes.who]
kind = "lookup"
by = "number"
found = "done"
[nodes.done]
kind = "set"
values = { identified = true }
"""


def test_subflow_runs_and_returns_with_its_variables() -> None:
    flows = {"main": make_flow(MAIN, "main"), "identify": make_flow(IDENTIFY, "identify")}
    run = FlowRun(flows["main"], "main", flows=flows, variables={"caller": "0600000009"})
    out = run.start(0.0)
    assert steps(out, "subflow") == [{"node": "ask", "flow": "identify"}]
    assert steps(out, "node")[-1] == {"node": "who", "kind": "lookup", "flow": "identify"}
    back = run.lookup_result({"customer_name": "Eleanor", "customer_id": "C0009"}, 0.2)
    assert steps(back, "return") == [{"from": "identify", "to": "main"}]
    assert plays(back) == ["Hello Eleanor."]
    assert run.variables["identified"] is True and run.name == "main"


def test_subflow_ending_without_next_ends_the_caller_too() -> None:
    flows = {
        "main": make_flow(MAIN.replace('next = "greet"\n', ""), "main"),
        "identify": make_flow(IDENTIFY, "identify"),
    }
    run = FlowRun(flows["main"], "main", flows=flows)
    run.start(0.0)
    out = run.lookup_result(None, 0.2)  # not found, and 'who' has no not_found: end of subflow
    assert kinds(out) == ["lookup", "return", "Hangup"]


def test_a_flow_calling_itself_is_cut_at_the_depth_limit() -> None:
    flow = make_flow(
        '[flow]\nstart = "again"\n[nodes.again]\nkind = "subflow"\nflow = "me"\n', "me"
    )
    out = FlowRun(flow, "me").start(0.0)
    assert len(steps(out, "subflow")) == MAX_SUBFLOWS
    assert out[-1] == Hangup("subflow-depth")


def test_goto_another_flow_does_not_return() -> None:
    flows = {
        "a": make_flow(
            '[flow]\nstart = "x"\n[nodes.x]\nkind = "goto"\nflow = "b"\nnode = "z"\n', "a"
        ),
        "b": make_flow(
            '[flow]\nstart = "y"\n[nodes.y]\nkind = "hangup"\n'
            '[nodes.z]\nkind = "play"\nprompt = "In b."\n',
            "b",
        ),
    }
    run = FlowRun(flows["a"], "a", flows=flows)
    assert plays(run.start(0.0)) == ["In b."]
    assert run.prompt_finished(1.0) == [Hangup("flow-end")]


def test_goto_an_unknown_flow_ends_the_call() -> None:
    flow = make_flow('[flow]\nstart = "x"\n[nodes.x]\nkind = "goto"\nflow = "gone"\n')
    assert FlowRun(flow).start(0.0)[-1] == Hangup("missing-flow:gone")


# -- lookups and attached data --------------------------------------------------------------

LOOKUP = """
[flow]
start = "who"
attach = ["customer_name", "tier"]
[nodes.who]
kind = "lookup"
by = "number"
timeout = 2
found = "known"
not_found = "stranger"
[nodes.known]
kind = "play"
prompt = "Hello {customer_name}."
[nodes.stranger]
kind = "play"
prompt = "Hello."
"""


def test_lookup_by_caller_number_sets_variables_and_attaches_some() -> None:
    run = FlowRun(make_flow(LOOKUP), variables={"caller": "0600000009"})
    out = run.start(0.0)
    assert out[-2:] == [
        Lookup("number", "0600000009"),
        Wait(2.0),
    ]
    customer = {"customer_id": "C0009", "customer_name": "Eleanor", "tier": "VIP", "x": [1]}
    found = run.lookup_result(customer, 0.3)
    assert steps(found, "lookup") == [
        {"node": "who", "by": "number", "found": True, "customer_id": "C0009"}
    ]
    assert [a for a in found if isinstance(a, SetAttribute)] == [
        SetAttribute("customer_name", "Eleanor"),
        SetAttribute("tier", "VIP"),
    ]
    assert "x" not in run.variables  # only plain values become variables
    assert plays(found) == ["Hello Eleanor."]


def test_unknown_caller_and_slow_directory_both_go_to_not_found() -> None:
    run = FlowRun(make_flow(LOOKUP))
    run.start(0.0)
    assert plays(run.lookup_result(None, 0.3)) == ["Hello."]
    slow = FlowRun(make_flow(LOOKUP))
    slow.start(0.0)
    out = slow.handle_timer(2.0)
    assert steps(out, "lookup") == [
        {"node": "who", "by": "number", "found": False, "timeout": True}
    ]
    assert slow.lookup_result({"customer_name": "late"}, 2.5) == []  # too late


def test_keys_pressed_during_a_lookup_are_typed_ahead() -> None:
    run = FlowRun(make_flow(LOOKUP))
    run.start(0.0)
    assert kinds(run.digit("1", 0.1)) == ["digit"]
    out = run.lookup_result({"customer_name": "Eleanor"}, 0.3)
    assert plays(out) == []  # the greeting is skipped, as the caller already pressed a key
