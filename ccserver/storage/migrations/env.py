"""Alembic's environment for the contact store.

ccserver runs migrations itself (:func:`ccserver.storage.upgrade`) and hands its
own connection over in ``config.attributes["connection"]``. Without one (a new
revision from ``python -m ccserver.storage.migrate URL revision``), it builds an
async engine from ``sqlalchemy.url`` with the same set-up as the server's.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from ccserver.storage import customers as _customers  # noqa: F401 - registers its tables
from ccserver.storage import followups as _followups  # noqa: F401 - registers its table
from ccserver.storage.database import make_engine
from ccserver.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    shared = config.attributes.get("connection")
    if isinstance(shared, Connection):
        _run(shared)
    else:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no connection and no sqlalchemy.url to migrate")
        asyncio.run(_run_with_engine(url))
