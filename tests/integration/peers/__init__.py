"""Real peers for the integration suite: SIPp, baresip and a loopback RTP observer.

Each peer is a child process owned by one Python object that starts it, waits
on what it writes (files, sockets, its exit) and stops it: SIGTERM first, then
SIGKILL after a timeout. This module holds the two helpers they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["PeerError", "stop_process", "wait_for"]

T = TypeVar("T")

#: How often `wait_for` looks again. External processes give no event to wait
#: on for a file they write, so a short poll is the honest option.
POLL_INTERVAL = 0.02


class PeerError(RuntimeError):
    """A peer process failed, or did not do what was waited for in time.

    The message carries what the peer said about it (stderr, logs), so that a
    failing test explains itself.
    """


async def wait_for(
    predicate: Callable[[], T | bool | None] | Callable[[], Awaitable[T | bool | None]],
    timeout: float,
    what: str,
    *,
    interval: float = POLL_INTERVAL,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` (plain or async) until it returns something truthy, and
    return that.

    Raises `PeerError` naming ``what`` after ``timeout`` seconds, with the text
    of ``diagnose()`` appended when given (typically a log tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise PeerError(f"timed out after {timeout:.1f} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


async def stop_process(
    process: asyncio.subprocess.Process,
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 3.0,
) -> int:
    """Ask ``process`` to exit with ``sig``; SIGKILL it after ``timeout`` seconds.

    Returns its exit status. A process that already exited is only reaped.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    return await process.wait()
