"""RFC 3261 §17 transactions as sans-IO state machines.

A transaction is one request and its responses. Its job is reliability on
unreliable transports: retransmit requests until something answers, resend
the last response when the request comes again, and absorb the ACK of a
failed INVITE. Nothing here touches a socket or a clock: messages and the
current time go in, datagrams and events come out (the aioquic pattern).

The INVITE machines follow RFC 6026, which adds an "Accepted" state so that
2xx retransmissions and retransmitted INVITEs after a 2xx are still matched
to the transaction instead of leaking to the core as new requests.

:class:`TransactionLayer` (in :mod:`ccserver.sip.transaction_layer`) owns the
machines, demultiplexes incoming messages and keeps the timer heap; it is
re-exported here so that callers import everything from this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from ccserver.sip.errors import LocalProtocolError
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, make_response
from ccserver.sip.uri import Via

if TYPE_CHECKING:
    from ccserver.sip.transaction_layer import TransactionLayer as TransactionLayer

__all__ = [
    "CLIENT_INVITE_TABLE",
    "CLIENT_NON_INVITE_TABLE",
    "MAGIC_COOKIE",
    "SERVER_INVITE_TABLE",
    "SERVER_NON_INVITE_TABLE",
    "Address",
    "CancelReceived",
    "ClientTransaction",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "TimerValues",
    "TransactionEvent",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "make_non2xx_ack",
]

_log = logging.getLogger(__name__)

Address = tuple[str, int]

# RFC 3261 §8.1.1.7: branches minted by RFC 3261 elements start with this.
MAGIC_COOKIE: Final = "z9hG4bK"

# --------------------------------------------------------------------------
# State tables: {state: {event: next_state}}. Events are what the network
# delivers ("1xx", "2xx", "300-699", "final", "request", "ack"), what the TU
# sends ("tu_1xx", "tu_2xx", "tu_300-699", "tu_final") and timer names.
# An event missing from a state's row is not allowed there: network input is
# then dropped, TU input raises LocalProtocolError.
# --------------------------------------------------------------------------

# RFC 3261 §17.1.1 figure 5, with RFC 6026 §7.2 "Accepted" instead of
# passing straight to Terminated on a 2xx.
CLIENT_INVITE_TABLE: Final[Mapping[str, Mapping[str, str]]] = {
    "Calling": {
        "1xx": "Proceeding",
        "2xx": "Accepted",
        "300-699": "Completed",
        "timer_A": "Calling",
        "timer_B": "Terminated",
    },
    "Proceeding": {"1xx": "Proceeding", "2xx": "Accepted", "300-699": "Completed"},
    "Completed": {"300-699": "Completed", "timer_D": "Terminated"},
    "Accepted": {"2xx": "Accepted", "timer_M": "Terminated"},
    "Terminated": {},
}

# RFC 3261 §17.1.2 figure 6.
CLIENT_NON_INVITE_TABLE: Final[Mapping[str, Mapping[str, str]]] = {
    "Trying": {
        "1xx": "Proceeding",
        "final": "Completed",
        "timer_E": "Trying",
        "timer_F": "Terminated",
    },
    "Proceeding": {
        "1xx": "Proceeding",
        "final": "Completed",
        "timer_E": "Proceeding",
        "timer_F": "Terminated",
    },
    "Completed": {"final": "Completed", "timer_K": "Terminated"},
    "Terminated": {},
}

# RFC 3261 §17.2.1 figure 7, with RFC 6026 §7.1 "Accepted".
SERVER_INVITE_TABLE: Final[Mapping[str, Mapping[str, str]]] = {
    "Proceeding": {
        "request": "Proceeding",
        "tu_1xx": "Proceeding",
        "tu_2xx": "Accepted",
        "tu_300-699": "Completed",
    },
    "Completed": {
        "request": "Completed",
        "ack": "Confirmed",
        "timer_G": "Completed",
        "timer_H": "Terminated",
    },
    "Confirmed": {"request": "Confirmed", "ack": "Confirmed", "timer_I": "Terminated"},
    "Accepted": {
        "request": "Accepted",
        "ack": "Accepted",
        "tu_2xx": "Accepted",
        "timer_L": "Terminated",
    },
    "Terminated": {},
}

# RFC 3261 §17.2.2 figure 8.
SERVER_NON_INVITE_TABLE: Final[Mapping[str, Mapping[str, str]]] = {
    "Trying": {"request": "Trying", "tu_1xx": "Proceeding", "tu_final": "Completed"},
    "Proceeding": {"request": "Proceeding", "tu_1xx": "Proceeding", "tu_final": "Completed"},
    "Completed": {"request": "Completed", "timer_J": "Terminated"},
    "Terminated": {},
}


@dataclass(frozen=True, slots=True)
class TimerValues:
    """T1, T2 and T4 of RFC 3261 §17.1.1.1 / table 4, and the timers derived from them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1

    @property
    def timer_d(self) -> float:
        """Timer D: "at least 32 seconds" on unreliable transports (§17.1.1.2)."""
        return max(32.0, self.timeout)


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """What a message is matched on (§17.1.3 client side, §17.2.3 server side).

    ``sent_by`` is only set for server transactions: two clients could pick
    the same branch, their sent-by tells them apart. An ACK and a CANCEL are
    looked up with method "INVITE" to find the transaction they refer to.
    """

    branch: str
    method: str
    sent_by: Address | None = None


