"""What single nodes decide, as pure functions of the node and the call's variables.

`ivr.flow.FlowRun` keeps the state (which node, which attempt, what is
playing); the decisions that need nothing but a node and the variables live
here: which prompt text and voice fit the caller's language, which phrases
a node listens for, which branch is taken, what a queue request carries,
what a ``set`` node changes. `prompt_texts` lists the fixed prompts of a flow
so the call model can render them before the first call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ccserver.config.flows import (
    ANY_LANGUAGE,
    BranchNode,
    CollectNode,
    Flow,
    FlowDefaults,
    InputNode,
    MenuNode,
    PromptText,
    QueueNode,
    SetNode,
    SpeechNode,
    TemplateRef,
    parse_template,
)
from ivr.actions import Enqueue, Play
from ivr.variables import Value, as_number, as_text, holds, render

__all__ = [
    "PendingPlay",
    "barge_in",
    "branch_target",
    "customer_variables",
    "find_phrase",
    "input_retries",
    "input_timeout",
    "inter_digit_timeout",
    "min_confidence",
    "phrases_for",
    "pick_segment",
    "prompt_plays",
    "prompt_texts",
    "queue_request",
    "set_values",
]

PendingPlay = tuple[Play, tuple[str, ...]]
"""A segment to play, and the variables its template named that were not set."""


# -- a node's settings, else the flow's defaults ---------------------------------------


def barge_in(node: object, defaults: FlowDefaults) -> bool:
    own = getattr(node, "barge_in", None)
    return defaults.barge_in if own is None else bool(own)


def input_timeout(node: InputNode, defaults: FlowDefaults) -> float:
    return node.timeout if node.timeout is not None else defaults.timeout


def input_retries(node: InputNode, defaults: FlowDefaults) -> int:
    return node.retries if node.retries is not None else defaults.retries


def inter_digit_timeout(node: CollectNode, defaults: FlowDefaults) -> float:
    own = node.inter_digit_timeout
    return own if own is not None else defaults.inter_digit_timeout


def min_confidence(node: MenuNode | SpeechNode, defaults: FlowDefaults) -> float:
    own = node.min_confidence
    return own if own is not None else defaults.min_confidence


# -- prompts and phrases -------------------------------------------------------------------


def _candidates(language: str) -> list[str]:
    """``zh-CN`` looks for ``zh-CN``, then ``zh`` (RFC 4647 lookup, as the TTS does)."""
    tag = language.replace("_", "-")
    parts = tag.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def pick_segment(segment: Mapping[str, str], language: str, fallback: str) -> tuple[str, str]:
    """``(voice, text)`` of a prompt segment for a caller in ``language``.

    The caller's language first, then text written for any language (spoken
    in the caller's voice), then the flow's own language, then whatever the
    segment has: a prompt in another language beats silence, and it is
    spoken in the voice it was written for.
    """
    for key in _candidates(language):
        if key in segment:
            return key, segment[key]
    if ANY_LANGUAGE in segment:
        return language, segment[ANY_LANGUAGE]
    for key in _candidates(fallback):
        if key in segment:
            return key, segment[key]
    key = next(iter(segment))
    return key, segment[key]


def prompt_plays(
    prompt: PromptText | None,
    audio: PromptText | None,
    *,
    barge: bool,
    language: str,
    flow_language: str,
    variables: Mapping[str, Value],
) -> list[PendingPlay]:
    """The `Play` of each segment, in the caller's language, with its unset variables."""
    out: list[PendingPlay] = []
    for segment in audio or ():
        voice, file = pick_segment(segment, language, flow_language)
        out.append((Play("", voice, barge, file), ()))
    for segment in prompt or ():
        voice, text = pick_segment(segment, language, flow_language)
        rendered = render(text, variables)
        out.append((Play(rendered.text, voice, barge), rendered.missing))
    return out


def phrases_for(node: MenuNode | SpeechNode, language: str) -> dict[str, str]:
    """The phrases ``node`` listens for in ``language`` (phrase -> target or value).

    Never another language's: a grammar must be in the recogniser's language.
    """
    for key in _candidates(language):
        if key in node.phrases:
            return node.phrases[key]
    return node.phrases.get(ANY_LANGUAGE, {})


