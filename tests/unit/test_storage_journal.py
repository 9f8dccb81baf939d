"""The recorder's journal: encoding, reading back, acknowledgement, replay exactly once.

A crash is simulated in-process by cancelling ``stop()`` (a shutdown deadline):
the journal is left behind as after a kill, and a second recorder on the same
directory recovers it. The real ``kill -9`` is in
``tests/integration/test_storage_durability.py``.
"""

# ruff: noqa: F811 - the shared fixtures are imported from test_storage and named as parameters

from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.storage import ContactRecorder, JournalCheckpoint, get_contact
from ccserver.storage import journal as journal_module
from ccserver.storage.journal import Journal, JournalBusyError, JournalReader
from ccserver.storage.models import ContactEvent
from ccserver.storage.ops import (
    AgentOp,
    CloseOp,
    EventOp,
    Op,
    OpenOp,
    Queued,
    UpdateOp,
    decode_op,
    encode_op,
)
from tests.integration.postgres_server import postgres_server  # noqa: F401 - fixture
from tests.unit.test_storage import (  # noqa: F401 - fixtures
    WAIT,
    ObservedRecorder,
    at,
    db_path,
    engine,
    exclusive_lock,
    flush,
    open_call,
    sqlite_engine,
    started,
)

T0 = datetime(2024, 5, 6, 9, 30, 0, 123456, tzinfo=UTC)


async def crash(recorder: ContactRecorder) -> None:
    """Stop without draining, as a kill would: the journal stays for the next start."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(recorder.stop(), 0.05)


async def event_counts(engine: AsyncEngine) -> dict[tuple[str, int], int]:
    """(contact, n) -> how many timeline rows carry that event number."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(ContactEvent.contact_id, ContactEvent.data))
        counts: dict[tuple[str, int], int] = {}
        for contact_id, data in rows:
            if "n" in data:
                key = (contact_id, data["n"])
                counts[key] = counts.get(key, 0) + 1
    return counts


