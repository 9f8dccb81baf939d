"""The contact store: schema, recorder batching, failures, reads.

Every test that takes the ``engine`` fixture runs twice: against a SQLite file
and against a real PostgreSQL 15 (``tests/integration/postgres_server.py``;
marked ``integration``, so ``-m "not integration"`` keeps to SQLite). Tests of
SQLite's own locking take ``sqlite_engine``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.storage import (
    AgentEvent,
    Base,
    ContactRecorder,
    create_schema,
    current_revision,
    find_contacts,
    get_contact,
    make_engine,
    upgrade,
)
from ccserver.storage.migrate import head_revision
from ccserver.storage.recorder import Queued
from tests.integration.postgres_server import PostgresServer, postgres_server  # noqa: F401

T0 = datetime(2024, 5, 6, 9, 30, 0, 123456, tzinfo=UTC)
WAIT = 10.0  # generous ceiling for every wait_for: a hang fails instead of blocking the run


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class ObservedRecorder(ContactRecorder):
    """Lets a test wait for the writer to hit a failure instead of sleeping."""

    retry_initial_delay = 0.02
    retry_max_delay = 0.2

    def __init__(self, engine: AsyncEngine, *, batch_size: int = 500, **options: Any) -> None:
        super().__init__(engine, batch_size=batch_size, **options)
        self.failed = asyncio.Event()
        self.failures = 0

    async def _write_batch(self, run: str | None, batch: Sequence[Queued]) -> None:
        try:
            await super()._write_batch(run, batch)
        except Exception:
            self.failures += 1
            self.failed.set()
            raise


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A missing parent directory: make_engine has to create it.
    return tmp_path / "var" / "contacts.db"


@pytest.fixture
async def sqlite_engine(db_path: Path) -> AsyncIterator[AsyncEngine]:
    # A short busy timeout so a locked database fails fast instead of after 5 s.
    engine = make_engine(f"sqlite+aiosqlite:///{db_path}?timeout=0.2")
    yield engine
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def engine(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{db_path}?timeout=0.2")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        engine = make_engine(server.create_database())
    yield engine
    await engine.dispose()


async def started(recorder: ContactRecorder) -> ContactRecorder:
    """Start and wait for the startup work (schema upgrade), so tests begin at steady state."""
    await recorder.start()
    await asyncio.wait_for(recorder.recover(), WAIT)
    return recorder


@pytest.fixture
async def recorder(engine: AsyncEngine) -> AsyncIterator[ObservedRecorder]:
    recorder = ObservedRecorder(engine, batch_size=50)
    await started(recorder)
    yield recorder
    await asyncio.wait_for(recorder.stop(), WAIT)


@pytest.fixture
async def sqlite_recorder(sqlite_engine: AsyncEngine) -> AsyncIterator[ObservedRecorder]:
    recorder = ObservedRecorder(sqlite_engine, batch_size=50)
    await started(recorder)
    yield recorder
    await asyncio.wait_for(recorder.stop(), WAIT)


@pytest.fixture
def exclusive_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection, as another process would hold one, to take the write lock."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


async def flush(recorder: ContactRecorder) -> None:
    await asyncio.wait_for(recorder.flush(), WAIT)


def open_call(recorder: ContactRecorder, n: int = 0, seconds: float = 0.0) -> str:
    return recorder.open_contact(
        caller_number=f"+3312345{n:04d}",
        dialed_number="+33900000000",
        sip_call_id=f"call-{n}@pbx.example",
        entry_point="main-flow",
        at=at(seconds),
    )


# -- engine and schema --


async def test_sqlite_engine_creates_directory_and_tunes_connections(
    sqlite_engine: AsyncEngine, db_path: Path
) -> None:
    await create_schema(sqlite_engine)
    async with sqlite_engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    # WAL is a property of the file: a plain connection sees it too (a fresh
    # file in the wrong place would report "delete").
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    raw.close()
    assert {"contacts", "contact_events", "agent_events", "customers", "alembic_version"} <= tables
    assert {
        "ix_contacts_arrived_at",
        "ix_contacts_caller_number",
        "ix_contacts_queue",
        "ix_contacts_agent",
    } <= indexes


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_build_exactly_the_models(engine: AsyncEngine) -> None:
    assert await current_revision(engine) is None
    await upgrade(engine)
    assert await current_revision(engine) == head_revision()
    async with engine.connect() as conn:
        assert await conn.run_sync(_schema_differences) == []
    await upgrade(engine)  # at head: nothing to do, no error
    assert await current_revision(engine) == head_revision()


async def test_a_store_made_before_migrations_is_adopted(sqlite_engine: AsyncEngine) -> None:
    # What create_schema() used to leave: the first revision's tables, no version table.
    await upgrade(sqlite_engine, "0001")
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
        await conn.execute(
            text(
                "INSERT INTO contacts (id, caller_number, dialed_number, direction, initiation,"
                " sip_call_id, arrived_at, holds, attributes) VALUES ('old', '0600000001',"
                " '5000', 'inbound', 'inbound', 'c@x', '2024-05-06 09:30:00.000000', 0, '{}')"
            )
        )
    assert await current_revision(sqlite_engine) is None
    await upgrade(sqlite_engine)
    assert await current_revision(sqlite_engine) == head_revision()
    old = await get_contact(sqlite_engine, "old")
    assert old is not None and old.customer_id is None and old.arrived_at.tzinfo is UTC
    async with sqlite_engine.connect() as conn:
        assert await conn.run_sync(_schema_differences) == []


# -- round trips --


async def test_round_trip_keeps_timeline_order_and_computes_durations(
    recorder: ObservedRecorder, engine: AsyncEngine
) -> None:
    cid = recorder.open_contact(
        caller_number="+33123456789",
        caller_name="Ada",
        dialed_number="+33900000000",
        sip_call_id="a84b4c76e66710@pc33.example",
        entry_point="main-flow",
        at=T0,
    )
    recorder.event(cid, "prompt", {"prompt": "welcome"}, at=at(1))
    recorder.event(cid, "digit", {"digit": "1"}, at=at(4))
    recorder.update(cid, queue="sales", enqueued_at=at(5), attributes={"lang": "fr"})
    recorder.event(cid, "queued", {"queue": "sales"}, at=at(5))
    recorder.event(cid, "offered", {"agent": "1001"}, at=at(19))
    recorder.update(cid, agent="1001", answered_at=at(20))
    recorder.event(cid, "answered", at=at(20))
    recorder.update(cid, holds=1, hold_seconds=10.0)
    recorder.close_contact(cid, outcome="answered", disconnect_reason="caller", at=at(80))
    await flush(recorder)
    assert recorder.pending == 0

    contact = await get_contact(engine, cid)
    assert contact is not None
    assert (contact.caller_number, contact.caller_name) == ("+33123456789", "Ada")
    assert contact.sip_call_id == "a84b4c76e66710@pc33.example"
    assert (contact.direction, contact.initiation) == ("inbound", "inbound")
    assert (contact.queue, contact.agent, contact.node) == ("sales", "1001", "node1")
    assert contact.arrived_at == T0 and contact.arrived_at.tzinfo is UTC
    assert (contact.enqueued_at, contact.answered_at, contact.ended_at) == (at(5), at(20), at(80))
    assert contact.wait_seconds == pytest.approx(15.0)  # enqueued -> answered
    assert contact.talk_seconds == pytest.approx(50.0)  # answered -> ended, less 10 s hold
    assert (contact.holds, contact.hold_seconds) == (1, 10.0)
    assert (contact.outcome, contact.disconnect_reason) == ("answered", "caller")
    assert contact.attributes == {"lang": "fr"}
    assert [(e.seq, e.type) for e in contact.events] == list(
        enumerate(["arrived", "prompt", "digit", "queued", "offered", "answered", "ended"])
    )
    assert contact.events[2].data == {"digit": "1"}
    assert contact.events[-1].data == {"outcome": "answered", "disconnect_reason": "caller"}
    assert contact.events[-1].at == at(80)  # microseconds kept


async def test_times_in_other_zones_are_stored_as_utc(
    recorder: ObservedRecorder, engine: AsyncEngine
) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 6, 11, 30, 0, 5, tzinfo=paris)
    cid = open_call(recorder)
    recorder.event(cid, "note", at=local)
    await flush(recorder)
    contact = await get_contact(engine, cid)
    assert contact is not None
    stored = contact.events[1].at
    assert stored == local and stored.tzinfo is UTC and stored.hour == 9


async def test_abandoned_call_waits_until_the_end(
    recorder: ObservedRecorder, engine: AsyncEngine
) -> None:
    cid = open_call(recorder)
    recorder.update(cid, queue="support", enqueued_at=at(3))
    recorder.close_contact(cid, outcome="abandoned", disconnect_reason="caller", at=at(45))
    ivr_only = open_call(recorder, 1)
    recorder.close_contact(ivr_only, outcome="completed-ivr", disconnect_reason=None, at=at(9))
    await flush(recorder)
    abandoned = await get_contact(engine, cid)
    assert abandoned is not None
    assert (abandoned.wait_seconds, abandoned.talk_seconds) == (42.0, None)
    ivr = await get_contact(engine, ivr_only)
    assert ivr is not None
    assert (ivr.wait_seconds, ivr.talk_seconds, ivr.disconnect_reason) == (None, None, None)


async def test_interleaved_contacts_keep_their_order_across_batches(
    engine: AsyncEngine,
) -> None:
    recorder = ObservedRecorder(engine, batch_size=7)  # many small batches
    await recorder.start()
    try:
        ids = [open_call(recorder, n) for n in range(40)]
        for step in range(12):
            for n, cid in enumerate(ids):
                recorder.event(cid, "step", {"step": step}, at=at(step + 1))
                if step == 2:
                    recorder.update(cid, queue=f"q{n % 3}", enqueued_at=at(3))
                if step == 5:
                    recorder.update(cid, agent=f"10{n:02d}", answered_at=at(3 + n))
        for cid in ids:
            recorder.close_contact(cid, outcome="answered", disconnect_reason="agent", at=at(100))
        await flush(recorder)
        assert recorder.failures == 0
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)

    for n, cid in enumerate(ids):
        contact = await get_contact(engine, cid)
        assert contact is not None
        assert [e.seq for e in contact.events] == list(range(14))
        assert [e.data.get("step") for e in contact.events[1:13]] == list(range(12))
        assert contact.events[-1].type == "ended"
        assert (contact.queue, contact.agent) == (f"q{n % 3}", f"10{n:02d}")
        assert contact.wait_seconds == pytest.approx(n)
        assert contact.talk_seconds == pytest.approx(97 - n)


async def test_agent_events_round_trip(recorder: ObservedRecorder, engine: AsyncEngine) -> None:
    recorder.agent_event("1001", "login", at=at(0))
    recorder.agent_event("1001", "not-ready", reason="lunch", data={"code": 4}, at=at(1))
    recorder.agent_event("1002", "available", at=at(2))
    await flush(recorder)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                AgentEvent.__table__.select()
                .where(AgentEvent.agent == "1001")
                .order_by(AgentEvent.id)
            )
        ).all()
    assert [(r.state, r.reason, r.data, r.at) for r in rows] == [
        ("login", None, {}, at(0)),
        ("not-ready", "lunch", {"code": 4}, at(1)),
    ]


async def test_find_contacts_newest_first(recorder: ObservedRecorder, engine: AsyncEngine) -> None:
    first = open_call(recorder, 7, seconds=0)
    second = open_call(recorder, 7, seconds=60)
    other = open_call(recorder, 8, seconds=30)
    await flush(recorder)
    by_caller = await find_contacts(engine, caller_number="+33123450007")
    assert [c.id for c in by_caller] == [second, first]
    by_call_id = await find_contacts(engine, sip_call_id="call-8@pbx.example", with_events=True)
    assert [c.id for c in by_call_id] == [other]
    assert [e.type for e in by_call_id[0].events] == ["arrived"]
    assert len(await find_contacts(engine, limit=2)) == 2
    assert await get_contact(engine, "0" * 32) is None


# -- the call path never waits --


async def test_enqueue_is_synchronous_even_while_the_database_is_locked(
    sqlite_recorder: ObservedRecorder, exclusive_lock: sqlite3.Connection
) -> None:
    recorder = sqlite_recorder
    for name in ("open_contact", "event", "update", "close_contact", "agent_event"):
        assert not inspect.iscoroutinefunction(getattr(ContactRecorder, name)), name
    exclusive_lock.execute("BEGIN EXCLUSIVE")
    started = time.perf_counter()
    cid = open_call(recorder)
    for i in range(1000):
        recorder.event(cid, "tick", {"i": i})
    recorder.update(cid, queue="sales")
    recorder.agent_event("1001", "available")
    recorder.close_contact(cid, outcome="failed", disconnect_reason="system")
    elapsed = time.perf_counter() - started
    # Nothing was awaited, so the writer cannot have run: everything is still queued.
    assert recorder.pending == 1004
    assert elapsed < 1.0, f"enqueueing 1004 changes took {elapsed:.3f} s"
    exclusive_lock.execute("ROLLBACK")
    await flush(recorder)
    assert recorder.pending == 0


async def test_update_validates_in_the_caller(recorder: ObservedRecorder) -> None:
    cid = open_call(recorder)
    with pytest.raises(ValueError, match="not contact columns"):
        recorder.update(cid, colour="blue")
    with pytest.raises(ValueError, match="not contact columns"):
        recorder.update(cid, id="x")
    with pytest.raises(ValueError, match="naive datetime"):
        recorder.update(cid, answered_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="outcome must be one of"):
        recorder.close_contact(cid, outcome="lost", disconnect_reason="caller")
    with pytest.raises(ValueError, match="cannot be stored"):
        recorder.event(cid, "bad-data", {"value": object()})  # not JSON
    with pytest.raises(ValueError, match="cannot be stored"):
        recorder.event(cid, "nan", {"value": float("nan")})  # not JSON either
    with pytest.raises(ValueError, match="direction must be one of"):
        recorder.open_contact(
            caller_number="1", dialed_number="2", sip_call_id="c", direction="sideways"
        )
    assert recorder.pending == 1  # only the open
    await flush(recorder)


# -- stop, restart --


async def test_stop_drains_the_queue(engine: AsyncEngine) -> None:
    # A long linger and a big batch: only stop() makes the writer go now.
    recorder = ContactRecorder(engine, batch_size=100_000, flush_interval=60.0)
    await recorder.start()
    ids = [open_call(recorder, n) for n in range(200)]
    for cid in ids:
        recorder.event(cid, "queued")
        recorder.close_contact(cid, outcome="abandoned", disconnect_reason="caller")
    assert recorder.pending == 600
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert recorder.pending == 0
    for cid in (ids[0], ids[-1]):
        contact = await get_contact(engine, cid)
        assert contact is not None
        assert [e.type for e in contact.events] == ["arrived", "queued", "ended"]


async def test_a_new_recorder_continues_timelines_it_did_not_open(engine: AsyncEngine) -> None:
    first = ContactRecorder(engine, node="node1")
    await first.start()
    cid = open_call(first)
    first.event(cid, "queued", at=at(2))
    first.update(cid, enqueued_at=at(2), answered_at=at(12), agent="1001")
    await asyncio.wait_for(first.stop(), WAIT)

    # As after a restart: no seq counter in memory, times only in the database.
    second = ContactRecorder(engine, node="node2")
    await second.start()
    try:
        second.event(cid, "hold", at=at(20))
        second.update(cid, holds=1, hold_seconds=5.0)
        second.close_contact(cid, outcome="answered", disconnect_reason="agent", at=at(42))
        second.update(cid, disposition="sale", wrap_seconds=30.0)
        second.event(cid, "wrap-up-ended", at=at(72))
        await flush(second)
    finally:
        await asyncio.wait_for(second.stop(), WAIT)
    contact = await get_contact(engine, cid)
    assert contact is not None
    assert [(e.seq, e.type) for e in contact.events] == list(
        enumerate(["arrived", "queued", "hold", "ended", "wrap-up-ended"])
    )
    assert (contact.wait_seconds, contact.talk_seconds) == (10.0, 25.0)
    assert (contact.disposition, contact.wrap_seconds, contact.node) == ("sale", 30.0, "node1")


async def test_flush_without_a_writer_refuses_to_hang(engine: AsyncEngine) -> None:
    recorder = ContactRecorder(engine)
    await recorder.flush()  # nothing queued: returns at once
    open_call(recorder)
    with pytest.raises(RuntimeError, match="not running"):
        await recorder.flush()
    # Queued before start() is fine: start() writes it.
    await recorder.start()
    await flush(recorder)
    await asyncio.wait_for(recorder.stop(), WAIT)


# -- failures --


async def test_locked_database_is_retried_and_nothing_is_lost(
    sqlite_recorder: ObservedRecorder,
    sqlite_engine: AsyncEngine,
    exclusive_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder, engine = sqlite_recorder, sqlite_engine
    caplog.set_level(logging.INFO, logger="ccserver.storage")
    before = open_call(recorder, 1)
    await flush(recorder)

    exclusive_lock.execute("BEGIN EXCLUSIVE")
    cid = open_call(recorder, 2)
    recorder.event(before, "during-lock")
    await asyncio.wait_for(recorder.failed.wait(), WAIT)
    # The call path keeps going while the writer retries.
    for i in range(120):
        recorder.event(cid, "tick", {"i": i})
    recorder.close_contact(cid, outcome="interrupted", disconnect_reason="system")
    assert recorder.pending >= 122
    exclusive_lock.execute("ROLLBACK")
    await flush(recorder)

    contact = await get_contact(engine, cid)
    assert contact is not None
    assert [e.seq for e in contact.events] == list(range(122))
    assert [e.data.get("i") for e in contact.events[1:-1]] == list(range(120))
    earlier = await get_contact(engine, before)
    assert earlier is not None
    assert [e.type for e in earlier.events] == ["arrived", "during-lock"]
    failures = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failures) == 1, "the same error is logged once, not on every retry"
    assert "database is locked" in failures[0].getMessage()
    assert any("resumed" in r.getMessage() for r in caplog.records)
    assert recorder.rejected == 0


async def test_missing_table_is_retried_until_it_is_back(
    recorder: ObservedRecorder, engine: AsyncEngine
) -> None:
    cid = open_call(recorder)
    await flush(recorder)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE agent_events"))
    recorder.agent_event("1001", "login", at=at(1))
    recorder.event(cid, "after-drop")
    await asyncio.wait_for(recorder.failed.wait(), WAIT)
    assert recorder.pending == 2
    async with engine.begin() as conn:  # the migrations think it is there: recreate by hand
        await conn.run_sync(Base.metadata.create_all)
    await flush(recorder)
    contact = await get_contact(engine, cid)
    assert contact is not None
    assert [e.type for e in contact.events] == ["arrived", "after-drop"]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM agent_events"))).scalar() == 1


async def test_refused_changes_are_set_aside_without_blocking_the_rest(
    recorder: ObservedRecorder, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    cid = open_call(recorder)
    recorder.event(cid, "good-1")
    recorder.event("f" * 32, "orphan")  # no such contact
    recorder.update(cid, caller_number=None)  # NOT NULL: refused by both databases
    recorder.event(cid, "good-2")
    recorder.open_contact(
        caller_number="1", dialed_number="2", sip_call_id="dup", contact_id=cid
    )  # duplicate id
    await flush(recorder)
    assert recorder.rejected == 3
    contact = await get_contact(engine, cid)
    assert contact is not None
    assert [(e.seq, e.type) for e in contact.events] == [
        (0, "arrived"),
        (1, "good-1"),
        (2, "good-2"),
    ]
    refused = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refused) == 3
    assert any("f" * 32 in r.getMessage() for r in refused)


async def test_cancelled_stop_keeps_the_queue_for_a_restart(
    sqlite_engine: AsyncEngine, exclusive_lock: sqlite3.Connection
) -> None:
    engine = sqlite_engine
    recorder = ObservedRecorder(engine)
    await started(recorder)
    exclusive_lock.execute("BEGIN EXCLUSIVE")
    cid = open_call(recorder)
    recorder.event(cid, "queued")
    await asyncio.wait_for(recorder.failed.wait(), WAIT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(recorder.stop(), 0.05)  # a shutdown deadline passes
    assert recorder.pending == 2
    exclusive_lock.execute("ROLLBACK")
    await recorder.start()
    await flush(recorder)
    await asyncio.wait_for(recorder.stop(), WAIT)
    contact = await get_contact(engine, cid)
    assert contact is not None
    assert [e.type for e in contact.events] == ["arrived", "queued"]


# -- throughput --


async def test_throughput_smoke(engine: AsyncEngine) -> None:
    recorder = ContactRecorder(engine)
    await recorder.start()
    try:
        started = time.perf_counter()
        ids = [open_call(recorder, n) for n in range(100)]
        for i in range(99):
            for cid in ids:
                recorder.event(cid, "tick", {"i": i})
        total = recorder.pending
        await flush(recorder)
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)
    assert total == 10_000
    print(f"\ncontact recorder: {total} events in {elapsed:.2f} s = {total / elapsed:,.0f}/s")
    assert elapsed < 5.0
