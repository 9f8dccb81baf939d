"""Reports computed by the database against the same figures recomputed here from the rows.

Every test taking ``engine`` runs on a SQLite file and on a real PostgreSQL 15
(``tests/integration/postgres_server.py``), like the storage tests.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ccserver.storage.database import make_engine
from ccserver.storage.migrate import create_schema
from ccserver.storage.models import AgentEvent, Contact
from cti.reports import (
    AgentRow,
    QueueRow,
    ReportQuery,
    ReportSource,
    agent_report,
    interval_start,
    next_edge,
    queue_report,
    rows_csv,
)
from tests.integration.postgres_server import PostgresServer, postgres_server  # noqa: F401

PARIS = ZoneInfo("Europe/Paris")
# 2025-03-30 is the spring DST change in Paris (02:00 -> 03:00): a 23-hour local day.
T0 = datetime(2025, 3, 29, 20, 0, tzinfo=UTC)
QUEUES = {"general": 20.0, "cards": 30.0}
MEMBERS = {"general": ["1001", "1002"], "cards": ["1002", "1003"]}
NOW = T0 + timedelta(days=3)


@dataclass
class Spec:
    """One generated contact, kept in Python to recompute the figures independently."""

    id: str
    queue: str | None
    agent: str | None
    arrived: datetime
    outcome: str
    wait: float | None
    talk: float | None
    hold: float | None
    wrap: float | None
    score: int | None
    answered: bool


def generate(n: int, seed: int = 7) -> list[Spec]:
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        arrived = T0 + timedelta(seconds=rng.uniform(0, 30 * 3600))
        if i % 17 == 0:
            # Exactly on a slot edge, and a hair before one (SQLite rounds
            # fractions in strftime: the report must not).
            arrived = arrived.replace(minute=15, second=0, microsecond=0)
            if i % 34 == 0:
                arrived -= timedelta(microseconds=300)
        queue = rng.choice(["general", "cards", "other", None])
        outcome = rng.choice(["answered", "answered", "answered", "abandoned", "overflowed",
                              "callback", "interrupted"])  # fmt: skip
        answered = outcome == "answered" and queue is not None
        wait = round(rng.uniform(0, 60), 3) if queue is not None else None
        specs.append(
            Spec(
                id=f"c{i:04d}",
                queue=queue,
                agent=rng.choice(["1001", "1002", "1003"]) if answered else None,
                arrived=arrived,
                outcome=outcome if queue is not None else "completed-ivr",
                wait=wait,
                talk=round(rng.uniform(5, 600), 3) if answered else None,
                hold=round(rng.uniform(0, 30), 3) if answered and rng.random() < 0.3 else None,
                wrap=round(rng.uniform(0, 20), 3) if answered and rng.random() < 0.5 else None,
                score=rng.randint(1, 5) if answered and rng.random() < 0.4 else None,
                answered=answered,
            )
        )
    return specs


def agent_timeline(seed: int = 3) -> list[tuple[str, str, str | None, datetime]]:
    """Agents moving through their states, with phone registrations mixed in."""
    rng = random.Random(seed)
    events: list[tuple[str, str, str | None, datetime]] = []
    for agent in ("1001", "1002", "1003"):
        at = T0 - timedelta(hours=2)
        events.append((agent, "available", None, at))
        for _ in range(60):
            at += timedelta(seconds=rng.uniform(30, 1800))
            state = rng.choice(["reserved", "on-call", "wrap-up", "available", "not-ready",
                                "logged-out", "registered"])  # fmt: skip
            reason = "no answer" if state == "not-ready" and rng.random() < 0.5 else None
            events.append((agent, state, reason, at))
    return sorted(events, key=lambda e: e[3])


async def fill(engine: AsyncEngine, specs: list[Spec]) -> None:
    await create_schema(engine)
    async with AsyncSession(engine) as session, session.begin():
        for s in specs:
            session.add(
                Contact(
                    id=s.id,
                    caller_number="0600000001",
                    dialed_number="5000",
                    direction="inbound",
                    initiation="inbound",
                    sip_call_id=f"sip-{s.id}",
                    queue=s.queue,
                    agent=s.agent,
                    arrived_at=s.arrived,
                    enqueued_at=s.arrived + timedelta(seconds=5) if s.queue else None,
                    answered_at=s.arrived + timedelta(seconds=10) if s.answered else None,
                    ended_at=s.arrived + timedelta(seconds=700),
                    wait_seconds=s.wait,
                    talk_seconds=s.talk,
                    hold_seconds=s.hold,
                    wrap_seconds=s.wrap,
                    outcome=s.outcome,
                    survey_score=s.score,
                )
            )
        # One contact still in progress: not counted until it is closed.
        session.add(
            Contact(id="open", caller_number="1", dialed_number="5001", direction="inbound",
                    initiation="inbound", sip_call_id="sip-open", queue="general",
                    arrived_at=T0 + timedelta(hours=1), enqueued_at=T0 + timedelta(hours=1))
        )  # fmt: skip
        for agent, state, reason, at in agent_timeline():
            session.add(AgentEvent(agent=agent, state=state, reason=reason, at=at))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'contacts.db'}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        engine = make_engine(server.create_database())
    await fill(engine, SPECS)
    yield engine
    await engine.dispose()


SPECS = generate(400)


def source(engine: AsyncEngine) -> ReportSource:
    return ReportSource(engine, thresholds=QUEUES, targets={"general": 0.8}, members=MEMBERS)


# -- the independent recomputation ---------------------------------------------------------


def local_start(at: datetime, interval: str, tz: ZoneInfo) -> str | None:
    """The interval label, computed without the module's helper: from local wall time."""
    if interval == "total":
        return None
    local = at.astimezone(tz)
    if interval == "day":
        return datetime.combine(local.date(), datetime.min.time(), tz).isoformat()
    width = 15 if interval == "15min" else 60
    minute_of_day = local.hour * 60 + local.minute
    floor = minute_of_day - minute_of_day % width
    # fold keeps the second 02:xx of a fall-back night apart from the first.
    start = local.replace(hour=floor // 60, minute=floor % 60, second=0, microsecond=0)
    return start.isoformat()


def expected_queue_figures(
    specs: list[Spec], since: datetime, until: datetime, interval: str, tz: ZoneInfo
) -> dict[tuple[str, str | None], dict[str, Any]]:
    groups: dict[tuple[str, str | None], list[Spec]] = defaultdict(list)
    for s in specs:
        if s.queue is None or not since <= s.arrived < until:
            continue
        groups[(s.queue, local_start(s.arrived, interval, tz))].append(s)
    out = {}
    for key, group in groups.items():
        answered = [s for s in group if s.answered]
        threshold = QUEUES.get(key[0], 20.0)
        scores = [s.score for s in group if s.score is not None]
        offered = len(group)
        out[key] = {
            "offered": offered,
            "answered": len(answered),
            "abandoned": sum(s.outcome == "abandoned" for s in group),
            "overflowed": sum(s.outcome in ("overflowed", "callback") for s in group),
            "answered_in_threshold": sum(
                s.wait is not None and s.wait <= threshold for s in answered
            ),
            "asa": sum(s.wait or 0 for s in answered) / len(answered) if answered else None,
            "aht": (
                sum((s.talk or 0) + (s.hold or 0) + (s.wrap or 0) for s in answered) / len(answered)
                if answered
                else None
            ),
            "survey": sum(scores) / len(scores) if scores else None,
        }
    return out


def expected_agent_times(
    since: datetime, until: datetime, interval: str, tz: ZoneInfo
) -> dict[tuple[str, str | None], dict[str, float]]:
    """Seconds per state, cut second by second at interval edges (brute force by minute
    edges: every event here falls on arbitrary times, so cut at each local boundary)."""
    out: dict[tuple[str, str | None], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_agent: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for agent, state, _reason, at in agent_timeline():
        if state != "registered":
            per_agent[agent].append((state, at))
    for agent, changes in per_agent.items():
        for (state, begin), nxt in zip(changes, [*changes[1:], ("end", until)], strict=True):
            a, b = max(begin, since), min(nxt[1], until)
            while a < b:
                # Next local boundary: step through 15-minute UTC edges.
                edge = datetime.fromtimestamp((int(a.timestamp()) // 900 + 1) * 900, UTC)
                stop = min(b, edge)
                out[(agent, local_start(a, interval, tz))][state] += (stop - a).total_seconds()
                a = stop
    return out


def occupancy(times: dict[str, float]) -> float | None:
    busy = sum(times.get(s, 0.0) for s in ("reserved", "on-call", "wrap-up"))
    worked = busy + times.get("available", 0.0)
    return busy / worked if worked else None


def utilization(times: dict[str, float]) -> float | None:
    busy = sum(times.get(s, 0.0) for s in ("reserved", "on-call", "wrap-up"))
    logged_in = sum(v for s, v in times.items() if s != "logged-out")
    return busy / logged_in if logged_in else None


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "tz"),
    [("total", "UTC"), ("15min", "UTC"), ("hour", "Europe/Paris"), ("day", "Europe/Paris"),
     ("hour", "Asia/Kathmandu")],
)  # fmt: skip
async def test_queue_report_matches_the_rows(engine: AsyncEngine, interval: str, tz: str) -> None:
    zone = ZoneInfo(tz)
    since, until = T0, T0 + timedelta(hours=28)
    q = ReportQuery(since, until, interval, zone)  # type: ignore[arg-type]
    rows = await queue_report(source(engine), q, now=NOW)
    expected = expected_queue_figures(SPECS, since, until, interval, zone)
    times = expected_agent_times(since, until, interval, zone)
    got = {(r.queue, r.interval_start): r for r in rows}
    assert set(expected) <= set(got)
    assert sum(r.offered for r in rows) == sum(e["offered"] for e in expected.values()) > 0
    for key, row in got.items():
        e = expected.get(key)
        if e is None:
            assert row.offered == 0 and row.service_level is None
            continue
        assert row.offered == e["offered"]
        assert row.answered == e["answered"]
        assert row.abandoned == e["abandoned"]
        assert row.overflowed == e["overflowed"]
        assert row.other == row.offered - row.answered - row.abandoned - row.overflowed
        assert row.answered_in_threshold == e["answered_in_threshold"]
        assert row.service_level == pytest.approx(e["answered_in_threshold"] / e["offered"],
                                                  abs=1e-4)  # fmt: skip
        assert row.asa == pytest.approx(e["asa"], abs=1e-3)
        assert row.aht == pytest.approx(e["aht"], abs=1e-3)
        assert row.survey_score == pytest.approx(e["survey"], abs=1e-3)
        if row.queue in MEMBERS:
            merged: dict[str, float] = defaultdict(float)
            for member in MEMBERS[row.queue]:
                for state, sec in times.get((member, row.interval_start), {}).items():
                    merged[state] += sec
            assert row.occupancy == pytest.approx(occupancy(merged), abs=1e-4)
            assert row.utilization == pytest.approx(utilization(merged), abs=1e-4)


async def test_intervals_cover_the_range_with_local_days(engine: AsyncEngine) -> None:
    """The 23-hour DST day is one interval; empty intervals are rows of zeros."""
    since = datetime(2025, 3, 29, tzinfo=PARIS)
    until = datetime(2025, 4, 1, tzinfo=PARIS)
    rows = await queue_report(source(engine), ReportQuery(since, until, "day", PARIS, "general"))
    starts = [r.interval_start for r in rows]
    assert starts == [
        "2025-03-29T00:00:00+01:00",
        "2025-03-30T00:00:00+01:00",
        "2025-03-31T00:00:00+02:00",
    ]
    expected = expected_queue_figures(SPECS, since, until, "day", PARIS)
    assert [r.offered for r in rows] == [
        expected.get(("general", start), {"offered": 0})["offered"] for start in starts
    ]
    assert rows[0].offered > 0
    hours = await queue_report(
        source(engine),
        ReportQuery(datetime(2025, 3, 30, tzinfo=PARIS), datetime(2025, 3, 31, tzinfo=PARIS),
                    "hour", PARIS, "general"),
    )  # fmt: skip
    assert len(hours) == 23


async def test_agent_report_matches_the_rows(engine: AsyncEngine) -> None:
    since, until = T0 - timedelta(hours=1), T0 + timedelta(hours=30)
    rows = await agent_report(source(engine), ReportQuery(since, until, "hour", UTC_ZONE), now=NOW)
    times = expected_agent_times(since, until, "hour", UTC_ZONE)
    by_key = {(r.agent, r.interval_start): r for r in rows}
    answered: dict[tuple[str, str | None], list[Spec]] = defaultdict(list)
    for s in SPECS:
        if s.answered and s.agent is not None and since <= s.arrived < until:
            answered[(s.agent, local_start(s.arrived, "hour", UTC_ZONE))].append(s)
    offers: dict[tuple[str, str | None], int] = defaultdict(int)
    missed: dict[tuple[str, str | None], int] = defaultdict(int)
    for agent, state, reason, at in agent_timeline():
        if since <= at < until:
            key = (agent, local_start(at, "hour", UTC_ZONE))
            offers[key] += state == "reserved"
            missed[key] += state == "not-ready" and reason == "no answer"
    checked = 0
    for key, row in by_key.items():
        handled = answered.get(key, [])
        assert row.answered == len(handled)
        assert row.talk_seconds == pytest.approx(sum(s.talk or 0 for s in handled), abs=1e-2)
        assert row.offers == offers.get(key, 0)
        assert row.missed == missed.get(key, 0)
        t = times.get(key, {})
        assert row.logged_in_seconds == pytest.approx(
            sum(v for s, v in t.items() if s != "logged-out"), abs=1e-2
        )
        assert row.not_ready_seconds == pytest.approx(t.get("not-ready", 0.0), abs=1e-2)
        assert row.occupancy == pytest.approx(occupancy(t), abs=1e-4)
        assert row.utilization == pytest.approx(utilization(t), abs=1e-4)
        checked += bool(handled)
    assert checked > 10


UTC_ZONE = ZoneInfo("UTC")


async def test_filters_and_csv(engine: AsyncEngine) -> None:
    q = ReportQuery(T0, T0 + timedelta(days=2), "total", UTC_ZONE, queue="cards")
    rows = await queue_report(source(engine), q, now=NOW)
    assert [r.queue for r in rows] == ["cards"]
    expected = expected_queue_figures(SPECS, T0, T0 + timedelta(days=2), "total", UTC_ZONE)
    assert rows[0].offered == expected[("cards", None)]["offered"]
    assert rows[0].threshold == 30.0
    text = rows_csv(rows, QueueRow)
    lines = text.split("\r\n")
    assert lines[0].startswith("queue,interval_start,offered,answered,abandoned")
    assert lines[1].startswith(f"cards,,{rows[0].offered},{rows[0].answered},")
    one = await agent_report(
        source(engine), ReportQuery(T0, T0 + timedelta(days=2), agent="1002"), now=NOW
    )
    assert [r.agent for r in one] == ["1002"]
    assert rows_csv(one, AgentRow).startswith("agent,interval_start,offers,missed,answered")


def test_queries_are_checked() -> None:
    with pytest.raises(ValueError, match="after its start"):
        ReportQuery(T0, T0)
    with pytest.raises(ValueError, match="no time zone"):
        ReportQuery(datetime(2025, 1, 1), T0)
    with pytest.raises(ValueError, match="intervals"):
        ReportQuery(T0, T0 + timedelta(days=400), "15min")


def test_interval_start_handles_dst_and_odd_offsets() -> None:
    at = datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first of two 02:30s
    first = interval_start(at, "hour", PARIS)
    second = interval_start(at + timedelta(hours=1), "hour", PARIS)
    assert first is not None and second is not None
    assert first.isoformat() == "2025-10-26T02:00:00+02:00"
    assert second.isoformat() == "2025-10-26T02:00:00+01:00"
    kathmandu = interval_start(datetime(2025, 1, 1, 0, 20, tzinfo=UTC), "15min",
                               ZoneInfo("Asia/Kathmandu"))  # fmt: skip
    assert kathmandu is not None and kathmandu.isoformat() == "2025-01-01T06:00:00+05:45"


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe",
         "Australia/Adelaide", "America/St_Johns"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    seconds=st.integers(0, 3 * 365 * 86400).map(lambda s: s - s % 600)
    | st.integers(0, 3 * 365 * 86400),
    zone=st.sampled_from(ZONES),
    interval=st.sampled_from(["15min", "hour", "day"]),
)
def test_every_instant_lies_in_exactly_one_interval(seconds: int, zone: str, interval: str) -> None:
    """start <= at < edge, and the edge is where the next interval starts."""
    tz = ZoneInfo(zone)
    at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=seconds % 7)
    start = interval_start(at, interval, tz)  # type: ignore[arg-type]
    edge = next_edge(at, interval, tz)  # type: ignore[arg-type]
    assert start is not None and edge is not None
    assert start.timestamp() <= at.timestamp() < edge.timestamp()
    after = interval_start(edge, interval, tz)  # type: ignore[arg-type]
    assert after is not None and after.timestamp() >= start.timestamp()
    if zone == "Australia/Lord_Howe" and interval == "hour":
        return  # its 30-minute DST change folds one local hour onto itself once a year
    # Compared as instants: PEP 495 makes `==` false for a local time in a DST
    # gap (Lord Howe's 02:00 on its spring day) against any other zone.
    assert after.timestamp() == edge.timestamp()
    length = (edge - start).total_seconds()
    if interval == "day":
        assert 22.5 * 3600 <= length <= 25 * 3600  # DST days; Lord Howe moves by 30 minutes
    else:
        assert length == (900 if interval == "15min" else 3600)


