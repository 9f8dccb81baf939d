"""The RFC 3261 §17 transaction layer: demultiplexing, CANCEL and timers.

Sans-IO like aioquic's connection: the transport calls :meth:`receive` with
each parsed message, then drains :meth:`datagrams_to_send` and
:meth:`next_event`, and arms one timer at :meth:`get_timer`, calling
:meth:`handle_timer` when it fires. Import it from
:mod:`ccserver.sip.transaction`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque

from ccserver.sip.errors import LocalProtocolError
from ccserver.sip.message import Request, Response, make_response, new_tag
from ccserver.sip.transaction import (
    MAGIC_COOKIE,
    Address,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TimerValues,
    TransactionEvent,
    TransactionKey,
    TransactionTerminated,
    _Transaction,
    request_server_key,
    response_server_key,
)

__all__ = ["TransactionLayer"]

_log = logging.getLogger(__name__)


class TransactionLayer:
    """All client and server transactions of one SIP endpoint.

    Requests that match no transaction create a server transaction and go to
    the TU as :class:`RequestReceived`; retransmissions never reach the TU
    twice. Responses are matched to client transactions by top Via branch and
    CSeq method (§17.1.3). T1, T2 and T4 default to RFC 3261 table 4.
    """

    def __init__(self, *, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.timers = TimerValues(t1, t2, t4)
        self._clients: dict[TransactionKey, ClientTransaction] = {}
        self._servers: dict[TransactionKey, ServerTransaction] = {}
        self._datagrams: list[tuple[bytes, Address]] = []
        self._events: deque[TransactionEvent] = deque()
        # (deadline, tie-breaker, transaction, timer name); entries whose
        # deadline no longer matches the transaction's are stale and skipped.
        self._heap: list[tuple[float, int, _Transaction, str]] = []
        self._counter = itertools.count()
        self._sink = _LayerSink(self)

    # -- what the transport feeds in --------------------------------------

    def receive(
        self, message: Request | Response, addr: Address, now: float, *, reliable: bool = False
    ) -> None:
        """Handle one parsed message that arrived from ``addr``."""
        if isinstance(message, Request):
            self._receive_request(message, addr, now, reliable)
        else:
            self._receive_response(message, now)

    def _receive_request(self, request: Request, addr: Address, now: float, reliable: bool) -> None:
        key = request_server_key(request)
        existing = self._servers.get(key)
        if request.method == "ACK":
            if existing is None:
                # §17.2.3: the ACK of a 2xx carries a new branch and matches
                # nothing here; it belongs to the dialog (§13.3.1.4).
                self._events.append(RequestReceived(request, addr, None))
            else:
                existing.receive_ack(request, now)
            return
        if existing is not None:
            existing.receive_request(now)
            return
        transaction = ServerTransaction(
            request, addr, reliable=reliable, timers=self.timers, sink=self._sink
        )
        self._servers[key] = transaction
        transaction.start(now)
        if request.method == "CANCEL":
            self._receive_cancel(transaction, now)
        else:
            self._events.append(RequestReceived(request, addr, transaction))

    def _receive_cancel(self, cancel: ServerTransaction, now: float) -> None:
        """§9.2: answer the CANCEL ourselves and tell the TU about the INVITE."""
        request = cancel.request
        key = cancel.key
        invite = self._servers.get(TransactionKey(key.branch, "INVITE", key.sent_by))
        if invite is None:
            cancel.send_response(self._reply(request, 481, None), now)
            return
        # "The To tag of the response to the CANCEL and the response to the
        # original request SHOULD be the same": reuse the INVITE's if it has one.
        tag = invite.last_response.to.tag if invite.last_response is not None else None
        cancel.send_response(self._reply(request, 200, tag), now)
        if invite.state == "Proceeding":
            self._events.append(CancelReceived(invite, request))
        # Otherwise the INVITE has its final response already, and the CANCEL
        # "has no effect on the processing of the original request" (§9.2).

    @staticmethod
    def _reply(request: Request, status: int, tag: str | None) -> Response:
        # §8.2.6.2: a final response carries a To tag (make_response keeps the
        # request's own tag when it has one).
        return make_response(request, status, to_tag=tag or new_tag())

    def _receive_response(self, response: Response, now: float) -> None:
        vias = response.vias
        if len(vias) != 1:
            # §18.1.2: a response with more than one Via was meant for a proxy.
            _log.debug("%s: response with %d Vias dropped", response.call_id, len(vias))
            return
        method = response.cseq[1]
        transaction = self._clients.get(TransactionKey(vias[0].branch or "", method))
        if transaction is not None:
            transaction.receive_response(response, now)
        elif method == "INVITE" and 200 <= response.status < 300:
            # A 2xx retransmitted after the transaction ended: the TU must
            # send its ACK again (§13.2.2.4).
            self._events.append(ResponseReceived(response, None))
        else:
            # §18.1.2 passes strays to the core, whose only use for them would
            # be the case above.
            _log.debug("%s: stray %d response dropped", response.call_id, response.status)

    # -- what the TU sends -------------------------------------------------

    def send_request(
        self, request: Request, addr: Address, now: float, *, reliable: bool = False
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` towards ``addr``.

        The request must carry its own top Via with a fresh RFC 3261 branch.
        An ACK is not a transaction: the ACK of a 2xx goes through
        :meth:`send_stateless`, the ACK of a non-2xx is sent by the client
        transaction itself.
        """
        if request.method == "ACK":
            raise LocalProtocolError("ACK is not sent through a client transaction")
        branch = request.top_via.branch or ""
        if not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"branch {branch!r} lacks the {MAGIC_COOKIE} cookie")
        key = TransactionKey(branch, request.method)
        if key in self._clients:
            raise LocalProtocolError(f"a {request.method} transaction {branch} already exists")
        transaction = ClientTransaction(
            request, addr, reliable=reliable, timers=self.timers, sink=self._sink
        )
        self._clients[key] = transaction
        transaction.start(now)
        return transaction

    def send_response(self, response: Response, now: float) -> None:
        """Send ``response`` through the server transaction of its request.

        It goes to the address the request came from, which is what §18.2.2
        asks for with "received" and RFC 3581 "rport".
        """
        if response.cseq[1] == "ACK":
            raise LocalProtocolError("ACK is never answered")
        transaction = self._servers.get(response_server_key(response))
        if transaction is None:
            raise LocalProtocolError(
                f"no server transaction for {response.status} {response.cseq[1]} "
                f"(Call-ID {response.call_id})"
            )
        transaction.send_response(response, now)

    def send_stateless(self, message: Request | Response, addr: Address) -> None:
        """Send outside any transaction: the ACK of a 2xx, a 2xx
        retransmission, a reply to a request that could not be parsed."""
        self._datagrams.append((bytes(message), addr))

    def terminate(self, transaction: ClientTransaction | ServerTransaction) -> None:
        """Forget a transaction the TU gave up on.

        For an INVITE client transaction left in Proceeding with no final
        response 64*T1 after our CANCEL (§9.1): Timer B no longer runs there.
        """
        if transaction.state != "Terminated":
            _log.debug(
                "%s %s: %s -> Terminated (TU)",
                transaction.request.call_id,
                transaction.key.branch,
                transaction.state,
            )
            transaction.state = "Terminated"
            transaction.deadlines.clear()
            self._sink.finish(transaction)

    # -- what the transport drains ------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Every datagram queued since the last call, in order."""
        datagrams, self._datagrams = self._datagrams, []
        return datagrams

    def next_event(self) -> TransactionEvent | None:
        """The oldest event for the TU, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline over all transactions, or None."""
        heap = self._heap
        while heap:
            deadline, _, transaction, name = heap[0]
            if transaction.deadlines.get(name) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction, name = heapq.heappop(heap)
            if transaction.deadlines.get(name) != deadline:
                continue  # stopped or re-armed since
            del transaction.deadlines[name]
            transaction.on_timer(name, now)

    # -- lookups ----------------------------------------------------------

    def find_server_invite(self, branch: str) -> ServerTransaction | None:
        """The live INVITE server transaction with that top Via branch."""
        for key, transaction in self._servers.items():
            if key.branch == branch and key.method == "INVITE":
                return transaction
        return None

    def __len__(self) -> int:
        """Number of live transactions."""
        return len(self._clients) + len(self._servers)

    # -- the sink the machines write into ---------------------------------

    def _arm(self, transaction: _Transaction, name: str, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._counter), transaction, name))

    def _finish(self, transaction: ClientTransaction | ServerTransaction) -> None:
        table: dict[TransactionKey, ClientTransaction] | dict[TransactionKey, ServerTransaction]
        table = self._clients if isinstance(transaction, ClientTransaction) else self._servers
        if table.get(transaction.key) is transaction:
            del table[transaction.key]
        self._events.append(TransactionTerminated(transaction))


class _LayerSink:
    """Adapter giving the machines write access to the layer's queues."""

    __slots__ = ("_layer",)

    def __init__(self, layer: TransactionLayer) -> None:
        self._layer = layer

    def send(self, data: bytes, addr: Address) -> None:
        self._layer._datagrams.append((data, addr))

    def emit(self, event: TransactionEvent) -> None:
        self._layer._events.append(event)

    def arm(self, transaction: _Transaction, name: str, deadline: float) -> None:
        self._layer._arm(transaction, name, deadline)

    def finish(self, transaction: ClientTransaction | ServerTransaction) -> None:
        self._layer._finish(transaction)
