"""IVR flow files (``flows/<name>.toml``): the node kinds, checked as they are loaded.

A flow is a graph of nodes started at ``[flow].start``. Each node has a
``kind`` that chooses its other keys. What can be judged from one node alone
is checked here (types, ranges, template syntax, regexes, opening hours, time
zones); references between nodes, flows, queues, extensions and prompt files
are checked by :mod:`ccserver.config.loader`, which knows the whole directory.

Prompts are written as text, as a table of language -> text, or as an array
of those (segments played one after the other, each in its own voice). They
are kept as a tuple of segments, each a ``{language: text}`` dict where the
key ``"*"`` stands for "whatever language the caller is in".

Templates (``"Your balance is {account_balance}"``) are checked for syntax
here; :mod:`ivr.variables` fills them in during the call.
"""

from __future__ import annotations

import itertools
import re
import zoneinfo
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ccserver.config.checks import DTMF_KEYS
from ccserver.config.checks import check_dtmf_key as _check_dtmf_key
from ccserver.config.checks import check_language as _check_language
from ccserver.config.checks import check_name as _check_name

__all__ = [
    "ANY_LANGUAGE",
    "BUILTIN_VARIABLES",
    "INPUT_KINDS",
    "LOOKUP_VARIABLES",
    "NODE_KINDS",
    "WEEKDAYS",
    "BranchNode",
    "CallbackNode",
    "Case",
    "CollectNode",
    "Flow",
    "FlowDefaults",
    "GotoNode",
    "HangupNode",
    "InputNode",
    "LookupNode",
    "MenuNode",
    "Node",
    "PlayNode",
    "PromptText",
    "QueueNode",
    "ScheduleNode",
    "SetNode",
    "SpeechNode",
    "SubflowNode",
    "SurveyNode",
    "TemplateRef",
    "TransferNode",
    "VoicemailNode",
    "WeeklyHours",
    "flow_refs",
    "node_targets",
    "node_templates",
    "parse_template",
    "variables_set",
]

ANY_LANGUAGE = "*"
"""The language key of a prompt or phrase list written without a language."""

BUILTIN_VARIABLES = ("caller", "dialed", "language")
"""Set for every call: the caller's number, the dialled number, the prompts' language."""

LOOKUP_VARIABLES = (
    "customer_id",
    "customer_name",
    "tier",
    "customer_language",
    "segment",
    "account_manager",
    "account_balance",
)
"""What a lookup may set (the call model fills what the customer directory knows)."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day keys of opening hours, in ``datetime.weekday()`` order."""

TEMPLATE_FILTERS = ("digits",)
"""``{account:digits}`` spells a value out character by character ("1 2 3")."""

_TEMPLATE_TOKEN = re.compile(
    r"\{\{|\}\}|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<filter>[A-Za-z]+))?\}|(?P<bad>[{}])"
)
_RANGE_RE = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_ANNUAL_RE = re.compile(r"(\d{2})-(\d{2})")

Scalar = str | int | float | bool


def _as_scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError("expected text, a number, true or false")
    return value


def _as_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    return value


ScalarValue = Annotated[Scalar, BeforeValidator(_as_scalar)]
Number = Annotated[int | float, BeforeValidator(_as_number)]

# The same rules as ccserver.config.schema (a test keeps them equal): schema.py
# imports this module for `Flow`, so this one cannot import schema.py.


Name = Annotated[str, AfterValidator(_check_name)]
Language = Annotated[str, AfterValidator(_check_language)]
DtmfKey = Annotated[str, AfterValidator(_check_dtmf_key)]


