"""Customer lookup for the call path: normalised numbers, accounts, cache, time bound, history."""

# ruff: noqa: F811 - the shared fixtures are imported from test_storage and named as parameters

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.config import shipped_config_dir
from ccserver.storage import ContactRecorder, seed_customers, upgrade
from ccserver.storage.database import make_engine
from ccserver.storage.phone import national_variants, normalize_account, to_e164
from cti import Customer, CustomerDirectory, CustomerProvider, DatabaseCustomerProvider
from tests.integration.postgres_server import postgres_server  # noqa: F401 - fixture
from tests.unit.test_storage import db_path, engine  # noqa: F401 - fixtures

WAIT = 10.0
T0 = datetime(2024, 5, 6, 9, 30, tzinfo=UTC)
ELEANOR = Customer(id="C0009", name="Eleanor Whitfield", tier="VIP")


# -- numbers --


@pytest.mark.parametrize(
    "raw",
    [
        "0600000009",
        "06 00 00 00 09",
        "06.00.00.00.09",
        "06-00-00-00-09",
        "+33600000009",
        "+33 6 00 00 00 09",
        "+33 6-00-00-00-09",
        "+33 (0)6 00 00 00 09",
        "0033600000009",
        "33600000009",
        "600000009",
        "tel:+33-6-00-00-00-09",
        "sip:0600000009@pbx.example;user=phone",
        " 0600000009 ",
    ],
)
def test_every_spelling_of_a_number_is_one_e164(raw: str) -> None:
    assert to_e164(raw, "33") == "+33600000009"


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+82 10-5555-0008", "33", "+821055550008"),
        ("010-5555-0008", "82", "+821055550008"),
        ("821055550008", "82", "+821055550008"),
        ("+86 138 0013 8006", "33", "+8613800138006"),
        ("(415) 555-0117", "1", "+14155550117"),
        ("anonymous", "33", None),
        ("1001", "33", None),  # an extension
        ("", "33", None),
        ("+0600000009", "33", None),
        ("+1234567890123456", "33", None),  # 16 digits: longer than E.164 allows
        ("06000000O9", "33", None),
    ],
)
def test_numbers_abroad_and_things_that_are_not_numbers(
    raw: str, country: str, expected: str | None
) -> None:
    assert to_e164(raw, country) == expected


def test_a_bad_country_code_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="country code"):
        to_e164("0600000009", "033")


def test_stored_spellings_of_a_number() -> None:
    assert national_variants("+33600000009", "33") == [
        "+33600000009",
        "33600000009",
        "0033600000009",
        "0600000009",
    ]
    assert national_variants("+821055550008", "33") == [
        "+821055550008",
        "821055550008",
        "00821055550008",
    ]
    assert normalize_account(" pb-900 009 ") == "PB900009"


# -- the directory on the demo bank --


@pytest.fixture
async def bank(engine: AsyncEngine) -> AsyncEngine:
    await upgrade(engine)
    await seed_customers(engine, shipped_config_dir() / "customers.csv", default_country_code="33")
    return engine


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Counting:
    """A provider wrapper that counts queries and can hold them until released."""

    inner: CustomerProvider
    name: str = "counting"
    calls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail: Exception | None = None

    async def by_number(self, e164: str) -> Customer | None:
        self.calls.append(e164)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return await self.inner.by_number(e164)

    async def by_account(self, account_no: str) -> Customer | None:
        self.calls.append(account_no)
        return await self.inner.by_account(account_no)


@pytest.fixture
async def directory(bank: AsyncEngine) -> AsyncIterator[CustomerDirectory]:
    directory = CustomerDirectory(
        DatabaseCustomerProvider(bank), default_country_code="33", contact_store=bank, timeout=5.0
    )
    yield directory
    await directory.close()


async def test_any_spelling_of_a_vip_number_finds_the_vip(directory: CustomerDirectory) -> None:
    for raw in ("0600000009", "+33 6 00 00 00 09", "tel:0033600000009", "+44 20 7946 0009"):
        customer = await directory.lookup_by_number(raw)
        assert customer is not None, raw
        assert (customer.id, customer.tier, customer.language) == ("C0009", "VIP", "en")
    assert customer is not None
    assert customer.primary_number == "+33600000009"
    assert customer.account_manager == "Emma"
    assert [c.status for c in customer.open_complaints] == ["in-progress"]
    standard = await directory.lookup_by_number("0600000001")
    assert standard is not None and (standard.name, standard.tier) == ("Alice Martin", "standard")
    korean = await directory.lookup_by_number("+82 2 555 0102")  # a secondary number
    assert korean is not None and (korean.name, korean.language) == ("김민준", "ko")
    assert [p.label for p in korean.phones] == ["mobile", "home"]