def test_report_command_writes_csv_and_json(tmp_path: Path) -> None:
    """`ccserver report` reads the config's database with the config's queues."""
    import asyncio
    import csv
    import io
    import json

    from click.testing import CliRunner

    from ccserver.cli import cli

    db = tmp_path / "contacts.db"

    async def seed() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{db}")
        await fill(engine, SPECS)
        await engine.dispose()

    asyncio.run(seed())
    config = tmp_path / "config"
    config.mkdir()
    (config / "ccserver.toml").write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    (config / "queues.toml").write_text(
        "[queues.general]\nservice_level_seconds = 20\n[queues.cards]\nservice_level_seconds = 30\n"
    )
    runner = CliRunner()
    span = ["--since", "2025-03-29T21:00", "--until", "2025-03-31", "--tz", "Europe/Paris"]
    result = runner.invoke(
        cli, ["report", "queues", "--config", str(config), *span, "--interval", "day"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    since = datetime(2025, 3, 29, 21, tzinfo=PARIS)
    until = datetime(2025, 3, 31, tzinfo=PARIS)
    expected = expected_queue_figures(SPECS, since, until, "day", PARIS)
    for row in rows:
        e = expected.get((row["queue"], row["interval_start"]), {"offered": 0})
        assert int(row["offered"]) == e["offered"]
    assert {r["queue"] for r in rows} == {"general", "cards", "other"}
    assert {r["threshold"] for r in rows if r["queue"] == "cards"} == {"30.0"}

    out = tmp_path / "agents.json"
    result = runner.invoke(
        cli,
        ["report", "agents", "--config", str(config), *span, "--agent", "1002",
         "--format", "json", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (agent,) = json.loads(out.read_text())
    assert agent["agent"] == "1002" and agent["answered"] > 0

    bad = runner.invoke(cli, ["report", "queues", "--config", str(config), "--tz", "Nowhere/X"])
    assert bad.exit_code == 2 and "unknown time zone" in bad.output
