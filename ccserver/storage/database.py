"""Engine set-up for the contact store, plus the read helpers used by the API and reports."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Collection
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, event, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import selectinload
from sqlalchemy.pool import ConnectionPoolEntry

from .models import Contact

__all__ = ["find_contacts", "get_contact", "make_engine", "recent_contacts"]


def _json_default(value: object) -> object:
    """Encode the few non-JSON types call code naturally puts in event data."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    """Tune every new SQLite connection.

    WAL lets the API and reports read while the recorder writes. synchronous=FULL
    makes a commit durable when it returns (NORMAL would let a power cut take
    back the last commits): the recorder deletes its journal once changes are
    committed, so a commit must mean on disk. It costs one WAL fsync per
    transaction, and the recorder commits hundreds of changes per transaction.
    Foreign keys are off by default in SQLite.

    The driver's own transaction handling is switched off (``isolation_level =
    None``) so that SQLAlchemy's BEGIN starts every transaction: Python's sqlite3
    would otherwise begin only at the first INSERT, leaving the reads of a batch
    and every DDL statement of a migration outside the transaction.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def make_engine(url: str, *, sqlite_readers: int | None = None) -> AsyncEngine:
    """Build the async engine for a contact store URL.

    ``sqlite+aiosqlite:///path/to/file.db`` (the parent directory is created) or
    ``postgresql+asyncpg://user:pass@host/db``.

    ``sqlite_readers`` sizes the pool of an engine that only reads SQLite (caller
    lookups, screen-pop history). Each aiosqlite query crosses between the event
    loop and the connection's thread about ten times, so under load a query holds
    its connection for tens of milliseconds; with SQLAlchemy's default 5 + 10
    connections, 100 calls/s (a lookup and a history read each) queued for a
    connection until the lookups timed out. WAL lets any number of readers read
    at once, and a connection costs a file handle and a thread. Ignored for
    PostgreSQL, whose connections are dearer and whose driver needs no thread.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: after a database restart the recorder gets a live connection
        # instead of failing its next batch on a dead pooled one.
        return create_async_engine(parsed, json_serializer=_json_dumps, pool_pre_ping=True)
    database = parsed.database
    is_uri = str(parsed.query.get("uri", "")).lower() in {"1", "true"}
    if database and database != ":memory:" and not is_uri:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if sqlite_readers is not None:
        # Readers run one SELECT at a time (a customer and its satellites at
        # most), which SQLite answers from one snapshot without BEGIN; leaving
        # out BEGIN and the rollback on return saves 4 of 10 thread crossings.
        engine = create_async_engine(
            parsed,
            json_serializer=_json_dumps,
            pool_size=sqlite_readers,
            max_overflow=sqlite_readers,
            pool_reset_on_return=None,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    engine = create_async_engine(parsed, json_serializer=_json_dumps)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(connection: Connection) -> None:
    """Open the transaction ourselves (see ``_sqlite_on_connect``): deferred, SQLite's default."""
    connection.exec_driver_sql("BEGIN")


async def get_contact(engine: AsyncEngine, contact_id: str) -> Contact | None:
    """Load one contact with its timeline in seq order, detached from any session."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        return await session.get(Contact, contact_id, options=[selectinload(Contact.events)])


async def find_contacts(
    engine: AsyncEngine,
    *,
    sip_call_id: str | None = None,
    caller_number: str | None = None,
    limit: int = 100,
    with_events: bool = False,
) -> list[Contact]:
    """Contacts matching every given filter, newest first.

    Timelines are only loaded with ``with_events=True``: lists and reports
    rarely need them and they are the bulk of the data.
    """
    stmt = select(Contact).order_by(Contact.arrived_at.desc(), Contact.id).limit(limit)
    if sip_call_id is not None:
        stmt = stmt.where(Contact.sip_call_id == sip_call_id)
    if caller_number is not None:
        stmt = stmt.where(Contact.caller_number == caller_number)
    if with_events:
        stmt = stmt.options(selectinload(Contact.events))
    async with AsyncSession(engine, expire_on_commit=False) as session:
        return list((await session.scalars(stmt)).all())


RECENT_CONTACT_COLUMNS = (
    "id",
    "arrived_at",
    "ended_at",
    "caller_number",
    "entry_point",
    "queue",
    "agent",
    "outcome",
    "disposition",
    "notes",
    "wait_seconds",
    "talk_seconds",
)
"""What the screen pop shows of an earlier contact: the columns `recent_contacts` reads."""


async def recent_contacts(
    engine: AsyncEngine,
    *,
    customer_id: str | None = None,
    caller_numbers: Collection[str] = (),
    limit: int = 5,
) -> list[Row[Any]]:
    """A caller's latest contacts, newest first, as rows of ``RECENT_CONTACT_COLUMNS``.

    Matches contacts linked to ``customer_id`` or whose caller number is one of
    ``caller_numbers`` (stored as received, so pass every spelling; see
    ``phone.national_variants``). Read for every call offered (the screen-pop
    history), so a plain query on a connection: an ORM session and entities
    cost more than the query itself (docs/performance.md).
    """
    conditions = []
    if customer_id is not None:
        conditions.append(Contact.customer_id == customer_id)
    if caller_numbers:
        conditions.append(Contact.caller_number.in_(sorted(set(caller_numbers))))
    if not conditions or limit < 1:
        return []
    table = Contact.__table__.c
    stmt = (
        select(*(table[name] for name in RECENT_CONTACT_COLUMNS))
        .where(or_(*conditions))
        .order_by(Contact.arrived_at.desc(), Contact.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return list(await conn.execute(stmt))
