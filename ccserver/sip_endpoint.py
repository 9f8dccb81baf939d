"""Drives the sans-IO transaction layer on the event loop.

The layer is fed messages and `now`; this adapter arms one `loop.call_at`
for its next deadline, writes its datagrams, and routes its events: new
requests to the request handler, responses to whoever sent the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from ccserver.sip.headers import Headers
from ccserver.sip.message import Message, Request, Response, new_tag
from ccserver.sip.transaction import (
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionLayer,
    TransactionTimeout,
)
from ccserver.sip.uri import Via
from ccserver.transport import Address, SipTransports

log = logging.getLogger(__name__)

ResponseCallback = Callable[[Response], None]


class RequestHandler(Protocol):
    def on_request(self, request: Request, addr: Address, tx: ServerTransaction) -> None: ...
    def on_ack(self, request: Request, addr: Address) -> None: ...
    def on_cancel(self, invite: ServerTransaction, cancel: Request) -> None: ...
    def on_stray_response(self, response: Response) -> None: ...
    def on_server_timeout(self, tx: ServerTransaction) -> None: ...


def mark_received(request: Request, addr: Address) -> None:
    """Note on the top Via where the request really came from (RFC 3261 §18.2.1,
    RFC 3581 §4), so responses find a phone behind NAT."""
    vias = request.headers.get_all("Via")
    if not vias:
        return
    via = Via.parse(vias[0])
    changed = False
    if via.host != addr[0]:
        via.params["received"] = addr[0]
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(addr[1])
        changed = True
    if changed:
        rest = vias[1:]
        request.headers.set("Via", str(via))
        for v in rest:
            request.headers.add("Via", v)


def timeout_response(request: Request) -> Response:
    """The 408 a client transaction's timeout stands for (RFC 3261 §8.1.3.1)."""
    h = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            h.add(name, value)
    return Response(408, "Request Timeout", h)


class SipEndpoint:
    """The node's SIP stack: transports + transaction layer + a timer."""

    def __init__(self, handler: RequestHandler, *, t1: float = 0.5) -> None:
        self.handler = handler
        self.layer = TransactionLayer(t1=t1)
        self.transports = SipTransports(self)
        self._callbacks: dict[int, ResponseCallback] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> Address:
        return self.transports.address

    async def start(self, host: str, port: int, transports: list[str]) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transports.start(host, port, transports)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.transports.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- transport side -------------------------------------------------
    def message_received(self, message: Message, addr: Address, *, reliable: bool) -> None:
        if isinstance(message, Request):
            mark_received(message, addr)
        self.layer.receive(message, addr, self.now(), reliable=reliable)
        self._pump()

    # -- TU side ----------------------------------------------------------
    def send_request(
        self, request: Request, addr: Address, on_response: ResponseCallback
    ) -> ClientTransaction:
        tx = self.layer.send_request(
            request, addr, self.now(), reliable=self.transports.is_reliable(addr)
        )
        self._callbacks[id(tx)] = on_response
        self._pump()
        return tx

    def send_response(self, response: Response) -> None:
        if response.status > 100 and "tag=" not in (response.headers.get("To") or ""):
            # RFC 3261 §8.2.6.2: every response but 100 carries a To tag.
            to = response.to
            to.params["tag"] = new_tag()
            response.headers.set("To", str(to))
        self.layer.send_response(response, self.now())
        self._pump()

    def send_stateless(self, message: Request | Response, addr: Address) -> None:
        self.layer.send_stateless(message, addr)
        self._pump()

    def send_raw(self, data: bytes, addr: Address) -> None:
        """For the dialog layer's own 2xx retransmissions (RFC 3261 §13.3.1.4)."""
        self.transports.send(data, addr)

    # -- the pump -------------------------------------------------------
    def _pump(self) -> None:
        layer = self.layer
        while True:
            for data, addr in layer.datagrams_to_send():
                self.transports.send(data, addr)
            event = layer.next_event()
            if event is None:
                break
            try:
                self._dispatch(event)
            except Exception:
                log.exception("error handling %s", type(event).__name__)
        self._arm()

    def _dispatch(self, event: object) -> None:
        h = self.handler
        if isinstance(event, RequestReceived):
            if event.transaction is None:
                h.on_ack(event.request, event.addr)
            else:
                h.on_request(event.request, event.addr, event.transaction)
        elif isinstance(event, ResponseReceived):
            if event.transaction is None:
                h.on_stray_response(event.response)
                return
            cb = self._callbacks.get(id(event.transaction))
            if cb is not None:
                if event.response.status >= 200:
                    self._callbacks.pop(id(event.transaction), None)
                cb(event.response)
            elif event.response.status >= 200:
                h.on_stray_response(event.response)
        elif isinstance(event, CancelReceived):
            h.on_cancel(event.invite, event.cancel)
        elif isinstance(event, TransactionTimeout):
            if isinstance(event.transaction, ClientTransaction):
                cb = self._callbacks.pop(id(event.transaction), None)
                if cb is not None:
                    cb(timeout_response(event.transaction.request))
            else:
                h.on_server_timeout(event.transaction)
        else:  # TransactionTerminated and future bookkeeping events
            done = getattr(event, "transaction", None)
            if isinstance(done, ClientTransaction):
                self._callbacks.pop(id(done), None)

    def _arm(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(self.now())
        self._pump()
