"""The platform as a real process, the way an admin runs it: `ccserver run`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, selectinload

from ccserver.config import default_config_dir
from ccserver.storage.models import AgentEvent, Contact
from tests.integration.peers import wait_for

CCSERVER = str(Path(sys.executable).with_name("ccserver"))


def copy_config(
    dest: Path, edit: Callable[[Path], None] | None = None, *, speech: bool = False
) -> Path:
    """The shipped demo config, copied so a test can change it.

    Speech models (half a gigabyte and seconds of CPU each) are only loaded by
    the tests that ask for them.
    """
    cfg = dest / "config"
    shutil.copytree(default_config_dir(), cfg)
    if not speech:
        toml = cfg / "ccserver.toml"
        text = toml.read_text()
        toml.write_text(re.sub(r"(?ms)^\[speech\].*?(?=^\[|\Z)", "", text))
    if edit is not None:
        edit(cfg)
    return cfg


def outbound_to(address: str) -> Callable[[Path], None]:
    """A config edit: the demo trunk's outbound route (the carrier) goes to ``host:port``."""

    def edit(cfg: Path) -> None:
        path = cfg / "trunks.toml"
        text, n = re.subn(r'(?m)^outbound = "[^"]*"', f'outbound = "{address}"', path.read_text())
        assert n == 1, "the demo trunk lost its outbound route"
        path.write_text(text)

    return edit


class ServerProcess:
    """`ccserver run` in a child process; its log lines are the events tests wait on."""

    def __init__(
        self,
        config_dir: Path,
        data_dir: Path,
        sip_port: int,
        http_port: int,
        rtp_range: tuple[int, int] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.config_dir = config_dir
        self.args = args
        """More `ccserver run` options (e.g. --demo-traffic)."""
        self.data_dir = data_dir
        self.sip_port = sip_port
        self.http_port = http_port
        self.rtp_range = rtp_range
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ccserver.db"

    async def start(self, timeout: float = 20.0) -> None:
        if self.rtp_range is not None:
            toml = self.config_dir / "ccserver.toml"
            text = toml.read_text()
            text = re.sub(r"rtp_port_min = \d+", f"rtp_port_min = {self.rtp_range[0]}", text)
            text = re.sub(r"rtp_port_max = \d+", f"rtp_port_max = {self.rtp_range[1]}", text)
            toml.write_text(text)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = await asyncio.create_subprocess_exec(
            CCSERVER,
            "run",
            "--config",
            str(self.config_dir),
            "--sip-port",
            str(self.sip_port),
            "--http-port",
            str(self.http_port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "DEBUG" if os.environ.get("CCSERVER_TEST_DEBUG") else "INFO",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_log(r"ready: SIP", timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip()
            async with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
        # Reaped before the last notice, so a waiter sees the exit status.
        await self.proc.wait()
        async with self._new_line:
            self._new_line.notify_all()

    async def wait_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """Wait for a log line matching `pattern` (searched from line `start`)."""
        rx = re.compile(pattern)

        async def seek() -> re.Match[str]:
            seen = start
            async with self._new_line:
                while True:
                    for line in self.lines[seen:]:
                        m = rx.search(line)
                        if m:
                            return m
                    seen = len(self.lines)
                    if (
                        self.proc is not None
                        and self.proc.returncode is not None
                        and self._reader
                        and self._reader.done()
                    ):
                        raise RuntimeError(
                            f"server exited ({self.proc.returncode}):\n" + self.log_tail()
                        )
                    await self._new_line.wait()

        try:
            return await asyncio.wait_for(seek(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no log line /{pattern}/ within {timeout} s:\n{self.log_tail()}"
            ) from None

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    async def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return self.proc.returncode

    # -- the database, read as a reporting tool would -----------------------------
    def contacts(self) -> list[Contact]:
        engine = create_engine(f"sqlite:///{self.db_path}")
        try:
            with Session(engine) as s:
                rows = s.scalars(
                    select(Contact)
                    .options(selectinload(Contact.events))
                    .order_by(Contact.arrived_at)
                ).all()
                s.expunge_all()
                return list(rows)
        finally:
            engine.dispose()

    def agent_events(self, agent: str | None = None) -> list[AgentEvent]:
        engine = create_engine(f"sqlite:///{self.db_path}")
        try:
            with Session(engine) as s:
                q = select(AgentEvent).order_by(AgentEvent.id)
                if agent is not None:
                    q = q.where(AgentEvent.agent == agent)
                rows = s.scalars(q).all()
                s.expunge_all()
                return list(rows)
        finally:
            engine.dispose()

    async def wait_contact_closed(self, n: int = 1, timeout: float = 10.0) -> list[Contact]:
        def closed() -> list[Contact] | None:
            if not self.db_path.exists():
                return None
            try:
                rows = [c for c in self.contacts() if c.ended_at is not None]
            except Exception:
                return None  # table not created yet
            return rows if len(rows) >= n else None

        result: list[Contact] = await wait_for(closed, timeout, f"{n} closed contact(s)")
        return result