def _normal(phrase: str) -> str:
    return " ".join(phrase.split()).lower()


def find_phrase(phrases: Mapping[str, str], heard: str | None) -> str | None:
    """The target of the phrase the recogniser reported (as configured, or nearly)."""
    if heard is None:
        return None
    if heard in phrases:
        return phrases[heard]
    wanted = _normal(heard)
    return next((target for phrase, target in phrases.items() if _normal(phrase) == wanted), None)


# -- decisions -------------------------------------------------------------------------------


def customer_variables(result: Mapping[str, Any] | None) -> dict[str, Value]:
    """The plain values of a lookup result (nested data stays with the screen pop)."""
    return {
        str(key): value
        for key, value in (result or {}).items()
        if isinstance(value, str | int | float | bool) and str(key).isidentifier()
    }


def branch_target(node: BranchNode, variables: Mapping[str, Value]) -> tuple[str, int | None]:
    """The first case that holds (its index), else ``default`` (index None)."""
    for index, case in enumerate(node.cases):
        if holds(case, variables):
            return case.next, index
    return node.default, None


def queue_request(node: QueueNode, variables: Mapping[str, Value]) -> Enqueue:
    """The `Enqueue` for ``node``: priority and skills read from the variables now.

    A priority that does not read as a whole number (an unset variable) is 0;
    one outside 0-100 is clamped. A skill whose name comes out empty is left
    out, so '{skill}' with no skill chosen asks for nothing.
    """
    if isinstance(node.priority, int):
        priority = node.priority
    else:
        number = as_number(render(node.priority, variables).text)
        priority = int(number) if number is not None and number.is_integer() else 0
    skills: dict[str, int] = {}
    for name, level in node.skills.items():
        skill = render(name, variables).text.strip()
        if skill:
            skills[skill] = level
    tier = variables.get("tier")
    return Enqueue(
        node.queue,
        max(0, min(100, priority)),
        skills,
        as_text(tier) if tier is not None and tier != "" else None,
    )


def set_values(node: SetNode, variables: Mapping[str, Value]) -> dict[str, Value]:
    """The variables ``node`` sets: templates filled in, counters added to (unset is 0)."""
    out: dict[str, Value] = {}
    for name, value in node.values.items():
        out[name] = render(value, variables).text if isinstance(value, str) else value
    for name, step in node.add.items():
        total = (as_number(out.get(name, variables.get(name))) or 0.0) + step
        out[name] = int(total) if float(total).is_integer() else total
    return out


def _fixed(text: str) -> bool:
    return not any(isinstance(part, TemplateRef) for part in parse_template(text))


def prompt_texts(flows: Iterable[Flow]) -> list[tuple[str, str]]:
    """``(text, voice)`` of every prompt without variables, for rendering at start.

    Text written for any language may be spoken in any language the flow
    starts in or switches to (a ``set`` of ``language``), so it is listed once
    per such language. Prompts with variables can only be rendered during
    the call.
    """
    out: dict[tuple[str, str], None] = {}
    for flow in flows:
        languages = [flow.language]
        for node in flow.nodes.values():
            if isinstance(node, SetNode):
                value = node.values.get("language")
                if isinstance(value, str) and _fixed(value) and value not in languages:
                    languages.append(value)
        segments: list[Mapping[str, str]] = []
        for prompt in (flow.defaults.no_input_prompt, flow.defaults.no_match_prompt):
            segments.extend(prompt or ())
        for node in flow.nodes.values():
            for field in ("prompt", "no_input_prompt", "no_match_prompt"):
                segments.extend(getattr(node, field, None) or ())
        for segment in segments:
            for key, text in segment.items():
                if not _fixed(text):
                    continue
                text = render(text, {}).text  # '{{' -> '{'
                for voice in languages if key == ANY_LANGUAGE else [key]:
                    out[(text, voice)] = None
    return list(out)
