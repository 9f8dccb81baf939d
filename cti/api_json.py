"""JSON for the API: the few non-JSON values views carry (dates, sets, dataclasses)."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from datetime import date, datetime, time
from typing import Any

__all__ = ["dumps"]


def _default(value: object) -> object:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """``json.dumps`` that also takes dates, sets, enums and dataclasses."""
    return json.dumps(value, default=_default, ensure_ascii=False)
