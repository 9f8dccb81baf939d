"""A throwaway PostgreSQL 15 server (Debian's ``postgresql`` package) on a free loopback port.

One server per test session, in a temporary directory, with its Unix socket
there too (so nothing touches /var/run/postgresql); each test gets its own
database from :meth:`PostgresServer.create_database`. A test may stop and
start the server (a database outage) and the fixture stops it and deletes
everything at the end of the session.

``initdb`` and ``postgres`` refuse to run as root (and have no switch to allow
it), so as root they run as the ``postgres`` system user the package creates,
through ``runuser``; as anyone else they run as that user. Authentication is
``trust``, listening on 127.0.0.1 only.

To import into a test module or conftest.py::

    from tests.integration.postgres_server import postgres_server  # noqa: F401
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.peers.ports import LOOPBACK, free_tcp_port

__all__ = ["PG_BIN", "PostgresError", "PostgresServer", "postgres_server"]

PG_BIN = Path(os.environ.get("CCSERVER_PG_BIN", "/usr/lib/postgresql/15/bin"))
_SYSTEM_USER = "postgres"
_DB_USER = "ccserver"


class PostgresError(RuntimeError):
    """The server could not be set up, started or stopped; the message carries its log."""


class PostgresServer:
    """initdb, pg_ctl start/stop and createdb around one data directory."""

    def __init__(self, root: Path, port: int, bin_dir: Path = PG_BIN) -> None:
        self.root = root
        self.port = port
        self.bin_dir = bin_dir
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.running = False
        self._names = itertools.count(1)
        self._as = self._run_as()

    @staticmethod
    def _run_as() -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            raise PostgresError(
                f"running as root needs the {_SYSTEM_USER!r} user (Debian package postgresql)"
            ) from None
        return ["runuser", "-u", _SYSTEM_USER, "--"]

    @classmethod
    def create(cls, bin_dir: Path = PG_BIN) -> PostgresServer:
        """A fresh cluster in a new temporary directory, not started."""
        if not (bin_dir / "initdb").exists():
            raise PostgresError(
                f"{bin_dir}/initdb not found: install the Debian package postgresql"
            )
        root = Path(tempfile.mkdtemp(prefix="ccserver-pg-"))
        server = cls(root, free_tcp_port(), bin_dir)
        if server._as:
            shutil.chown(root, _SYSTEM_USER)
        server._server_cmd(
            "initdb",
            "-D",
            str(server.data),
            "-U",
            _DB_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # a test cluster: initdb need not wait for the disk
        )
        return server

    def _server_cmd(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as, str(self.bin_dir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            tail = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise PostgresError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{done.stdout}\n{tail}"
            )
        return done

    def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w polls for that)."""
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={LOOPBACK}",
                f"-c unix_socket_directories={self.root}",
                # The durability settings the throughput figures are quoted with:
                # PostgreSQL's defaults (every commit flushed to the WAL).
                "-c fsync=on",
                "-c synchronous_commit=on",
                "-c max_connections=50",
            ]
        )
        self._server_cmd(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options,
            "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        self._server_cmd("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{_DB_USER}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = name or f"test_{next(self._names)}"
        cmd = [
            str(self.bin_dir / "createdb"),
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-U",
            _DB_USER,
            name,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise PostgresError(f"createdb {name} failed: {done.stderr.strip()}")
        return self.url(name)

    def close(self) -> None:
        """Stop if running and delete the cluster."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One running PostgreSQL 15 for the session; tests make their own databases in it."""
    server = PostgresServer.create()
    try:
        server.start()
        yield server
    finally:
        server.close()
