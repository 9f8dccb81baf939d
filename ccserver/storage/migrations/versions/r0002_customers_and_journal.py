"""Customers (numbers, accounts, complaints), contacts.customer_id, journal checkpoints.

Also an index of the contacts still open per node, read by every restart.

Revision ID: 0002
Revises: 0001
Create Date: 2024-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["customer_id"],
        ["customers.id"],
        name=op.f(f"fk_{table}_customer_id_customers"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("segment", sa.String(), nullable=True),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("account_manager", sa.String(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "customer_phones",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        _customer_fk("customer_phones"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
        sa.UniqueConstraint(
            "customer_id", "number", name=op.f("uq_customer_phones_customer_id_number")
        ),
    )
    op.create_index("ix_customer_phones_number", "customer_phones", ["number"])
    op.create_index(
        "uq_customer_phones_primary",
        "customer_phones",
        ["customer_id"],
        unique=True,
        sqlite_where=sa.text("is_primary"),
        postgresql_where=sa.text("is_primary"),
    )
    op.create_table(
        "customer_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("account_no", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        _customer_fk("customer_accounts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_accounts")),
        sa.UniqueConstraint("account_no", name=op.f("uq_customer_accounts_account_no")),
    )
    op.create_index("ix_customer_accounts_customer_id", "customer_accounts", ["customer_id"])
    op.create_table(
        "customer_complaints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        _customer_fk("customer_complaints"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_complaints")),
    )
    op.create_index("ix_customer_complaints_customer_id", "customer_complaints", ["customer_id"])

    # ADD COLUMN of a nullable column without a default: no table rewrite on
    # either database, so this is quick on a large contacts table.
    op.add_column("contacts", sa.Column("customer_id", sa.String(), nullable=True))
    op.create_index("ix_contacts_customer_id", "contacts", ["customer_id"])
    op.create_index(
        "ix_contacts_open",
        "contacts",
        ["node"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )

    op.create_table(
        "journal_checkpoints",
        sa.Column("journal_id", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=True),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("journal_id", name=op.f("pk_journal_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("journal_checkpoints")
    op.drop_index("ix_contacts_open", table_name="contacts")
    op.drop_index("ix_contacts_customer_id", table_name="contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("customer_id")
    op.drop_table("customer_complaints")
    op.drop_table("customer_accounts")
    op.drop_table("customer_phones")
    op.drop_table("customers")
