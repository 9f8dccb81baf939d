"""One side of a bridged call: a SIP dialog and its RTP endpoint."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccserver.media.endpoint import RtpEndpoint
from ccserver.media.sdp import SessionDescription
from ccserver.sip.dialog import Dialog, InviteRetransmitter
from ccserver.sip.message import Request
from ccserver.sip.transaction import ClientTransaction, ServerTransaction

Address = tuple[str, int]


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """Every log line names its call (STYLE habit 9)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['call'] if self.extra else '-'}] {msg}", kwargs


@dataclass(eq=False)
class Leg:
    """A SIP dialog toward a phone or trunk, with the RTP socket that carries its audio."""

    role: str  # "uas": the caller who called us; "uac": the agent we called
    endpoint: RtpEndpoint
    invite: Request
    signal_addr: Address  # where in-dialog requests go (the phone's real source: NAT-safe)
    dialog: Dialog | None = None
    server_tx: ServerTransaction | None = None
    client_tx: ClientTransaction | None = None
    retransmitter: InviteRetransmitter | None = None
    retransmit_timer: asyncio.TimerHandle | None = None
    offer: SessionDescription | None = None
    sdp_session: int = field(default_factory=lambda: random.randrange(1, 2**31))
    sdp_version: int = 0
    state: str = "init"  # init | early | confirmed | terminated
    on_hold: bool = False  # the phone holds (its SDP); the contact's hold is in calls.hold
    cancelled: str | None = None  # why we CANCELled (or will CANCEL) this outgoing leg
    cancel_pending: bool = False  # waiting for a provisional response first (RFC 3261 §9.1)
    provisional: bool = False  # a 1xx arrived
    released: bool = False  # the router was already told this offer is over
    pending_offer: SessionDescription | None = None  # our offer in a 2xx, answered by the ACK
    on_confirmed: Callable[[], None] | None = None  # what to start once the ACK arrives
    bye_pending: bool = False  # ended before the ACK of our 2xx: the BYE waits (RFC 3261 §15)
    ringing: bool = False
    agent: str | None = None

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def stop_retransmit(self) -> None:
        if self.retransmit_timer is not None:
            self.retransmit_timer.cancel()
            self.retransmit_timer = None
        if self.retransmitter is not None:
            self.retransmitter.ack_received()
