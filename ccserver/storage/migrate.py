"""Schema migrations, run by ccserver itself: no ``alembic.ini`` to ship or to keep in sync.

``await upgrade(url_or_engine)`` brings a database to the newest revision in
``migrations/versions`` inside one transaction (PostgreSQL and SQLite both
have transactional DDL), holding a PostgreSQL advisory lock so nodes starting
together do not race. A database made by ``create_schema()`` before there were
migrations is recognised and adopted as revision ``0001``.

For developers: ``python -m ccserver.storage.migrate URL revision -m "what"``
writes a new revision by comparing the models with that database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from .database import make_engine

__all__ = ["alembic_config", "create_schema", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).with_name("migrations")
# The contact store of create_schema() before Alembic: contacts, contact_events, agent_events.
LEGACY_REVISION: Final = "0001"
# pg_advisory_xact_lock key: "ccsv" in ASCII, so it is recognisable in pg_locks.
_LOCK_KEY: Final = 0x63637376


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code, pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Module names must be identifiers (mypy checks the revisions as modules).
    cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision shipped."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Released at commit; a second node waits here, then finds nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "contacts" in tables:
        log.info("contact store made before migrations: adopting it as %s", LEGACY_REVISION)
        command.stamp(cfg, LEGACY_REVISION)
    command.upgrade(cfg, revision)


async def upgrade(target: str | AsyncEngine, revision: str = "head") -> None:
    """Migrate the database at ``target`` (a URL or an engine) to ``revision``, atomically."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
    finally:
        if isinstance(target, str):
            await engine.dispose()


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the schema up to date: the same migrations as production, for tools and tests."""
    await upgrade(engine)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(target: str | AsyncEngine) -> str | None:
    """The revision the database is at; None for an empty (or pre-migration) database."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        if isinstance(target, str):
            await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """``python -m ccserver.storage.migrate URL upgrade|current|revision -m MESSAGE``."""
    parser = argparse.ArgumentParser(prog="python -m ccserver.storage.migrate")
    parser.add_argument("url", help="sqlite+aiosqlite:///PATH or postgresql+asyncpg://…")
    parser.add_argument("action", choices=["upgrade", "current", "revision"])
    parser.add_argument("-m", "--message", default="change", help="revision: its title")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "upgrade":
        asyncio.run(upgrade(args.url))
    elif args.action == "current":
        print(asyncio.run(current_revision(args.url)) or "(none)")
    else:
        # Autogenerate against a database at head: env.py opens its own engine.
        command.revision(alembic_config(args.url), message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
