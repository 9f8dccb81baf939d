"""The HTTP CRM provider against a real aiohttp server on loopback, and its JSON mapping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.config import shipped_config_dir
from ccserver.config.schema import CrmConfig, CtiConfig
from ccserver.storage import seed_customers, upgrade
from ccserver.storage.database import make_engine
from cti.crm_http import (
    CrmAnswerError,
    HttpCrmProvider,
    customer_from_json,
    provider_from_config,
)
from cti.customers import (
    CustomerDirectory,
    DatabaseCustomerProvider,
    FallbackProvider,
    Phone,
)

TOKEN = "crm-test-token"
KNOWN = "+33611223344"

MARGARET = {
    "id": 4711,
    "full_name": "Margaret Okafor",
    "level": {"name": "gold"},
    "email": "m.okafor@example.com",
    "phones": [
        {"number": "06 11 22 33 44", "label": "mobile", "primary": True},
        "+44 20 7946 0111",
    ],
    "accounts": [{"number": "pb-47 11", "kind": "private"}, "CARD-1"],
    "complaints": [
        {"opened_on": "2025-01-02", "summary": "Card blocked", "status": "resolved",
         "closed_on": "2025-01-03"},
        {"opened_on": "2025-03-04", "summary": "Fee charged twice", "status": "open"},
    ],
}  # fmt: skip
FIELDS = {"name": "full_name", "tier": "level.name"}


@dataclass
class Crm:
    """A CRM whose answers the test scripts, by caller number."""

    server: TestServer
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: set[str] = field(default_factory=set)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def config(self, **kw: Any) -> CrmConfig:
        settings: dict[str, Any] = {
            "url": str(self.server.make_url("/customers")) + "?phone={number}",
            "account_url": str(self.server.make_url("/accounts/")) + "{account}",
            "token": TOKEN,
            "headers": {"X-Api-Version": "2"},
            "timeout": 0.3,
            "result": "data",
            "fields": FIELDS,
            **kw,
        }
        return CrmConfig(**settings)


@pytest.fixture
async def crm() -> AsyncIterator[Crm]:
    app = web.Application()
    fake = Crm(TestServer(app, host="127.0.0.1"))

    async def answer(request: web.Request, key: str) -> web.StreamResponse:
        fake.requests.append((key, dict(request.headers)))
        if key in fake.hanging:
            await fake.hang.wait()
        status, body = fake.answers.get(key, (404, {"error": "not found"}))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="application/json")
        return web.json_response(body, status=status)

    async def customers(request: web.Request) -> web.StreamResponse:
        return await answer(request, request.query["phone"])

    async def accounts(request: web.Request) -> web.StreamResponse:
        return await answer(request, request.match_info["account"])

    app.router.add_get("/customers", customers)
    app.router.add_get("/accounts/{account}", accounts)
    await fake.server.start_server()
    yield fake
    fake.hang.set()
    await fake.server.close()


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'bank.db'}")
    await upgrade(engine)
    await seed_customers(engine, shipped_config_dir() / "customers.csv", default_country_code="33")
    yield engine
    await engine.dispose()


# -- the mapping ----------------------------------------------------------------------------


def test_a_crm_record_maps_to_our_customer() -> None:
    c = customer_from_json(
        {"data": [MARGARET]}, default_country_code="33", result="data", fields=FIELDS,
        number=KNOWN,
    )  # fmt: skip
    assert c is not None
    assert (c.id, c.name, c.tier, c.email) == ("4711", "Margaret Okafor", "gold", MARGARET["email"])
    assert c.phones == (Phone(KNOWN, "mobile", True), Phone("+442079460111", None, False))
    assert [(a.number, a.kind) for a in c.accounts] == [("PB4711", "private"), ("CARD1", None)]
    # Newest first, as our own customers.
    assert [x.summary for x in c.complaints] == ["Fee charged twice", "Card blocked"]
    assert c.complaints[1].closed_on == date(2025, 1, 3)
    assert [x.summary for x in c.open_complaints] == ["Fee charged twice"]


def test_defaults_and_the_number_asked_for() -> None:
    c = customer_from_json({"id": "x1", "name": "Ann"}, default_country_code="33", number=KNOWN)
    assert c is not None and c.tier == "standard"
    assert c.phones == (Phone(KNOWN, None, True),)  # the pop finds history by it


@pytest.mark.parametrize("doc", [None, [], {"data": None}, {"data": []}, {"other": 1}])
def test_nothing_found_is_no_such_customer(doc: Any) -> None:
    assert customer_from_json(doc, default_country_code="33", result="data") is None


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ("just text", "expected a customer object"),
        ({"name": "No id"}, "no id"),
        ({"id": "1"}, "no name"),
        ({"id": "1", "name": ["a"]}, "name must be a string"),
        ({"id": "1", "name": "A", "phones": "0600"}, "phones must be a list"),
        ({"id": "1", "name": "A", "complaints": [{"summary": "x"}]}, "has no opened_on"),
        ({"id": "1", "name": "A", "complaints": [{"opened_on": "soon", "summary": "x"}]},
         "not an ISO date"),
        ({"id": True, "name": "A"}, "id must be a string"),
    ],
)  # fmt: skip
def test_garbage_is_an_error_naming_what_is_wrong(doc: Any, problem: str) -> None:
    with pytest.raises(CrmAnswerError, match=problem):
        customer_from_json(doc, default_country_code="33")


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError, match=r"\{number\}"):
        CrmConfig(url="http://crm/customers")
    with pytest.raises(ValidationError, match="unknown customer field"):
        CrmConfig(url="http://crm/c?p={number}", fields={"nickname": "x"})
    with pytest.raises(ValidationError, match=r"needs a \[cti.crm\] table"):
        CtiConfig(provider="http")
    with pytest.raises(ValidationError, match="longer than lookup_timeout"):
        CtiConfig(provider="http", crm=CrmConfig(url="http://c/?p={number}", timeout=2))


# -- the provider over real HTTP ---------------------------------------------------------


async def test_the_crm_is_asked_with_its_token_and_its_answer_mapped(crm: Crm) -> None:
    crm.answers[KNOWN] = (200, {"data": [MARGARET]})
    provider = HttpCrmProvider(crm.config(), default_country_code="33")
    try:
        customer = await provider.by_number(KNOWN)
        assert customer is not None and customer.name == "Margaret Okafor"
        assert await provider.by_number("+33699999999") is None  # 404
        crm.answers["PB-4711"] = (200, {"data": MARGARET})
        by_account = await provider.by_account("PB-4711")
        assert by_account is not None and by_account.id == "4711"
    finally:
        await provider.close()
    (key, headers), *_ = crm.requests
    assert key == KNOWN  # "+" was URL-encoded and decoded back
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Api-Version"] == "2" and headers["Accept"] == "application/json"


@pytest.mark.parametrize(
    ("answer", "why"),
    [((503, {"error": "maintenance"}), "HTTP 503"), ((200, b"<html>oops"), "not JSON"),
     ((200, {"data": {"name": "no id"}}), "no id")],
)  # fmt: skip
async def test_failures_give_an_unknown_caller_logged_and_not_cached(
    crm: Crm, answer: tuple[int, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    crm.answers[KNOWN] = answer
    directory = CustomerDirectory(
        HttpCrmProvider(crm.config(), default_country_code="33"),
        default_country_code="33",
        timeout=0.5,
    )
    try:
        with caplog.at_level(logging.WARNING, "cti.customers"):
            assert await directory.lookup_by_number("0611223344", call="c-1") is None
        assert why in caplog.text and "http provider" in caplog.text
        # Not cached: once the CRM is well again, the next call is known.
        crm.answers[KNOWN] = (200, {"data": [MARGARET]})
        again = await directory.lookup_by_number("0611223344")
        assert again is not None and again.id == "4711"
    finally:
        await directory.close()


async def test_a_hanging_crm_never_delays_the_call_beyond_the_timeout(crm: Crm) -> None:
    crm.hanging.add(KNOWN)
    directory = CustomerDirectory(
        HttpCrmProvider(crm.config(timeout=0.2), default_country_code="33"),
        default_country_code="33",
        timeout=0.3,
    )
    try:
        started = time.monotonic()
        assert await directory.lookup_by_number("0611223344") is None
        assert time.monotonic() - started < 0.3 + 0.2
        assert directory.stats.timeouts + directory.stats.errors == 1
    finally:
        await directory.close()


async def test_fallback_to_the_database_when_the_crm_cannot_tell(
    crm: Crm, bank: AsyncEngine
) -> None:
    vip = "+33600000009"  # Eleanor Whitfield in the shipped customers.csv
    crm.hanging.add(vip)
    crm.answers["+33600000001"] = (500, {})
    cti = CtiConfig(provider="http", crm=crm.config(fallback="database", timeout=0.2))
    provider = provider_from_config(cti, bank)
    assert isinstance(provider, FallbackProvider)
    directory = CustomerDirectory(provider, default_country_code="33", timeout=0.5)
    try:
        started = time.monotonic()
        eleanor = await directory.lookup_by_number("0600000009")
        assert eleanor is not None and eleanor.name == "Eleanor Whitfield"
        assert time.monotonic() - started < 0.5
        standard = await directory.lookup_by_number("0600000001")
        assert standard is not None and standard.id == "C0001"
        # "No such customer" from the CRM is its answer: no second opinion.
        assert await directory.lookup_by_number("0600000002") is None
    finally:
        await directory.close()


def test_the_database_stays_the_default_provider(bank: AsyncEngine) -> None:
    assert isinstance(provider_from_config(CtiConfig(), bank), DatabaseCustomerProvider)
