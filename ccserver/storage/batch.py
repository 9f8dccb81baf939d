"""One batch of queued changes as a few bulk statements, plus the journal checkpoints.

Pure planning (:func:`plan_batch`) folds a batch, in order, into inserts,
updates and timeline rows given what the database already holds; the async
helpers read that state and execute the plan inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import Base
from .ops import AgentOp, CloseOp, EventOp, Op, OpenOp, UpdateOp

__all__ = [
    "Plan",
    "applied_seq",
    "delete_checkpoint",
    "execute_plan",
    "ids_to_look_up",
    "load_contacts",
    "open_contacts",
    "plan_batch",
    "set_applied_seq",
]

_CONTACTS: Final[Table] = Base.metadata.tables["contacts"]
_EVENTS: Final[Table] = Base.metadata.tables["contact_events"]
_AGENT_EVENTS: Final[Table] = Base.metadata.tables["agent_events"]
_CHECKPOINTS: Final[Table] = Base.metadata.tables["journal_checkpoints"]

# Columns the close-time durations are computed from.
_TIMING_COLUMNS: Final = ("arrived_at", "enqueued_at", "answered_at", "hold_seconds")
# Keeps IN (...) lists well under SQLite's and asyncpg's bound-parameter limits.
_LOOKUP_CHUNK: Final = 500


@dataclass(slots=True)
class _Stored:
    """What a batch needs to know of a contact already in the database."""

    timing: dict[str, Any]  # the _TIMING_COLUMNS as stored
    last_seq: int | None


@dataclass(slots=True)
class Plan:
    """A batch folded into bulk statements, plus what it refused and the seqs it used."""

    inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    agent_events: list[dict[str, Any]] = field(default_factory=list)
    next_seq: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[Op, str]] = field(default_factory=list)


def ids_to_look_up(batch: Iterable[Op], known_seq: Mapping[str, int]) -> set[str]:
    """Contacts the batch touches but did not open: closes need their stored times,
    and contacts without a remembered seq need their last seq (and to exist)."""
    opened = {op.contact_id for op in batch if isinstance(op, OpenOp)}
    ids: set[str] = set()
    for op in batch:
        if isinstance(op, EventOp | UpdateOp | CloseOp) and op.contact_id not in opened:
            if isinstance(op, CloseOp) or op.contact_id not in known_seq:
                ids.add(op.contact_id)
    return ids


async def load_contacts(conn: AsyncConnection, ids: set[str]) -> dict[str, _Stored]:
    """The timing columns and last timeline seq of ``ids``, in chunks the drivers accept."""
    if not ids:
        return {}
    last_seq = (
        select(func.max(_EVENTS.c.seq))
        .where(_EVENTS.c.contact_id == _CONTACTS.c.id)
        .scalar_subquery()
        .label("last_seq")
    )
    columns = [_CONTACTS.c[name] for name in _TIMING_COLUMNS]
    ordered = sorted(ids)
    stored: dict[str, _Stored] = {}
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        chunk = ordered[start : start + _LOOKUP_CHUNK]
        stmt = select(_CONTACTS.c.id, *columns, last_seq).where(_CONTACTS.c.id.in_(chunk))
        for row in await conn.execute(stmt):
            mapping = row._mapping
            timing = {name: mapping[name] for name in _TIMING_COLUMNS}
            stored[mapping["id"]] = _Stored(timing, mapping["last_seq"])
    return stored


def plan_batch(
    batch: Iterable[Op], stored: Mapping[str, _Stored], known_seq: Mapping[str, int]
) -> Plan:
    """Fold a batch, in order, into a few bulk statements.

    Later updates of a contact override earlier ones, updates of a contact opened
    in the same batch go into its INSERT, and closes see every earlier update.
    """
    plan = Plan()
    timing: dict[str, dict[str, Any]] = {}  # per contact, as of this point in the batch

    def next_seq(contact_id: str) -> int | None:
        seq = plan.next_seq.get(contact_id)
        if seq is None:
            candidates = []
            if contact_id in known_seq:
                candidates.append(known_seq[contact_id])
            if (found := stored.get(contact_id)) is not None:
                candidates.append(0 if found.last_seq is None else found.last_seq + 1)
            if not candidates:
                return None
            seq = max(candidates)
        plan.next_seq[contact_id] = seq + 1
        return seq

    def exists(contact_id: str) -> bool:
        return contact_id in plan.next_seq or contact_id in known_seq or contact_id in stored

    def set_fields(contact_id: str, values: Mapping[str, Any]) -> None:
        target = plan.inserts.get(contact_id)
        if target is None:
            target = plan.updates.setdefault(contact_id, {})
        target.update(values)
        view = timing.get(contact_id)
        if view is not None and view is not target:
            view.update((k, v) for k, v in values.items() if k in _TIMING_COLUMNS)

    def add_event(contact_id: str, seq: int, type_: str, at: datetime, data: Any) -> None:
        plan.events.append(
            {"contact_id": contact_id, "seq": seq, "type": type_, "at": at, "data": data}
        )

    for op in batch:
        if isinstance(op, AgentOp):
            plan.agent_events.append(op.row)
            continue
        cid = op.contact_id
        if isinstance(op, OpenOp):
            if exists(cid):
                plan.refused.append((op, "a contact with this id already exists"))
                continue
            row = dict(op.row)
            plan.inserts[cid] = row
            timing[cid] = row
            plan.next_seq[cid] = 1
            add_event(cid, 0, "arrived", row["arrived_at"], {})
            continue
        if not exists(cid):
            plan.refused.append((op, "no such contact"))
            continue
        if cid not in timing and cid in stored:
            # From the first touch on, so the close sees updates earlier in the batch.
            timing[cid] = dict(stored[cid].timing)
        if isinstance(op, UpdateOp):
            set_fields(cid, op.fields)
        elif isinstance(op, EventOp):
            seq = next_seq(cid)
            assert seq is not None  # exists() checked above
            add_event(cid, seq, op.type, op.at, op.data)
        else:
            if cid not in timing:  # only if the lookup did not find it
                plan.refused.append((op, "no such contact"))
                continue
            wait, talk = _durations(timing[cid], op.at)
            set_fields(
                cid,
                {
                    "ended_at": op.at,
                    "outcome": op.outcome,
                    "disconnect_reason": op.disconnect_reason,
                    "wait_seconds": wait,
                    "talk_seconds": talk,
                },
            )
            seq = next_seq(cid)
            assert seq is not None
            data = {"outcome": op.outcome, "disconnect_reason": op.disconnect_reason}
            add_event(cid, seq, "ended", op.at, data)
    return plan


def _durations(timing: Mapping[str, Any], ended_at: datetime) -> tuple[float | None, float | None]:
    """Wait: enqueued until answered (or until the end if never answered).
    Talk: answered until the end, minus the time on hold. Never negative."""
    enqueued_at: datetime | None = timing.get("enqueued_at")
    answered_at: datetime | None = timing.get("answered_at")
    hold: float = timing.get("hold_seconds") or 0.0
    wait = None
    if enqueued_at is not None:
        wait = max(0.0, ((answered_at or ended_at) - enqueued_at).total_seconds())
    talk = None
    if answered_at is not None:
        talk = max(0.0, (ended_at - answered_at).total_seconds() - hold)
    return wait, talk


async def execute_plan(conn: AsyncConnection, plan: Plan) -> None:
    """Run the plan's statements in the caller's transaction, contacts before their events."""
    # Contacts first: events reference them.
    if plan.inserts:
        await conn.execute(insert(_CONTACTS), list(plan.inserts.values()))
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for contact_id, values in plan.updates.items():
        if values:
            params = {f"v_{name}": value for name, value in values.items()}
            params["c_id"] = contact_id
            groups.setdefault(tuple(sorted(values)), []).append(params)
    for names, rows in groups.items():
        stmt = (
            update(_CONTACTS)
            .where(_CONTACTS.c.id == bindparam("c_id"))
            .values({name: bindparam(f"v_{name}", type_=_CONTACTS.c[name].type) for name in names})
        )
        await conn.execute(stmt, rows)
    if plan.events:
        await conn.execute(insert(_EVENTS), plan.events)
    if plan.agent_events:
        await conn.execute(insert(_AGENT_EVENTS), plan.agent_events)


# -- journal checkpoints: applied in the same transaction as the batch ----------------------


async def applied_seq(conn: AsyncConnection, journal_id: str) -> int | None:
    """The last seq of ``journal_id`` applied here, locking the row (PostgreSQL) until commit.

    None when nothing of that journal was ever applied.
    """
    stmt = (
        select(_CHECKPOINTS.c.applied_seq)
        .where(_CHECKPOINTS.c.journal_id == journal_id)
        .with_for_update()
    )
    value = (await conn.execute(stmt)).scalar()
    return None if value is None else int(value)


async def set_applied_seq(
    conn: AsyncConnection, journal_id: str, node: str, seq: int, *, exists: bool
) -> None:
    """Record that ``journal_id`` is applied through ``seq``."""
    now = datetime.now(UTC)
    if exists:
        stmt = (
            update(_CHECKPOINTS)
            .where(_CHECKPOINTS.c.journal_id == journal_id)
            .values(applied_seq=seq, updated_at=now)
        )
        await conn.execute(stmt)
    else:
        values = {"journal_id": journal_id, "node": node, "applied_seq": seq, "updated_at": now}
        await conn.execute(insert(_CHECKPOINTS).values(values))


async def delete_checkpoint(conn: AsyncConnection, journal_id: str) -> None:
    """Forget a journal whose files are gone (so it can never be replayed again)."""
    await conn.execute(delete(_CHECKPOINTS).where(_CHECKPOINTS.c.journal_id == journal_id))


async def open_contacts(conn: AsyncConnection, node: str) -> list[tuple[str, datetime]]:
    """Contacts of ``node`` never closed, each with the time it was last heard of.

    That time (its last timeline entry, else its arrival) is when a crashed
    call is taken to have ended: the restart may come much later.
    """
    last_at = func.max(_EVENTS.c.at)
    stmt = (
        select(_CONTACTS.c.id, _CONTACTS.c.arrived_at, last_at)
        .select_from(_CONTACTS.outerjoin(_EVENTS, _EVENTS.c.contact_id == _CONTACTS.c.id))
        .where(_CONTACTS.c.node == node, _CONTACTS.c.ended_at.is_(None))
        .group_by(_CONTACTS.c.id, _CONTACTS.c.arrived_at)
        .order_by(_CONTACTS.c.arrived_at)
    )
    rows = await conn.execute(stmt)
    found: list[tuple[str, datetime]] = []
    for contact_id, arrived_at, last in rows:
        # max() over a UTCDateTime column comes back untyped on SQLite: a naive string.
        when = _as_utc(last) if last is not None else arrived_at
        found.append((contact_id, max(when, arrived_at)))
    return found


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, not {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