def server_key(
    via: Via, method: str, call_id: str, from_tag: str | None, cseq: int
) -> TransactionKey:
    """Key of the server transaction a request (or our response to it) belongs to.

    §17.2.3: an ACK belongs to the INVITE's transaction. For an RFC 2543 peer
    (a branch without the magic cookie) the RFC compares Request-URI, tags,
    Call-ID, CSeq and top Via; we use the parts that a response also carries
    (Call-ID, From tag, CSeq number, sent-by) so that the TU's response finds
    the transaction again.
    """
    if method == "ACK":
        method = "INVITE"
    sent_by = via.sent_by  # host lower-cased and default port filled in by Via
    branch = via.branch or ""
    if not branch.startswith(MAGIC_COOKIE):
        branch = f"rfc2543|{branch}|{call_id}|{from_tag or ''}|{cseq}"
    return TransactionKey(branch, method, sent_by)


def request_server_key(request: Request) -> TransactionKey:
    """Server transaction key of an incoming request."""
    return server_key(
        request.top_via, request.method, request.call_id, request.from_.tag, request.cseq[0]
    )


def response_server_key(response: Response) -> TransactionKey:
    """Server transaction key of a response the TU wants to send."""
    number, method = response.cseq
    return server_key(response.top_via, method, response.call_id, response.from_.tag, number)


def make_non2xx_ack(invite: Request, response: Response) -> Request:
    """ACK for a 300-699 final response, built by the client transaction (§17.1.1.3).

    Same Request-URI, Call-ID, From and CSeq number as the INVITE, To from
    the response (it carries the tag), one Via: the INVITE's top Via, so the
    ACK matches the server transaction, and the INVITE's Route set.
    """
    return same_transaction_request(invite, "ACK", response.headers.get("To") or str(response.to))


def same_transaction_request(invite: Request, method: str, to: str) -> Request:
    """A request that belongs to the INVITE's transaction (ACK for a non-2xx, CANCEL):
    same Request-URI, Call-ID, From, CSeq number and top Via (so it matches the
    server transaction, RFC 3261 §9.1, §17.1.1.3), the INVITE's Route set."""
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or str(invite.from_))
    headers.add("To", to)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} {method}")
    headers.add("Content-Length", "0")
    return Request(method, invite.uri.copy(), headers)


# --------------------------------------------------------------------------
# Events handed to the TU.
# --------------------------------------------------------------------------


