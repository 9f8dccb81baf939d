"""Write contact records off the call path, journal them to local disk, and never lose one.

Three stages, each with its own owner:

1. **The call path** calls plain methods (``open_contact``, ``event``, ``update``,
   ``close_contact``, ``agent_event``). They validate, encode the change as one
   journal line (``ops.py``), append it to an in-memory queue and return: no I/O.
2. **The journal writer** task appends everything queued since its last append to
   the run's journal file in one ``write`` followed by one ``fdatasync``, in a
   worker thread (group commit: whatever queues during one fsync goes in the
   next). A change is **acknowledged** once that append has returned, or once it
   is committed to the database if that came first (:attr:`acknowledged`,
   :meth:`sync`).
3. **The database writer** task writes FIFO batches, one transaction each, so a
   contact's changes land in the order they were made. It reads from memory; in
   a long outage, past :attr:`memory_limit` queued changes, the journalled ones
   are dropped from memory and read back from the journal instead.

Exactly once: changes are numbered per recorder run (1, 2, 3… the journal's
``seq``), and every transaction also moves that run's row in
``journal_checkpoints`` to the last seq it applied. A batch first reads the
row and skips what it already covers, so a retry after an ambiguous commit
(the connection died after COMMIT was sent) and a replay after a crash apply
each change once.

Restart: :meth:`start` launches the writer, whose first job (before any new
change) is to upgrade the schema, replay the journals earlier runs left behind
(from their checkpoints on), delete them, and close the contacts this node left
open as ``interrupted``. New calls are taken meanwhile: their changes queue and
journal as usual. :meth:`recover` waits for that startup work and reports it.

Failures: a batch that fails for a reason that may pass (database locked or
down, table missing) is retried with back-off and never dropped. A change the
database refuses for its data is isolated by splitting the batch, logged,
counted in :attr:`rejected` and kept in the journal's ``rejected.jsonl``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import Table
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from .batch import (
    applied_seq,
    delete_checkpoint,
    execute_plan,
    ids_to_look_up,
    load_contacts,
    open_contacts,
    plan_batch,
    set_applied_seq,
)
from .database import find_contacts, get_contact
from .journal import Journal, JournalReader, SyncPolicy, new_run_id, remove_run
from .migrate import upgrade
from .models import DIRECTIONS, DISCONNECT_REASONS, INITIATIONS, OUTCOMES, Base, UTCDateTime
from .ops import AgentOp, CloseOp, EventOp, Op, OpenOp, Queued, UpdateOp, encode_op

__all__ = [
    "AgentOp",
    "CloseOp",
    "ContactRecorder",
    "EventOp",
    "Op",
    "OpenOp",
    "Queued",
    "RecoveryReport",
    "UpdateOp",
    "find_contacts",
    "get_contact",
]

log = logging.getLogger(__name__)

_CONTACTS: Final[Table] = Base.metadata.tables["contacts"]
_UPDATABLE: Final = frozenset(c.key for c in _CONTACTS.columns) - {"id"}
_DATETIME_COLUMNS: Final = frozenset(
    c.key for c in _CONTACTS.columns if isinstance(c.type, UTCDateTime)
)
_CHOICES: Final[Mapping[str, frozenset[str]]] = {
    "direction": DIRECTIONS,
    "initiation": INITIATIONS,
    "outcome": OUTCOMES,
    "disconnect_reason": DISCONNECT_REASONS,
}

_T = TypeVar("_T")


@dataclass(slots=True)
class RecoveryReport:
    """What the startup work found: earlier journals replayed, contacts closed as interrupted."""

    runs: int = 0
    """Journals of earlier runs replayed and deleted."""
    replayed: int = 0
    """Changes read from them past their checkpoints (so not yet in the database)."""
    corrupt: int = 0
    """Journal lines that could not be read (a damaged disk): logged and skipped."""
    interrupted: list[str] = field(default_factory=list)
    """Contacts of this node that were still open, now closed as ``interrupted``."""


class ContactRecorder:
    """Queues contact changes from the call path, journals them and writes them in batches."""

    #: Back-off between attempts at something that failed for a reason that may pass.
    retry_initial_delay: float = 0.1
    retry_max_delay: float = 5.0
    #: How many contacts keep their next seq in memory (the rest are looked up).
    seq_cache_size: int = 20_000
    #: Queued changes kept in memory; past this, journalled ones are re-read from disk.
    memory_limit: int = 200_000
    #: Most changes in one journal append.
    journal_batch: int = 20_000

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        node: str = "node1",
        batch_size: int = 500,
        flush_interval: float = 0.05,
        journal_dir: Path | str | None = None,
        sync: SyncPolicy = "fsync",
        migrate: bool = True,
        close_interrupted: bool = True,
    ) -> None:
        """``journal_dir`` None keeps changes in memory only (tools and tests): a crash
        loses what is not committed. ``migrate`` upgrades the schema before the first
        write; ``close_interrupted`` closes this node's contacts left open by a crash."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must not be negative, not {flush_interval}")
        self._engine = engine
        self._node = node
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._migrate = migrate
        self._close_interrupted = close_interrupted
        self._run = new_run_id(datetime.now(UTC))
        self._journal = (
            Journal(Path(journal_dir), self._run, sync=sync) if journal_dir is not None else None
        )
        # Changes with seq >= _base, in order, each with its journal line.
        self._ops: deque[tuple[Op, bytes]] = deque()
        self._base = 1
        self._enqueued = 0  # seq of the last change queued
        self._db_done = 0  # every seq up to this one is committed or set aside
        self._journaled = 0  # every seq up to this one is journalled or committed
        self._rejected = 0
        self._spilled = False
        self._spill: JournalReader | None = None
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # flush()
        self._ack_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # sync()
        self._wakeup = asyncio.Event()  # something is queued (database writer)
        self._journal_wakeup = asyncio.Event()  # something is queued (journal writer)
        self._urgent = asyncio.Event()  # write now: batch full, flush() or stop()
        self._task: asyncio.Task[None] | None = None
        self._journal_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False
        self._warned_stopped = False
        self._next_seq: OrderedDict[str, int] = OrderedDict()
        # This run's checkpoint as our last commit left it; None: read it first.
        self._checkpoint: int | None = None
        self._recovered = asyncio.Event()
        self._startup_done = False
        self._report: RecoveryReport | None = None
        self._startup_error: BaseException | None = None

    # -- lifecycle --

    async def start(self) -> None:
        """Open the journal and start the writers; returns at once, without touching the database.

        Raises JournalBusyError if another process holds the journal directory.
        """
        if self._task is not None and not self._task.done():
            raise RuntimeError("ContactRecorder is already started")
        if self._journal is not None:
            self._journal.open()
        self._stopping = False
        self._stopped = False
        self._warned_stopped = False
        if not self._startup_done and self._recovered.is_set():
            # An earlier start was stopped before its startup work finished.
            self._recovered = asyncio.Event()
            self._startup_error = None
        self._task = asyncio.create_task(self._run_writer(), name=f"contact-recorder[{self._node}]")
        self._task.add_done_callback(self._on_writer_done)
        if self._journal is not None:
            self._journal_task = asyncio.create_task(
                self._run_journal(), name=f"contact-journal[{self._node}]"
            )
            self._journal_task.add_done_callback(self._on_journal_done)
        self._wakeup.set()

    async def recover(self) -> RecoveryReport:
        """Wait for the startup work (schema, replay of earlier journals, interrupted contacts).

        It is retried while the database is unreachable, so bound this wait
        with a timeout if the caller must not wait for the database.
        """
        if self._task is None and not self._recovered.is_set():
            raise RuntimeError("ContactRecorder is not started")
        await self._recovered.wait()
        if self._report is None:
            raise RuntimeError("contact recorder stopped before its startup work finished") from (
                self._startup_error
            )
        return self._report

    async def stop(self) -> None:
        """Write everything queued, then stop the writers; a clean stop leaves no journal.

        Cancelling stop() (a shutdown deadline) abandons the drain: the writers
        are cancelled and what is unwritten stays queued for a restart of this
        object, and in the journal for the next process.
        """
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        self._urgent.set()
        self._journal_wakeup.set()
        tasks = [t for t in (task, self._journal_task) if t is not None]
        clean = False
        try:
            # Both writers end before the journal closes; a crash of either is
            # logged by its done callback and leaves changes pending (not clean).
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
            clean = self.pending == 0 and self._startup_done
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks)
            log.error(
                "contact recorder stopped before its queue drained: %d changes unwritten%s",
                self.pending,
                " (kept in the journal)" if self._journal is not None else "",
            )
            raise
        finally:
            self._task = None
            self._journal_task = None
            self._stopping = False
            self._stopped = True
            self._checkpoint = None  # a clean stop deletes the row
            if self._spill is not None:
                self._spill.close()
                self._spill = None
            if self._journal is not None:
                self._journal.close(remove=clean)
        if clean and self._journal is not None:
            await self._forget_own_checkpoint()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (or set aside as refused)."""
        await self._wait_for(self._enqueued, self._waiters, lambda: self._db_done)

    async def sync(self) -> None:
        """Wait until everything queued so far is acknowledged: journalled or committed."""
        if self._journal is None:
            await self.flush()
        else:
            await self._wait_for(self._enqueued, self._ack_waiters, lambda: self.acknowledged)

    async def _wait_for(
        self,
        target: int,
        waiters: deque[tuple[int, asyncio.Future[None]]],
        reached: Callable[[], int],
    ) -> None:
        if reached() >= target:
            return
        if self._task is None or self._task.done():
            raise RuntimeError(
                f"ContactRecorder is not running: {self.pending} changes wait for start()"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append((target, waiter))
        if waiters is self._waiters:
            self._wakeup.set()
            self._urgent.set()
        await waiter

    @property
    def pending(self) -> int:
        """Changes queued and not yet committed."""
        return self._enqueued - self._db_done

    @property
    def enqueued(self) -> int:
        """Changes queued by this recorder so far; the n-th one has seq n."""
        return self._enqueued

    @property
    def acknowledged(self) -> int:
        """Every change with seq up to this is journalled (per the sync policy) or committed."""
        return max(self._journaled, self._db_done)

    @property
    def rejected(self) -> int:
        """Changes the database refused for their data, logged and set aside."""
        return self._rejected

    @property
    def journal_directory(self) -> Path | None:
        """This run's journal directory, None without a journal."""
        return None if self._journal is None else self._journal.directory

    # -- the call path: plain methods that only enqueue --

    def open_contact(
        self,
        *,
        caller_number: str,
        dialed_number: str,
        sip_call_id: str,
        caller_name: str | None = None,
        direction: str = "inbound",
        initiation: str = "inbound",
        entry_point: str | None = None,
        at: datetime | None = None,
        contact_id: str | None = None,
        initial_contact_id: str | None = None,
    ) -> str:
        """Queue a new contact and its "arrived" event; returns the contact id."""
        _check_choice("direction", direction)
        _check_choice("initiation", initiation)
        cid = contact_id if contact_id is not None else uuid.uuid4().hex
        row = dict.fromkeys(_UPDATABLE)
        row.update(
            id=cid,
            initial_contact_id=initial_contact_id,
            caller_number=caller_number,
            caller_name=caller_name,
            dialed_number=dialed_number,
            direction=direction,
            initiation=initiation,
            entry_point=entry_point,
            sip_call_id=sip_call_id,
            node=self._node,
            arrived_at=_when(at),
            holds=0,
            attributes={},
        )
        self._put(OpenOp(row))
        return cid

    def event(
        self,
        contact_id: str,
        type: str,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Queue a timeline entry; entries of one contact get seq in call order.

        ValueError if ``data`` holds something JSON cannot carry.
        """
        self._put(EventOp(contact_id, type, _when(at), dict(data) if data else {}))

    def update(self, contact_id: str, **fields: Any) -> None:
        """Queue contact column changes, applied in order with the contact's events.

        ``attributes`` replaces the whole dict. Unknown columns, naive datetimes and
        values outside the documented choices raise ValueError here, in the caller,
        rather than later in the writer.
        """
        if not fields:
            return
        unknown = fields.keys() - _UPDATABLE
        if unknown:
            raise ValueError(f"not contact columns that can be updated: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name in _DATETIME_COLUMNS and value is not None:
                value = _when(value)
            elif name in _CHOICES and value is not None:
                _check_choice(name, value)
            elif name == "attributes":
                if not isinstance(value, Mapping):
                    raise ValueError(f"attributes must be a mapping, not {type(value).__name__}")
                value = dict(value)
            values[name] = value
        self._put(UpdateOp(contact_id, values))

    def close_contact(
        self,
        contact_id: str,
        *,
        outcome: str,
        disconnect_reason: str | None,
        at: datetime | None = None,
    ) -> None:
        """Queue the end of a contact; wait/talk come from its stored times when written."""
        _check_choice("outcome", outcome)
        if disconnect_reason is not None:
            _check_choice("disconnect_reason", disconnect_reason)
        self._put(CloseOp(contact_id, outcome, disconnect_reason, _when(at)))

    def agent_event(
        self,
        agent: str,
        state: str,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Queue an agent state change."""
        row = {
            "agent": agent,
            "state": state,
            "reason": reason,
            "at": _when(at),
            "data": dict(data) if data else {},
        }
        self._put(AgentOp(row))

    def _put(self, op: Op) -> None:
        # Must run on the event loop's thread: asyncio.Event is not thread-safe.
        seq = self._enqueued + 1
        line = encode_op(seq, op)  # ValueError before anything changed
        self._ops.append((op, line))
        self._enqueued = seq
        self._wakeup.set()
        self._journal_wakeup.set()
        if self.pending >= self._batch_size:
            self._urgent.set()
        if self._stopped and not self._warned_stopped:
            self._warned_stopped = True
            log.warning("contact recorder is stopped: changes stay queued until it starts again")

    # -- the journal writer task --

    async def _run_journal(self) -> None:
        journal = self._journal
        assert journal is not None
        delay = self.retry_initial_delay
        last_error: str | None = None
        while True:
            # Changes already committed need no journal line.
            start = max(self._journaled, self._db_done) + 1
            if start > self._enqueued:
                # Stopping: done once the database has everything too, since until
                # then the call path may still queue changes (calls hanging up).
                if self._stopping and self._db_done >= self._enqueued:
                    return
                self._journal_wakeup.clear()
                await self._journal_wakeup.wait()
                continue
            offset = start - self._base
            count = min(self._enqueued - start + 1, self.journal_batch)
            data = b"".join(line for _, line in islice(self._ops, offset, offset + count))
            try:
                await journal.append(data, start)
            except OSError as exc:
                error = _describe(exc)
                if error != last_error:
                    log.error(
                        "journal %s: append failed, retrying with back-off; until it works, "
                        "changes are only in memory (%d waiting): %s",
                        journal.directory,
                        self._enqueued - self.acknowledged,
                        error,
                    )
                    last_error = error
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
                continue
            if last_error is not None:
                log.info("journal %s: appends work again", journal.directory)
                last_error = None
                delay = self.retry_initial_delay
            self._journaled = max(self._journaled, start + count - 1)
            self._release(self._ack_waiters, self.acknowledged)
            self._trim()

    def _on_journal_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("contact journal writer crashed", exc_info=exc)

    # -- the database writer task --

    async def _run_writer(self) -> None:
        if not self._startup_done:
            await self._startup()
        while True:
            if self._db_done >= self._enqueued:
                if self._stopping:
                    self._journal_wakeup.set()  # the journal writer may finish too
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                # Woken from idle: give the call path a moment to fill the batch.
                await self._linger()
                continue
            batch = await self._next_batch()
            if batch:
                await self._commit(self._journal_id, batch, current=True)
            self._release(self._waiters, self._db_done)
            self._release(self._ack_waiters, self.acknowledged)
            self._trim()
            await self._discard_journal()

    @property
    def _journal_id(self) -> str | None:
        return None if self._journal is None else self._run

    async def _linger(self) -> None:
        if self._stopping or self._waiters or self.pending >= self._batch_size:
            return
        self._urgent.clear()
        try:
            async with asyncio.timeout(self._flush_interval):
                await self._urgent.wait()
        except TimeoutError:
            pass

    async def _next_batch(self) -> list[Queued]:
        """The next FIFO batch: from memory, or from the journal for changes trimmed from it."""
        start = self._db_done + 1
        if start >= self._base:
            if self._spill is not None:
                self._spill.close()
                self._spill = None
                log.info("contact store caught up with the journal: writing from memory again")
            offset = start - self._base
            count = min(self._enqueued - start + 1, self._batch_size)
            chosen = islice(self._ops, offset, offset + count)
            return [Queued(start + i, op) for i, (op, _) in enumerate(chosen)]
        assert self._journal is not None  # only a journal lets changes leave memory early
        reader = self._spill
        if reader is None or reader.next_seq != start:
            if reader is not None:
                reader.close()
            reader = self._spill = JournalReader(self._journal.directory, start)
        batch = await asyncio.to_thread(reader.read, self._batch_size, self._base - 1)
        if not batch:
            # Not in memory and not readable: lost to a damaged journal.
            log.error(
                "journal %s: changes %d to %d unreadable, skipped",
                self._journal.directory,
                start,
                self._base - 1,
            )
            self._db_done = self._base - 1
        return batch

    def _trim(self) -> None:
        """Drop changes nobody needs from memory; past memory_limit, also journalled ones."""
        keep_from = self._db_done + 1
        if self._journal is not None and len(self._ops) > self.memory_limit:
            keep_from = max(keep_from, self._journaled + 1)
            if keep_from > self._db_done + 1 and not self._spilled:
                self._spilled = True
                log.warning(
                    "contact store is %d changes behind: keeping them in the journal only",
                    self.pending,
                )
        elif self._spilled and self._db_done + 1 >= self._base:
            self._spilled = False
        while self._base < keep_from and self._ops:
            self._ops.popleft()
            self._base += 1

    async def _discard_journal(self) -> None:
        if self._journal is None or self._journal.segments < 2:
            return
        try:
            await self._journal.discard_through(self._db_done)
        except OSError as exc:
            log.warning("journal %s: could not delete a segment: %s", self._journal.directory, exc)

    async def _commit(self, run: str | None, batch: list[Queued], *, current: bool) -> None:
        """Write one batch; retry what may pass, split to isolate what never will."""
        work = [batch]  # a stack: work[-1] is written next, which keeps FIFO order
        delay = self.retry_initial_delay
        failures = 0
        last_error: str | None = None
        while work:
            part = work[-1]
            try:
                await self._write_batch(run, part)
            except Exception as exc:
                self._checkpoint = None  # read it again before the next attempt
                if _is_refusal(exc):
                    work.pop()
                    if len(part) == 1:
                        self._reject(part[0].op, _describe(exc))
                        if current:
                            self._db_done = max(self._db_done, part[0].seq)
                    else:
                        middle = len(part) // 2
                        work.append(part[middle:])
                        work.append(part[:middle])
                    continue
                # The commit may have happened (the reply was lost): cached seqs may
                # be stale. The checkpoint makes the retry skip what did land.
                self._next_seq.clear()
                failures += 1
                error = _describe(exc)
                if error != last_error:
                    log.warning(
                        "contact store write failed, retrying with back-off "
                        "(%d changes waiting): %s",
                        self.pending if current else len(part),
                        error,
                        # Database and network errors are expected here; anything
                        # else is a bug, and its traceback is worth a line or twenty.
                        exc_info=not isinstance(exc, DBAPIError | OSError),
                    )
                    last_error = error
                else:
                    log.debug("contact store write failed again (%d): %s", failures, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
                continue
            work.pop()
            if current:
                self._db_done = max(self._db_done, part[-1].seq)
            if failures:
                log.info("contact store writes resumed after %d failed attempts", failures)
                failures = 0
                last_error = None
                delay = self.retry_initial_delay

    async def _write_batch(self, run: str | None, batch: Sequence[Queued]) -> None:
        """Write ``batch`` of journal ``run`` in one transaction, or raise and change nothing.

        With a journal, the run's checkpoint moves in the same transaction and
        changes it already covers are skipped: that is what makes retries and
        replays apply each change once.
        """
        own = run is not None and run == self._run
        async with self._engine.begin() as conn:
            applied: int | None = None
            if own and self._checkpoint is not None:
                # Only this recorder moves its run's checkpoint, and our last commit
                # set it: reading it back would cost a query per batch. Any failed
                # attempt forgets it, so a retry after an ambiguous commit reads it.
                applied = self._checkpoint
            elif run is not None:
                applied = await applied_seq(conn, run)
                if applied is not None:
                    batch = [q for q in batch if q.seq > applied]
                    if not batch:
                        return
            ops = [q.op for q in batch]
            stored = await load_contacts(conn, ids_to_look_up(ops, self._next_seq))
            plan = plan_batch(ops, stored, self._next_seq)
            await execute_plan(conn, plan)
            if run is not None:
                await set_applied_seq(
                    conn, run, self._node, batch[-1].seq, exists=applied is not None
                )
        # Only after the commit: a failed attempt must leave the seq counters alone.
        if own:
            self._checkpoint = batch[-1].seq
        self._remember_seqs(plan.next_seq)
        for op, reason in plan.refused:
            self._reject(op, reason)

    def _reject(self, op: Op, reason: str) -> None:
        """Set aside a change the database will never accept; the journal keeps a copy."""
        self._rejected += 1
        contact = getattr(op, "contact_id", None)
        log.error(
            "contact %s: change refused by the contact store and set aside: %s; %r",
            contact,
            reason,
            op,
        )
        if self._journal is not None:
            self._journal.set_aside(encode_op(1, op), reason)

    def _remember_seqs(self, next_seq: Mapping[str, int]) -> None:
        cache = self._next_seq
        for contact_id, seq in next_seq.items():
            cache[contact_id] = seq
            cache.move_to_end(contact_id)
        while len(cache) > self.seq_cache_size:
            cache.popitem(last=False)

    @staticmethod
    def _release(waiters: deque[tuple[int, asyncio.Future[None]]], reached: int) -> None:
        while waiters and waiters[0][0] <= reached:
            _, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _on_writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("contact recorder writer crashed", exc_info=exc)
            self._startup_error = exc
        if not self._recovered.is_set() and not self._startup_done:
            self._recovered.set()  # recover() raises: report is None
        self._release(self._waiters, self._db_done)
        self._release(self._ack_waiters, self.acknowledged)
        for waiters in (self._waiters, self._ack_waiters):
            while waiters:
                _, waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(
                        RuntimeError(
                            f"contact recorder stopped with {self.pending} changes unwritten"
                        )
                    )

    # -- startup: schema, earlier journals, interrupted contacts --

    async def _startup(self) -> None:
        report = RecoveryReport()
        if self._migrate:
            await self._retrying("schema upgrade", partial(upgrade, self._engine))
        if self._journal is not None:
            for run in self._journal.earlier_runs():
                await self._replay(run, report)
        if self._close_interrupted:
            found = await self._retrying("looking for interrupted contacts", self._find_open)
            for contact_id, last_heard in found:
                self.close_contact(
                    contact_id, outcome="interrupted", disconnect_reason="system", at=last_heard
                )
                report.interrupted.append(contact_id)
            if found:
                log.warning(
                    "closing %d contacts of node %s left open by an earlier run as interrupted",
                    len(found),
                    self._node,
                )
        self._report = report
        self._startup_done = True
        self._recovered.set()

    async def _replay(self, run: str, report: RecoveryReport) -> None:
        """Apply an earlier run's journal from its checkpoint on, then delete it."""
        assert self._journal is not None
        directory = self._journal.root / run
        applied = await self._retrying(
            f"reading the checkpoint of journal {run}", partial(self._checkpoint_of, run)
        )
        reader = JournalReader(directory, (applied or 0) + 1)
        replayed = 0
        try:
            while batch := await asyncio.to_thread(reader.read, self._batch_size):
                await self._commit(run, batch, current=False)
                replayed += len(batch)
        finally:
            reader.close()
        report.runs += 1
        report.replayed += replayed
        report.corrupt += reader.corrupt
        log.info("journal %s of an earlier run: %d changes replayed", run, replayed)
        try:
            await asyncio.to_thread(remove_run, directory)
        except OSError as exc:
            # Keep its checkpoint: with it, a later replay of these files skips everything.
            log.error("journal %s replayed but not deleted: %s", directory, exc)
            return
        await self._retrying(f"forgetting journal {run}", partial(self._forget_checkpoint, run))

    async def _checkpoint_of(self, run: str) -> int | None:
        async with self._engine.connect() as conn:
            return await applied_seq(conn, run)

    async def _forget_checkpoint(self, run: str) -> None:
        async with self._engine.begin() as conn:
            await delete_checkpoint(conn, run)

    async def _forget_own_checkpoint(self) -> None:
        # Best effort: a leftover row is harmless (its run directory is gone).
        try:
            await self._forget_checkpoint(self._run)
        except Exception as exc:
            log.debug("journal checkpoint %s not deleted: %s", self._run, exc)

    async def _find_open(self) -> list[tuple[str, datetime]]:
        async with self._engine.connect() as conn:
            return await open_contacts(conn, self._node)

    async def _retrying(self, what: str, action: Callable[[], Awaitable[_T]]) -> _T:
        delay = self.retry_initial_delay
        last_error: str | None = None
        while True:
            try:
                result = await action()
            except Exception as exc:
                error = _describe(exc)
                if error != last_error:
                    log.warning(
                        "contact store: %s failed, retrying with back-off: %s",
                        what,
                        error,
                        exc_info=not isinstance(exc, DBAPIError | OSError),
                    )
                    last_error = error
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
                continue
            if last_error is not None:
                log.info("contact store: %s succeeded", what)
            return result


# -- helpers ------------------------------------------------------------------------------


def _when(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if not isinstance(at, datetime):
        raise ValueError(f"expected a datetime, not {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: pass a timezone-aware datetime")
    return at


def _check_choice(name: str, value: str) -> None:
    if value not in _CHOICES[name]:
        raise ValueError(f"{name} must be one of {sorted(_CHOICES[name])}, not {value!r}")


def _is_refusal(exc: Exception) -> bool:
    """True when the database refuses the data itself, so a retry cannot succeed."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        # PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity violation).
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in {"22", "23"}:
            return True
        # asyncpg refuses an argument before sending it with a ValueError subclass.
        return isinstance(getattr(exc.orig, "__cause__", None), ValueError)
    # Raised while binding parameters (a value the column type cannot take).
    return isinstance(exc, StatementError)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"
