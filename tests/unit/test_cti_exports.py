"""Contact exports: CSV and JSON lines, filters, paging, and the ``ccserver export`` commands."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ccserver.cli import cli
from ccserver.storage.database import make_engine
from ccserver.storage.migrate import create_schema
from ccserver.storage.models import Contact, ContactEvent
from cti.exports import (
    CONTACT_COLUMNS,
    ExportFilter,
    iter_contacts,
    write_contacts_csv,
    write_contacts_jsonl,
)

T0 = datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)


def make_contact(i: int, queue: str | None = "sales") -> Contact:
    return Contact(
        id=f"c{i}",
        caller_number=f"+3360000000{i}",
        caller_name='Zoë, "the" caller' if i == 0 else None,
        dialed_number="+33900000000",
        direction="inbound",
        initiation="inbound",
        sip_call_id=f"sip-{i}",
        queue=queue,
        arrived_at=T0 + timedelta(minutes=i),
        ended_at=T0 + timedelta(minutes=i, seconds=30),
        wait_seconds=1.5,
        outcome="abandoned",
        attributes={"lang": "fr", "n": i},
        notes="line one\nline two" if i == 0 else None,
    )


async def fill(engine: AsyncEngine, n: int = 5) -> None:
    async with AsyncSession(engine) as session, session.begin():
        session.add_all(make_contact(i, "sales" if i % 2 == 0 else "support") for i in range(n))
        session.add_all(
            ContactEvent(contact_id=f"c{i}", seq=s, type=t, at=T0 + timedelta(minutes=i, seconds=s),
                         data={"s": s})
            for i in range(n)
            for s, t in enumerate(["arrived", "queued", "ended"])
        )  # fmt: skip


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "contacts.db"


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
    await create_schema(engine)
    await fill(engine)
    yield engine
    await engine.dispose()


async def test_csv_has_every_column_and_round_trips_awkward_text(engine: AsyncEngine) -> None:
    out = io.StringIO(newline="")
    assert await write_contacts_csv(engine, out, ExportFilter()) == 5
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == list(CONTACT_COLUMNS)
    assert "attributes" in rows[0] and "customer_id" in rows[0]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["id"] == "c0"
    assert first["caller_name"] == 'Zoë, "the" caller'
    assert first["notes"] == "line one\nline two"
    assert first["arrived_at"] == "2025-03-01T10:00:00+00:00"
    assert first["answered_at"] == ""
    assert json.loads(first["attributes"]) == {"lang": "fr", "n": 0}
    assert out.getvalue().endswith("\r\n")


async def test_jsonl_with_and_without_the_timeline(engine: AsyncEngine) -> None:
    out = io.StringIO()
    await write_contacts_jsonl(engine, out, ExportFilter(), with_events=True)
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["id"] for o in objs] == ["c0", "c1", "c2", "c3", "c4"]
    assert set(CONTACT_COLUMNS) <= set(objs[0])
    assert objs[1]["attributes"] == {"lang": "fr", "n": 1}
    assert objs[1]["wait_seconds"] == 1.5 and objs[1]["answered_at"] is None
    assert [(e["seq"], e["type"]) for e in objs[2]["events"]] == [
        (0, "arrived"), (1, "queued"), (2, "ended")
    ]  # fmt: skip
    assert objs[2]["events"][1]["at"] == "2025-03-01T10:02:01+00:00"
    out = io.StringIO()
    await write_contacts_jsonl(engine, out, ExportFilter())
    assert "events" not in json.loads(out.getvalue().splitlines()[0])


async def test_time_range_is_half_open_and_queue_filters(engine: AsyncEngine) -> None:
    flt = ExportFilter(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=4))
    assert [c.id async for c, _ in iter_contacts(engine, flt)] == ["c1", "c2", "c3"]
    flt = ExportFilter(queue="sales")
    assert [c.id async for c, _ in iter_contacts(engine, flt)] == ["c0", "c2", "c4"]


async def test_pages_cover_every_contact_once(engine: AsyncEngine) -> None:
    # Same arrival time for two contacts: paging must still not skip or repeat one.
    async with AsyncSession(engine) as session, session.begin():
        twin = make_contact(9)
        twin.arrived_at = T0 + timedelta(minutes=1)
        session.add(twin)
    got = [(c.id, len(ev)) async for c, ev in iter_contacts(engine, page_size=2, with_events=True)]
    assert got == [("c0", 3), ("c1", 3), ("c9", 0), ("c2", 3), ("c3", 3), ("c4", 3)]


def test_filter_refuses_naive_times_and_reversed_ranges() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        ExportFilter(since=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="before since"):
        ExportFilter(since=T0, until=T0 - timedelta(seconds=1))


@pytest.fixture
def config_dir(tmp_path: Path, db_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "ccserver.toml").write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{db_path.as_posix()}"\n'
    )
    return directory


def seed(db_path: Path) -> None:
    async def go() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
        await create_schema(engine)
        await fill(engine)
        await engine.dispose()

    asyncio.run(go())


def test_cli_exports_csv_to_a_file_and_jsonl_to_stdout(
    config_dir: Path, db_path: Path, tmp_path: Path
) -> None:
    seed(db_path)
    runner = CliRunner()
    target = tmp_path / "out.csv"
    result = runner.invoke(
        cli,
        ["export", "contacts", "--config", str(config_dir), "--format", "csv",
         "--since", "2025-03-01T10:01:00Z", "--until", "2025-03-01T10:03:00", "-o", str(target)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["c1", "c2"]

    result = runner.invoke(
        cli,
        ["export", "contacts", "--config", str(config_dir), "--format", "jsonl", "--events",
         "--queue", "support"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [o["id"] for o in lines] == ["c1", "c3"] and len(lines[0]["events"]) == 3


def test_cli_queue_log_and_bad_arguments(config_dir: Path, db_path: Path) -> None:
    seed(db_path)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["export", "queue-log", "--config", str(config_dir), "--agent-format", "Agent/{ext}"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "1740823201|c0|sales|NONE|ENTERQUEUE||+33600000000"

    result = runner.invoke(cli, ["export", "contacts", "--config", str(config_dir), "--events"])
    assert result.exit_code == 2 and "--events needs --format jsonl" in result.output
    result = runner.invoke(cli, ["export", "contacts", "--config", str(config_dir),
                                 "--since", "yesterday"])  # fmt: skip
    assert result.exit_code == 2 and "ISO 8601" in result.output
