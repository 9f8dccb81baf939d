"""Follow-ups through the real app and a real migrated SQLite store: rules, 422s, listing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ccserver.events import EventBus
from ccserver.storage.followups import FollowUpRow, FollowUpStore
from cti.api import ApiSettings, build_app
from cti.auth import Authenticator
from cti.followups import FOLLOW_UPS
from tests.unit.test_cti_api import (
    AGENT,
    AGENT2,
    SUP,
    TOKENS,
    FakeContacts,
    FakeControl,
    auth,
    error,
)
from tests.unit.test_cti_customer_search import store as store

Client = TestClient[web.Request, web.Application]
SOON = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()


@pytest.fixture
async def client(store: AsyncEngine) -> AsyncIterator[Client]:
    control = FakeControl()
    control.live["c1"]["customer"] = {"id": "C0009", "name": "Eleanor Whitfield"}
    app = build_app(
        control=control,
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )
    app[FOLLOW_UPS] = FollowUpStore(store)
    async with TestClient(TestServer(app)) as c:
        yield c


async def post(client: Client, token: str, body: dict[str, Any]) -> Any:
    return await client.post("/api/follow-ups", json=body, headers=auth(token))


async def listed(client: Client, token: str, **params: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/follow-ups", params=params, headers=auth(token))
    assert resp.status == 200, await resp.text()
    found: list[dict[str, Any]] = (await resp.json())["follow_ups"]
    return found


async def test_an_agent_sets_one_on_its_call_and_it_is_stored(
    client: Client,
    store: AsyncEngine,
) -> None:
    resp = await post(client, AGENT, {"contact_id": "c1", "due": SOON, "note": "call back"})
    assert resp.status == 200, await resp.text()
    made = await resp.json()
    assert made["agent"] == "1001" and made["due"] == SOON and made["done_at"] is None
    assert made["customer_id"] == "C0009" and made["customer_name"] == "Eleanor Whitfield"
    assert made["caller_number"] == "0600000009" and made["contact_id"] == "c1"
    async with AsyncSession(store) as session:
        row = (await session.scalars(select(FollowUpRow))).one()
    assert (row.agent, row.due, row.note) == ("1001", date.fromisoformat(SOON), "call back")
    # A stored contact the agent handled works as well (no customer known there).
    resp = await post(client, AGENT, {"contact_id": "old1", "due": SOON})
    assert resp.status == 200, await resp.text()


async def test_mine_the_customer_s_and_done(client: Client) -> None:
    await post(client, AGENT, {"contact_id": "c1", "due": SOON})
    await post(client, AGENT2, {"contact_id": "c2", "due": SOON})
    mine = await listed(client, AGENT)
    assert [f["contact_id"] for f in mine] == ["c1"]
    assert [f["agent"] for f in await listed(client, AGENT2, customer="C0009")] == ["1001"]
    assert len(await listed(client, SUP)) == 2
    await error(
        await client.get("/api/follow-ups", params={"agent": "1002"}, headers=auth(AGENT)),
        403,
        "forbidden",
    )
    fid = mine[0]["id"]
    await error(
        await client.post(f"/api/follow-ups/{fid}/done", headers=auth(AGENT2)), 403, "forbidden"
    )
    resp = await client.post(f"/api/follow-ups/{fid}/done", headers=auth(AGENT))
    assert resp.status == 200 and (await resp.json())["done_at"] is not None
    assert await listed(client, AGENT, open="true") == []
    await error(
        await client.post("/api/follow-ups/999/done", headers=auth(SUP)), 404, "follow-up-not-found"
    )


async def test_someone_else_s_or_unknown_contacts_are_refused(client: Client) -> None:
    await error(await post(client, AGENT, {"contact_id": "c2", "due": SOON}), 403, "forbidden")
    await error(
        await post(client, AGENT, {"contact_id": "nope", "due": SOON}), 404, "contact-not-found"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contact_id": "c1"}, "due"),
        ({"contact_id": "c1", "due": "next tuesday"}, "due"),
        ({"contact_id": "c1", "due": "2001-01-01"}, "due"),
        ({"contact_id": "c1", "due": "2999-01-01"}, "due"),
        ({"due": SOON}, "contact_id"),
        ({"contact_id": "c1", "due": SOON, "when": "now"}, "when"),
        ({"contact_id": "c1", "due": SOON, "note": "x" * 4001}, "note"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    found = await error(await post(client, AGENT, body), 422, "invalid-data")
    assert field in str(found["details"]), found


async def test_bad_open_is_422_and_no_token_401(client: Client) -> None:
    await error(
        await client.get("/api/follow-ups", params={"open": "maybe"}, headers=auth(AGENT)),
        422,
        "invalid-query",
    )
    await error(await client.get("/api/follow-ups"), 401, "unauthorized")
