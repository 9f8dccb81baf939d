"""The contact store as it was before migrations: contacts, their timelines, agent events.

A database created by ``create_schema()`` of that time has exactly this schema
and no ``alembic_version`` table; :func:`ccserver.storage.upgrade` stamps it
with this revision and carries on from here.

Revision ID: 0001
Revises:
Create Date: 2024-05-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision keeps meaning what
# it meant when the models change.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("initial_contact_id", sa.String(), nullable=True),
        sa.Column("caller_number", sa.String(), nullable=False),
        sa.Column("caller_name", sa.String(), nullable=True),
        sa.Column("dialed_number", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("initiation", sa.String(), nullable=False),
        sa.Column("entry_point", sa.String(), nullable=True),
        sa.Column("queue", sa.String(), nullable=True),
        sa.Column("agent", sa.String(), nullable=True),
        sa.Column("sip_call_id", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=True),
        sa.Column("arrived_at", _TIMESTAMP, nullable=False),
        sa.Column("enqueued_at", _TIMESTAMP, nullable=True),
        sa.Column("answered_at", _TIMESTAMP, nullable=True),
        sa.Column("ended_at", _TIMESTAMP, nullable=True),
        sa.Column("wait_seconds", sa.Double(), nullable=True),
        sa.Column("talk_seconds", sa.Double(), nullable=True),
        sa.Column("hold_seconds", sa.Double(), nullable=True),
        sa.Column("wrap_seconds", sa.Double(), nullable=True),
        sa.Column("holds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("disconnect_reason", sa.String(), nullable=True),
        sa.Column("disposition", sa.String(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("survey_score", sa.Integer(), nullable=True),
        sa.Column("recording", sa.String(), nullable=True),
        sa.Column("attributes", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_index("ix_contacts_arrived_at", "contacts", ["arrived_at"])
    op.create_index("ix_contacts_caller_number", "contacts", ["caller_number"])
    op.create_index("ix_contacts_queue", "contacts", ["queue"])
    op.create_index("ix_contacts_agent", "contacts", ["agent"])
    op.create_index("ix_contacts_sip_call_id", "contacts", ["sip_call_id"])

    op.create_table(
        "contact_events",
        sa.Column("id", _EVENT_ID, autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("at", _TIMESTAMP, nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_events_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_events")),
        sa.UniqueConstraint("contact_id", "seq", name=op.f("uq_contact_events_contact_id_seq")),
    )

    op.create_table(
        "agent_events",
        sa.Column("id", _EVENT_ID, autoincrement=True, nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("at", _TIMESTAMP, nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_events")),
    )
    op.create_index("ix_agent_events_agent", "agent_events", ["agent"])
    op.create_index("ix_agent_events_at", "agent_events", ["at"])


def downgrade() -> None:
    op.drop_table("agent_events")
    op.drop_table("contact_events")
    op.drop_table("contacts")
