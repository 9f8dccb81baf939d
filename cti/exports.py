"""Contact exports for existing tools: CSV and JSON lines, streamed from the store.

Contacts are read in pages ordered by ``(arrived_at, id)`` and each page is
written before the next is read (keyset pagination): memory stays flat however
many contacts the range holds, no transaction is held open for the length of
the export, and the same query works on SQLite and PostgreSQL. Timelines, when
asked for, are loaded one page of contacts at a time.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TextIO

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ccserver.storage.models import AgentEvent, Contact, ContactEvent

__all__ = [
    "CONTACT_COLUMNS",
    "ExportFilter",
    "contact_csv_row",
    "contact_json",
    "iter_agent_events",
    "iter_contacts",
    "write_contacts_csv",
    "write_contacts_jsonl",
]

CONTACT_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in Contact.__table__.columns)
"""Every column of ``contacts``, in table order: the CSV header."""

PAGE_SIZE: Final = 500


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which contacts to export: ``since <= arrived_at < until``, optionally one queue."""

    since: datetime | None = None
    until: datetime | None = None
    queue: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value: datetime | None = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} {value.isoformat()} has no time zone: add one (e.g. Z)")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("until is before since")


async def iter_contacts(
    engine: AsyncEngine,
    flt: ExportFilter = ExportFilter(),
    *,
    with_events: bool = False,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[tuple[Contact, list[ContactEvent]]]:
    """Contacts in arrival order, each with its timeline (empty unless ``with_events``)."""
    after: tuple[datetime, str] | None = None
    while True:
        stmt = select(Contact).order_by(Contact.arrived_at, Contact.id).limit(page_size)
        if flt.since is not None:
            stmt = stmt.where(Contact.arrived_at >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(Contact.arrived_at < flt.until)
        if flt.queue is not None:
            stmt = stmt.where(Contact.queue == flt.queue)
        if after is not None:
            at, cid = after
            stmt = stmt.where(
                or_(Contact.arrived_at > at, and_(Contact.arrived_at == at, Contact.id > cid))
            )
        async with AsyncSession(engine, expire_on_commit=False) as session:
            page = list((await session.scalars(stmt)).all())
            timelines: dict[str, list[ContactEvent]] = {c.id: [] for c in page}
            if with_events and page:
                events = await session.scalars(
                    select(ContactEvent)
                    .where(ContactEvent.contact_id.in_(list(timelines)))
                    .order_by(ContactEvent.contact_id, ContactEvent.seq)
                )
                for ev in events:
                    timelines[ev.contact_id].append(ev)
        for contact in page:
            yield contact, timelines[contact.id]
        if len(page) < page_size:
            return
        after = (page[-1].arrived_at, page[-1].id)


async def iter_agent_events(
    engine: AsyncEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[AgentEvent]:
    """Agent state changes in time order (then id), paged like :func:`iter_contacts`."""
    after: tuple[datetime, int] | None = None
    while True:
        stmt = select(AgentEvent).order_by(AgentEvent.at, AgentEvent.id).limit(page_size)
        if since is not None:
            stmt = stmt.where(AgentEvent.at >= since)
        if until is not None:
            stmt = stmt.where(AgentEvent.at < until)
        if after is not None:
            at, eid = after
            stmt = stmt.where(
                or_(AgentEvent.at > at, and_(AgentEvent.at == at, AgentEvent.id > eid))
            )
        async with AsyncSession(engine, expire_on_commit=False) as session:
            page = list((await session.scalars(stmt)).all())
        for ev in page:
            yield ev
        if len(page) < page_size:
            return
        after = (page[-1].at, page[-1].id)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def contact_json(contact: Contact, events: Sequence[ContactEvent] | None = None) -> dict[str, Any]:
    """One contact as a JSON object: every column, times in ISO 8601 UTC."""
    out = {name: _json_value(getattr(contact, name)) for name in CONTACT_COLUMNS}
    if events is not None:
        out["events"] = [
            {"seq": ev.seq, "type": ev.type, "at": ev.at.isoformat(), "data": ev.data}
            for ev in events
        ]
    return out


def contact_csv_row(contact: Contact) -> list[str]:
    """One contact as CSV cells: null is empty, attributes a JSON object."""
    cells = []
    for name in CONTACT_COLUMNS:
        value = getattr(contact, name)
        if value is None:
            cells.append("")
        elif isinstance(value, datetime):
            cells.append(value.isoformat())
        elif isinstance(value, dict):
            cells.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
        else:
            cells.append(str(value))
    return cells


async def write_contacts_csv(engine: AsyncEngine, out: TextIO, flt: ExportFilter) -> int:
    """Write the header and one row per contact; returns the number of contacts."""
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 §2: CRLF line breaks
    writer.writerow(CONTACT_COLUMNS)
    count = 0
    async for contact, _ in iter_contacts(engine, flt):
        writer.writerow(contact_csv_row(contact))
        count += 1
    return count


async def write_contacts_jsonl(
    engine: AsyncEngine, out: TextIO, flt: ExportFilter, *, with_events: bool = False
) -> int:
    """Write one JSON object a line per contact; returns the number of contacts."""
    count = 0
    async for contact, events in iter_contacts(engine, flt, with_events=with_events):
        obj = contact_json(contact, events if with_events else None)
        out.write(json.dumps(obj, ensure_ascii=False, default=str))
        out.write("\n")
        count += 1
    return count
