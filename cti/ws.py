"""``GET /api/events``: the bus as a WebSocket stream of JSON events.

The protocol (docs/api.md):

- authenticate with ``?token=`` or ``Authorization: Bearer``; a socket without
  a valid token is accepted and closed at once with code 4401, so browsers
  (which cannot read a refused handshake's status) learn why;
- the first message is ``{"type": "stream.ready", ...}``: from then on no event
  is missed;
- then one message per event, ``{"type", "at", "contact_id", "agent", "queue",
  "data"}``; ``screen.pop`` is one of them. A supervisor gets every event; an
  agent token gets its own agent's events and every event of the contacts
  offered to it;
- ``?types=call.,agent.`` keeps the events whose type starts with one of the
  prefixes;
- a consumer that falls behind loses the oldest events and gets
  ``{"type": "stream.dropped", "data": {"dropped": n}}``;
- the server pings every ``[api].ws_heartbeat`` seconds; clients need not send
  anything (text they send is ignored).

The task that forwards events belongs to the handler: it ends, and the bus
subscription is closed, when the socket closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ccserver.events import Event, EventBus, Subscription
from cti.api_json import dumps
from cti.auth import Authenticator, Principal

__all__ = [
    "CLOSE_UNAUTHORIZED",
    "PRINCIPAL",
    "EventFilter",
    "close_all",
    "events_handler",
    "parse_types",
]

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
"""Close code for a socket without valid credentials (4000-4999: private use, RFC 6455 §7.4.2)."""

PRINCIPAL = web.ResponseKey("principal", Principal)
"""Who opened an event stream (on its WebSocketResponse), to find it again at sign-out."""


def parse_types(raw: str | None) -> tuple[str, ...] | None:
    """``"call.,agent."`` -> ``("call.", "agent.")``; None or empty: every type."""
    if not raw:
        return None
    prefixes = tuple(p.strip() for p in raw.split(",") if p.strip())
    return prefixes or None


class EventFilter:
    """Which events one principal may see: all for supervisors, their own for agents."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        # Contacts this agent was named in (offered, rung for a click-to-call, ...), while
        # live: it sees their other steps too, such as a transfer that releases it.
        self._contacts: set[str] = set()

    def allows(self, event: Event) -> bool:
        if self.principal.supervises:
            return True
        if event.type.startswith("call.monitor_"):
            return False  # an agent is not told it is listened to
        me = self.principal.agent
        if me is None:
            return False
        cid = event.contact_id
        if event.agent == me:
            if cid is not None:
                if event.type == "call.ended":
                    self._contacts.discard(cid)
                else:
                    self._contacts.add(cid)
            return True
        if cid is not None and cid in self._contacts:
            if event.type == "call.ended":
                self._contacts.discard(cid)
            return True
        return False


async def _pump(ws: web.WebSocketResponse, sub: Subscription, allowed: EventFilter) -> None:
    """Forward the subscription to the socket; on a failure, close the socket (ending
    the handler's read loop) rather than leave it open and silent."""
    reported = 0
    try:
        async for event in sub:
            if sub.dropped > reported:
                await ws.send_json(
                    dumps=dumps,
                    data={
                        "type": "stream.dropped",
                        "at": time.time(),
                        "contact_id": None,
                        "agent": None,
                        "queue": None,
                        "data": {"dropped": sub.dropped - reported},
                    },
                )
                reported = sub.dropped
            if allowed.allows(event):
                await ws.send_json(dumps=dumps, data=event.as_dict())
    except ConnectionError:
        pass  # the peer went away; the read loop sees the close
    except Exception:
        log.exception("event stream failed")
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")


async def events_handler(
    request: web.Request,
    *,
    bus: EventBus,
    auth: Authenticator,
    sockets: weakref.WeakSet[web.WebSocketResponse],
    heartbeat: float,
) -> web.WebSocketResponse:
    principal = auth.identify(request)
    ws = web.WebSocketResponse(heartbeat=heartbeat)
    await ws.prepare(request)
    if principal is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
        return ws
    ws[PRINCIPAL] = principal
    types = parse_types(request.query.get("types"))
    sub = bus.subscribe(types, maxsize=1000)
    sockets.add(ws)
    ready: dict[str, Any] = {
        "type": "stream.ready",
        "at": time.time(),
        "contact_id": None,
        "agent": principal.agent,
        "queue": None,
        "data": {
            "principal": principal.name,
            "roles": sorted(principal.roles),
            "types": list(types) if types is not None else None,
        },
    }
    pump: asyncio.Task[None] | None = None
    try:
        await ws.send_json(dumps=dumps, data=ready)
        pump = asyncio.create_task(_pump(ws, sub, EventFilter(principal)), name="ws-events")
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break  # the peer's connection failed; text and binary are ignored
    finally:
        sub.close()
        sockets.discard(ws)
        if pump is not None:
            pump.cancel()
            await asyncio.wait([pump])
    return ws


async def close_all(sockets: weakref.WeakSet[web.WebSocketResponse]) -> None:
    """On shutdown: close every event stream (1001, going away)."""
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
