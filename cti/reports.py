"""Historical reports over the contact store: per queue, per agent, per interval.

The figures are the live ones of ``acd/stats.py`` computed after the fact
from the stored rows (definitions in docs/reports.md):

- from ``contacts`` (one SQL aggregate on the read engine): offered,
  answered, abandoned, overflowed, service level against each queue's own
  threshold, ASA, AHT, survey scores;
- from ``agent_events`` (walked in time order, paged): time in each agent
  state, hence occupancy, offers and missed offers.

Intervals are local to a time zone. The database groups rows by 15-minute
UTC slot only (portable arithmetic on SQLite and PostgreSQL alike); every
UTC offset in use is a multiple of 15 minutes, so each slot falls inside
exactly one local 15-minute, hour or day interval, and Python maps slots to
intervals with ``zoneinfo`` (daylight-saving days of 23 or 25 hours
included). Sums and counts add up across slots; means are taken last.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    and_,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from acd.agents import AGENT_STATES, AVAILABLE, LOGGED_OUT, NO_ANSWER, NOT_READY, RESERVED
from ccserver.storage.models import AgentEvent, Contact

if TYPE_CHECKING:
    from ccserver.config import Config

__all__ = [
    "INTERVALS",
    "SLOT",
    "AgentRow",
    "Interval",
    "QueueRow",
    "ReportQuery",
    "ReportSource",
    "agent_report",
    "interval_start",
    "next_edge",
    "parse_when",
    "queue_report",
    "rows_csv",
]

SLOT: Final = 900
"""Seconds in the database's grouping slot (15 minutes)."""

Interval = Literal["15min", "hour", "day", "total"]
INTERVALS: Final[tuple[str, ...]] = ("15min", "hour", "day", "total")
YIELD_EVERY: Final = 1000
"""Rows or events handled between two returns to the event loop."""
MAX_INTERVALS: Final = 10_000
"""The most intervals one report may have (a hundred days of 15 minutes)."""

_BUSY: Final = ("reserved", "on-call", "wrap-up")
"""States that count as working for occupancy, as in acd/stats.py."""
_ABANDONED: Final = ("abandoned",)
_OVERFLOWED: Final = ("overflowed", "callback", "voicemail")


# -- what is asked, and what the configuration tells --------------------------------------


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """``since <= arrived_at < until``, cut into ``interval`` of time zone ``tz``."""

    since: datetime
    until: datetime
    interval: Interval = "total"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    queue: str | None = None
    agent: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value: datetime = getattr(self, name)
            if value.utcoffset() is None:
                raise ValueError(f"{name} {value.isoformat()} has no time zone")
        if self.until <= self.since:
            raise ValueError("the end of the range must be after its start")
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
        if self.interval != "total":
            slots = (self.until - self.since).total_seconds() / SLOT
            width = {"15min": 1, "hour": 4, "day": 96}[self.interval]
            if slots / width > MAX_INTERVALS:
                raise ValueError(
                    f"more than {MAX_INTERVALS} intervals: choose a larger interval or a "
                    "shorter range"
                )


@dataclass(frozen=True, slots=True)
class ReportSource:
    """The read engine and what the configuration says about queues."""

    engine: AsyncEngine
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Queue -> service level threshold in seconds."""
    targets: Mapping[str, float] = field(default_factory=dict)
    """Queue -> service level target (0..1)."""
    members: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Queue -> agent extensions, for the queue's occupancy."""
    default_threshold: float = 20.0
    default_tz: str = "UTC"

    @classmethod
    def from_config(cls, engine: AsyncEngine, config: Config) -> ReportSource:
        """Each configured queue with its own service level and members."""
        queues = config.queues
        return cls(
            engine,
            thresholds={name: q.service_level_seconds for name, q in queues.items()},
            targets={name: q.service_level_target for name, q in queues.items()},
            members={name: list(q.members) for name, q in queues.items()},
        )