@dataclass
class RequestReceived:
    """A new request. ``transaction`` is None only for an ACK matching no
    server transaction: the ACK of a 2xx, which belongs to the dialog (§13.3.1.4)."""

    request: Request
    addr: Address
    transaction: ServerTransaction | None


@dataclass
class ResponseReceived:
    """A response for the TU. ``transaction`` is None for a 2xx to an INVITE
    whose client transaction is gone: the TU must ACK it again (§13.2.2.4)."""

    response: Response
    transaction: ClientTransaction | None


@dataclass
class CancelReceived:
    """A CANCEL hit a pending INVITE. The layer has answered the CANCEL with
    200; the TU must answer the INVITE with 487 (§9.2)."""

    invite: ServerTransaction
    cancel: Request


@dataclass
class TransactionTimeout:
    """Timer B or F (the client should act as on a 408, §8.1.3.1) or Timer H
    (the ACK of our non-2xx final never came, §17.2.1)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass
class TransactionTerminated:
    """The transaction reached Terminated and was forgotten by the layer."""

    transaction: ClientTransaction | ServerTransaction


TransactionEvent = (
    RequestReceived | ResponseReceived | CancelReceived | TransactionTimeout | TransactionTerminated
)


class _Sink(Protocol):
    """What a transaction needs from its layer: output and timer scheduling."""

    def send(self, data: bytes, addr: Address) -> None: ...

    def emit(self, event: TransactionEvent) -> None: ...

    def arm(self, transaction: _Transaction, name: str, deadline: float) -> None: ...

    def finish(self, transaction: ClientTransaction | ServerTransaction) -> None: ...


# --------------------------------------------------------------------------
# The machines.
# --------------------------------------------------------------------------


class _Transaction:
    """State, timers and transition logging shared by the four machines."""

    _table: Mapping[str, Mapping[str, str]]
    _side: str

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        addr: Address,
        *,
        reliable: bool,
        timers: TimerValues,
        sink: _Sink,
        table: Mapping[str, Mapping[str, str]],
        initial: str,
    ) -> None:
        self.key = key
        self.request = request
        self.addr = addr
        self.reliable = reliable
        self.is_invite = request.method == "INVITE"
        self.state = initial
        self.last_response: Response | None = None
        # Deadlines of the running timers by name ("A", "B", ...).
        self.deadlines: dict[str, float] = {}
        self._table = table
        self._timers = timers
        self._sink = sink
        self._interval = timers.t1  # current retransmission interval (A, E, G)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.key.method} {self.key.branch} "
            f"{self.state} call-id={self.request.call_id}>"
        )

    def allows(self, event: str) -> bool:
        """Whether ``event`` is a legal input in the current state."""
        return event in self._table[self.state]

    def _step(self, event: str) -> bool:
        """Apply ``event`` from the table; False when the state does not accept it."""
        new = self._table[self.state].get(event)
        if new is None:
            return False
        if new != self.state:
            _log.debug(
                "%s %s %s %s: %s -> %s (%s)",
                self.request.call_id,
                self._side,
                self.key.method,
                self.key.branch,
                self.state,
                new,
                event,
            )
            self.state = new
        return True

    def _arm(self, name: str, delay: float, now: float) -> None:
        """Start timer ``name``; a zero delay (reliable transports) fires it now."""
        if delay <= 0:
            self.on_timer(name, now)
            return
        deadline = now + delay
        self.deadlines[name] = deadline
        self._sink.arm(self, name, deadline)

    def _stop(self, *names: str) -> None:
        for name in names:
            self.deadlines.pop(name, None)

    def on_timer(self, name: str, now: float) -> None:
        """Timer ``name`` fired (the layer already removed it from ``deadlines``)."""
        raise NotImplementedError

    def _resend(self, data: bytes) -> None:
        self._sink.send(data, self.addr)


class ClientTransaction(_Transaction):
    """Client side (§17.1): retransmits the request until a response comes.

    The INVITE machine also ACKs 300-699 responses itself (§17.1.1.3); the ACK
    of a 2xx is the TU's business because it is end-to-end (§13.2.2.4).
    """

    _side = "client"

    def __init__(
        self,
        request: Request,
        addr: Address,
        *,
        reliable: bool,
        timers: TimerValues,
        sink: _Sink,
    ) -> None:
        is_invite = request.method == "INVITE"
        super().__init__(
            TransactionKey(request.top_via.branch or "", request.method),
            request,
            addr,
            reliable=reliable,
            timers=timers,
            sink=sink,
            table=CLIENT_INVITE_TABLE if is_invite else CLIENT_NON_INVITE_TABLE,
            initial="Calling" if is_invite else "Trying",
        )
        self._wire = bytes(request)
        self._ack: bytes | None = None

    def start(self, now: float) -> None:
        """Send the request and start the timers (§17.1.1.2, §17.1.2.2)."""
        self._resend(self._wire)
        retransmit, timeout = ("A", "B") if self.is_invite else ("E", "F")
        if not self.reliable:
            self._arm(retransmit, self._timers.t1, now)
        self._arm(timeout, self._timers.timeout, now)

    def receive_response(self, response: Response, now: float) -> None:
        """A response matched this transaction (§17.1.3)."""
        status = response.status
        if status < 200:
            event = "1xx"
        elif not self.is_invite:
            event = "final"
        else:
            event = "2xx" if status < 300 else "300-699"
        old = self.state
        if not self._step(event):
            _log.debug("%s: %s dropped in %s", self.request.call_id, status, old)
            return
        if event == "300-699":
            # §17.1.1.3: ACK every copy of the final response, but only the
            # first one goes up to the TU.
            if self._ack is None:
                self._ack = bytes(make_non2xx_ack(self.request, response))
            self._resend(self._ack)
            if old == "Completed":
                return
        elif event == "final" and old == "Completed":
            return  # §17.1.2.2: retransmitted final response absorbed
        self.last_response = response
        if old in ("Calling", "Trying", "Proceeding") and event != "1xx":
            # §17.1.1.2 / §17.1.2.2: a final response stops retransmissions
            # and the timeout. In Calling a 1xx does too: Timer B only times
            # out the Calling state.
            self._stop("A", "B", "E", "F")
        elif old == "Calling":
            self._stop("A", "B")
        # The TU sees the response before a zero Timer D/K (reliable
        # transports) terminates us.
        self._sink.emit(ResponseReceived(response, self))
        if event == "2xx" and old != "Accepted":
            self._arm("M", self._timers.timeout, now)  # RFC 6026 §8.4
        elif event == "300-699":
            self._arm("D", 0 if self.reliable else self._timers.timer_d, now)
        elif event == "final":
            self._arm("K", 0 if self.reliable else self._timers.t4, now)

    def on_timer(self, name: str, now: float) -> None:
        if not self._step(f"timer_{name}"):
            return
        if name == "A":
            # §17.1.1.2: Timer A doubles with no cap; Timer B ends it.
            self._resend(self._wire)
            self._interval *= 2
            self._arm("A", self._interval, now)
        elif name == "E":
            # §17.1.2.2: doubles up to T2 in Trying, stays at T2 in Proceeding.
            self._resend(self._wire)
            if self.state == "Trying":
                self._interval = min(2 * self._interval, self._timers.t2)
            else:
                self._interval = self._timers.t2
            self._arm("E", self._interval, now)
        elif name in ("B", "F"):
            self.deadlines.clear()
            self._sink.emit(TransactionTimeout(self))
            self._sink.finish(self)
        else:  # D, K, M
            self.deadlines.clear()
            self._sink.finish(self)


class ServerTransaction(_Transaction):
    """Server side (§17.2): absorbs retransmitted requests by resending the
    last response, and retransmits a non-2xx final INVITE response until the
    ACK arrives."""

    _side = "server"

    def __init__(
        self,
        request: Request,
        addr: Address,
        *,
        reliable: bool,
        timers: TimerValues,
        sink: _Sink,
    ) -> None:
        is_invite = request.method == "INVITE"
        super().__init__(
            request_server_key(request),
            request,
            addr,
            reliable=reliable,
            timers=timers,
            sink=sink,
            table=SERVER_INVITE_TABLE if is_invite else SERVER_NON_INVITE_TABLE,
            initial="Proceeding" if is_invite else "Trying",
        )
        self._wire: bytes | None = None

    def start(self, now: float) -> None:
        """§17.2.1: an INVITE is answered with 100 Trying at once.

        The RFC asks for it only when the TU may take more than 200 ms; ours
        may (routing, queues, databases), so we always send it, which also
        stops the client's Timer A early.
        """
        if self.is_invite:
            self.send_response(make_response(self.request, 100), now)

    def receive_request(self, now: float) -> None:
        """A retransmission of our request arrived (§17.2.1, §17.2.2)."""
        if not self._step("request"):
            return
        # Resend the last response in Proceeding and Completed; in Trying there
        # is none yet, in Accepted the TU retransmits its 2xx itself (RFC 6026
        # §8.7) and in Confirmed the peer already has the final response.
        if self.state in ("Proceeding", "Completed") and self._wire is not None:
            self._resend(self._wire)

    def receive_ack(self, request: Request, now: float) -> None:
        """An ACK matched this INVITE transaction."""
        old = self.state
        if not self._step("ack"):
            return
        if old == "Completed":
            # §17.2.1: stop retransmitting, absorb further ACKs for T4.
            self._stop("G", "H")
            self._arm("I", 0 if self.reliable else self._timers.t4, now)
        elif old == "Accepted":
            # RFC 6026 §8.7: an ACK in Accepted is the TU's (the ACK of a 2xx
            # from a peer that reused the INVITE branch).
            self._sink.emit(RequestReceived(request, self.addr, self))

    def send_response(self, response: Response, now: float) -> None:
        """The TU (or the layer) answers the request."""
        status = response.status
        if status < 200:
            event = "tu_1xx"
        elif not self.is_invite:
            event = "tu_final"
        else:
            event = "tu_2xx" if status < 300 else "tu_300-699"
        old = self.state
        if not self._step(event):
            raise LocalProtocolError(
                f"cannot send {status} in state {old} of {self.key.method} "
                f"transaction {self.key.branch}"
            )
        self.last_response = response
        self._wire = bytes(response)
        self._resend(self._wire)
        if event == "tu_2xx" and old != "Accepted":
            self._arm("L", self._timers.timeout, now)  # RFC 6026 §8.7
        elif event == "tu_300-699":
            if not self.reliable:
                self._arm("G", self._timers.t1, now)
            self._arm("H", self._timers.timeout, now)
        elif event == "tu_final":
            self._arm("J", 0 if self.reliable else self._timers.timeout, now)

    def on_timer(self, name: str, now: float) -> None:
        if not self._step(f"timer_{name}"):
            return
        if name == "G":
            # §17.2.1: resend the final response, doubling up to T2.
            assert self._wire is not None
            self._resend(self._wire)
            self._interval = min(2 * self._interval, self._timers.t2)
            self._arm("G", self._interval, now)
        elif name == "H":
            self.deadlines.clear()
            self._sink.emit(TransactionTimeout(self))
            self._sink.finish(self)
        else:  # I, J, L
            self.deadlines.clear()
            self._sink.finish(self)


def __getattr__(name: str) -> object:
    """Resolve the TransactionLayer re-export lazily.

    transaction_layer imports this module, so a top-level import here would be
    circular; PEP 562 lets either module be imported first.
    """
    if name == "TransactionLayer":
        from ccserver.sip.transaction_layer import TransactionLayer

        return TransactionLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
