"""RFC 3261 §12 dialogs, plus the UA-core pieces that sit next to them.

A dialog is the peer-to-peer state that outlives one transaction: tags,
route set, remote target and CSeq counters (§12). Also here: building
in-dialog requests and the ACK of a 2xx (§12.2.1.1, §13.2.2.4), the UAS's
2xx retransmission until the ACK (§13.3.1.4), and CANCEL (§9.1). Sans-IO:
nothing here sends; requests come back as objects, datagrams as bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ccserver.sip.errors import LocalProtocolError, RemoteProtocolError
from ccserver.sip.headers import Headers
from ccserver.sip.message import Request, Response, make_response, new_branch
from ccserver.sip.transaction import Address, make_non2xx_ack, same_transaction_request
from ccserver.sip.uri import NameAddr, SipUri, Via

__all__ = [
    "DIALOG_TABLE",
    "TARGET_REFRESH_METHODS",
    "Address",
    "Dialog",
    "InviteRetransmitter",
    "make_cancel",
    "make_dialog_response",
    "make_non2xx_ack",
]

_log = logging.getLogger(__name__)

# {state: {event: next_state}}. "1xx"/"2xx"/"failure" are responses to the
# dialog-creating INVITE, "bye" a BYE received or the final response to ours
# (§15), "gone" a 481 or 408 to an in-dialog request (§12.2.1.2),
# "terminate" the TU giving up.
DIALOG_TABLE: Final[Mapping[str, Mapping[str, str]]] = {
    "early": {
        "1xx": "early",
        "2xx": "confirmed",
        "failure": "terminated",
        "bye": "terminated",
        "gone": "terminated",
        "terminate": "terminated",
    },
    "confirmed": {
        "2xx": "confirmed",
        "bye": "terminated",
        "gone": "terminated",
        "terminate": "terminated",
    },
    "terminated": {},
}

# Requests that replace the remote target (§12.2: re-INVITE; RFC 3311 UPDATE).
TARGET_REFRESH_METHODS: Final = frozenset({"INVITE", "UPDATE"})

# Requests that carry our Contact: target refreshes, and the methods whose
# own RFCs require it (RFC 6665 SUBSCRIBE/NOTIFY, RFC 3515 REFER).
_CONTACT_METHODS: Final = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


def _without_tag(addr: NameAddr) -> NameAddr:
    copy = addr.copy()
    copy.params.pop("tag", None)
    return copy


def _with_tag(addr: NameAddr, tag: str) -> NameAddr:
    copy = addr.copy()
    if tag:
        copy.params["tag"] = tag
    return copy


def _request_uri(uri: SipUri) -> SipUri:
    """§19.1.1 table 1: "method" and headers are not allowed in a Request-URI."""
    copy = uri.copy()
    copy.params.pop("method", None)
    copy.headers.clear()
    return copy


def _first_contact(message: Request | Response) -> SipUri | None:
    contacts = message.contacts
    return contacts[0].uri.copy() if contacts else None


def _record_route(message: Request | Response) -> list[NameAddr]:
    return [NameAddr.parse(value) for value in message.headers.get_all("Record-Route")]


@dataclass(eq=False)
class Dialog:
    """One side of a dialog: route set, remote target, CSeq counters, tags."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: SipUri
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: str = "early"
    # Our Contact, sent in target refresh requests (§12.2.1.1).
    local_target: SipUri | None = None
    # True when we sent the dialog-creating request: the 2xx then fixes the
    # route set of an early dialog again (§13.2.2.4).
    is_uac: bool = False

    @classmethod
    def from_uas(cls, request: Request, response: Response, local_contact: SipUri) -> Dialog:
        """Dialog created by our 101-299 answer to ``request`` (§12.1.1)."""
        _check_creating(response)
        local_tag = response.to.tag
        if not local_tag:
            raise LocalProtocolError("a dialog-creating response needs a To tag (§12.1.1)")
        remote_target = _first_contact(request)
        if remote_target is None:
            raise RemoteProtocolError(f"{request.method} without Contact", 400)
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",  # RFC 2543 peers may omit it
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=remote_target,
            # "The route set MUST be set to the list of URIs in the
            # Record-Route header field from the request ... in order."
            route_set=_record_route(request),
            local_seq=0,  # empty; the first request we send uses 1
            remote_seq=request.cseq[0],
            # §12.1.1: TLS with a SIPS Request-URI. The transport is not known
            # here, and we only answer sips: over TLS.
            secure=request.uri.scheme == "sips",
            state="early" if response.status < 200 else "confirmed",
            local_target=local_contact.copy(),
            is_uac=False,
        )
        _log.debug("%s dialog %s created by UAS (%s)", dialog.call_id, dialog.id, dialog.state)
        return dialog

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """Dialog created by a 101-299 answer to our ``request`` (§12.1.2)."""
        _check_creating(response)
        remote_target = _first_contact(response)
        if remote_target is None:
            # §12.1.2 requires a Contact in the response; without one the best
            # guess is the Request-URI we sent to.
            remote_target = request.uri.copy()
        dialog = cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",  # §12.1.2: a missing tag is null
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(request.to),
            remote_target=remote_target,
            # "... the list of URIs in the Record-Route header field from the
            # response, taken in reverse order."
            route_set=list(reversed(_record_route(response))),
            local_seq=request.cseq[0],
            remote_seq=None,
            secure=request.uri.scheme == "sips",
            state="early" if response.status < 200 else "confirmed",
            local_target=_first_contact(request),
            is_uac=True,
        )
        _log.debug("%s dialog %s created by UAC (%s)", dialog.call_id, dialog.id, dialog.state)
        return dialog

    @property
    def id(self) -> tuple[str, str, str]:
        """Dialog ID of §12: Call-ID, local tag, remote tag."""
        return self.call_id, self.local_tag, self.remote_tag

    def _step(self, event: str) -> bool:
        new = DIALOG_TABLE[self.state].get(event)
        if new is None:
            return False
        if new != self.state:
            _log.debug("%s dialog %s: %s -> %s (%s)", self.call_id, self.id, self.state, new, event)
            self.state = new
        return True

    def matches(self, message: Request | Response) -> bool:
        """Whether ``message`` belongs to this dialog (§12.2.2, §12.2.1.2).

        The peer's requests carry our tag in To; responses to our requests
        carry it in From.
        """
        if message.call_id != self.call_id:
            return False
        if isinstance(message, Request):
            local, remote = message.to.tag, message.from_.tag
        else:
            local, remote = message.from_.tag, message.to.tag
        return (local or "") == self.local_tag and (remote or "") == self.remote_tag

    # -- requests we send ----------------------------------------------------

    def next_hop(self) -> SipUri:
        """Where the next in-dialog request goes (§12.2.1.1, §8.1.2).

        The first route when there is a route set: it is the top Route with
        loose routing and the Request-URI with strict routing. Otherwise the
        remote target. The I/O layer resolves it (RFC 3263).
        """
        if self.route_set:
            return self.route_set[0].uri.copy()
        return self.remote_target.copy()

    def _routing(self) -> tuple[SipUri, list[str]]:
        """Request-URI and Route values per §12.2.1.1."""
        if not self.route_set:
            return _request_uri(self.remote_target), []
        first = self.route_set[0]
        if "lr" in first.uri.params:
            return _request_uri(self.remote_target), [str(route) for route in self.route_set]
        # Strict router (RFC 2543): it wants itself as the Request-URI, and the
        # remote target goes last in the Route header field.
        routes = [str(route) for route in self.route_set[1:]]
        routes.append(str(NameAddr(self.remote_target.copy())))
        return _request_uri(first.uri), routes

    def _build(
        self,
        method: str,
        cseq: int,
        *,
        via_host: str,
        via_port: int,
        transport: str,
        body: bytes,
        content_type: str | None,
        extra: Iterable[tuple[str, str]],
    ) -> Request:
        uri, routes = self._routing()
        headers = Headers()
        via = Via(transport.upper(), via_host, via_port, {"branch": new_branch()})
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(_with_tag(self.local_uri, self.local_tag)))
        headers.add("To", str(_with_tag(self.remote_uri, self.remote_tag)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in _CONTACT_METHODS and self.local_target is not None:
            headers.add("Contact", str(NameAddr(self.local_target.copy())))
        for name, value in extra:
            headers.add(name, value)
        if body:
            if content_type is None:
                raise LocalProtocolError("a body needs a Content-Type")
            headers.add("Content-Type", content_type)
        headers.add("Content-Length", str(len(body)))
        return Request(method, uri, headers, body)

    def create_request(
        self,
        method: str,
        *,
        via_host: str,
        via_port: int,
        transport: str = "UDP",
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A request within the dialog (§12.2.1.1), with a fresh branch.

        CSeq is incremented by one, except for ACK, which takes the current
        number (that of the last INVITE; :meth:`create_ack` names it). A
        CANCEL is refused: it must copy the INVITE's branch to match its
        server transaction, which :func:`make_cancel` does (§9.1).
        """
        method = method.upper()
        if method == "ACK":
            return self.create_ack(
                self.local_seq, via_host=via_host, via_port=via_port, transport=transport, body=body
            )
        if method == "CANCEL":
            raise LocalProtocolError("build a CANCEL with make_cancel(invite), not in the dialog")
        if self.state == "terminated":
            raise LocalProtocolError(f"{method} on terminated dialog {self.id}")
        # §12.2.1.1: "MUST be incremented by one"; §8.1.1.5 keeps it < 2**31.
        self.local_seq += 1
        if self.local_seq >= 2**31:
            raise LocalProtocolError(f"CSeq space exhausted in dialog {self.id}")
        return self._build(
            method,
            self.local_seq,
            via_host=via_host,
            via_port=via_port,
            transport=transport,
            body=body,
            content_type=content_type,
            extra=extra,
        )

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via_host: str,
        via_port: int,
        transport: str = "UDP",
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """The ACK of a 2xx (§13.2.2.4): built like any in-dialog request, with
        the INVITE's CSeq number and its own branch (it is a new transaction).

        Allowed in every state: a 2xx that arrives after we hung up must still
        be ACKed before the BYE.
        """
        if body and content_type is None:
            content_type = "application/sdp"  # an answer to an offer in the 2xx
        return self._build(
            "ACK",
            invite_cseq,
            via_host=via_host,
            via_port=via_port,
            transport=transport,
            body=body,
            content_type=content_type,
            extra=(),
        )

    def receive_response(self, response: Response) -> None:
        """Update the dialog from a response to one of our in-dialog or
        dialog-creating requests (§12.1.2, §12.2.1.2, §13.2.2.4)."""
        status = response.status
        method = response.cseq[1]
        was_early = self.state == "early"
        if status in (408, 481):
            # §12.2.1.2: the peer no longer knows the dialog.
            self._step("gone")
            return
        if method == "BYE":
            # §15.1.1: the dialog ends with the BYE's final response; a 401
            # or 407 is answered with a new BYE carrying credentials first.
            if status >= 200 and status not in (401, 407):
                self._step("bye")
            return
        if method == "INVITE" and was_early:
            if status < 200:
                self._step("1xx")
            elif status < 300:
                self._step("2xx")
                if self.is_uac:
                    # §13.2.2.4: "the route set for the dialog MUST be
                    # recomputed based on the 2xx response".
                    self.route_set = list(reversed(_record_route(response)))
            else:
                self._step("failure")
                return
        refresh = 200 <= status < 300 or (was_early and 100 < status < 200)
        if refresh and method in TARGET_REFRESH_METHODS:
            # §12.2.1.2: a 2xx to a target refresh replaces the remote target;
            # in an early dialog a provisional response's Contact does too.
            contact = _first_contact(response)
            if contact is not None:
                self.remote_target = contact

    def response_sent(self, response: Response) -> None:
        """Update the dialog from our final answer to the creating INVITE:
        2xx confirms the early dialog, 300-699 ends it (§12.1.1, §13.3.1)."""
        if self.state != "early" or response.cseq[1] != "INVITE":
            return
        if 200 <= response.status < 300:
            self._step("2xx")
        elif response.status >= 300:
            self._step("failure")

    def terminate(self) -> None:
        """End the dialog outright: the BYE timed out (§15.1.1), Timer B or H
        fired, or the 2xx was never ACKed (§13.3.1.4)."""
        self._step("terminate")

    # -- requests we receive ---------------------------------------------------

    def receive_request(self, request: Request) -> int | None:
        """Check and apply an in-dialog request (§12.2.2).

        Returns the status to reject it with (481 when it is not ours or the
        dialog is over, 500 when its CSeq is lower than the last one), or
        None when the TU may go on.
        """
        if not self.matches(request):
            return 481
        method = request.method
        if method in ("ACK", "CANCEL"):
            # They carry the CSeq number of the INVITE they refer to.
            return None
        if self.state == "terminated":
            return 481
        number = request.cseq[0]
        if self.remote_seq is not None and number < self.remote_seq:
            # "the request is out of order and MUST be rejected with a 500"
            return 500
        self.remote_seq = number
        if method in TARGET_REFRESH_METHODS:
            contact = _first_contact(request)
            if contact is not None:
                self.remote_target = contact
        elif method == "BYE":
            self._step("bye")  # §15.1.2
        return None


def make_dialog_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str,
    contact: SipUri,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A 101-299 answer that creates or lives in a dialog (§12.1.1).

    On top of make_response: "the UAS MUST copy all Record-Route header
    field values from the request into the response (including the URIs,
    URI parameters, and any Record-Route header field parameters, whether
    they are known or unknown to the UAS) and MUST maintain the order", and a
    Contact with our target.
    """
    fields = [("Record-Route", value) for value in request.headers.get_all("Record-Route")]
    fields.append(("Contact", str(NameAddr(contact.copy()))))
    fields.extend(headers)
    return make_response(request, status, reason, to_tag=to_tag, headers=fields, body=body)


def _check_creating(response: Response) -> None:
    # §12.1: 2xx and 101-199 with a To tag create dialogs; 100 never does.
    if not 101 <= response.status <= 299:
        raise LocalProtocolError(f"a {response.status} response does not create a dialog")


class InviteRetransmitter:
    """UAS 2xx retransmission until ACK (§13.3.1.4): T1 doubling capped at T2, give up after 64*T1.

    The 2xx is end-to-end, so the INVITE server transaction does not carry it;
    the UAS core resends it on every transport until the ACK comes.
    """

    def __init__(
        self,
        response: Response,
        addr: Address,
        now: float,
        *,
        t1: float = 0.5,
        t2: float = 4.0,
    ) -> None:
        self.response = response
        self.addr = addr
        self._wire = bytes(response)
        self._t2 = t2
        self._interval = t1
        self._next: float | None = now + t1
        self._give_up = now + 64 * t1
        self._acked = False
        self._timed_out = False
        self._bye_waiting = False

    @property
    def done(self) -> bool:
        """True once the ACK came or we gave up."""
        return self._acked or self._timed_out

    @property
    def timed_out(self) -> bool:
        """True when 64*T1 passed without an ACK: the TU should send a BYE."""
        return self._timed_out

    @property
    def bye_waiting(self) -> bool:
        """True when the TU asked to end the dialog before the ACK came: its BYE
        goes out on the ACK or when 64*T1 passes (see :meth:`request_bye`)."""
        return self._bye_waiting

    def request_bye(self) -> bool:
        """The TU wants to end the dialog: True when the BYE may go now.

        §15: "the callee's UA MUST NOT send a BYE on a confirmed dialog until
        it has received an ACK for its 2xx response or until the server
        transaction times out". While the 2xx is still unacknowledged the BYE
        waits (retransmissions go on, the peer still needs the 2xx to send
        its ACK); the TU sends it once :meth:`ack_received` is called or
        :meth:`handle_timer` returns None.
        """
        if self.done:
            return True
        if not self._bye_waiting:
            _log.debug("%s BYE waits for the ACK of the 2xx", self.response.call_id)
        self._bye_waiting = True
        return False

    def ack_received(self) -> None:
        """§13.3.1.4: "Response retransmissions cease when an ACK request for
        the response is received"."""
        if not self.done:
            _log.debug("%s 2xx retransmission: ACK received", self.response.call_id)
        self._acked = True
        self._next = None

    def get_timer(self) -> float | None:
        """Next retransmission or the give-up time, or None when done."""
        if self.done or self._next is None:
            return None
        return min(self._next, self._give_up)

    def handle_timer(self, now: float) -> list[tuple[bytes, Address]] | None:
        """Datagrams due at ``now``; None once 64*T1 passed without an ACK."""
        if self._acked:
            return []
        if self._timed_out or now >= self._give_up:
            if not self._timed_out:
                _log.debug("%s 2xx retransmission: no ACK after 64*T1", self.response.call_id)
            self._timed_out = True
            self._next = None
            return None
        if self._next is None or now < self._next:
            return []
        # One copy even when called late: a burst would not help the peer.
        self._interval = min(2 * self._interval, self._t2)
        self._next = now + self._interval
        return [(self._wire, self.addr)]


def make_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (§9.1).

    "The Request-URI, Call-ID, To, the numeric part of CSeq, and From header
    fields in the CANCEL request MUST be identical to those in the request
    being cancelled, including tags", a single Via equal to the request's top
    Via (so the CANCEL matches its server transaction), and the same Route
    header fields.
    """
    if invite.method != "INVITE":
        raise LocalProtocolError(f"only INVITE is cancelled, not {invite.method}")
    return same_transaction_request(invite, "CANCEL", invite.headers.get("To") or str(invite.to))