async def test_lookup_by_account(directory: CustomerDirectory) -> None:
    for raw in ("PB-900009", "pb 900009", "PB900009"):
        customer = await directory.lookup_by_account(raw)
        assert customer is not None and customer.id == "C0009", raw
    chinese = await directory.lookup_by_account("sav-200006")
    assert chinese is not None and (chinese.name, chinese.language) == ("陈伟", "zh")
    assert await directory.lookup_by_account("ACC-999999") is None
    assert await directory.lookup_by_account(" - ") is None


async def test_unknown_callers(directory: CustomerDirectory) -> None:
    assert await directory.lookup_by_number("0699999999") is None
    assert await directory.lookup_by_number("anonymous") is None
    assert await directory.lookup_by_number("1001") is None


async def test_answers_are_cached_until_they_expire(bank: AsyncEngine) -> None:
    clock = Clock()
    provider = Counting(DatabaseCustomerProvider(bank))
    directory = CustomerDirectory(
        provider, default_country_code="33", ttl=60, negative_ttl=5, clock=clock
    )
    try:
        first = await directory.lookup_by_number("0600000009")
        again = await directory.lookup_by_number("+33600000009")
        assert first is again and first is not None
        assert provider.calls == ["+33600000009"]
        assert (directory.stats.hits, directory.stats.misses) == (1, 1)
        assert await directory.lookup_by_number("0699999999") is None
        assert await directory.lookup_by_number("0699999999") is None  # "unknown" is cached too
        assert provider.calls == ["+33600000009", "+33699999999"]
        clock.now += 10  # the negative answer expires first
        await directory.lookup_by_number("0699999999")
        await directory.lookup_by_number("0600000009")
        assert provider.calls == ["+33600000009", "+33699999999", "+33699999999"]
        clock.now += 60
        await directory.lookup_by_number("0600000009")
        assert provider.calls[-1] == "+33600000009" and len(provider.calls) == 4
        directory.invalidate("C0009")
        await directory.lookup_by_number("0600000009")
        assert len(provider.calls) == 5
    finally:
        await directory.close()


async def test_the_cache_is_bounded(bank: AsyncEngine) -> None:
    provider = Counting(DatabaseCustomerProvider(bank))
    directory = CustomerDirectory(provider, default_country_code="33", max_entries=2)
    try:
        for n in (1, 2, 3):
            await directory.lookup_by_number(f"060000000{n}")
        await directory.lookup_by_number("0600000003")  # still cached
        await directory.lookup_by_number("0600000001")  # evicted: asked again
        assert provider.calls == ["+33600000001", "+33600000002", "+33600000003", "+33600000001"]
    finally:
        await directory.close()


async def test_expired_answers_leave_the_cache(bank: AsyncEngine) -> None:
    """A stream of new callers keeps negative_ttl of them, not max_entries."""
    clock = Clock()
    directory = CustomerDirectory(
        DatabaseCustomerProvider(bank), default_country_code="33", negative_ttl=5, clock=clock
    )
    try:
        for n in range(100):
            clock.now += 1.0
            assert await directory.lookup_by_number(f"0699{n:06d}") is None
            assert len(directory._cache) <= 5
        assert await directory.lookup_by_number("0699000099") is None
        assert directory.stats.hits == 1  # the last five are still cached
    finally:
        await directory.close()


