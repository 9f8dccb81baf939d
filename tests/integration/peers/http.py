"""An HTTP server in the test process, on a free loopback port: the far side of the
platform's outbound HTTP (a CRM it asks who is calling, a webhook receiver).

The platform runs as its own process (tests/integration/server.py) and reaches
this server over real TCP, as it would reach a CRM in production.
"""

from __future__ import annotations

from aiohttp import web

from .ports import LOOPBACK

__all__ = ["HttpPeer"]


class HttpPeer:
    """``app`` served on 127.0.0.1 (the OS picks the port); ``stop()`` when done."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        assert self._runner.addresses, "the HTTP peer is not listening"
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