def write_segment(directory: Path, first: int, lines: Sequence[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{first:012d}.jsonl").write_bytes(b"".join(lines))


def event_line(seq: int, n: int) -> bytes:
    return encode_op(seq, EventOp("c1", "tick", T0, {"n": n}))


# -- encoding --


def test_every_kind_of_change_survives_the_journal() -> None:
    later = T0 + timedelta(seconds=5)
    ops: list[Op] = [
        OpenOp(
            {
                "id": "c1",
                "caller_number": "0600000001",
                "caller_name": "김민준",
                "arrived_at": T0,
                "answered_at": None,
                "attributes": {"lang": "ko", "nested": {"k": [1, 2]}},
            }
        ),
        EventOp("c1", "digit", later, {"digit": "1", "at": later}),
        UpdateOp("c1", {"answered_at": later, "agent": "1001", "hold_seconds": 2.5}),
        CloseOp("c1", "answered", "caller", later),
        AgentOp({"agent": "1001", "state": "on-call", "reason": None, "at": T0, "data": {}}),
    ]
    for seq, op in enumerate(ops, 1):
        line = encode_op(seq, op)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        back = decode_op(line)
        assert back.seq == seq
        if isinstance(op, EventOp):
            # Data is stored as JSON: a datetime inside it comes back as its ISO text.
            assert back.op == EventOp("c1", "digit", later, {"digit": "1", "at": later.isoformat()})
        else:
            assert back.op == op
    assert "김민준" in encode_op(1, ops[0]).decode()  # readable, not \\u-escaped


@pytest.mark.parametrize(
    "line",
    [b"", b"{", b"[]", b'{"s": 0, "k": "event"}', b'{"s": 1, "k": "nope"}', b'{"s": 1}'],
)
def test_lines_that_are_not_changes_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="journal line"):
        decode_op(line)


# -- reading back --


def test_reader_skips_repeats_cut_and_corrupt_lines(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_segment(
        run,
        1,
        [
            event_line(1, 1),
            event_line(2, 2),
            event_line(2, 2),  # an append repeated after a cancelled wait
            b'{"s": 3, "k": "eve\n',  # damaged
            event_line(3, 3)[:20],  # cut by a crash, then the next segment began
        ],
    )
    write_segment(run, 3, [event_line(3, 3), event_line(4, 4), event_line(5, 5)[:-1]])
    reader = JournalReader(run, 1)
    got = reader.read(100)
    assert [q.seq for q in got] == [1, 2, 3, 4]  # 5 has no newline yet: not read
    assert reader.corrupt == 2
    assert reader.read(100) == []
    # The rest of line 5 arrives: the reader picks it up where it stopped.
    with (run / f"{3:012d}.jsonl").open("ab") as handle:
        handle.write(b"\n")
    assert [q.seq for q in reader.read(100)] == [5]
    reader.close()


def test_reader_starts_mid_journal_and_stops_at_upto(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_segment(run, 1, [event_line(s, s) for s in range(1, 11)])
    write_segment(run, 11, [event_line(s, s) for s in range(11, 21)])
    reader = JournalReader(run, 14)
    assert [q.seq for q in reader.read(3)] == [14, 15, 16]
    assert [q.seq for q in reader.read(100, upto=18)] == [17, 18]
    assert [q.seq for q in reader.read(100)] == [19, 20]
    reader.close()
    early = JournalReader(run, 2)
    assert [q.seq for q in early.read(100, upto=12)] == list(range(2, 13))
    early.close()


async def test_one_writer_per_journal_directory(tmp_path: Path) -> None:
    first = Journal(tmp_path / "journal", "run-a")
    first.open()
    try:
        with pytest.raises(JournalBusyError):
            Journal(tmp_path / "journal", "run-b").open()
    finally:
        first.close(remove=True)
    second = Journal(tmp_path / "journal", "run-b")
    second.open()  # free again
    second.close(remove=True)
    assert list((tmp_path / "journal").iterdir()) == [tmp_path / "journal" / "lock"]


async def test_segments_rotate_and_applied_ones_are_deleted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal", "run", segment_bytes=300)
    journal.open()
    try:
        seq = 1
        for _ in range(6):
            lines = [event_line(s, s) for s in range(seq, seq + 3)]
            await journal.append(b"".join(lines), seq)
            seq += 3
        files = sorted(p.name for p in journal.directory.iterdir())
        assert len(files) > 2
        assert await journal.discard_through(9) >= 1
        left = sorted(int(p.stem) for p in journal.directory.iterdir())
        assert left[0] <= 10 and left == sorted(left)
        reader = JournalReader(journal.directory, 10)
        assert [q.seq for q in reader.read(100)] == list(range(10, 19))
        reader.close()
    finally:
        journal.close(remove=True)


# -- acknowledgement --


async def test_changes_are_acknowledged_while_the_database_is_locked(
    sqlite_engine: AsyncEngine, exclusive_lock: sqlite3.Connection, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    recorder = ObservedRecorder(sqlite_engine, journal_dir=journal)
    await started(recorder)
    exclusive_lock.execute("BEGIN EXCLUSIVE")
    cid = open_call(recorder)
    for n in range(200):
        recorder.event(cid, "tick", {"n": n})
    await asyncio.wait_for(recorder.sync(), WAIT)
    assert recorder.acknowledged == recorder.enqueued == 201
    assert recorder.pending == 201  # nothing committed: the journal alone holds them
    run = recorder.journal_directory
    assert run is not None
    lines = b"".join(p.read_bytes() for p in sorted(run.glob("*.jsonl"))).splitlines()
    assert [decode_op(line).seq for line in lines] == list(range(1, 202))
    exclusive_lock.execute("ROLLBACK")
    await flush(recorder)
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert not run.exists(), "a clean stop leaves no journal behind"
    assert sorted(p.name for p in journal.iterdir()) == ["lock"]
    async with sqlite_engine.connect() as conn:
        checkpoints = await conn.execute(select(func.count()).select_from(JournalCheckpoint))
        assert checkpoints.scalar() == 0


async def test_without_a_journal_acknowledged_means_committed(engine: AsyncEngine) -> None:
    recorder = await started(ContactRecorder(engine))
    try:
        open_call(recorder)
        await asyncio.wait_for(recorder.sync(), WAIT)
        assert recorder.acknowledged == 1 and recorder.pending == 0
        assert recorder.journal_directory is None
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)


async def test_a_failing_journal_is_retried_without_repeating_lines(
    sqlite_engine: AsyncEngine,
    exclusive_lock: sqlite3.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = ObservedRecorder(sqlite_engine, journal_dir=tmp_path / "journal")
    recorder.retry_initial_delay = 0.01
    await started(recorder)
    exclusive_lock.execute("BEGIN EXCLUSIVE")
    failed = asyncio.Event()
    real_write_all = journal_module._write_all

    def full_disk_once(fd: int, data: bytes) -> None:
        if not failed.is_set():
            # Half the data reaches the file, then the disk is full.
            real_write_all(fd, data[: len(data) // 2])
            failed.set()
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, data)

    monkeypatch.setattr(journal_module, "_write_all", full_disk_once)
    cid = open_call(recorder)
    for n in range(50):
        recorder.event(cid, "tick", {"n": n})
    await asyncio.wait_for(failed.wait(), WAIT)
    await asyncio.wait_for(recorder.sync(), WAIT)
    assert recorder.pending == 51
    run = recorder.journal_directory
    assert run is not None
    seqs = [
        decode_op(line).seq
        for p in sorted(run.glob("*.jsonl"))
        for line in p.read_bytes().splitlines()
    ]
    # The half-written first attempt did not stay in the file: every line once.
    assert seqs[-51:] == list(range(1, 52)) and len(seqs) == len(set(seqs))
    assert any("No space left" in r.getMessage() for r in caplog.records)
    exclusive_lock.execute("ROLLBACK")
    await flush(recorder)
    await asyncio.wait_for(recorder.stop(), WAIT)


# -- exactly once --


async def test_replay_after_a_crash_applies_each_change_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    first = ObservedRecorder(engine, journal_dir=journal, node="pbx1")
    await started(first)
    done = open_call(first, 1, seconds=0)
    first.close_contact(done, outcome="answered", disconnect_reason="caller", at=at(30))
    live = open_call(first, 2, seconds=10)
    first.update(live, queue="sales", enqueued_at=at(11))
    for n in range(20):
        first.event(live, "tick", {"n": n}, at=at(12 + n))
    await flush(first)
    committed = first.enqueued

    # Make the writer fail until the crash, so the rest is only in the journal.
    async def down(run: str | None, batch: Sequence[Queued]) -> None:
        raise OSError("connection refused")

    first._write_batch = down  # type: ignore[method-assign]
    for n in range(20, 60):
        first.event(live, "tick", {"n": n}, at=at(12 + n))
    first.update(live, answered_at=at(80), agent="1001")
    await asyncio.wait_for(first.sync(), WAIT)
    assert first.pending == first.enqueued - committed == 41
    await crash(first)

    second = ContactRecorder(engine, journal_dir=journal, node="pbx1")
    await second.start()
    try:
        report = await asyncio.wait_for(second.recover(), WAIT)
        await flush(second)
    finally:
        await asyncio.wait_for(second.stop(), WAIT)
    assert (report.runs, report.corrupt) == (1, 0)
    assert report.replayed == 41
    assert report.interrupted == [live]

    counts = await event_counts(engine)
    assert {n for (_, n), c in counts.items() if c == 1} == set(range(60))
    assert all(c == 1 for c in counts.values())
    contact = await get_contact(engine, live)
    assert contact is not None
    assert [e.seq for e in contact.events] == list(range(len(contact.events)))
    assert (contact.outcome, contact.disconnect_reason) == ("interrupted", "system")
    assert contact.ended_at == at(12 + 59)  # when it was last heard of, not the restart
    assert contact.agent == "1001" and contact.talk_seconds == 0.0  # answered after the last event
    assert contact.wait_seconds == pytest.approx(69.0)
    untouched = await get_contact(engine, done)
    assert untouched is not None and untouched.outcome == "answered"
    assert sorted(p.name for p in journal.iterdir()) == ["lock"]
    async with engine.connect() as conn:
        left = await conn.execute(select(func.count()).select_from(JournalCheckpoint))
        assert left.scalar() == 0


async def test_an_ambiguous_commit_is_not_applied_twice(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    class LostReply(ObservedRecorder):
        """Commits, then reports a failure, as when the connection dies after COMMIT."""

        lost = 0

        async def _write_batch(self, run: str | None, batch: Sequence[Queued]) -> None:
            await ContactRecorder._write_batch(self, run, batch)
            if self.lost < 2:
                self.lost += 1
                raise OSError("connection reset by peer")

    recorder = LostReply(engine, batch_size=10, journal_dir=tmp_path / "journal")
    recorder.retry_initial_delay = 0.01
    await started(recorder)
    try:
        cid = open_call(recorder)
        for n in range(35):
            recorder.event(cid, "tick", {"n": n})
        recorder.update(cid, holds=1)
        await flush(recorder)
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)
    assert recorder.lost == 2
    counts = await event_counts(engine)
    assert counts == {(cid, n): 1 for n in range(35)}
    contact = await get_contact(engine, cid)
    assert contact is not None
    assert [e.seq for e in contact.events] == list(range(36))


async def test_the_own_checkpoint_is_read_once_then_after_a_failure_or_a_restart(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Our last commit set it, so it is not read back per batch; what makes that safe is
    re-reading after any failed attempt (see the ambiguous commit) and after a stop."""
    reads: list[str] = []

    def note(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if "journal_checkpoints" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    recorder = ObservedRecorder(engine, journal_dir=tmp_path / "journal")
    try:
        await started(recorder)
        reads.clear()
        cid = open_call(recorder)
        for n in range(5):
            recorder.event(cid, "tick", {"n": n})
            await flush(recorder)  # one batch each
        assert len(reads) == 1

        async def down(run: str | None, batch: Sequence[Queued]) -> None:
            recorder.failed.set()
            raise OSError("connection refused")

        recorder._write_batch = down  # type: ignore[method-assign]
        recorder.event(cid, "tick", {"n": 5})
        await asyncio.wait_for(recorder.failed.wait(), WAIT)
        del recorder._write_batch  # the database is back
        await flush(recorder)
        assert len(reads) == 2
        await asyncio.wait_for(recorder.stop(), WAIT)  # a clean stop deletes the row

        await started(recorder)  # the same object again: the row must come back
        recorder.event(cid, "tick", {"n": 6})
        await flush(recorder)
        assert len(reads) == 3
        async with engine.connect() as conn:
            rows = (await conn.execute(select(JournalCheckpoint.applied_seq))).all()
        assert [seq for (seq,) in rows] == [recorder.enqueued]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
        await asyncio.wait_for(recorder.stop(), WAIT)
    assert await event_counts(engine) == {(cid, n): 1 for n in range(7)}


async def test_a_long_outage_spills_to_the_journal_and_catches_up(
    sqlite_engine: AsyncEngine,
    exclusive_lock: sqlite3.Connection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = ObservedRecorder(sqlite_engine, batch_size=40, journal_dir=tmp_path / "journal")
    recorder.memory_limit = 100
    recorder.retry_max_delay = 0.05
    await started(recorder)
    exclusive_lock.execute("BEGIN EXCLUSIVE")
    ids = [open_call(recorder, k) for k in range(10)]
    for n in range(100):
        for cid in ids:
            recorder.event(cid, "tick", {"n": n})
        if n % 10 == 0:
            await asyncio.wait_for(recorder.sync(), WAIT)
    await asyncio.wait_for(recorder.sync(), WAIT)
    assert recorder.pending == 1010
    assert any("in the journal only" in r.getMessage() for r in caplog.records)
    assert len(recorder._ops) <= 100, "journalled changes left memory"
    exclusive_lock.execute("ROLLBACK")
    await flush(recorder)
    await asyncio.wait_for(recorder.stop(), WAIT)
    counts = await event_counts(sqlite_engine)
    assert counts == {(cid, n): 1 for cid in ids for n in range(100)}
    for cid in (ids[0], ids[-1]):
        contact = await get_contact(sqlite_engine, cid)
        assert contact is not None
        assert [e.data.get("n") for e in contact.events[1:]] == list(range(100))


async def test_refused_changes_are_kept_for_an_operator(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    recorder = await started(ContactRecorder(engine, journal_dir=journal))
    try:
        recorder.event("f" * 32, "orphan", {"n": 1})
        await flush(recorder)
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)
    assert recorder.rejected == 1
    (kept,) = (journal / "rejected.jsonl").read_bytes().splitlines()
    record: dict[str, Any] = json.loads(kept)
    assert record["reason"] == "no such contact"
    assert record["op"]["c"] == "f" * 32 and record["op"]["d"] == {"n": 1}


async def test_restart_closes_only_this_nodes_open_contacts(engine: AsyncEngine) -> None:
    mine = ContactRecorder(engine, node="pbx1")
    other = ContactRecorder(engine, node="pbx2")
    for rec in (mine, other):
        await started(rec)
    a = open_call(mine, 1, seconds=0)
    mine.event(a, "queued", at=at(4))
    b = open_call(mine, 2, seconds=1)  # nothing after its arrival
    c = open_call(other, 3, seconds=2)  # another node's live call
    d = open_call(mine, 4, seconds=3)
    mine.close_contact(d, outcome="abandoned", disconnect_reason="caller", at=at(9))
    await flush(mine)
    await flush(other)
    await asyncio.wait_for(mine.stop(), WAIT)  # as if the process had died: a, b never closed

    again = ContactRecorder(engine, node="pbx1")
    await again.start()
    try:
        report = await asyncio.wait_for(again.recover(), WAIT)
        await flush(again)
    finally:
        await asyncio.wait_for(again.stop(), WAIT)
        await asyncio.wait_for(other.stop(), WAIT)
    assert sorted(report.interrupted) == sorted([a, b])
    closed_a, closed_b = await get_contact(engine, a), await get_contact(engine, b)
    assert closed_a is not None and closed_b is not None
    assert (closed_a.outcome, closed_a.ended_at) == ("interrupted", at(4))
    assert (closed_b.outcome, closed_b.ended_at) == ("interrupted", at(1))
    assert [e.type for e in closed_a.events] == ["arrived", "queued", "ended"]
    still = await get_contact(engine, c)
    assert still is not None and still.outcome is None
    abandoned = await get_contact(engine, d)
    assert abandoned is not None and abandoned.outcome == "abandoned"


async def test_startup_waits_for_the_database_and_calls_go_on(
    sqlite_engine: AsyncEngine,
    exclusive_lock: sqlite3.Connection,
    tmp_path: Path,
) -> None:
    # The database is locked before the schema exists: start() must not care.
    exclusive_lock.execute("BEGIN EXCLUSIVE")
    recorder = ContactRecorder(sqlite_engine, journal_dir=tmp_path / "journal")
    recorder.retry_max_delay = 0.05
    await recorder.start()
    cid = open_call(recorder)
    recorder.event(cid, "tick", {"n": 0})
    await asyncio.wait_for(recorder.sync(), WAIT)  # acknowledged without the database
    recovering = asyncio.ensure_future(recorder.recover())
    await asyncio.wait_for(recorder.sync(), WAIT)
    assert not recovering.done(), "recover() waits for the schema"
    exclusive_lock.execute("ROLLBACK")
    report = await asyncio.wait_for(recovering, WAIT)
    assert report.runs == 0 and report.interrupted == []
    await flush(recorder)
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert await event_counts(sqlite_engine) == {(cid, 0): 1}


async def test_recover_before_start_is_an_error(sqlite_engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await ContactRecorder(sqlite_engine).recover()
