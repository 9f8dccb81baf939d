"""The opt-in memory diagnostics: turned on by the environment only, and a dump that names
the line holding new memory, the type that multiplied and the descriptors left open."""

from __future__ import annotations

import logging
import os
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccserver.diagnostics import MemoryDiagnostics, fd_kinds


@pytest.fixture
def diagnostics() -> Iterator[MemoryDiagnostics]:
    memory = MemoryDiagnostics(frames=1, top=50)
    memory.start()
    try:
        yield memory
    finally:
        memory.stop()


def test_off_unless_the_environment_asks() -> None:
    assert MemoryDiagnostics.from_env({}) is None
    assert MemoryDiagnostics.from_env({"CCSERVER_TRACEMALLOC": "0"}) is None
    on = MemoryDiagnostics.from_env({"CCSERVER_TRACEMALLOC": "5", "CCSERVER_TRACEMALLOC_TOP": "9"})
    assert on is not None and (on.frames, on.top) == (5, 9)


def test_a_bad_value_says_which_variable() -> None:
    with pytest.raises(ValueError, match="CCSERVER_TRACEMALLOC"):
        MemoryDiagnostics.from_env({"CCSERVER_TRACEMALLOC": "yes"})
    with pytest.raises(ValueError, match="frames >= 1"):
        MemoryDiagnostics.from_env({"CCSERVER_TRACEMALLOC": "-2"})


def test_descriptors_by_kind(tmp_path: Path) -> None:
    fds = tmp_path / "fd"
    fds.mkdir()
    os.symlink("socket:[123]", fds / "3")
    os.symlink("socket:[124]", fds / "4")
    os.symlink("pipe:[9]", fds / "5")
    os.symlink("anon_inode:[eventpoll]", fds / "6")
    os.symlink("/var/lib/ccserver/ccserver.db", fds / "7")
    kinds = fd_kinds(fds)
    assert kinds == {"socket": 2, "pipe": 1, "anon_inode:[eventpoll]": 1, "file": 1}
    assert fd_kinds(tmp_path / "missing") == {}


class Leaked:
    """Stands for a per-call object nobody lets go of."""

    def __init__(self) -> None:
        self.payload = bytearray(1000)


def test_a_dump_names_what_grew(
    diagnostics: MemoryDiagnostics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ccserver.diagnostics")
    kept: list[Leaked] = []
    sockets: list[socket.socket] = []
    diagnostics.dump()  # the baseline
    assert "top allocations" not in caplog.text
    try:
        kept.extend(Leaked() for _ in range(500))  # ~500 KB allocated on one line
        sockets.extend(socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
        caplog.clear()
        diagnostics.dump()
    finally:
        for s in sockets:
            s.close()
    lines = caplog.messages
    assert any("test_diagnostics.py" in line and "KB" in line for line in lines), lines
    assert any("+500 Leaked" in line for line in lines), lines
    assert any("fds grown {'socket': 3}" in line for line in lines), lines
    assert lines[-1].startswith("memory dump 2 done")
    assert tracemalloc.is_tracing()