def parse_when(text: str, tz: ZoneInfo) -> datetime:
    """ISO 8601 date or time in ``tz``: a date is local midnight, a time without a zone local."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=tz)
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed


# -- the rows -----------------------------------------------------------------------------


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom else None


@dataclass(slots=True)
class _Tally:
    """Additive sums for one (key, interval): counts and seconds."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    overflowed: int = 0
    in_threshold: int = 0
    wait: float = 0.0
    handled: int = 0
    handle: float = 0.0
    talk: float = 0.0
    hold: float = 0.0
    surveys: int = 0
    survey_total: float = 0.0
    times: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    offers: int = 0
    missed: int = 0

    def add_contacts(self, row: Any) -> None:
        self.offered += int(row.offered or 0)
        self.answered += int(row.answered or 0)
        self.abandoned += int(row.abandoned or 0)
        self.overflowed += int(row.overflowed or 0)
        self.in_threshold += int(row.in_threshold or 0)
        self.wait += float(row.wait or 0)
        self.handled += int(row.handled or 0)
        self.handle += float(row.handle or 0)
        self.talk += float(row.talk or 0)
        self.hold += float(row.hold or 0)
        self.surveys += int(row.surveys or 0)
        self.survey_total += float(row.survey_total or 0)

    def add_times(self, other: _Tally) -> None:
        for state, seconds in other.times.items():
            self.times[state] += seconds

    @property
    def busy(self) -> float:
        return sum(self.times.get(s, 0.0) for s in _BUSY)

    @property
    def occupancy(self) -> float | None:
        return _ratio(self.busy, self.busy + self.times.get(AVAILABLE, 0.0))

    @property
    def logged_in(self) -> float:
        return sum(sec for state, sec in self.times.items() if state != LOGGED_OUT)

    @property
    def utilization(self) -> float | None:
        """Busy over all logged-in time, breaks included (occupancy leaves them out)."""
        return _ratio(self.busy, self.logged_in)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue over one interval (or the whole range)."""

    queue: str
    interval_start: str | None
    offered: int
    answered: int
    abandoned: int
    overflowed: int
    other: int
    answered_in_threshold: int
    threshold: float
    service_level: float | None
    service_level_target: float | None
    abandon_rate: float | None
    asa: float | None
    aht: float | None
    occupancy: float | None
    utilization: float | None
    survey_score: float | None
    surveys: int

    @classmethod
    def build(
        cls, queue: str, start: str | None, t: _Tally, threshold: float, target: float | None
    ) -> QueueRow:
        return cls(
            queue=queue,
            interval_start=start,
            offered=t.offered,
            answered=t.answered,
            abandoned=t.abandoned,
            overflowed=t.overflowed,
            other=t.offered - t.answered - t.abandoned - t.overflowed,
            answered_in_threshold=t.in_threshold,
            threshold=threshold,
            service_level=_r(_ratio(t.in_threshold, t.offered)),
            service_level_target=target,
            abandon_rate=_r(_ratio(t.abandoned, t.offered)),
            asa=_r(_ratio(t.wait, t.answered), 3),
            aht=_r(_ratio(t.handle, t.handled), 3),
            occupancy=_r(t.occupancy),
            utilization=_r(t.utilization),
            survey_score=_r(_ratio(t.survey_total, t.surveys), 3),
            surveys=t.surveys,
        )


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent over one interval (or the whole range)."""

    agent: str
    interval_start: str | None
    offers: int
    missed: int
    answered: int
    talk_seconds: float
    hold_seconds: float
    aht: float | None
    logged_in_seconds: float
    available_seconds: float
    busy_seconds: float
    wrap_up_seconds: float
    not_ready_seconds: float
    occupancy: float | None
    utilization: float | None
    survey_score: float | None
    surveys: int

    @classmethod
    def build(cls, agent: str, start: str | None, t: _Tally) -> AgentRow:
        return cls(
            agent=agent,
            interval_start=start,
            offers=t.offers,
            missed=t.missed,
            answered=t.answered,
            talk_seconds=round(t.talk, 3),
            hold_seconds=round(t.hold, 3),
            aht=_r(_ratio(t.handle, t.handled), 3),
            logged_in_seconds=round(t.logged_in, 3),
            available_seconds=round(t.times.get(AVAILABLE, 0.0), 3),
            busy_seconds=round(t.busy, 3),
            wrap_up_seconds=round(t.times.get("wrap-up", 0.0), 3),
            not_ready_seconds=round(t.times.get(NOT_READY, 0.0), 3),
            occupancy=_r(t.occupancy),
            utilization=_r(t.utilization),
            survey_score=_r(_ratio(t.survey_total, t.surveys), 3),
            surveys=t.surveys,
        )