class _Model(BaseModel):
    """Unknown keys are errors, values are immutable, types are TOML's own (as in schema.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ------------------------------------------------------------------ templates


class TemplateRef(NamedTuple):
    """``{name}`` or ``{name:filter}`` inside a template."""

    name: str
    filter: str | None


def parse_template(text: str) -> tuple[str | TemplateRef, ...]:
    """Literal text and variable references; ValueError on a stray brace or unknown filter."""
    parts: list[str | TemplateRef] = []
    literal: list[str] = []
    pos = 0
    for match in _TEMPLATE_TOKEN.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match["bad"]:
            raise ValueError(
                f"stray {token!r} at position {match.start()}: write {{name}} for a variable, "
                f"{token * 2!r} for the character itself"
            )
        else:
            flt = match["filter"]
            if flt is not None and flt not in TEMPLATE_FILTERS:
                raise ValueError(
                    f"unknown filter {flt!r} in {token}: use one of {', '.join(TEMPLATE_FILTERS)}"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(TemplateRef(match["name"], flt))
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(parts)


def _template_names(text: str) -> set[str]:
    return {part.name for part in parse_template(text) if isinstance(part, TemplateRef)}


def _check_template(value: str) -> str:
    parse_template(value)
    return value


Template = Annotated[str, AfterValidator(_check_template)]


# ------------------------------------------------------------------ prompts


def _as_prompt(value: Any, *, templates: bool) -> tuple[dict[str, str], ...]:
    """Text, a table language -> text, or an array of those, as a tuple of segments."""
    segments = value if isinstance(value, list) else [value]
    if not segments:
        raise ValueError("must not be empty")
    out: list[dict[str, str]] = []
    for index, segment in enumerate(segments):
        where = f"segment {index}: " if isinstance(value, list) else ""
        if isinstance(segment, str):
            segment = {ANY_LANGUAGE: segment}
        elif not isinstance(segment, dict):
            raise ValueError(
                f"{where}expected text, a table of language = text, or an array of those"
            )
        elif not segment:
            raise ValueError(f"{where}a table of language = text must not be empty")
        for language, text in segment.items():
            if language != ANY_LANGUAGE:
                try:
                    _check_language(language)
                except ValueError as exc:
                    raise ValueError(f"{where}{exc}") from None
            if not isinstance(text, str):
                raise ValueError(f"{where}{language}: expected a string")
            if not text.strip():
                raise ValueError(f"{where}{language}: must not be empty")
            if templates:
                try:
                    parse_template(text)
                except ValueError as exc:
                    raise ValueError(f"{where}{exc}") from None
        out.append(dict(segment))
    return tuple(out)


PromptText = Annotated[
    tuple[dict[str, str], ...], BeforeValidator(lambda v: _as_prompt(v, templates=True))
]
"""TTS text: segments of ``{language or "*": text}``, templates allowed."""
AudioFiles = Annotated[
    tuple[dict[str, str], ...], BeforeValidator(lambda v: _as_prompt(v, templates=False))
]
"""WAV files, relative to the config directory, shaped like :data:`PromptText`."""


def _normalise_phrase(phrase: str) -> str:
    return " ".join(phrase.split())


def _as_phrases(value: Any, *, lists: bool) -> dict[str, dict[str, str]]:
    """``{phrase: x}``, or ``{language: {phrase: x}}``; arrays of phrases where ``lists``."""
    if not isinstance(value, dict | list) or (isinstance(value, list) and not lists):
        kind = "a table of phrase = value" if lists else "a table of phrase = node"
        raise ValueError(f"expected {kind}, or one such table per language")
    if isinstance(value, list) or not any(isinstance(v, dict | list) for v in value.values()):
        value = {ANY_LANGUAGE: value}
    out: dict[str, dict[str, str]] = {}
    for language, table in value.items():
        if language != ANY_LANGUAGE:
            _check_language(language)
        if isinstance(table, list) and lists and all(isinstance(item, str) for item in table):
            table = {item: item for item in table}
        if not isinstance(table, dict):
            raise ValueError(f"{language}: expected a table of phrase = value")
        phrases: dict[str, str] = {}
        for phrase, target in table.items():
            if not isinstance(phrase, str) or not phrase.strip():
                raise ValueError(f"{language}: a phrase must not be empty")
            if not isinstance(target, str):
                raise ValueError(f"{language}: {phrase!r}: expected a string")
            phrases[_normalise_phrase(phrase)] = target
        out[language] = phrases
    return out


MenuPhrases = Annotated[
    dict[str, dict[str, str]], BeforeValidator(lambda v: _as_phrases(v, lists=False))
]
SpeechPhrases = Annotated[
    dict[str, dict[str, str]], BeforeValidator(lambda v: _as_phrases(v, lists=True))
]

Timeout = Annotated[float, Field(gt=0, le=60)]
Retries = Annotated[int, Field(ge=0, le=10)]
Confidence = Annotated[float, Field(ge=0, le=1)]


# ------------------------------------------------------------------ schedules

WeeklyHours = tuple[tuple[tuple[int, int], ...], ...]
"""Seven days (Monday first) of open ``(start, end)`` minutes since midnight."""


def _minutes(hour: str, minute: str, text: str) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError(f"{text!r} is not a time range such as '09:00-17:00'")
    return h * 60 + m


def _day_indexes(key: str) -> list[int]:
    names = key.lower().split("-")
    if not all(name in WEEKDAYS for name in names) or len(names) > 2:
        raise ValueError(f"{key!r} is not a day ({', '.join(WEEKDAYS)}) or a range like 'mon-fri'")
    first = WEEKDAYS.index(names[0])
    last = WEEKDAYS.index(names[-1])
    return [(first + n) % 7 for n in range((last - first) % 7 + 1)]


def _as_weekly(value: Any) -> WeeklyHours:
    if not isinstance(value, dict):
        raise ValueError("expected a table of day = '09:00-17:00'")
    days: list[list[tuple[int, int]] | None] = [None] * 7
    given_by: dict[int, str] = {}
    for key, ranges in value.items():
        indexes = _day_indexes(key)
        texts = ranges if isinstance(ranges, list) else [ranges]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{key}: expected '09:00-17:00', 'closed' or an array of ranges")
        spans: list[tuple[int, int]] = []
        for text in texts:
            if text.strip().lower() == "closed":
                continue
            match = _RANGE_RE.fullmatch(text.strip())
            if match is None:
                raise ValueError(f"{key}: {text!r} is not a time range such as '09:00-17:00'")
            start = _minutes(match[1], match[2], text)
            end = _minutes(match[3], match[4], text)
            if end <= start:
                raise ValueError(
                    f"{key}: {text!r} ends before it starts; split a night into two days"
                )
            spans.append((start, end))
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(f"{key}: the ranges overlap")
        for index in indexes:
            if index in given_by:
                raise ValueError(
                    f"{WEEKDAYS[index]} is given twice (in {given_by[index]!r} and {key!r})"
                )
            given_by[index] = key
            days[index] = spans
    return tuple(tuple(day or ()) for day in days)


def _as_holiday(value: Any) -> str:
    """A TOML date or 'YYYY-MM-DD' (that day), or 'MM-DD' (that day every year)."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        annual = _ANNUAL_RE.fullmatch(value)
        try:
            if annual:
                date(2000, int(annual[1]), int(annual[2]))  # a leap year: 02-29 is fine
                return value
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date: write 2025-12-25, or '12-25' for every year")


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as 'Europe/Paris'"
        ) from None
    return value


