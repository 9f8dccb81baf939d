"""A real `redis-server` for the integration suite, owned by one fixture.

The server is a child process of the test run: no daemon, no persistence
(`--save ''`, `--appendonly no`), bound to 127.0.0.1 on a free port, with
its working directory in the test's temporary directory. It is ready when it
logs that it accepts connections; it is stopped (SIGTERM, then SIGKILL) at
teardown. `stop` and `start` again on the same port let a test cut Redis
away from a client and bring it back.

Use it from a test module::

    from tests.integration.redis_server import redis_server  # noqa: F401

or start a private one with `RedisServer(...)` when a test must stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.peers import PeerError, stop_process
from tests.integration.peers.ports import LOOPBACK, free_tcp_port

__all__ = ["RedisServer", "redis_server", "unique_prefix"]

REDIS_SERVER = "redis-server"
READY = "Ready to accept connections"


def unique_prefix(label: str = "test") -> str:
    """A key prefix no other test uses, so tests share one server without colliding."""
    return f"{label}:{uuid.uuid4().hex[:12]}:"


class RedisServer:
    """One `redis-server` child process on 127.0.0.1."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_tcp_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    async def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it accepts connections."""
        exe = shutil.which(REDIS_SERVER)
        if exe is None:
            raise PeerError("redis-server is not installed (Debian package redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = []
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            "",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout):
                await self._wait_ready()
        except (TimeoutError, PeerError) as exc:
            await self.stop()
            tail = "\n".join(self.log[-20:])
            raise PeerError(
                f"redis-server on port {self.port} did not start: {exc}\n{tail}"
            ) from exc
        # Keep reading its log, or a full pipe would one day stall the server.
        self._drain = asyncio.get_running_loop().create_task(self._read_log())

    async def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise PeerError(f"redis-server exited with status {await self.proc.wait()}")
            text = line.decode(errors="replace").rstrip()
            self.log.append(text)
            if READY in text:
                return

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.log.append(line.decode(errors="replace").rstrip())

    async def stop(self) -> None:
        """Stop the server (its data is gone: nothing is persisted)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        await stop_process(proc)
        drain, self._drain = self._drain, None
        if drain is not None:
            # The pipe reaches EOF once the process is gone; the reader then ends.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drain, 5.0)


@pytest.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisServer]:
    """One server for the whole run; tests keep apart by `unique_prefix`."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    await server.start()
    yield server
    await server.stop()
