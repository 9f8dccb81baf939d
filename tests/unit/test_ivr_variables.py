"""Templates, branch conditions and the per-node decisions of ivr.nodes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ccserver.config.flows import (
    BranchNode,
    Case,
    Flow,
    MenuNode,
    QueueNode,
    SetNode,
    TemplateRef,
    parse_template,
)
from ivr.flow import Enqueue
from ivr.nodes import (
    branch_target,
    find_phrase,
    phrases_for,
    pick_segment,
    prompt_texts,
    queue_request,
    set_values,
)
from ivr.variables import Rendered, Value, as_number, as_text, holds, render, same

# -- templates -----------------------------------------------------------------------


def test_parse_template_parts() -> None:
    assert parse_template("Hello {name}, {{not}} {n:digits}!") == (
        "Hello ",
        TemplateRef("name", None),
        ", {not} ",
        TemplateRef("n", "digits"),
        "!",
    )
    assert parse_template("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hello {name", "stray '{' at position 6"),
        ("a } b", "stray '}' at position 2"),
        ("{1abc}", "stray '{' at position 0"),
        ("{n:upper}", "unknown filter 'upper' in {n:upper}: use one of digits"),
    ],
)
def test_parse_template_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("{", r"\{").replace("}", r"\}")):
        parse_template(text)


def test_render_fills_in_and_reports_missing() -> None:
    variables: dict[str, Value] = {"name": "Kim", "balance": 1234.0, "vip": True, "n": "100 042"}
    assert render("Hi {name}, {balance} left.", variables) == Rendered("Hi Kim, 1234 left.")
    assert render("{vip} {n:digits}", variables).text == "true 1 0 0 0 4 2"
    assert render("{who}?", variables) == Rendered("?", ("who",))
    assert render("{{literal}}", {}).text == "{literal}"


def test_text_and_numbers() -> None:
    assert as_text(2.5) == "2.5" and as_text(3.0) == "3" and as_text(False) == "false"
    assert as_number(" 42 ") == 42.0 and as_number("4e2") == 400.0
    assert as_number("nan") is None and as_number("abc") is None and as_number(True) is None


# -- conditions ------------------------------------------------------------------------------


def case(**tests: Any) -> Case:
    return Case.model_validate({"var": "v", "next": "x", **tests})


@pytest.mark.parametrize(
    ("tests", "value", "expected"),
    [
        ({"equals": 42}, "0042", True),  # both read as numbers
        ({"equals": "VIP"}, "vip", False),  # text is compared as is
        ({"equals": True}, "TRUE", True),
        ({"equals": "x"}, None, False),
        ({"not_equals": "x"}, "y", True),
        ({"not_equals": "x"}, None, True),
        ({"not_equals": 1}, "1.0", False),
        ({"one_of": ["en", "ko"]}, "ko", True),
        ({"one_of": ["en", "ko"]}, "zh", False),
        ({"lt": 10}, "9.5", True),
        ({"le": 10}, 10, True),
        ({"gt": 10}, "abc", False),  # not a number: comparisons fail
        ({"ge": 3}, 3, True),
        ({"ge": 3, "lt": 5}, 5, False),  # every test must hold
        ({"matches": "(?i)vip"}, "VIP", True),
        ({"matches": "[0-9]{3}"}, "1234", False),  # the whole value
        ({"is_set": True}, "", False),
        ({"is_set": True}, 0, True),
        ({"is_set": False}, None, True),
        ({"is_set": True, "equals": "a"}, "a", True),
    ],
)
def test_conditions(tests: dict[str, Any], value: Value | None, expected: bool) -> None:
    variables: dict[str, Value] = {} if value is None else {"v": value}
    assert holds(case(**tests), variables) is expected


def test_same_is_symmetric_for_numbers_and_text() -> None:
    assert same("1e3", 1000) and same(1000, "1e3")
    assert not same("01a", "1a")


def test_a_case_needs_a_test() -> None:
    with pytest.raises(ValidationError, match="give a test"):
        Case.model_validate({"var": "v", "next": "x"})


def test_first_matching_case_wins() -> None:
    node = BranchNode.model_validate(
        {
            "kind": "branch",
            "cases": [
                {"var": "tier", "equals": "gold", "next": "gold"},
                {"var": "balance", "gt": 1000, "next": "rich"},
                {"var": "tier", "is_set": True, "next": "known"},
            ],
            "default": "others",
        }
    )
    assert branch_target(node, {"tier": "gold", "balance": 5000}) == ("gold", 0)
    assert branch_target(node, {"tier": "silver", "balance": 5000}) == ("rich", 1)
    assert branch_target(node, {"tier": "silver"}) == ("known", 2)
    assert branch_target(node, {}) == ("others", None)


# -- set, queue, prompts, phrases -----------------------------------------------------------------


def test_set_values_fills_templates_and_adds() -> None:
    node = SetNode.model_validate(
        {
            "kind": "set",
            "values": {"greeting": "Hi {name}", "n": 5, "flag": True},
            "add": {"n": 1, "tries": 1, "score": 0.5},
        }
    )
    assert set_values(node, {"name": "Li", "tries": "2"}) == {
        "greeting": "Hi Li",
        "n": 6,
        "flag": True,
        "tries": 3,
        "score": 0.5,
    }


def test_queue_request_clamps_and_defaults() -> None:
    node = QueueNode.model_validate(
        {"kind": "queue", "queue": "q", "priority": "{p}", "skills": {"{lang}": 4}}
    )
    assert queue_request(node, {"p": "250", "lang": "ko"}) == Enqueue("q", 100, {"ko": 4}, None)
    assert queue_request(node, {"p": "2.5"}) == Enqueue("q", 0, {}, None)
    assert queue_request(node, {"tier": ""}).tier is None


def test_pick_segment_language_order() -> None:
    seg = {"en": "Hello", "ko": "안녕하세요"}
    assert pick_segment(seg, "ko-KR", "en") == ("ko", "안녕하세요")
    assert pick_segment(seg, "zh", "en") == ("en", "Hello")  # the flow's language
    assert pick_segment({"*": "Hi"}, "zh", "en") == ("zh", "Hi")
    assert pick_segment({"en": "Hi", "*": "Yo"}, "ko", "en") == ("ko", "Yo")
    assert pick_segment({"fr": "Salut"}, "ko", "en") == ("fr", "Salut")


def test_phrases_for_never_mixes_languages() -> None:
    node = MenuNode.model_validate(
        {
            "kind": "menu",
            "prompt": "x",
            "choices": {"0": "a"},
            "phrases": {"en": {"agent": "a"}, "ko": {"상담원  연결": "a"}},
        }
    )
    assert phrases_for(node, "ko") == {"상담원 연결": "a"}  # spaces normalised
    assert phrases_for(node, "zh") == {}
    assert find_phrase(phrases_for(node, "en"), "Agent") == "a"
    assert find_phrase(phrases_for(node, "en"), None) is None
    assert find_phrase(phrases_for(node, "en"), "agents") is None


def test_prompt_texts_lists_fixed_prompts_in_every_voice_they_can_take() -> None:
    flow = Flow.model_validate(
        {
            "name": "f",
            "language": "en",
            "start": "a",
            "defaults": {"no_input_prompt": {"en": "Hello?", "ko": "여보세요?"}},
            "nodes": {
                "a": {"kind": "play", "prompt": "Hi.", "next": "b"},
                "b": {"kind": "set", "values": {"language": "ko"}, "next": "c"},
                "c": {"kind": "play", "prompt": ["Hi {name}.", {"zh": "你好"}]},
            },
        }
    )
    texts = prompt_texts([flow])
    assert ("Hi.", "en") in texts and ("Hi.", "ko") in texts
    assert ("你好", "zh") in texts and ("Hello?", "en") in texts and ("여보세요?", "ko") in texts
    assert not any("{" in text for text, _ in texts)
    assert len(texts) == len(set(texts))
