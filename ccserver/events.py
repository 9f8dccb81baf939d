"""The node's event bus: one stream of contact-center events for every consumer.

The call model publishes what happens (a call arrived, an agent's phone
rang, an agent changed state); consumers (the console's WebSocket, the
AMI-compatible manager interface, webhooks, live statistics) subscribe.
Publishing never blocks and never awaits: a subscriber gets a bounded
queue, and one that falls behind loses its oldest events and is told so,
rather than slowing calls down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `type` is dotted by area: `call.*`, `agent.*`, `queue.*`."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    contact_id: str | None = None
    agent: str | None = None
    queue: str | None = None
    at: float = field(default_factory=time.time)  # wall clock, seconds since the epoch

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": self.at,
            "contact_id": self.contact_id,
            "agent": self.agent,
            "queue": self.queue,
            "data": self.data,
        }


class Subscription:
    """A consumer's bounded view of the bus; iterate it, or `get()` with a timeout."""

    def __init__(self, bus: EventBus, types: Iterable[str] | None, maxsize: int) -> None:
        self._bus = bus
        self._prefixes = tuple(types) if types is not None else None
        self._queue: deque[Event] = deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.closed = False

    def wants(self, event: Event) -> bool:
        return self._prefixes is None or event.type.startswith(self._prefixes)

    def _put(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Event:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def close(self) -> None:
        self.closed = True
        self._bus._remove(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class EventBus:
    """Fan-out of events to subscribers; synchronous listeners run inline."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._listeners: list[tuple[tuple[str, ...] | None, Callable[[Event], None]]] = []

    def subscribe(
        self, types: Iterable[str] | None = None, *, maxsize: int = 10_000
    ) -> Subscription:
        """A queue of the events whose type starts with one of `types` (all if None)."""
        sub = Subscription(self, types, maxsize)
        self._subs.append(sub)
        return sub

    def listen(self, callback: Callable[[Event], None], types: Iterable[str] | None = None) -> None:
        """Call `callback` inline for each event: for cheap, non-blocking consumers only."""
        self._listeners.append((tuple(types) if types is not None else None, callback))

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        for prefixes, callback in self._listeners:
            if prefixes is None or event.type.startswith(prefixes):
                try:
                    callback(event)
                except Exception:
                    log.exception("event listener failed on %s", event.type)
        for sub in self._subs:
            if sub.wants(event):
                sub._put(event)

    def emit(self, type: str, **kw: Any) -> Event:
        event = Event(type, **kw)
        self.publish(event)
        return event
