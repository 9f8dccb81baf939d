"""Nothing acknowledged is lost: kill -9 mid-traffic and database outages, on SQLite and PostgreSQL.

The recorder runs in a child process (``recorder_child.py``) that prints each
change once :meth:`ContactRecorder.sync` has acknowledged it; the test kills it
with SIGKILL, recovers with a new recorder on the same journal and checks that
every printed change is in the database exactly once and that the contacts it
left open are closed as ``interrupted``. Outages are a second SQLite
connection holding the write lock, or PostgreSQL stopped with ``-m immediate``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.storage import ContactRecorder, make_engine, upgrade
from ccserver.storage.models import Contact, ContactEvent
from ccserver.storage.recorder import Queued
from tests.integration.postgres_server import PostgresServer, postgres_server  # noqa: F401

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
NODE = "child"


class Store:
    """One database under test, and how to take it away and give it back."""

    def __init__(self, kind: str, url: str, server: PostgresServer | None, path: Path | None):
        self.kind = kind
        self.url = url
        self.server = server
        self.path = path
        self._lock: sqlite3.Connection | None = None

    async def outage(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.stop, "immediate")  # as a crash would
        else:
            self._lock = await asyncio.to_thread(self._take_write_lock)

    def _take_write_lock(self) -> sqlite3.Connection:
        """Another connection takes SQLite's write lock, between two of the recorder's commits.

        SQLite's busy handler is not fair: a writer committing back to back can
        starve one waiting attempt, so keep trying (in a thread: traffic goes on).
        """
        assert self.path is not None
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=0.05, check_same_thread=False
        )
        deadline = time.monotonic() + WAIT
        while True:
            try:
                conn.execute("BEGIN EXCLUSIVE")
                return conn
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    conn.close()
                    raise

    async def restore(self) -> None:
        if self.server is not None:
            if not self.server.running:
                await asyncio.to_thread(self.server.start)
        elif self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "contacts.db"
        # A short busy timeout: a locked database fails the batch fast, to be retried.
        store = Store("sqlite", f"sqlite+aiosqlite:///{path}?timeout=0.2", None, path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        store = Store("postgresql", server.create_database(), server, None)
    try:
        yield store
    finally:
        await store.restore()


@dataclass
class Acked:
    """What the child reported as acknowledged."""

    opened: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    events: dict[int, str] = field(default_factory=dict)  # n -> contact

    def feed(self, line: bytes) -> None:
        kind, cid, *rest = line.decode().split()
        if kind == "O":
            self.opened.add(cid)
        elif kind == "C":
            self.closed.add(cid)
        else:
            self.events[int(rest[0])] = cid


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def run_child_until(
    store: Store, journal: Path, events: int, log: Path, sync: str = "fsync"
) -> tuple[Acked, float]:
    """Run the child until it acknowledged ``events`` events, then SIGKILL it.

    Returns what it acknowledged (every complete line, also those still in the
    pipe at the kill) and its rate in acknowledged events per second.
    """
    with log.open("wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.recorder_child",
            store.url,
            str(journal),
            "--node",
            NODE,
            "--sync",
            sync,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert child.stdout is not None
    acked = Acked()
    loop = asyncio.get_running_loop()
    buffer = b""
    try:
        async with asyncio.timeout(WAIT):
            assert await child.stdout.readline() == b"READY\n", tail(log)
            started = loop.time()
            # Read in big chunks: a slow reader would block the child on a full pipe,
            # and the kill would find it idle instead of mid-traffic.
            while len(acked.events) < events:
                chunk = await child.stdout.read(1 << 20)
                assert chunk, f"child exited early:\n{tail(log)}"
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    acked.feed(line)
            elapsed = loop.time() - started
    finally:
        child.kill()  # SIGKILL: no handler, no flush, no goodbye
        await child.wait()
    assert child.returncode == -9
    # Whatever complete lines are still in the pipe were printed after sync() too.
    *lines, _cut = (buffer + await child.stdout.read()).split(b"\n")
    for line in lines:
        acked.feed(line)
    return acked, len(acked.events) / elapsed


async def recover(engine: AsyncEngine, journal: Path) -> tuple[int, list[str]]:
    """Start a recorder where the child was, as the restarted server would."""
    recorder = ContactRecorder(engine, node=NODE, journal_dir=journal)
    recorder.retry_max_delay = 0.2
    await recorder.start()
    try:
        report = await asyncio.wait_for(recorder.recover(), WAIT)
        await asyncio.wait_for(recorder.flush(), WAIT)
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)
    assert report.corrupt == 0
    return report.replayed, report.interrupted


async def check_store(engine: AsyncEngine, acked: Acked) -> dict[str, int]:
    """Every acknowledged change present once, every timeline whole, no contact left open."""
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                select(
                    ContactEvent.contact_id, ContactEvent.seq, ContactEvent.type, ContactEvent.data
                )
            )
        ).all()
        contacts = (
            await conn.execute(select(Contact.id, Contact.outcome).where(Contact.node == NODE))
        ).all()
    ticks = Counter((cid, data["n"]) for cid, _, kind, data in events if kind == "tick")
    missing = [n for n, cid in acked.events.items() if ticks[(cid, n)] == 0]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    twice = [key for key, count in ticks.items() if count > 1]
    assert not twice, f"{len(twice)} events written twice, e.g. {twice[:5]}"

    outcomes = dict(contacts)
    assert acked.opened <= outcomes.keys()
    assert all(outcomes[cid] == "answered" for cid in acked.closed)
    assert None not in outcomes.values(), "a contact was left open"
    timelines: dict[str, list[tuple[int, str]]] = {}
    for cid, seq, kind, _ in events:
        timelines.setdefault(cid, []).append((seq, kind))
    for cid, timeline in timelines.items():
        timeline.sort()
        assert [seq for seq, _ in timeline] == list(range(len(timeline))), cid
        assert timeline[0][1] == "arrived" and timeline[-1][1] == "ended", cid
    return Counter(o for o in outcomes.values() if o is not None)


async def test_kill_9_mid_traffic_loses_no_acknowledged_change(
    store: Store, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    acked, rate = await run_child_until(store, journal, 20_000, tmp_path / "child.log")
    engine = make_engine(store.url)
    try:
        replayed, interrupted = await recover(engine, journal)
        outcomes = await check_store(engine, acked)
    finally:
        await engine.dispose()
    assert interrupted and set(interrupted).isdisjoint(acked.closed)
    assert outcomes["interrupted"] == len(interrupted)
    print(
        f"\n{store.kind}: child acknowledged {len(acked.events)} events at {rate:,.0f}/s "
        f"(journal fsync per append); after kill -9, {replayed} changes replayed from the "
        f"journal, {len(interrupted)} contacts closed as interrupted"
    )
    assert list(journal.iterdir()) == [journal / "lock"]


async def test_kill_9_while_the_database_is_down(store: Store, tmp_path: Path) -> None:
    await upgrade(store.url)
    await store.outage()
    journal = tmp_path / "journal"
    acked, _ = await run_child_until(store, journal, 5_000, tmp_path / "child.log")
    await store.restore()
    engine = make_engine(store.url)
    try:
        replayed, interrupted = await recover(engine, journal)
        await check_store(engine, acked)
    finally:
        await engine.dispose()
    # Nothing reached the database before the kill: everything came from the journal.
    assert replayed >= len(acked.events) + len(acked.opened) + len(acked.closed)
    assert interrupted


class Traffic:
    """Calls in progress, written as fast as the loop allows; closes each after a few events."""

    def __init__(self, recorder: ContactRecorder) -> None:
        self.recorder = recorder
        self.acked = Acked()
        self.live: dict[str, int] = {}
        self.n = 0
        self.progress = asyncio.Event()
        self.stopping = False

    async def run(self) -> None:
        rec = self.recorder
        serial = 0
        while not self.stopping:
            pending: list[bytes] = []
            for _ in range(20):
                while len(self.live) < 8:
                    serial += 1
                    cid = rec.open_contact(
                        caller_number=f"06{serial:08d}",
                        dialed_number="5000",
                        sip_call_id=str(serial),
                    )
                    self.live[cid] = 0
                    pending.append(f"O {cid}".encode())
                for cid in list(self.live):
                    rec.event(cid, "tick", {"n": self.n})
                    pending.append(f"E {cid} {self.n}".encode())
                    self.n += 1
                    self.live[cid] += 1
                    if self.live[cid] >= 30:
                        rec.close_contact(cid, outcome="answered", disconnect_reason="caller")
                        pending.append(f"C {cid}".encode())
                        del self.live[cid]
            await rec.sync()
            for line in pending:
                self.acked.feed(line)
            self.progress.set()

    async def until(self, events: int) -> None:
        while len(self.acked.events) < events:
            self.progress.clear()
            await self.progress.wait()

    def close_all(self) -> None:
        for cid in self.live:
            self.recorder.close_contact(cid, outcome="answered", disconnect_reason="caller")
            self.acked.closed.add(cid)
        self.live.clear()


class WatchedRecorder(ContactRecorder):
    """Lets the test see the first failed write instead of guessing when it happens."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failed = asyncio.Event()

    async def _write_batch(self, run: str | None, batch: Sequence[Queued]) -> None:
        try:
            await super()._write_batch(run, batch)
        except Exception:
            self.failed.set()
            raise


