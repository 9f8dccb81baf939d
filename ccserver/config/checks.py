"""Rules shared by every configuration model: names, language tags, DTMF keys.

One definition, imported by the server schema and the flow models alike, so
a name valid in one file is valid in every other.
"""

from __future__ import annotations

import re

__all__ = [
    "DTMF_KEYS",
    "LANGUAGE_RE",
    "NAME_RE",
    "check_dtmf_key",
    "check_language",
    "check_name",
]

DTMF_KEYS = "0123456789*#ABCD"
"""The sixteen RFC 4733 §3.2 DTMF events a menu can react to."""

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}([-_][A-Za-z0-9]{1,8})*")


def check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use a letter then letters, digits, '-' or '_' "
            "(at most 64 characters)"
        )
    return value


def check_language(value: str) -> str:
    if not LANGUAGE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a voice/language tag such as 'en' or 'en-us'")
    return value


def check_dtmf_key(value: str) -> str:
    if len(value) != 1 or value not in DTMF_KEYS:
        raise ValueError(f"{value!r} is not a DTMF key: use one of 0-9, *, #, A-D")
    return value
