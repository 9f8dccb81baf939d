"""The report and staffing routes in memory: real app, real SQLite store, a stand-in call model."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession

from acd.erlang import agents_required, offered_load
from ccserver.events import EventBus
from ccserver.storage.database import make_engine
from ccserver.storage.migrate import create_schema
from ccserver.storage.models import Contact
from cti.api import ApiSettings, build_app
from cti.auth import Authenticator
from cti.reports import ReportSource
from cti.reports_api import REPORTS
from tests.unit.test_cti_api import AGENT, SUP, TOKENS, FakeContacts, FakeControl, auth, error

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


class StaffedControl(FakeControl):
    def queues(self) -> list[dict[str, Any]]:
        return [
            {"queue": "general", "waiting": 2, "aht": 240.0, "service_level_target": 0.9,
             "agents": {"available": 2, "on-call": 3, "not-ready": 1, "logged-out": 4}},
        ]  # fmt: skip


def contact(i: int, outcome: str, wait: float, talk: float | None) -> Contact:
    arrived = T0 + timedelta(minutes=20 * i)
    return Contact(
        id=f"c{i}",
        caller_number="0600000001",
        dialed_number="5001",
        direction="inbound",
        initiation="inbound",
        sip_call_id=f"s{i}",
        queue="general",
        agent="1001" if talk is not None else None,
        arrived_at=arrived,
        enqueued_at=arrived,
        answered_at=arrived + timedelta(seconds=wait) if talk is not None else None,
        ended_at=arrived + timedelta(seconds=wait + (talk or 0)),
        wait_seconds=wait,
        talk_seconds=talk,
        outcome=outcome,
    )


Env = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Env]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await create_schema(engine)
    async with AsyncSession(engine) as session, session.begin():
        session.add_all([
            contact(0, "answered", 5.0, 100.0),
            contact(1, "answered", 45.0, 200.0),
            contact(2, "abandoned", 30.0, None),
            contact(3, "answered", 10.0, 60.0),
        ])  # fmt: skip
    app = build_app(
        control=StaffedControl(),
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )
    app[REPORTS] = ReportSource(engine, thresholds={"general": 20.0}, members={"general": []})
    async with TestClient(TestServer(app)) as c:
        yield c
    await engine.dispose()


RANGE = {"from": "2025-06-02T09:00:00Z", "to": "2025-06-02T11:00:00Z"}


async def test_queue_report_json_per_hour(client: Env) -> None:
    resp = await client.get(
        "/api/reports/queues", params={**RANGE, "interval": "hour"}, headers=auth(SUP)
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["interval"] == "hour" and body["tz"] == "UTC"
    rows = body["rows"]
    assert [r["interval_start"] for r in rows] == [
        "2025-06-02T09:00:00+00:00",
        "2025-06-02T10:00:00+00:00",
    ]
    first, second = rows
    # 09:00, 09:20, 09:40 in the first hour; 10:00 in the second.
    assert (first["offered"], first["answered"], first["abandoned"]) == (3, 2, 1)
    assert first["service_level"] == pytest.approx(1 / 3, abs=1e-4)  # only the 5 s wait
    assert first["asa"] == pytest.approx((5 + 45) / 2)
    assert first["aht"] == pytest.approx((100 + 200) / 2)
    assert (second["offered"], second["answered"], second["service_level"]) == (1, 1, 1.0)


async def test_csv_by_parameter_or_accept_header(client: Env) -> None:
    for params, headers in (
        ({**RANGE, "format": "csv"}, auth(SUP)),
        (RANGE, {**auth(SUP), "Accept": "text/csv"}),
    ):
        resp = await client.get("/api/reports/queues", params=params, headers=headers)
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await resp.text(), newline="")))
        assert len(rows) == 1
        assert rows[0]["queue"] == "general" and rows[0]["offered"] == "4"
        assert rows[0]["interval_start"] == ""
    resp = await client.get(
        "/api/reports/agents", params={**RANGE, "format": "csv"}, headers=auth(SUP)
    )
    rows = list(csv.DictReader(io.StringIO(await resp.text(), newline="")))
    assert [(r["agent"], r["answered"]) for r in rows] == [("1001", "3")]


async def test_reports_need_a_supervisor(client: Env) -> None:
    await error(await client.get("/api/reports/queues", headers=auth(AGENT)), 403, "forbidden")
    await error(await client.get("/api/staffing?queue=general&calls=1"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({"interval": "week"}, ["interval"]),
        ({"tz": "Mars/Olympus", "from": "yesterday"}, ["tz", "from"]),
        ({"from": "2025-06-02", "to": "2025-06-01"}, ["from"]),
        ({"format": "xml"}, ["format"]),
    ],
)
async def test_bad_report_parameters(client: Env, query: dict[str, str], fields: list[str]) -> None:
    body = await error(
        await client.get("/api/reports/queues", params=query, headers=auth(SUP)),
        422,
        "invalid-query",
    )
    assert [e["field"] for e in body["details"]["errors"]] == fields


async def test_staffing_beside_the_logged_in_agents(client: Env) -> None:
    resp = await client.get(
        "/api/staffing", params={"queue": "general", "calls": "60"}, headers=auth(SUP)
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    # Defaults: the queue's live AHT (240 s), its target (0.9) and threshold (20 s), 15 minutes.
    load = offered_load(60, 900, 240)
    need = agents_required(load, 240, target=0.9, threshold=20)
    assert body["forecast"] == {"calls": 60, "interval": 900, "aht": 240, "load": 16}
    assert body["required"]["agents"] == need.agents
    assert body["required"]["service_level"] == pytest.approx(need.service_level, abs=1e-4)
    assert body["logged_in"] == 6 and body["working"] == 5
    assert body["shortfall"] == need.agents - 5
    table = {row["agents"]: row for row in body["table"]}
    assert table[need.agents]["service_level"] >= 0.9 > table[need.agents - 1]["service_level"]


async def test_staffing_parameters_are_checked(client: Env) -> None:
    body = await error(
        await client.get(
            "/api/staffing",
            params={"queue": "general", "calls": "-1", "sl": "1.5", "aht": "x"},
            headers=auth(SUP),
        ),
        422,
        "invalid-query",
    )
    assert [e["field"] for e in body["details"]["errors"]] == ["calls", "aht", "sl"]
    await error(
        await client.get(
            "/api/staffing", params={"queue": "nope", "calls": "3"}, headers=auth(SUP)
        ),
        404,
        "queue-not-found",
    )


async def test_openapi_documents_the_query_parameters(client: Env) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/reports/queues"]["get"]
    names = [p["name"] for p in op["parameters"]]
    assert names == ["from", "to", "interval", "tz", "format", "queue"]
    assert "text/csv" in op["responses"]["200"]["content"]
    staffing = doc["paths"]["/api/staffing"]["get"]
    assert {p["name"] for p in staffing["parameters"] if p["required"]} == {"queue", "calls"}
    assert "supervisor" in staffing["description"]
