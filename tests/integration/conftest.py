"""Fixtures of the integration suite: the platform as a process, on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.integration.peers.ports import free_port, free_port_block
from tests.integration.server import ServerProcess, copy_config

ServerFactory = Callable[..., "AsyncIterator[ServerProcess]"]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Start `ccserver run` on a copy of the demo config; edit it first if asked."""
    started: list[ServerProcess] = []

    async def start(
        edit: Callable[[Path], None] | None = None,
        name: str = "node",
        speech: bool = False,
        args: tuple[str, ...] = (),
    ) -> ServerProcess:
        root = tmp_path / name
        root.mkdir()
        cfg = copy_config(root, edit, speech=speech)
        rtp = free_port_block(64)
        srv = ServerProcess(
            cfg,
            root / "data",
            free_port(udp=True, tcp=True),
            free_port(udp=False, tcp=True),
            rtp_range=(rtp, rtp + 63),
            args=args,
        )
        started.append(srv)
        await srv.start()
        return srv

    yield start
    for srv in started:
        await srv.stop()


@pytest.fixture
async def server(start_server: Callable[..., object]) -> ServerProcess:
    srv = await start_server()  # type: ignore[misc]
    assert isinstance(srv, ServerProcess)
    return srv


from tests.integration.peers.fixtures import peers_fixture, speech_wav_fixture  # noqa: E402, F401
