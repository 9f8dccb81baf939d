"""Customers in the contact store: the demo file, its checks, seeding, the tables' constraints."""

# ruff: noqa: F811 - the shared fixtures are imported from test_storage and named as parameters

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ccserver.config import shipped_config_dir
from ccserver.storage import (
    CustomerPhoneRow,
    CustomerRow,
    read_customers_csv,
    seed_customers,
    upgrade,
)
from ccserver.storage.customers import CustomerCsvError
from tests.integration.postgres_server import postgres_server  # noqa: F401 - fixture
from tests.unit.test_storage import db_path, engine  # noqa: F401 - fixtures

DEMO = shipped_config_dir() / "customers.csv"
HEADER = "id,name,phones,email,accounts,tier,segment,language,account_manager,notes,complaints\n"


def test_the_demo_bank_has_the_callers_the_call_tests_use() -> None:
    rows = read_customers_csv(DEMO, default_country_code="33")
    assert 18 <= len(rows) <= 25
    by_primary = {r.phones[0].number: r for r in rows}
    assert by_primary["+33600000001"].tier == "standard"
    assert by_primary["+33600000009"].tier == "VIP"
    assert {r.language for r in rows} == {"en", "zh", "ko"}
    assert {r.tier for r in rows} == {"VIP", "gold", "silver", "standard"}
    for row in rows:
        assert [p.is_primary for p in row.phones][:1] == [True]
        assert sum(p.is_primary for p in row.phones) == 1
        assert all(p.number.startswith("+") for p in row.phones)
    names = " ".join(r.name for r in rows)
    assert "김민준" in names and "王芳" in names and "Eleanor Whitfield" in names


def test_every_problem_of_a_customers_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(
        HEADER
        + "C1,Ann,mobile=0600000001,,checking=ACC-1,platinum,,en,,,\n"
        + "C1,Bob,mobile=call me,,checking=ACC 1,standard,,en,,,\n"
        + "C3,,,,,standard,,en,,,2024-13-01|x|open; 2024-01-01|y|lost\n",
        encoding="utf-8",
    )
    with pytest.raises(CustomerCsvError) as caught:
        read_customers_csv(path, default_country_code="33")
    assert caught.value.problems == [
        "customers.csv:2: tier: 'platinum' is not one of VIP, gold, silver, standard",
        "customers.csv:3: id: 'C1' already used on line 2",
        "customers.csv:3: phones: 'call me' is not a phone number",
        "customers.csv:3: phones: at least one number is needed (the first is the primary)",
        "customers.csv:3: accounts: 'ACC 1' already used on line 2",
        "customers.csv:4: name: empty",
        "customers.csv:4: phones: at least one number is needed (the first is the primary)",
        "customers.csv:4: complaints: '2024-13-01|x|open': month must be in 1..12",
        "customers.csv:4: complaints: status 'lost' is not one of ('open', 'in-progress',"
        " 'resolved')",
    ]


def test_tiers_are_the_deployments_choice(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(HEADER + "C1,Ann,0600000001,,,platinum,,en,,,\n", encoding="utf-8")
    (row,) = read_customers_csv(path, default_country_code="33", tiers=("platinum", "basic"))
    assert row.tier == "platinum"
    assert row.phones[0].label is None and row.phones[0].number == "+33600000001"


def test_a_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,name\nC1,Ann\n", encoding="utf-8")
    with pytest.raises(CustomerCsvError, match="phones: column missing"):
        read_customers_csv(path, default_country_code="33")


async def test_seeding_fills_an_empty_table_once(engine: AsyncEngine) -> None:
    await upgrade(engine)
    assert await seed_customers(engine, DEMO, default_country_code="33") == 20
    assert await seed_customers(engine, DEMO, default_country_code="33") == 0
    async with AsyncSession(engine) as session:
        assert await session.scalar(select(func.count()).select_from(CustomerRow)) == 20
        primaries = await session.scalar(
            select(func.count()).select_from(CustomerPhoneRow).where(CustomerPhoneRow.is_primary)
        )
        assert primaries == 20


async def test_one_primary_number_per_customer_is_enforced(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await seed_customers(engine, DEMO, default_country_code="33")
    with pytest.raises(IntegrityError):
        async with AsyncSession(engine) as session, session.begin():
            session.add(
                CustomerPhoneRow(customer_id="C0001", number="+33100000000", is_primary=True)
            )
    async with AsyncSession(engine) as session, session.begin():
        session.add(CustomerPhoneRow(customer_id="C0001", number="+33100000000", is_primary=False))