async def test_outage_mid_traffic_then_back_every_event_once(store: Store, tmp_path: Path) -> None:
    engine = make_engine(store.url)
    recorder = WatchedRecorder(engine, node=NODE, journal_dir=tmp_path / "journal")
    recorder.retry_max_delay = 0.2
    recorder.memory_limit = 3_000  # a long outage: most of it waits in the journal only
    await recorder.start()
    await asyncio.wait_for(recorder.recover(), WAIT)
    traffic = Traffic(recorder)
    task = asyncio.create_task(traffic.run())
    try:
        async with asyncio.timeout(WAIT):
            await traffic.until(2_000)
            await store.outage()
            await recorder.failed.wait()
            during = len(traffic.acked.events)
            await traffic.until(during + 15_000)  # calls go on meanwhile
            behind = recorder.pending
            await store.restore()
            await traffic.until(len(traffic.acked.events) + 2_000)
        traffic.stopping = True
        await asyncio.wait_for(task, WAIT)
        traffic.close_all()
        await asyncio.wait_for(recorder.flush(), WAIT)
    finally:
        traffic.stopping = True
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT)
        await asyncio.wait_for(recorder.stop(), WAIT)
    try:
        outcomes = await check_store(engine, traffic.acked)
    finally:
        await engine.dispose()
    assert behind > 10_000, "the outage was real: changes waited"
    assert outcomes == {"answered": len(traffic.acked.opened)}
    assert recorder.rejected == 0


