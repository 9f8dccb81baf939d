"""The location service shared between nodes: who registered where, cluster-wide.

A phone registers at one node; a call on any other node may have to ring
it. Each node writes its own bindings per address of record to the live
state (`LiveState.set_bindings`) after every REGISTER that changed them and
after expiries, and again after the feed's `resync` (the store may have lost
them). It follows the feed's `binding` changes to keep a copy of the other
nodes' bindings, which `Registrations.lookup` falls back on when no phone
of the extension registered here. A remote binding carries the contact and
the source address of the REGISTER, so a phone behind NAT is reached the
way it registered (RFC 3261 §10.3 keeps them per binding; RFC 5626 would
send through the node holding the flow, which UDP on a flat network does
not need).

Bindings keep the call model's loop clock locally; the shared records hold
wall-clock expiries, since the nodes' loop clocks mean nothing to each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from acd.state import (
    BINDING,
    NODE_LOST,
    RESYNC,
    BindingRecord,
    ChangeFeed,
    LiveState,
    StateUnavailable,
)
from ccserver.sip.registrar import Binding, LocationService
from ccserver.sip.uri import SipUri

__all__ = ["SharedLocation"]

log = logging.getLogger(__name__)


class SharedLocation:
    """Writes this node's bindings to the live state and mirrors every other node's."""

    def __init__(
        self,
        state: LiveState,
        node: str,
        location: LocationService,
        aors: Iterable[str],
        loop_time: Callable[[], float],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.node = node
        self.location = location
        self.aors = list(aors)
        self.loop_time = loop_time
        self.clock = clock
        self.remote: dict[str, list[Binding]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._feed: ChangeFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Follow the feed, then read the other nodes' bindings (the feed first: nothing missed)."""
        self._feed = self.state.changes()
        for aor in self.aors:
            await self.refresh(aor)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write(), name="shared location writer"),
            loop.create_task(self._follow(), name="shared location feed"),
        ]

    async def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- this node's bindings ---------------------------------------------------------
    def publish(self, aor: str) -> None:
        """The bindings of `aor` changed here: write them (soon, in order, coalesced)."""
        self._dirty.add(aor)
        self._wake.set()

    def _records(self, aor: str) -> list[BindingRecord]:
        now = self.loop_time()
        wall = self.clock()
        return [
            BindingRecord(
                aor=b.aor,
                contact=b.contact,
                node=self.node,
                expires_at=b.expires_at - now + wall,
                source=b.source,
                transport=b.transport,
                q=b.q,
                instance=b.instance,
            )
            for b in self.location.lookup(aor, now)
        ]

    async def write(self, aor: str) -> None:
        """Write the bindings of `aor` now (before its agent's login is announced)."""
        self._dirty.discard(aor)
        try:
            await self.state.set_bindings(aor, self.node, self._records(aor))
        except StateUnavailable as exc:
            log.warning("registration of %s not shared: %s", aor, exc)

    async def find(self, aors: Iterable[str]) -> None:
        """Make sure a phone registered anywhere is known here (before ringing it).

        The feeds of the ACD and of the location service are read by two
        tasks; an agent's login can reach this node before its binding did.
        """
        now = self.loop_time()
        for aor in aors:
            if not self.location.lookup(aor, now) and not self.lookup(aor, now):
                await self.refresh(aor)

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for aor in sorted(self._dirty):
                # Not shared while the store is away: written again after the resync.
                await self.write(aor)

    # -- the other nodes' bindings ----------------------------------------------------
    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings other nodes hold for `aor` (`now` on the loop clock)."""
        return [b for b in self.remote.get(aor, []) if b.expires_at > now]

    async def refresh(self, aor: str) -> None:
        """Read the other nodes' bindings of `aor` again."""
        try:
            records = await self.state.bindings(aor)
        except StateUnavailable as exc:
            log.warning("registrations of %s at other nodes unknown: %s", aor, exc)
            return
        now = self.loop_time()
        wall = self.clock()
        self.remote[aor] = [
            Binding(
                aor=r.aor,
                contact=r.contact,
                expires_at=r.expires_at - wall + now,
                q=r.q,
                call_id="",
                cseq=0,
                source=r.source or _address_of(r.contact),
                transport=r.transport,
                instance=r.instance,
                registered_at=now,
            )
            for r in records
            if r.node != self.node
        ]

    async def _follow(self) -> None:
        feed = self._feed
        assert feed is not None
        async for change in feed:
            # Resynced, or this node was cleared as lost (a stall longer than
            # the heartbeat ttl): the store may lack this node's bindings.
            if change.kind == RESYNC or (
                change.kind == NODE_LOST and change.data.get("node") == self.node
            ):
                for aor in self.aors:
                    if self.location.lookup(aor, self.loop_time()):
                        self.publish(aor)  # the store may have restarted empty
                    await self.refresh(aor)
            elif change.kind == BINDING and change.data.get("node") != self.node:
                await self.refresh(str(change.data["aor"]))


def _address_of(contact: str) -> tuple[str, int]:
    """Host and port of a contact URI, for a binding shared without its source."""
    uri = SipUri.parse(contact)
    return uri.host, uri.port or 5060
