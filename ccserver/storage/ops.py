"""The changes the call path queues for the contact store, and their journal form.

Each operation is encoded once, when it is queued, as one line of JSON: the
line is what the journal writes, and encoding in the caller turns data that
could never be stored (an object that is not JSON) into a ``ValueError`` where
the mistake was made instead of a rejected write later.

A line is ``{"s": SEQ, "k": KIND, ...}``: ``s`` numbers the operations of one
recorder run from 1 without gaps, in queue order, and ``k`` is one of ``open``,
``event``, ``update``, ``close``, ``agent``. Datetimes are ISO 8601 with their
offset. Decoding a line gives back an equal operation (JSON values inside
``data`` and ``attributes`` come back as the JSON the database would store).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

from .database import _json_default
from .models import Base, UTCDateTime

__all__ = [
    "AgentOp",
    "CloseOp",
    "EventOp",
    "Op",
    "OpenOp",
    "Queued",
    "UpdateOp",
    "decode_op",
    "encode_op",
]

_CONTACT_DATETIMES: Final = frozenset(
    c.key for c in Base.metadata.tables["contacts"].columns if isinstance(c.type, UTCDateTime)
)


@dataclass(frozen=True, slots=True)
class OpenOp:
    """Insert a contact row (complete, every column) and its "arrived" event."""

    row: dict[str, Any]

    @property
    def contact_id(self) -> str:
        return str(self.row["id"])


@dataclass(frozen=True, slots=True)
class EventOp:
    """Append one timeline entry; its seq is assigned when written, in queue order."""

    contact_id: str
    type: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateOp:
    """Set contact columns."""

    contact_id: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CloseOp:
    """End a contact: set ended_at and outcome, compute wait/talk, add an "ended" event."""

    contact_id: str
    outcome: str
    disconnect_reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentOp:
    """Insert one agent state change."""

    row: dict[str, Any]


Op = OpenOp | EventOp | UpdateOp | CloseOp | AgentOp


class Queued(NamedTuple):
    """An operation with its number in its recorder run's journal."""

    seq: int
    op: Op


# One encoder for every line: json.dumps with options builds a new one per call.
# allow_nan=False: NaN is not JSON and PostgreSQL's JSONB refuses it.
_ENCODER: Final = json.JSONEncoder(
    default=_json_default, ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


def _dates_out(values: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {
        k: v.isoformat() if k in names and isinstance(v, datetime) else v for k, v in values.items()
    }


def _dates_in(values: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {
        k: datetime.fromisoformat(v) if k in names and isinstance(v, str) else v
        for k, v in values.items()
    }


def encode_op(seq: int, op: Op) -> bytes:
    """One journal line, newline included; ValueError if the op holds what JSON cannot."""
    body: dict[str, Any]
    if isinstance(op, EventOp):
        body = {"k": "event", "c": op.contact_id, "t": op.type, "at": op.at.isoformat()}
        body["d"] = op.data
    elif isinstance(op, UpdateOp):
        body = {"k": "update", "c": op.contact_id, "f": _dates_out(op.fields, _CONTACT_DATETIMES)}
    elif isinstance(op, OpenOp):
        body = {"k": "open", "r": _dates_out(op.row, _CONTACT_DATETIMES)}
    elif isinstance(op, CloseOp):
        body = {"k": "close", "c": op.contact_id, "o": op.outcome, "r": op.disconnect_reason}
        body["at"] = op.at.isoformat()
    else:
        body = {"k": "agent", "r": _dates_out(op.row, frozenset({"at"}))}
    try:
        text = _ENCODER.encode({"s": seq, **body})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot be stored: {exc}") from None
    return text.encode() + b"\n"


def decode_op(line: bytes) -> Queued:
    """The operation of one journal line; ValueError if the line is not one."""
    try:
        obj = json.loads(line)
        seq = obj["s"]
        kind = obj["k"]
        op: Op
        if kind == "event":
            op = EventOp(obj["c"], obj["t"], datetime.fromisoformat(obj["at"]), obj["d"])
        elif kind == "update":
            op = UpdateOp(obj["c"], _dates_in(obj["f"], _CONTACT_DATETIMES))
        elif kind == "open":
            op = OpenOp(_dates_in(obj["r"], _CONTACT_DATETIMES))
        elif kind == "close":
            op = CloseOp(obj["c"], obj["o"], obj["r"], datetime.fromisoformat(obj["at"]))
        elif kind == "agent":
            op = AgentOp(_dates_in(obj["r"], frozenset({"at"})))
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a journal line: {exc}") from None
    if not isinstance(seq, int) or seq < 1:
        raise ValueError(f"not a journal line: bad seq {seq!r}")
    return Queued(seq, op)