Holiday = Annotated[str, BeforeValidator(_as_holiday)]


# ------------------------------------------------------------------ node kinds


class _Prompted(_Model):
    """A node that can say something first."""

    prompt: PromptText | None = None
    audio: AudioFiles | None = None
    barge_in: bool | None = None
    """Whether a key (or speech) stops the prompt; None: the flow's default."""

    @model_validator(mode="after")
    def _one_prompt(self) -> _Prompted:
        if self.prompt is not None and self.audio is not None:
            raise ValueError("set prompt (TTS text) or audio (WAV files), not both")
        return self


class InputNode(_Prompted):
    """Common keys of the nodes that wait for the caller: timeouts, retries, fallbacks.

    Every silence (``no_input``) or wrong answer (``no_match``) uses one
    attempt; after ``1 + retries`` attempts the call goes to ``no_input`` or
    ``no_match`` (whichever ended the last attempt), else ``fallback``, else
    the flow's ``[flow.defaults].fallback``, else it hangs up.
    """

    timeout: Timeout | None = None
    """Seconds to wait for input after the prompt; None: the flow's default."""
    retries: Retries | None = None
    no_input: str | None = None
    no_match: str | None = None
    fallback: str | None = None
    no_input_prompt: PromptText | None = None
    no_match_prompt: PromptText | None = None


class PlayNode(_Prompted):
    """Say a prompt (or play a WAV), then go to ``next``; the flow ends without one."""

    kind: Literal["play"]
    next: str | None = None

    @model_validator(mode="after")
    def _has_prompt(self) -> PlayNode:
        if self.prompt is None and self.audio is None:
            raise ValueError("set prompt (TTS text) or audio (WAV files)")
        return self