@pytest.mark.parametrize("sync", ["fsync", "write", None])
async def test_throughput(store: Store, tmp_path: Path, sync: str | None) -> None:
    """Prints events/s into each database; asserts only a floor a slow CI machine meets."""
    engine = make_engine(store.url)
    journal = tmp_path / "journal" if sync else None
    recorder = ContactRecorder(engine, journal_dir=journal, sync=sync or "fsync")  # type: ignore[arg-type]
    await recorder.start()
    await asyncio.wait_for(recorder.recover(), WAIT)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        ids = [
            recorder.open_contact(
                caller_number=f"+336{n:08d}", dialed_number="5000", sip_call_id=str(n)
            )
            for n in range(200)
        ]
        for i in range(99):
            for cid in ids:
                recorder.event(cid, "tick", {"i": i})
            await asyncio.sleep(0)  # let the writers run, as a busy call path would
        total = recorder.enqueued
        await asyncio.wait_for(recorder.sync(), WAIT)
        acked = loop.time() - started
        await asyncio.wait_for(recorder.flush(), WAIT)
        committed = loop.time() - started
    finally:
        await asyncio.wait_for(recorder.stop(), WAIT)
        await engine.dispose()
    print(
        f"\n{store.kind}, journal {sync or 'off'}: {total} changes acknowledged at "
        f"{total / acked:,.0f}/s, committed at {total / committed:,.0f}/s"
    )
    assert total / committed > 2_000
