"""A call's flow variables: filling in templates and testing branch conditions.

Variables hold what the flow learnt (digits collected, phrases heard, the
customer found, values set). Keys and spoken answers arrive as text, lookups
may give numbers, so comparisons are lenient in one precise way: two values
that both read as numbers compare as numbers ("0042" equals 42), anything
else compares as text, case and all (a regex with ``(?i)`` ignores case).
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ccserver.config.flows import Case, TemplateRef, parse_template

__all__ = ["Rendered", "Value", "as_number", "as_text", "holds", "render", "same"]

Value = str | int | float | bool
"""What a variable holds."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A filled-in template, and the variables it named that were not set."""

    text: str
    missing: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1024)
def _parts(template: str) -> tuple[str | TemplateRef, ...]:
    return parse_template(template)


def as_text(value: Value) -> str:
    """How a value is spoken and attached: booleans as 'true'/'false', 2.0 as '2'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_number(value: Value | None) -> float | None:
    """The value as a number, or None if it does not read as one."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def render(template: str, variables: Mapping[str, Value]) -> Rendered:
    """Fill in ``{name}`` (and ``{name:digits}``); unset variables become ''."""
    out: list[str] = []
    missing: list[str] = []
    for part in _parts(template):
        if isinstance(part, str):
            out.append(part)
            continue
        value = variables.get(part.name)
        if value is None:
            missing.append(part.name)
            continue
        text = as_text(value)
        if part.filter == "digits":
            # TTS reads "100042" as a number; callers want it back digit by digit.
            text = " ".join(text.replace(" ", ""))
        out.append(text)
    return Rendered("".join(out), tuple(missing))


def same(value: Value, expected: Value) -> bool:
    """Equality as branch conditions mean it (see the module docstring)."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return as_text(value).lower() == as_text(expected).lower()
    a, b = as_number(value), as_number(expected)
    if a is not None and b is not None:
        return a == b
    return as_text(value) == as_text(expected)


def holds(case: Case, variables: Mapping[str, Value]) -> bool:
    """Whether every test of ``case`` holds for the variable it names."""
    value = variables.get(case.var)
    if case.is_set is not None and (value is not None and value != "") != case.is_set:
        return False
    if case.not_equals is not None and value is not None and same(value, case.not_equals):
        return False
    tests_value = (
        case.equals,
        case.one_of,
        case.lt,
        case.le,
        case.gt,
        case.ge,
        case.matches,
    )
    if all(test is None for test in tests_value):
        return True
    if value is None:
        return False
    if case.equals is not None and not same(value, case.equals):
        return False
    if case.one_of is not None and not any(same(value, item) for item in case.one_of):
        return False
    if case.matches is not None and not re.fullmatch(case.matches, as_text(value)):
        return False
    number = as_number(value)
    bounds = ((case.lt, operator.lt), (case.le, operator.le), (case.gt, operator.gt))
    for bound, compare in (*bounds, (case.ge, operator.ge)):
        if bound is not None and (number is None or not compare(number, bound)):
            return False
    return True