async def test_a_slow_provider_gives_an_unknown_caller_within_the_bound(
    bank: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    provider = Counting(DatabaseCustomerProvider(bank), gate=asyncio.Event())
    directory = CustomerDirectory(provider, default_country_code="33", timeout=0.05)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        both = await asyncio.gather(
            directory.lookup_by_number("0600000009", call="call-1"),
            directory.lookup_by_number("06 00 00 00 09", call="call-2"),
        )
        elapsed = loop.time() - started
        assert list(both) == [None, None]
        assert elapsed < 1.0, f"the call waited {elapsed:.3f} s"
        assert provider.calls == ["+33600000009"], "concurrent lookups share one query"
        assert directory.stats.timeouts == 2
        logged = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
        assert len(logged) == 2 and logged[0].startswith("[call-1] ")

        # The answer arrives late: it still fills the cache for the screen pop.
        assert provider.gate is not None
        provider.gate.set()
        (pending,) = directory._inflight.values()
        await asyncio.wait_for(pending, WAIT)
        customer = await directory.lookup_by_number("0600000009")
        assert customer is not None and customer.tier == "VIP"
        assert len(provider.calls) == 1
    finally:
        await directory.close()


async def test_close_cancels_lookups_still_running(bank: AsyncEngine) -> None:
    provider = Counting(DatabaseCustomerProvider(bank), gate=asyncio.Event())
    directory = CustomerDirectory(provider, default_country_code="33", timeout=0.01)
    assert await directory.lookup_by_number("0600000009") is None
    (pending,) = directory._inflight.values()
    await directory.close()
    assert pending.cancelled() and not directory._inflight


async def test_a_failing_provider_is_logged_and_not_cached(
    bank: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cti.customers")
    provider = Counting(DatabaseCustomerProvider(bank), fail=ConnectionError("CRM down"))
    directory = CustomerDirectory(provider, default_country_code="33")
    try:
        assert await directory.lookup_by_number("0600000009") is None
        assert directory.stats.errors == 1
        failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 1 and "CRM down" in failures[0] and "counting" in failures[0]
        provider.fail = None
        customer = await directory.lookup_by_number("0600000009")
        assert customer is not None and len(provider.calls) == 2
    finally:
        await directory.close()


async def test_recent_contacts_with_dispositions_for_the_screen_pop(
    bank: AsyncEngine, directory: CustomerDirectory
) -> None:
    recorder = ContactRecorder(bank, node="pbx1")
    await recorder.start()
    ids = []
    for n, (caller, disposition) in enumerate(
        [
            ("0600000009", "card-replaced"),  # national, as the SIPp trunk sends it
            ("+33600000009", "wire-enquiry"),
            ("+442079460009", None),  # her work number
            ("0600000001", "balance"),  # somebody else
        ]
    ):
        cid = recorder.open_contact(
            caller_number=caller,
            dialed_number="5000",
            sip_call_id=f"c{n}",
            at=T0 + timedelta(days=n),
        )
        recorder.update(cid, disposition=disposition, agent="1006")
        recorder.close_contact(
            cid, outcome="answered", disconnect_reason="caller", at=T0 + timedelta(days=n, hours=1)
        )
        ids.append(cid)
    linked = recorder.open_contact(
        caller_number="anonymous", dialed_number="5000", sip_call_id="c9", at=T0 + timedelta(days=9)
    )
    recorder.update(linked, customer_id="C0009")  # identified by account in the IVR
    await asyncio.wait_for(recorder.flush(), WAIT)
    await asyncio.wait_for(recorder.stop(), WAIT)

    eleanor = await directory.lookup_by_number("0600000009")
    assert eleanor is not None
    history = await directory.recent_contacts(eleanor, limit=10)
    assert [h.contact_id for h in history] == [linked, ids[2], ids[1], ids[0]]
    assert [h.disposition for h in history] == [None, None, "wire-enquiry", "card-replaced"]
    assert history[1].outcome == "answered" and history[1].agent == "1006"
    assert history[1].talk_seconds is None and history[1].ended_at is not None
    by_number = await directory.recent_contacts("06 00 00 00 09", limit=1)
    assert [h.contact_id for h in by_number] == [ids[1]]
    assert await directory.recent_contacts("0699999999") == []


async def test_history_without_a_contact_store_is_empty(bank: AsyncEngine) -> None:
    directory = CustomerDirectory(DatabaseCustomerProvider(bank), default_country_code="33")
    assert await directory.recent_contacts(ELEANOR) == []
    await directory.close()


async def test_a_reader_engine_sees_each_new_commit(db_path: Path) -> None:
    """The lookups' engine (``sqlite_readers``: no BEGIN, no reset on return) finds
    customers and history, and its pooled connection sees what the writer commits
    after its first reads."""
    writer = make_engine(f"sqlite+aiosqlite:///{db_path}")
    reader = make_engine(f"sqlite+aiosqlite:///{db_path}", sqlite_readers=1)
    try:
        await upgrade(writer)
        directory = CustomerDirectory(
            DatabaseCustomerProvider(reader), default_country_code="33", contact_store=reader
        )
        assert await directory.recent_contacts("0611111111") == []
        assert await directory.lookup_by_number("0600000009") is None
        await seed_customers(
            writer, shipped_config_dir() / "customers.csv", default_country_code="33"
        )
        recorder = ContactRecorder(writer, node="pbx1")
        await recorder.start()
        cid = recorder.open_contact(
            caller_number="0611111111", dialed_number="5001", sip_call_id="r1"
        )
        await asyncio.wait_for(recorder.stop(), WAIT)
        assert [c.contact_id for c in await directory.recent_contacts("0611111111")] == [cid]
        directory.invalidate()
        found = await directory.lookup_by_number("0600000009")
        assert found is not None and found.name == "Eleanor Whitfield"
        await directory.close()
    finally:
        await reader.dispose()
        await writer.dispose()