class MenuNode(InputNode):
    """Branch on one key (``choices``) or one spoken phrase (``phrases``)."""

    kind: Literal["menu"]
    choices: dict[DtmfKey, str] = Field(default_factory=dict)
    phrases: MenuPhrases = Field(default_factory=dict)
    min_confidence: Confidence | None = None

    @model_validator(mode="after")
    def _has_choices(self) -> MenuNode:
        if not self.choices and not any(self.phrases.values()):
            raise ValueError("set choices (keys) or phrases (speech), or both")
        return self


class CollectNode(InputNode):
    """Read several digits (an account number, a PIN) into ``variable``."""

    kind: Literal["collect"]
    variable: Name
    next: str
    min_length: int = Field(default=1, ge=1, le=64)
    max_length: int = Field(default=20, ge=1, le=64)
    terminator: str = "#"
    """The key that ends the input early (not stored); "" for none."""
    inter_digit_timeout: Timeout | None = None
    pattern: str | None = None
    """A regular expression the whole input must match, e.g. '[0-9]{6}'."""
    mask: bool = False
    """Keep the digits out of the timeline (PINs)."""

    @field_validator("terminator")
    @classmethod
    def _terminator_key(cls, value: str) -> str:
        if value and (len(value) != 1 or value not in DTMF_KEYS):
            raise ValueError(f"{value!r} is not a DTMF key: use one of 0-9, *, #, A-D, or ''")
        return value

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _lengths(self) -> CollectNode:
        if self.min_length > self.max_length:
            raise ValueError(
                f"min_length ({self.min_length}) is above max_length ({self.max_length})"
            )
        return self


class SpeechNode(InputNode):
    """Ask a question; the phrase heard (or its value) goes into ``variable``."""

    kind: Literal["speech"]
    variable: Name
    next: str
    phrases: SpeechPhrases
    keys: dict[DtmfKey, str] = Field(default_factory=dict)
    """Key -> value, for callers who would rather press than speak."""
    min_confidence: Confidence | None = None

    @model_validator(mode="after")
    def _has_phrases(self) -> SpeechNode:
        if not any(self.phrases.values()):
            raise ValueError("phrases must not be empty")
        return self


class SurveyNode(InputNode):
    """A satisfaction score from 1 to ``max_score`` by key, stored on the contact."""

    kind: Literal["survey"]
    variable: Name = "survey_score"
    max_score: int = Field(default=5, ge=2, le=9)
    next: str | None = None

    @model_validator(mode="after")
    def _has_prompt(self) -> SurveyNode:
        if self.prompt is None and self.audio is None:
            raise ValueError("set prompt (TTS text) or audio (WAV files): ask the question")
        return self


class Case(_Model):
    """One condition of a branch: every operator given must hold."""

    var: str
    next: str
    equals: ScalarValue | None = None
    not_equals: ScalarValue | None = None
    one_of: tuple[ScalarValue, ...] | None = Field(default=None, strict=False)
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    matches: str | None = None
    """A regular expression the whole value must match; '(?i)vip' ignores case."""
    is_set: bool | None = None

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_test(self) -> Case:
        tests = ("equals", "not_equals", "one_of", "lt", "le", "gt", "ge", "matches", "is_set")
        if all(getattr(self, name) is None for name in tests):
            raise ValueError(f"give a test: one of {', '.join(tests)}")
        return self


class BranchNode(_Model):
    """Go to the first case whose conditions hold, else to ``default``."""

    kind: Literal["branch"]
    cases: tuple[Case, ...] = Field(strict=False, min_length=1)
    default: str