# -- slots and intervals -----------------------------------------------------------------


class utc_slot(FunctionElement[int]):
    """``floor(epoch seconds of the column / SLOT)``, compiled per dialect."""

    type = BigInteger()
    inherit_cache = True


@compiles(utc_slot, "sqlite")
def _slot_sqlite(element: utc_slot, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC; strftime would round the
    # fraction to milliseconds (10:14:59.9996 -> 10:15:00), so cut it off.
    (column,) = element.clauses
    inner = compiler.process(column, **kw)
    return f"(CAST(strftime('%s', substr({inner}, 1, 19)) AS INTEGER) / {SLOT})"


@compiles(utc_slot, "postgresql")
def _slot_postgresql(element: utc_slot, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    inner = compiler.process(column, **kw)
    return f"CAST(floor(extract(epoch FROM {inner}) / {SLOT}) AS BIGINT)"


def interval_start(at: datetime, interval: Interval, tz: ZoneInfo) -> datetime | None:
    """The local start of the interval holding ``at``; None for the whole range."""
    if interval == "total":
        return None
    local = at.astimezone(tz)
    if interval == "15min":
        return local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    # A local midnight; re-attached so a day after a DST change gets its own offset.
    return datetime(local.year, local.month, local.day, tzinfo=tz)


def _slot_time(slot: int) -> datetime:
    return datetime.fromtimestamp(slot * SLOT, UTC)


def _label(start: datetime | None) -> str | None:
    return start.isoformat() if start is not None else None


def next_edge(at: datetime, interval: Interval, tz: ZoneInfo) -> datetime | None:
    """Where the interval holding ``at`` ends (UTC); None for the whole range.

    15 minutes and hours are fixed lengths of real time (every offset being a
    multiple of 15 minutes keeps them on local boundaries, across DST changes
    too); a day ends at the next local midnight, 23 or 25 hours later on the
    days clocks change.
    """
    start = interval_start(at, interval, tz)
    if start is None:
        return None
    if interval == "day":
        following = start.date() + timedelta(days=1)
        return datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC)
    width = timedelta(minutes=15) if interval == "15min" else timedelta(hours=1)
    edge = start.astimezone(UTC) + width
    if edge <= at:
        # A 30-minute DST change (Lord Howe Island) folds a local hour onto
        # itself: move on by a slot, so the intervals always advance.
        edge = _slot_time(int(at.timestamp()) // SLOT + 1)
    return edge


async def _intervals(q: ReportQuery) -> list[str | None]:
    """Every interval of the range, in order, so charts get the empty ones too."""
    labels: dict[str | None, None] = {}
    at: datetime | None = q.since
    while at is not None and at < q.until:
        labels[_label(interval_start(at, q.interval, q.tz))] = None
        at = next_edge(at, q.interval, q.tz)
        await _breathe(len(labels))
    return list(labels)


# -- contacts -----------------------------------------------------------------------------


def _threshold_expr(source: ReportSource) -> ColumnElement[Any]:
    if not source.thresholds:
        return literal(source.default_threshold, Float())
    return case(
        {name: float(t) for name, t in source.thresholds.items()},
        value=Contact.queue,
        else_=float(source.default_threshold),
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


async def _contact_tallies(
    source: ReportSource, q: ReportQuery, key: Literal["queue", "agent"]
) -> dict[tuple[str, str | None], _Tally]:
    """One SQL aggregate per (key, slot); mapped onto the query's intervals."""
    column = Contact.queue if key == "queue" else Contact.agent
    answered = Contact.answered_at.is_not(None)
    handled = and_(answered, Contact.talk_seconds.is_not(None))
    handle = (
        func.coalesce(Contact.talk_seconds, 0)
        + func.coalesce(Contact.hold_seconds, 0)
        + func.coalesce(Contact.wrap_seconds, 0)
    )
    slot = utc_slot(Contact.arrived_at) if q.interval != "total" else literal(0, Integer())
    stmt = (
        select(
            column.label("key"),
            slot.label("slot"),
            func.count().label("offered"),
            _count(answered).label("answered"),
            _count(and_(~answered, Contact.outcome.in_(_ABANDONED))).label("abandoned"),
            _count(and_(~answered, Contact.outcome.in_(_OVERFLOWED))).label("overflowed"),
            _count(and_(answered, Contact.wait_seconds <= _threshold_expr(source))).label(
                "in_threshold"
            ),
            func.sum(case((answered, func.coalesce(Contact.wait_seconds, 0)), else_=0)).label(
                "wait"
            ),
            _count(handled).label("handled"),
            func.sum(case((handled, handle), else_=0)).label("handle"),
            func.sum(case((answered, func.coalesce(Contact.talk_seconds, 0)), else_=0)).label(
                "talk"
            ),
            func.sum(case((answered, func.coalesce(Contact.hold_seconds, 0)), else_=0)).label(
                "hold"
            ),
            func.count(Contact.survey_score).label("surveys"),
            func.sum(Contact.survey_score).label("survey_total"),
        )
        .where(
            Contact.arrived_at >= q.since,
            Contact.arrived_at < q.until,
            Contact.enqueued_at.is_not(None),
            Contact.outcome.is_not(None),
            column.is_not(None),
        )
        .group_by(column, slot)
    )
    if key == "queue" and q.queue is not None:
        stmt = stmt.where(Contact.queue == q.queue)
    if key == "agent":
        stmt = stmt.where(answered)
        if q.agent is not None:
            stmt = stmt.where(Contact.agent == q.agent)
    out: dict[tuple[str, str | None], _Tally] = defaultdict(_Tally)
    cuts = _Cuts(q)
    async with AsyncSession(source.engine) as session:
        for i, row in enumerate(await session.execute(stmt), 1):
            start = cuts.of(int(row.slot) * SLOT)[0] if q.interval != "total" else None
            out[(str(row.key), start)].add_contacts(row)
            await _breathe(i)
    return out


# -- agent states -------------------------------------------------------------------------


async def _states_at(engine: AsyncEngine, at: datetime) -> dict[str, str]:
    """Each agent's state at ``at``: its last agent-state event before then."""
    last = (
        select(func.max(AgentEvent.id))
        .where(AgentEvent.at < at, AgentEvent.state.in_(AGENT_STATES))
        .group_by(AgentEvent.agent)
    )
    stmt = select(AgentEvent.agent, AgentEvent.state).where(AgentEvent.id.in_(last))
    async with AsyncSession(engine) as session:
        return {row.agent: row.state for row in await session.execute(stmt)}


class _Cuts:
    """Interval label and end per 15-minute slot, worked out once per slot.

    Slots nest in intervals, so every instant of a slot has the same label and
    the same interval end; the walk over agent states then costs a dictionary
    lookup per cut instead of time zone arithmetic.
    """

    def __init__(self, q: ReportQuery) -> None:
        self.q = q
        self._slots: dict[int, tuple[str | None, float]] = {}

    def of(self, ts: float) -> tuple[str | None, float]:
        slot = int(ts // SLOT)
        hit = self._slots.get(slot)
        if hit is None:
            start = _slot_time(slot)
            edge = next_edge(start, self.q.interval, self.q.tz)
            label = _label(interval_start(start, self.q.interval, self.q.tz))
            hit = self._slots[slot] = (label, math.inf if edge is None else edge.timestamp())
        return hit


def _spread(
    out: dict[tuple[str, str | None], _Tally],
    agent: str,
    state: str,
    begin: float,
    end: float,
    cuts: _Cuts,
) -> None:
    """Add [begin, end) (epoch seconds) in ``state`` to the agent's intervals."""
    while begin < end:
        label, edge = cuts.of(begin)
        stop = min(end, edge)
        out[(agent, label)].times[state] += stop - begin
        begin = stop


async def _agent_tallies(
    source: ReportSource, q: ReportQuery, now: datetime
) -> dict[tuple[str, str | None], _Tally]:
    """Time in each state, offers and missed offers per (agent, interval)."""
    out: dict[tuple[str, str | None], _Tally] = defaultdict(_Tally)
    cuts = _Cuts(q)
    since = q.since.timestamp()
    current = {
        agent: (state, since)
        for agent, state in (await _states_at(source.engine, q.since)).items()
        if q.agent is None or agent == q.agent
    }
    # One streamed, index-ordered read of the few columns needed: ORM objects
    # and keyset pages cost ten times as much over a month of events.
    stmt = (
        select(AgentEvent.agent, AgentEvent.state, AgentEvent.reason, AgentEvent.at)
        .where(
            AgentEvent.at >= q.since,
            AgentEvent.at < q.until,
            AgentEvent.state.in_(AGENT_STATES),  # phone registrations are not agent states
        )
        .order_by(AgentEvent.at, AgentEvent.id)
    )
    if q.agent is not None:
        stmt = stmt.where(AgentEvent.agent == q.agent)
    async with source.engine.connect() as conn:
        result = await conn.stream(stmt)
        async for rows in result.partitions(YIELD_EVERY):
            for agent, state, reason, at in rows:
                ts = at.timestamp()
                before = current.get(agent)
                if before is not None:
                    _spread(out, agent, before[0], before[1], ts, cuts)
                current[agent] = (state, ts)
                if state == RESERVED:
                    out[(agent, cuts.of(ts)[0])].offers += 1
                elif state == NOT_READY and reason == NO_ANSWER:
                    out[(agent, cuts.of(ts)[0])].missed += 1
    end = min(q.until, now).timestamp()
    for agent, (state, begin) in current.items():
        _spread(out, agent, state, begin, end, cuts)
    return out


# -- the reports --------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


async def queue_report(
    source: ReportSource, q: ReportQuery, *, now: datetime | None = None
) -> list[QueueRow]:
    """One row per queue and interval (every interval of the range, empty ones too)."""
    contacts = await _contact_tallies(source, q, "queue")
    agents = await _agent_tallies(source, q, now or _now())
    queues = set(source.thresholds) | {k for k, _ in contacts}
    if q.queue is not None:
        queues = {q.queue}
    rows = []
    for start in await _intervals(q):
        for queue in sorted(queues):
            tally = contacts.get((queue, start), _Tally())
            for member in source.members.get(queue, ()):
                member_times = agents.get((member, start))
                if member_times is not None:
                    tally.add_times(member_times)
            rows.append(
                QueueRow.build(
                    queue,
                    start,
                    tally,
                    source.thresholds.get(queue, source.default_threshold),
                    source.targets.get(queue),
                )
            )
            await _breathe(len(rows))
    return rows


async def agent_report(
    source: ReportSource, q: ReportQuery, *, now: datetime | None = None
) -> list[AgentRow]:
    """One row per agent and interval: agents configured or seen in the range."""
    contacts = await _contact_tallies(source, q, "agent")
    agents = await _agent_tallies(source, q, now or _now())
    names = {m for ms in source.members.values() for m in ms} | {k for k, _ in contacts}
    names |= {k for k, _ in agents}
    if q.agent is not None:
        names = {q.agent}
    rows = []
    for start in await _intervals(q):
        for agent in sorted(names):
            tally = contacts.get((agent, start), _Tally())
            times = agents.get((agent, start))
            if times is not None:
                tally.add_times(times)
                tally.offers, tally.missed = times.offers, times.missed
            rows.append(AgentRow.build(agent, start, tally))
            await _breathe(len(rows))
    return rows


async def _breathe(done: int) -> None:
    """Let the node's calls run between chunks of a long report (one loop for everything)."""
    if done % YIELD_EVERY == 0:
        await asyncio.sleep(0)


def rows_csv(rows: Iterable[QueueRow | AgentRow], kind: type[QueueRow | AgentRow]) -> str:
    """The rows as RFC 4180 CSV with a header; null is an empty cell."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 §2: CRLF line breaks
    names = [f.name for f in fields(kind)]
    writer.writerow(names)
    for row in rows:
        values = asdict(row)
        writer.writerow(["" if values[n] is None else values[n] for n in names])
    return out.getvalue()
