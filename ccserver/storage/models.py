"""The contact record: one row per call leg, its timeline, and agent state changes.

The schema stays portable between SQLite (single node, tests) and PostgreSQL:
only generic types, datetimes stored as UTC, JSON that becomes JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "DIRECTIONS",
    "DISCONNECT_REASONS",
    "INITIATIONS",
    "OUTCOMES",
    "AgentEvent",
    "Base",
    "Contact",
    "ContactEvent",
    "JournalCheckpoint",
    "UTCDateTime",
]

DIRECTIONS = frozenset({"inbound", "outbound"})
INITIATIONS = frozenset({"inbound", "outbound", "transfer", "callback", "click-to-call"})
OUTCOMES = frozenset(
    {
        "answered",
        "abandoned",
        "overflowed",
        "voicemail",
        "callback",
        "callback-failed",
        "interrupted",
        "completed-ivr",
        "failed",
    }
)
DISCONNECT_REASONS = frozenset({"caller", "agent", "system"})


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite keeps no offset, so values are normalised to UTC before they are
    stored (which also keeps its text ordering chronological) and tagged UTC
    again when read. Naive datetimes are refused: their zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Strings are unbounded (VARCHAR/TEXT): values come from the wire and PostgreSQL
# would refuse an over-long one, which would make a whole batch unwritable.
# JSONB on PostgreSQL so reports can index and query attributes; plain JSON text elsewhere.
JSONDict = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL needs 64 bits for event volume.
EventId = BigInteger().with_variant(Integer(), "sqlite")

# Stable constraint names, so Alembic migrations can refer to them later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base holding the metadata of the contact store."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDict,
    }


class Contact(Base):
    """One call leg as reported: who, where it went, its times and its outcome."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_arrived_at", "arrived_at"),
        Index("ix_contacts_caller_number", "caller_number"),
        Index("ix_contacts_queue", "queue"),
        Index("ix_contacts_agent", "agent"),
        Index("ix_contacts_sip_call_id", "sip_call_id"),
        Index("ix_contacts_customer_id", "customer_id"),
        # The contacts still open, per node: what a restart closes as interrupted.
        # Partial, so it stays as small as the number of calls in progress.
        Index(
            "ix_contacts_open",
            "node",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    # The first contact of a transfer/callback chain; None for a first contact.
    initial_contact_id: Mapped[str | None]
    caller_number: Mapped[str]
    caller_name: Mapped[str | None]
    dialed_number: Mapped[str]
    direction: Mapped[str]
    initiation: Mapped[str]
    entry_point: Mapped[str | None]
    queue: Mapped[str | None]
    agent: Mapped[str | None]
    sip_call_id: Mapped[str]
    node: Mapped[str | None]
    # Set by the call path once the caller is identified. No foreign key: the
    # customer may live in an external CRM rather than in our customers table.
    customer_id: Mapped[str | None]

    arrived_at: Mapped[datetime]
    enqueued_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    wait_seconds: Mapped[float | None]
    talk_seconds: Mapped[float | None]
    hold_seconds: Mapped[float | None]
    wrap_seconds: Mapped[float | None]
    holds: Mapped[int] = mapped_column(default=0, server_default="0")

    outcome: Mapped[str | None]
    disconnect_reason: Mapped[str | None]
    disposition: Mapped[str | None]
    notes: Mapped[str | None] = mapped_column(Text)
    survey_score: Mapped[int | None]
    recording: Mapped[str | None]
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # lazy="raise": under asyncio an implicit lazy load cannot run, so say so
    # clearly; load with selectinload(Contact.events) or get_contact().
    events: Mapped[list[ContactEvent]] = relationship(
        back_populates="contact",
        order_by="ContactEvent.seq",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )

    def __repr__(self) -> str:
        return f"<Contact {self.id} {self.caller_number}->{self.dialed_number} {self.outcome}>"


class ContactEvent(Base):
    """One entry of a contact's timeline; seq orders entries within the contact."""

    __tablename__ = "contact_events"
    # The unique (contact_id, seq) index also serves every lookup by contact_id.
    __table_args__ = (UniqueConstraint("contact_id", "seq"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    seq: Mapped[int]
    type: Mapped[str]
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    contact: Mapped[Contact] = relationship(back_populates="events", lazy="raise")

    def __repr__(self) -> str:
        return f"<ContactEvent {self.contact_id}#{self.seq} {self.type}>"


class AgentEvent(Base):
    """An agent state change (login, available, not-ready, ringing, on-call, wrap-up...)."""

    __tablename__ = "agent_events"
    __table_args__ = (
        Index("ix_agent_events_agent", "agent"),
        Index("ix_agent_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    agent: Mapped[str]
    state: Mapped[str]
    reason: Mapped[str | None]
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def __repr__(self) -> str:
        return f"<AgentEvent {self.agent} {self.state}>"


class JournalCheckpoint(Base):
    """How far one recorder run's journal has been applied to this database.

    Updated in the same transaction as the rows it accounts for, so after any
    crash the journal is replayed from exactly the first operation not applied:
    each operation lands once (see ``recorder.py``).
    """

    __tablename__ = "journal_checkpoints"

    journal_id: Mapped[str] = mapped_column(primary_key=True)
    node: Mapped[str | None]
    applied_seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<JournalCheckpoint {self.journal_id} {self.applied_seq}>"