class SetNode(_Model):
    """Set variables (strings are templates) and add to counters, then go on."""

    kind: Literal["set"]
    values: dict[Name, ScalarValue] = Field(default_factory=dict)
    add: dict[Name, Number] = Field(default_factory=dict)
    next: str | None = None

    @field_validator("values")
    @classmethod
    def _templates(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        for name, item in value.items():
            if isinstance(item, str):
                try:
                    parse_template(item)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _does_something(self) -> SetNode:
        if not self.values and not self.add:
            raise ValueError("does nothing: set values or add")
        return self


class LookupNode(_Model):
    """Ask the customer directory, by caller number or by an account number entered."""

    kind: Literal["lookup"]
    by: Literal["number", "account"]
    value: Template | None = None
    """What to look up; None means '{caller}' (by number only)."""
    found: str | None = None
    not_found: str | None = None
    timeout: Timeout = 5.0
    """A lookup that has not answered by then counts as not found."""

    @model_validator(mode="after")
    def _account_value(self) -> LookupNode:
        if self.by == "account" and self.value is None:
            raise ValueError("by = 'account' needs value, e.g. value = '{account}'")
        return self


class ScheduleNode(_Model):
    """Open or closed now, by weekly hours in a time zone and a list of holidays."""

    kind: Literal["schedule"]
    timezone: Annotated[str, AfterValidator(_check_timezone)]
    hours: Annotated[WeeklyHours, BeforeValidator(_as_weekly)]
    holidays: tuple[Holiday, ...] = Field(default=(), strict=False)
    open: str
    closed: str
    holiday: str | None = None
    """Where to go on a holiday; None: ``closed``."""


def _as_priority(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected an integer from 0 to 100 or a template such as '{priority}'")
    if isinstance(value, int) and not 0 <= value <= 100:
        raise ValueError(f"{value} is not from 0 to 100")
    if isinstance(value, str):
        parse_template(value)
    return value


def _check_skill_key(value: str) -> str:
    if _TEMPLATE_TOKEN.search(value):
        parse_template(value)
        return value
    return _check_name(value)


SkillKey = Annotated[str, AfterValidator(_check_skill_key)]


class QueueNode(_Model):
    """Hand the call to an ACD queue; the run then waits for the agent to hang up."""

    kind: Literal["queue"]
    queue: str
    priority: Annotated[int | str, BeforeValidator(_as_priority)] = 0
    """0 to 100, higher answered first; a template ('{priority}') is read at run time."""
    skills: dict[SkillKey, Annotated[int, Field(ge=1, le=10)]] = Field(default_factory=dict)
    """Skill (or '{variable}' naming one) -> minimum level the agent needs."""


class TransferNode(_Model):
    """Send the call to an extension or an external number."""

    kind: Literal["transfer"]
    extension: str | None = None
    number: Template | None = None
    failed: str | None = None
    """Where to go when the transfer fails; None hangs up."""

    @model_validator(mode="after")
    def _one_target(self) -> TransferNode:
        if (self.extension is None) == (self.number is None):
            raise ValueError("set exactly one of 'extension' or 'number'")
        return self


class VoicemailNode(_Prompted):
    """Record a message (the call model attaches the WAV to the contact)."""

    kind: Literal["voicemail"]
    max_seconds: float = Field(default=120.0, ge=1, le=3600)
    beep: bool = True
    next: str | None = None


class CallbackNode(_Model):
    """Ask to be called back, at the caller's number or one entered."""

    kind: Literal["callback"]
    number: Template = "{caller}"
    queue: str | None = None
    """Which queue's agents make the call; None: the ACD's choice."""
    next: str | None = None


class HangupNode(_Model):
    """End the call."""

    kind: Literal["hangup"]
    reason: str | None = None


class GotoNode(_Model):
    """Jump to a node of this flow, or to another flow (no return)."""

    kind: Literal["goto"]
    node: str | None = None
    flow: str | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> GotoNode:
        if self.node is None and self.flow is None:
            raise ValueError("set node, flow, or both")
        return self


class SubflowNode(_Model):
    """Run another flow from its start; when it ends, carry on at ``next``."""

    kind: Literal["subflow"]
    flow: str
    next: str | None = None


Node = Annotated[
    PlayNode
    | MenuNode
    | CollectNode
    | SpeechNode
    | BranchNode
    | SetNode
    | LookupNode
    | ScheduleNode
    | QueueNode
    | TransferNode
    | VoicemailNode
    | CallbackNode
    | SurveyNode
    | HangupNode
    | GotoNode
    | SubflowNode,
    Field(discriminator="kind"),
]
NODE_KINDS = (
    "play",
    "menu",
    "collect",
    "speech",
    "branch",
    "set",
    "lookup",
    "schedule",
    "queue",
    "transfer",
    "voicemail",
    "callback",
    "survey",
    "hangup",
    "goto",
    "subflow",
)
INPUT_KINDS = frozenset({"menu", "collect", "speech", "survey"})
"""Kinds that wait for the caller, with no-input and no-match handling."""


# ------------------------------------------------------------------ flows


class FlowDefaults(_Model):
    """``[flow.defaults]``: what input nodes use when they do not say."""

    retries: Retries = 2
    timeout: Timeout = 5.0
    inter_digit_timeout: Timeout = 3.0
    min_confidence: Confidence = 0.5
    barge_in: bool = True
    no_input_prompt: PromptText | None = ({ANY_LANGUAGE: "Sorry, I did not hear anything."},)
    no_match_prompt: PromptText | None = ({ANY_LANGUAGE: "Sorry, I did not understand."},)
    fallback: str | None = None


class Flow(_Model):
    """One IVR flow, from ``flows/<name>.toml``."""

    name: Name
    language: Language
    """TTS voice and speech language at the start (``[flow].language``, else ``[tts].voice``)."""
    start: str
    nodes: dict[Name, Node]
    defaults: FlowDefaults = FlowDefaults()
    survey: str | None = None
    """A survey node to run after the agent hangs up."""
    attach: tuple[Name, ...] = Field(default=(), strict=False)
    """Variables shown to the agent (call-attached data): each change is sent on."""


# ------------------------------------------------------------------ walking nodes


def node_targets(node: Node) -> Iterator[tuple[str, str]]:
    """``(key, node name)`` for every node of the same flow that ``node`` can go to."""
    keys: tuple[str, ...] = ()
    if isinstance(node, PlayNode | CollectNode | SpeechNode | SurveyNode | SetNode):
        keys = ("next",)
    elif isinstance(node, VoicemailNode | CallbackNode | SubflowNode):
        keys = ("next",)
    elif isinstance(node, LookupNode):
        keys = ("found", "not_found")
    elif isinstance(node, ScheduleNode):
        keys = ("open", "closed", "holiday")
    elif isinstance(node, TransferNode):
        keys = ("failed",)
    elif isinstance(node, BranchNode):
        for index, case in enumerate(node.cases):
            yield (f"cases.{index}.next", case.next)
        keys = ("default",)
    elif isinstance(node, GotoNode) and node.flow is None and node.node is not None:
        yield ("node", node.node)
    if isinstance(node, MenuNode):
        for key, target in node.choices.items():
            yield (f"choices.{key}", target)
        for language, phrases in node.phrases.items():
            for phrase, target in phrases.items():
                where = "phrases" if language == ANY_LANGUAGE else f"phrases.{language}"
                yield (f"{where}.{phrase}", target)
    if isinstance(node, InputNode):
        keys = (*keys, "no_input", "no_match", "fallback")
    for key in keys:
        target = getattr(node, key)
        if target is not None:
            yield (key, target)


def flow_refs(node: Node) -> Iterator[tuple[str, str, str | None]]:
    """``(key, flow, node or None)`` for the other flows ``node`` enters."""
    if isinstance(node, SubflowNode):
        yield ("flow", node.flow, None)
    elif isinstance(node, GotoNode) and node.flow is not None:
        yield ("flow", node.flow, node.node)


def node_templates(node: Node) -> Iterator[tuple[str, str]]:
    """``(key, template)`` for every text of ``node`` filled in at run time."""
    if isinstance(node, _Prompted):
        for field in ("prompt", "no_input_prompt", "no_match_prompt"):
            for index, segment in enumerate(getattr(node, field, None) or ()):
                for language, text in segment.items():
                    yield (_segment_key(field, index, language), text)
    if isinstance(node, SetNode):
        for name, value in node.values.items():
            if isinstance(value, str):
                yield (f"values.{name}", value)
    if isinstance(node, LookupNode) and node.value is not None:
        yield ("value", node.value)
    if isinstance(node, QueueNode):
        if isinstance(node.priority, str):
            yield ("priority", node.priority)
        for skill in node.skills:
            yield (f"skills.{skill}", skill)
    if isinstance(node, TransferNode) and node.number is not None:
        yield ("number", node.number)
    if isinstance(node, CallbackNode):
        yield ("number", node.number)


def _segment_key(field: str, index: int, language: str) -> str:
    key = f"{field}.{index}" if index else field
    return key if language == ANY_LANGUAGE else f"{key}.{language}"


def template_names(text: str) -> set[str]:
    """The variables a template reads."""
    return _template_names(text)


def variables_set(node: Node) -> set[str]:
    """The variables ``node`` may set (lookups set :data:`LOOKUP_VARIABLES`)."""
    if isinstance(node, SetNode):
        return set(node.values) | set(node.add)
    if isinstance(node, CollectNode | SpeechNode | SurveyNode):
        return {node.variable}
    if isinstance(node, LookupNode):
        return set(LOOKUP_VARIABLES)
    return set()
