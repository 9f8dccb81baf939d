"""Write contact records in the background so the call path never waits on the database.

The call path calls plain methods (``open_contact``, ``event``, ``update``,
``close_contact``, ``agent_event``) that only append an operation to an in-memory
queue. One writer task owned by :class:`ContactRecorder` takes operations off the
queue in FIFO batches and writes each batch in one transaction, so the changes of
one contact land in the order they were made, across batches too.

Failures: a batch that fails for a reason that may pass (database locked, server
down, table missing) is retried with back-off and never dropped. A batch the
database refuses because of its data (constraint or data errors) is split in
halves until the one refused operation is found; that operation is logged in
full and set aside through :meth:`ContactRecorder._reject`, so one bad value
cannot stall every call's record behind it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .database import create_schema, find_contacts, get_contact
from .models import DIRECTIONS, DISCONNECT_REASONS, INITIATIONS, OUTCOMES, Base, UTCDateTime

__all__ = [
    "AgentOp",
    "CloseOp",
    "ContactRecorder",
    "EventOp",
    "Op",
    "OpenOp",
    "UpdateOp",
    "find_contacts",
    "get_contact",
]

log = logging.getLogger(__name__)

_CONTACTS: Final[Table] = Base.metadata.tables["contacts"]
_EVENTS: Final[Table] = Base.metadata.tables["contact_events"]
_AGENT_EVENTS: Final[Table] = Base.metadata.tables["agent_events"]

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
# Columns the close-time durations are computed from.
_TIMING_COLUMNS: Final = ("arrived_at", "enqueued_at", "answered_at", "hold_seconds")
# Keeps IN (...) lists well under SQLite's and asyncpg's bound-parameter limits.
_LOOKUP_CHUNK: Final = 500


# -- operations: what the call path enqueues (and what a durable spool would persist) --


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


# -- the recorder ------------------------------------------------------------------------


class ContactRecorder:
    """Queues contact changes from the call path and writes them in batches, so no call waits on the database."""  # noqa: E501

    #: Back-off between attempts at a batch that failed for a reason that may pass.
    retry_initial_delay: float = 0.1
    retry_max_delay: float = 5.0
    #: How many contacts keep their next seq in memory (the rest are looked up).
    seq_cache_size: int = 20_000

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        node: str = "node1",
        batch_size: int = 500,
        flush_interval: float = 0.05,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must not be negative, not {flush_interval}")
        self._engine = engine
        self._node = node
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue: deque[Op] = deque()
        self._enqueued = 0  # operations ever enqueued
        self._done = 0  # operations ever written or set aside; FIFO, so a watermark
        self._rejected = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._wakeup = asyncio.Event()  # something is queued
        self._urgent = asyncio.Event()  # write now: batch full, flush() or stop()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False
        self._warned_stopped = False
        self._next_seq: OrderedDict[str, int] = OrderedDict()

    # -- lifecycle --

    async def start(self) -> None:
        """Create the schema if needed and start the writer task."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("ContactRecorder is already started")
        await create_schema(self._engine)
        self._stopping = False
        self._stopped = False
        self._warned_stopped = False
        self._task = asyncio.create_task(self._run(), name=f"contact-recorder[{self._node}]")
        self._task.add_done_callback(self._on_writer_done)

    async def stop(self) -> None:
        """Write everything queued, then stop the writer.

        Cancelling stop() (a shutdown deadline) abandons the drain: the writer is
        cancelled, the unwritten operations stay queued and are logged as lost.
        """
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        self._urgent.set()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])
            log.error(
                "contact recorder stopped before its queue drained: %d changes unwritten",
                self.pending,
            )
            raise
        finally:
            self._task = None
            self._stopping = False
            self._stopped = True

    async def flush(self) -> None:
        """Wait until everything enqueued so far is committed (or set aside as refused)."""
        target = self._enqueued
        if self._done >= target:
            return
        if self._task is None or self._task.done():
            raise RuntimeError(
                f"ContactRecorder is not running: {self.pending} changes wait for start()"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._wakeup.set()
        self._urgent.set()
        await waiter

    @property
    def pending(self) -> int:
        """Operations enqueued and not yet committed."""
        return self._enqueued - self._done

    @property
    def rejected(self) -> int:
        """Operations the database refused for their data, logged and set aside."""
        return self._rejected

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
        """Queue a timeline entry; entries of one contact get seq in call order."""
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
        self._queue.append(op)
        self._enqueued += 1
        self._wakeup.set()
        if len(self._queue) >= self._batch_size:
            self._urgent.set()
        if self._stopped and not self._warned_stopped:
            self._warned_stopped = True
            log.warning("contact recorder is stopped: changes stay queued until it starts again")

    # -- the writer task --

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                # Woken from idle: give the call path a moment to fill the batch.
                await self._linger()
                continue
            count = min(len(self._queue), self._batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            await self._commit(batch)
            self._release_waiters()

    async def _linger(self) -> None:
        if self._stopping or self._waiters or len(self._queue) >= self._batch_size:
            return
        self._urgent.clear()
        try:
            async with asyncio.timeout(self._flush_interval):
                await self._urgent.wait()
        except TimeoutError:
            pass

    async def _commit(self, batch: list[Op]) -> None:
        """Write one batch; retry what may pass, split to isolate what never will."""
        work = [batch]  # a stack: work[-1] is written next, which keeps FIFO order
        delay = self.retry_initial_delay
        failures = 0
        last_error: str | None = None
        try:
            while work:
                part = work[-1]
                try:
                    await self._write_batch(part)
                except Exception as exc:
                    if _is_refusal(exc):
                        work.pop()
                        if len(part) == 1:
                            self._reject(part[0], _describe(exc))
                            self._done += 1
                        else:
                            middle = len(part) // 2
                            work.append(part[middle:])
                            work.append(part[:middle])
                        continue
                    failures += 1
                    error = _describe(exc)
                    if error != last_error:
                        log.warning(
                            "contact store write failed, retrying with back-off "
                            "(%d changes waiting): %s",
                            self.pending,
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
                self._done += len(part)
                if failures:
                    log.info("contact store writes resumed after %d failed attempts", failures)
                    failures = 0
                    last_error = None
                    delay = self.retry_initial_delay
        except asyncio.CancelledError:
            # Put the unwritten remainder back in front, so a restart still writes it.
            remaining = [op for part in reversed(work) for op in part]
            self._queue.extendleft(reversed(remaining))
            raise

    async def _write_batch(self, batch: Sequence[Op]) -> None:
        """Write ``batch`` in one transaction, or raise and leave the database unchanged.

        This is the seam for a durable spool: it may persist a batch before calling
        this and discard it after it returns.
        """
        async with self._engine.begin() as conn:
            stored = await _load_contacts(conn, _ids_to_look_up(batch, self._next_seq))
            plan = _plan_batch(batch, stored, self._next_seq)
            await _execute_plan(conn, plan)
        # Only after the commit: a failed attempt must leave the seq counters alone.
        self._remember_seqs(plan.next_seq)
        for op, reason in plan.refused:
            self._reject(op, reason)

    def _reject(self, op: Op, reason: str) -> None:
        """Set aside an operation the database will never accept (a spool would keep it)."""
        self._rejected += 1
        contact = getattr(op, "contact_id", None)
        log.error(
            "contact %s: change refused by the contact store and set aside: %s; %r",
            contact,
            reason,
            op,
        )

    def _remember_seqs(self, next_seq: Mapping[str, int]) -> None:
        cache = self._next_seq
        for contact_id, seq in next_seq.items():
            cache[contact_id] = seq
            cache.move_to_end(contact_id)
        while len(cache) > self.seq_cache_size:
            cache.popitem(last=False)

    def _release_waiters(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._done:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _on_writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("contact recorder writer crashed", exc_info=exc)
        self._release_waiters()
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    RuntimeError(f"contact recorder stopped with {self.pending} changes unwritten")
                )


# -- planning a batch: pure functions over the operations and what is stored --------------


@dataclass(slots=True)
class _Stored:
    timing: dict[str, Any]  # the _TIMING_COLUMNS as stored
    last_seq: int | None


@dataclass(slots=True)
class _Plan:
    inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    agent_events: list[dict[str, Any]] = field(default_factory=list)
    next_seq: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[Op, str]] = field(default_factory=list)


def _ids_to_look_up(batch: Iterable[Op], known_seq: Mapping[str, int]) -> set[str]:
    """Contacts the batch touches but did not open: closes need their stored times,
    and contacts without a remembered seq need their last seq (and to exist)."""
    opened = {op.contact_id for op in batch if isinstance(op, OpenOp)}
    ids: set[str] = set()
    for op in batch:
        if isinstance(op, EventOp | UpdateOp | CloseOp) and op.contact_id not in opened:
            if isinstance(op, CloseOp) or op.contact_id not in known_seq:
                ids.add(op.contact_id)
    return ids


async def _load_contacts(conn: AsyncConnection, ids: set[str]) -> dict[str, _Stored]:
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


def _plan_batch(
    batch: Iterable[Op], stored: Mapping[str, _Stored], known_seq: Mapping[str, int]
) -> _Plan:
    """Fold a batch, in order, into a few bulk statements.

    Later updates of a contact override earlier ones, updates of a contact opened
    in the same batch go into its INSERT, and closes see every earlier update.
    """
    plan = _Plan()
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


async def _execute_plan(conn: AsyncConnection, plan: _Plan) -> None:
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
