"""Turning TOML and pydantic errors into sentences an admin can act on.

pydantic reports a location tuple and a terse type; an admin wants the key
path as written in the file, what was expected in TOML's own words, and the
closest valid key when they mistyped one.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_SYNTAX_POSITION = re.compile(
    r"^(?P<what>.*) \(at (?P<where>line \d+, column \d+|end of document)\)$"
)

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a table",
    "model_type": "a table",
    "list_type": "an array",
    "tuple_type": "an array",
}


def _toml_reason(message: str) -> str:
    """tomllib's 'Invalid value (at line 2, column 5)' as 'line 2, column 5: invalid value'."""
    match = _SYNTAX_POSITION.match(message)
    if match is None:
        return message
    what = match["what"]
    return f"{match['where']}: {what[:1].lower()}{what[1:]}"


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_members(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(arg) for arg in get_args(tp)]
    return []


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    if field is None:
        return None
    args = get_args(field.annotation)
    return str(args[0]) if args else None


def _follow(root: Any, loc: tuple[int | str, ...]) -> tuple[str, Any, Any]:
    """The dotted key for ``loc``, the type at its parent and at the end.

    Walking the model types tells the discriminator tags that pydantic puts in
    ``loc`` (``nodes.welcome.menu.prompt``) from real keys, and gives the
    allowed keys where an unknown one was found.
    """
    parts: list[str] = []
    tp: Any = root
    parent: Any = None
    for segment in loc:
        if segment == "[key]":
            continue
        tp = _unwrap(tp)
        members = _union_members(tp)
        if members:
            tagged = {_tag_of(m): m for m in members if _is_model(m)}
            if segment in tagged:
                tp = tagged[segment]
                continue
            models = [m for m in members if _is_model(m)]
            tp = models[0] if len(models) == 1 else None
        parts.append(str(segment))
        parent = tp
        if _is_model(tp):
            field = tp.model_fields.get(str(segment))
            tp = field.annotation if field is not None else None
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) in (tuple, list):
            tp = get_args(tp)[0]
        else:
            tp = None
    return ".".join(parts), parent, _unwrap(tp)


def _pydantic_problems(exc: ValidationError, root: Any) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for detail in exc.errors(include_url=False):
        if _echo_of_item_errors(detail):
            continue
        key, parent, here = _follow(root, detail["loc"])
        problems.append((key, _reason(detail, key, parent, here)))
    return problems


def _echo_of_item_errors(detail: ErrorDetails) -> bool:
    """A length error that only counts items already reported as invalid."""
    if detail["type"] != "too_short":
        return False
    value = detail["input"]
    minimum = (detail.get("ctx") or {}).get("min_length", 0)
    return isinstance(value, list | tuple | dict) and len(value) >= minimum


def _reason(detail: ErrorDetails, key: str, parent: Any, here: Any) -> str:
    kind = detail["type"]
    value = detail["input"]
    ctx = detail.get("ctx") or {}
    message = detail["msg"]
    if kind == "extra_forbidden":
        allowed = list(parent.model_fields) if _is_model(parent) else []
        return _unknown_key(key.rsplit(".", 1)[-1], allowed)
    if kind == "missing":
        return "required table is missing" if _is_model(here) else "required key is missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_toml_type(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}; got {_toml_type(value)}"
    if kind == "union_tag_invalid":
        return f"unknown kind {ctx.get('tag')!r}; use one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "missing 'kind' (what this node does)"
    if kind in ("value_error", "assertion_error"):
        return message.split(", ", 1)[1] if ", " in message else message
    if kind in ("too_short", "too_long"):
        if kind == "too_short" and ctx.get("min_length") == 1:
            return "must not be empty"
        return message[:1].lower() + message[1:]
    reason = message.replace("Input should be", "must be")
    return f"{reason}; got {_toml_type(value)}"


def _unknown_key(
    name: str, allowed: Sequence[str], *, homes: Mapping[str, str] | None = None
) -> str:
    """'unknown key', with the closest allowed key or the file a table belongs in."""
    if homes and name in homes:
        return f"unknown key: [{name}] belongs in {homes[name]}"
    allowed = [key for key in allowed if key != "kind"]
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key (allowed: {', '.join(allowed)})"
