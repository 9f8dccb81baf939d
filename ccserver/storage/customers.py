"""Customers of the contact center: who is calling, their numbers, accounts and complaints.

Tables: ``customers``, ``customer_phones`` (E.164, exactly one primary per
customer, a partial unique index enforces it), ``customer_accounts`` (account
numbers unique across customers) and ``customer_complaints``. Tier and
complaint status are plain strings checked by the application against lists a
deployment can change, so adding a tier needs no migration.

:func:`seed_customers` loads ``config/customers.csv`` into an empty table; the
CTI layer (``cti.customers``) reads customers through a provider.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import Base
from .phone import normalize_account, to_e164

__all__ = [
    "COMPLAINT_STATUSES",
    "DEFAULT_TIERS",
    "ComplaintRow",
    "CustomerAccountRow",
    "CustomerCsvError",
    "CustomerPhoneRow",
    "CustomerRow",
    "read_customers_csv",
    "seed_customers",
]

log = logging.getLogger(__name__)

DEFAULT_TIERS: Final = ("VIP", "gold", "silver", "standard")
COMPLAINT_STATUSES: Final = ("open", "in-progress", "resolved")


class CustomerRow(Base):
    """A customer as stored here (the CTI layer hands out immutable ``cti.Customer`` values)."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str | None]
    tier: Mapped[str]
    segment: Mapped[str | None]
    language: Mapped[str | None]
    account_manager: Mapped[str | None]
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    phones: Mapped[list[CustomerPhoneRow]] = relationship(
        order_by="CustomerPhoneRow.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )
    accounts: Mapped[list[CustomerAccountRow]] = relationship(
        order_by="CustomerAccountRow.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )
    complaints: Mapped[list[ComplaintRow]] = relationship(
        order_by="(ComplaintRow.opened_on.desc(), ComplaintRow.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )

    def __repr__(self) -> str:
        return f"<CustomerRow {self.id} {self.name!r} {self.tier}>"


class CustomerPhoneRow(Base):
    """One number of a customer, in E.164; ``position`` keeps the order they were given in."""

    __tablename__ = "customer_phones"
    __table_args__ = (
        UniqueConstraint("customer_id", "number"),
        Index("ix_customer_phones_number", "number"),
        # At most one primary number per customer (both SQLite and PostgreSQL
        # have partial indexes).
        Index(
            "uq_customer_phones_primary",
            "customer_id",
            unique=True,
            sqlite_where=text("is_primary"),
            postgresql_where=text("is_primary"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    number: Mapped[str]
    label: Mapped[str | None]
    is_primary: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    position: Mapped[int] = mapped_column(default=0, server_default="0")


class CustomerAccountRow(Base):
    """An account number (normalised: no spaces or dashes, upper case), unique across customers."""

    __tablename__ = "customer_accounts"
    __table_args__ = (
        UniqueConstraint("account_no"),
        Index("ix_customer_accounts_customer_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    account_no: Mapped[str]
    kind: Mapped[str | None]
    position: Mapped[int] = mapped_column(default=0, server_default="0")


class ComplaintRow(Base):
    """One complaint: when it was opened, what about, where it stands."""

    __tablename__ = "customer_complaints"
    __table_args__ = (Index("ix_customer_complaints_customer_id", "customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    opened_on: Mapped[date] = mapped_column(Date)
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String)
    closed_on: Mapped[date | None] = mapped_column(Date)


# -- the demo data: config/customers.csv ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    line: int
    column: str
    reason: str


class CustomerCsvError(ValueError):
    """Every problem of a customers file, each as ``file:line: column: reason``."""

    def __init__(self, path: Path, problems: Sequence[_Problem]) -> None:
        self.problems = [f"{path.name}:{p.line}: {p.column}: {p.reason}" for p in problems]
        super().__init__("\n".join(self.problems))


_COLUMNS: Final = (
    "id",
    "name",
    "phones",
    "email",
    "accounts",
    "tier",
    "segment",
    "language",
    "account_manager",
    "notes",
    "complaints",
)


def _pairs(value: str) -> list[tuple[str | None, str]]:
    """``label=value; value; label=value`` -> [(label, value), ...]."""
    out: list[tuple[str | None, str]] = []
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        label, sep, rest = item.partition("=")
        out.append((label.strip() or None, rest.strip()) if sep else (None, item))
    return out


def read_customers_csv(
    path: Path,
    *,
    default_country_code: str,
    tiers: Sequence[str] = DEFAULT_TIERS,
    now: datetime | None = None,
) -> list[CustomerRow]:
    """Parse and check a customers file; CustomerCsvError lists every problem at once.

    Columns: ``id, name, phones, email, accounts, tier, segment, language,
    account_manager, notes, complaints``. ``phones`` is ``label=number; …`` with
    the primary number first; ``accounts`` is ``kind=number; …``; ``complaints``
    is ``opened|summary|status[|closed]; …`` with ISO dates.
    """
    stamp = now or datetime.now(UTC)
    problems: list[_Problem] = []
    rows: list[CustomerRow] = []
    seen_ids: dict[str, int] = {}
    seen_accounts: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise CustomerCsvError(path, [_Problem(1, c, "column missing") for c in missing])
        for record in reader:
            line = reader.line_num

            def problem(column: str, reason: str, line: int = line) -> None:
                problems.append(_Problem(line, column, reason))

            values = {k: (v or "").strip() for k, v in record.items() if k in _COLUMNS}
            cid, name, tier = values["id"], values["name"], values["tier"]
            if not cid:
                problem("id", "empty")
            elif cid in seen_ids:
                problem("id", f"{cid!r} already used on line {seen_ids[cid]}")
            seen_ids.setdefault(cid, line)
            if not name:
                problem("name", "empty")
            if tier not in tiers:
                problem("tier", f"{tier!r} is not one of {', '.join(tiers)}")
            phones: list[CustomerPhoneRow] = []
            for position, (label, raw) in enumerate(_pairs(values["phones"])):
                number = to_e164(raw, default_country_code)
                if number is None:
                    problem("phones", f"{raw!r} is not a phone number")
                elif any(p.number == number for p in phones):
                    problem("phones", f"{raw!r} listed twice")
                else:
                    phones.append(
                        CustomerPhoneRow(
                            number=number, label=label, is_primary=not phones, position=position
                        )
                    )
            if not phones:
                problem("phones", "at least one number is needed (the first is the primary)")
            accounts: list[CustomerAccountRow] = []
            for position, (kind, raw) in enumerate(_pairs(values["accounts"])):
                account_no = normalize_account(raw)
                if not account_no:
                    problem("accounts", "empty account number")
                elif account_no in seen_accounts:
                    problem("accounts", f"{raw!r} already used on line {seen_accounts[account_no]}")
                else:
                    seen_accounts[account_no] = line
                    accounts.append(
                        CustomerAccountRow(account_no=account_no, kind=kind, position=position)
                    )
            complaints: list[ComplaintRow] = []
            for item in filter(None, (i.strip() for i in values["complaints"].split(";"))):
                parts = [p.strip() for p in item.split("|")]
                if len(parts) not in (3, 4):
                    problem("complaints", f"{item!r}: expected opened|summary|status[|closed]")
                    continue
                if parts[2] not in COMPLAINT_STATUSES:
                    problem("complaints", f"status {parts[2]!r} is not one of {COMPLAINT_STATUSES}")
                    continue
                try:
                    opened = date.fromisoformat(parts[0])
                    closed = date.fromisoformat(parts[3]) if len(parts) == 4 else None
                except ValueError as exc:
                    problem("complaints", f"{item!r}: {exc}")
                    continue
                complaints.append(
                    ComplaintRow(
                        opened_on=opened, summary=parts[1], status=parts[2], closed_on=closed
                    )
                )
            rows.append(
                CustomerRow(
                    id=cid,
                    name=name,
                    email=values["email"] or None,
                    tier=tier,
                    segment=values["segment"] or None,
                    language=values["language"] or None,
                    account_manager=values["account_manager"] or None,
                    notes=values["notes"] or None,
                    created_at=stamp,
                    updated_at=stamp,
                    phones=phones,
                    accounts=accounts,
                    complaints=complaints,
                )
            )
    if problems:
        raise CustomerCsvError(path, problems)
    return rows


async def seed_customers(
    engine: AsyncEngine,
    path: Path,
    *,
    default_country_code: str,
    tiers: Sequence[str] = DEFAULT_TIERS,
) -> int:
    """Load ``path`` when the customers table is empty; returns how many were added.

    The file is checked whole before anything is written (CustomerCsvError), and
    loaded in one transaction. A table that already has customers is left
    alone: the demo data must never overwrite a real CRM import. Two nodes
    seeding at once is fine: the second one's insert collides and adds nothing.
    """
    rows = read_customers_csv(path, default_country_code=default_country_code, tiers=tiers)
    try:
        async with AsyncSession(engine) as session, session.begin():
            count = await session.scalar(select(func.count()).select_from(CustomerRow))
            if count:
                log.debug("customers table has %d rows: %s not loaded", count, path)
                return 0
            session.add_all(rows)
    except IntegrityError:
        log.info("customers were loaded concurrently by another node: %s not loaded", path)
        return 0
    log.info("loaded %d demo customers from %s", len(rows), path)
    return len(rows)
