"""Follow-ups: a callback task an agent sets for a customer at wrap-up, with its due date.

Table ``follow_ups`` (migration r0003): who set it (``agent``), for which
contact, customer (if known) and caller number, the date it is due, a note,
and when it was done. It is a task list, not a scheduler: nothing rings by
itself; the agent console lists an agent's open follow-ups and a customer's.

No foreign keys: the contact row is written by the recorder's batches and may
not be in the table yet when the agent saves the wrap-up, and a customer may
live in a CRM rather than in ``customers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, Index, Text, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .customers import CustomerRow
from .models import Base

__all__ = ["FollowUp", "FollowUpRow", "FollowUpStore"]


class FollowUpRow(Base):
    __tablename__ = "follow_ups"
    __table_args__ = (
        Index("ix_follow_ups_agent_due", "agent", "due"),
        Index("ix_follow_ups_customer_id", "customer_id"),
        Index("ix_follow_ups_caller_number", "caller_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    contact_id: Mapped[str | None]
    customer_id: Mapped[str | None]
    caller_number: Mapped[str | None]
    agent: Mapped[str]
    due: Mapped[date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up as the API shows it (with the customer's name when the store knows it)."""

    id: int
    contact_id: str | None
    customer_id: str | None
    customer_name: str | None
    caller_number: str | None
    agent: str
    due: date
    note: str | None
    created_at: datetime
    done_at: datetime | None


class FollowUpStore:
    """Follow-ups in the contact store."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self,
        *,
        agent: str,
        due: date,
        now: datetime,
        contact_id: str | None = None,
        customer_id: str | None = None,
        caller_number: str | None = None,
        note: str | None = None,
    ) -> FollowUp:
        row = FollowUpRow(
            contact_id=contact_id,
            customer_id=customer_id,
            caller_number=caller_number,
            agent=agent,
            due=due,
            note=note,
            created_at=now,
        )
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            async with session.begin():
                session.add(row)
            name = (
                await session.scalar(select(CustomerRow.name).where(CustomerRow.id == customer_id))
                if customer_id is not None
                else None
            )
        return _view(row, name)

    async def find(
        self,
        *,
        agent: str | None = None,
        customer_id: str | None = None,
        caller_number: str | None = None,
        open_only: bool = False,
        limit: int = 100,
    ) -> list[FollowUp]:
        """Follow-ups by due date (earliest first), filtered by whatever is given."""
        query = select(FollowUpRow, CustomerRow.name).outerjoin(
            CustomerRow, CustomerRow.id == FollowUpRow.customer_id
        )
        if agent is not None:
            query = query.where(FollowUpRow.agent == agent)
        if customer_id is not None:
            query = query.where(FollowUpRow.customer_id == customer_id)
        if caller_number is not None:
            query = query.where(FollowUpRow.caller_number == caller_number)
        if open_only:
            query = query.where(FollowUpRow.done_at.is_(None))
        query = query.order_by(FollowUpRow.due, FollowUpRow.id).limit(limit)
        async with AsyncSession(self.engine) as session:
            rows = (await session.execute(query)).all()
        return [_view(row, name) for row, name in rows]

    async def get(self, follow_up_id: int) -> FollowUp | None:
        query = (
            select(FollowUpRow, CustomerRow.name)
            .outerjoin(CustomerRow, CustomerRow.id == FollowUpRow.customer_id)
            .where(FollowUpRow.id == follow_up_id)
        )
        async with AsyncSession(self.engine) as session:
            found = (await session.execute(query)).first()
        return _view(found[0], found[1]) if found is not None else None

    async def done(self, follow_up_id: int, now: datetime) -> None:
        async with AsyncSession(self.engine) as session, session.begin():
            await session.execute(
                update(FollowUpRow)
                .where(FollowUpRow.id == follow_up_id, FollowUpRow.done_at.is_(None))
                .values(done_at=now)
            )


def _view(row: FollowUpRow, customer_name: str | None) -> FollowUp:
    return FollowUp(
        id=row.id,
        contact_id=row.contact_id,
        customer_id=row.customer_id,
        customer_name=customer_name,
        caller_number=row.caller_number,
        agent=row.agent,
        due=row.due,
        note=row.note,
        created_at=row.created_at,
        done_at=row.done_at,
    )
