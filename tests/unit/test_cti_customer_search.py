"""Customer search over the demo customers in a real SQLite store, through the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.config import default_config_dir
from ccserver.events import EventBus
from ccserver.storage.customers import seed_customers
from ccserver.storage.database import make_engine
from ccserver.storage.migrate import upgrade
from cti.api import ApiSettings, build_app
from cti.auth import Authenticator
from cti.customer_search import SEARCH, CustomerSearch
from tests.unit.test_cti_api import AGENT, SUP, TOKENS, FakeContacts, FakeControl, auth, error

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite store with the demo's customers."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await upgrade(engine)
    await seed_customers(engine, default_config_dir() / "customers.csv", default_country_code="33")
    yield engine
    await engine.dispose()


def app_on(store: AsyncEngine) -> web.Application:
    app = build_app(
        control=FakeControl(),
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )
    app[SEARCH] = CustomerSearch(store, default_country_code="33")
    return app


@pytest.fixture
async def client(store: AsyncEngine) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app_on(store))) as c:
        yield c


async def names(client: Client, q: str, token: str = AGENT) -> list[str]:
    resp = await client.get("/api/customers", params={"q": q}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["query"] == q.strip()
    return [c["name"] for c in body["customers"]]


@pytest.mark.parametrize(
    "q",
    ["0600000009", "+33 6 00 00 00 09", "0009", "whitfield", "ELEANOR", "C0009", "c0009"],
)
async def test_the_vip_is_found_by_number_name_or_id(client: Client, q: str) -> None:
    assert await names(client, q) == ["Eleanor Whitfield"]


async def test_accounts_match_in_any_spelling_and_cjk_names_by_part(client: Client) -> None:
    assert await names(client, "acc 100003") == ["王芳"]
    assert await names(client, "王") == ["王芳"]
    assert await names(client, "100002") == ["김민준"]


async def test_the_answer_is_the_pop_s_customer_shape(client: Client) -> None:
    resp = await client.get("/api/customers", params={"q": "0600000009"}, headers=auth(SUP))
    (vip,) = (await resp.json())["customers"]
    assert vip["tier"] == "VIP" and vip["id"] == "C0009"
    assert {"number": "+33600000009", "label": "mobile", "primary": True} in vip["phones"]
    assert vip["open_complaints"] and "complaints" not in vip


async def test_like_wildcards_match_themselves(client: Client) -> None:
    assert await names(client, "%%") == []
    assert await names(client, "__") == []


async def test_short_long_or_bad_queries_are_422_and_no_token_401(client: Client) -> None:
    for params in ({}, {"q": " a "}, {"q": "x" * 101}, {"q": "alice", "limit": "0"},
                   {"q": "alice", "limit": "many"}, {"q": "alice", "limit": "51"}):  # fmt: skip
        resp = await client.get("/api/customers", params=params, headers=auth(AGENT))
        body = await error(resp, 422, "invalid-query")
        assert body["details"]["errors"][0]["field"] in ("q", "limit")
    await error(await client.get("/api/customers", params={"q": "alice"}), 401, "unauthorized")


async def test_limit_bounds_the_answer(client: Client) -> None:
    resp = await client.get(
        "/api/customers", params={"q": "06000000", "limit": "2"}, headers=auth(AGENT)
    )
    assert len((await resp.json())["customers"]) == 2


async def test_without_a_store_the_search_says_so() -> None:
    app = build_app(
        control=FakeControl(),
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )
    async with TestClient(TestServer(app)) as c:
        resp = await c.get("/api/customers", params={"q": "alice"}, headers=auth(AGENT))
        await error(resp, 503, "customers-unavailable")
