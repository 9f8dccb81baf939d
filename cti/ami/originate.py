"""AMI actions that place calls and change queue membership, without I/O.

- ``Originate`` rings an agent's phone (``Channel: PJSIP/1001``, ``SIP/1001``
  or ``Local/1001@ctx``) and, once answered, calls ``Exten`` (or the number
  in ``Application: Dial``, ``Data: PJSIP/0612345678@trunk``): the
  platform's click-to-call. ``Async: true`` answers ``Originate
  successfully queued`` at once and later an ``OriginateResponse`` event
  (``Response: Success``/``Failure``, Asterisk's ``Reason`` codes, the
  agent channel's ``Uniqueid``) with the action's ActionID; without it the
  response waits for the agent's answer (or ``Originate failed``).
- ``Redirect`` / ``BlindTransfer`` send the call to a queue, an agent's
  extension or a number (``Exten``).
- ``QueueAdd`` / ``QueueRemove`` change the router's live membership (not
  written back to queues.toml); ``QueueAdd`` with ``Paused: true`` pauses
  the agent with the default reason (pauses are per agent here, not per
  queue). ``QueueMemberAdded``/``QueueMemberRemoved`` events follow.

Progress of an originate comes from the bus events the channel tracker also
reads (`Originations.handle` runs after it in `ManagerCore.publish`), so the
``OriginateResponse`` names the channel the client saw in ``Newchannel``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccserver.events import Event
from cti.ami.channels import AmiEvent
from cti.ami.protocol import ActionError, Message

if TYPE_CHECKING:
    from ccserver.calls.control import CallControl
    from cti.ami.server import ManagerCore, Session

__all__ = [
    "ORIGINATE_REASONS",
    "OriginateActions",
    "Originations",
    "dial_target",
    "interface_extension",
    "membership",
]

log = logging.getLogger(__name__)

Pairs = list[tuple[str, Any]]

#: Asterisk's originate reasons (enum ast_control_frame_type as OriginateResponse
#: reports them): 0 failed, 1 hung up, 3 ringing (no answer), 4 answered, 5 busy,
#: 8 congestion.
ORIGINATE_REASONS = {"answered": 4, "no-answer": 3, "busy": 5, "rejected": 8, "hangup": 1}

_TRUE = {"1", "true", "yes", "on", "y", "t"}

# Refusals as Asterisk words them, which some clients match on.
_QUEUE_ADD_ERRORS = {
    "queue-not-found": "Unable to add interface to queue: No such queue",
    "already-member": "Unable to add interface: Already there",
}
_QUEUE_REMOVE_ERRORS = {
    "queue-not-found": "Unable to remove interface from queue: No such queue",
    "not-a-member": "Unable to remove interface: Not there",
}


def interface_extension(interface: str) -> str:
    """``PJSIP/1001``, ``SIP/1001``, ``Local/1001@ctx`` or ``1001`` -> ``1001``."""
    text = interface.strip()
    if "/" in text:
        text = text.split("/", 1)[1]
    return text.split("@", 1)[0].split("-", 1)[0]


def membership(control: Any, queue: str, ext: str) -> tuple[str, int]:
    """(``static`` or ``dynamic``, penalty) of a queue member: dynamic when it was added
    at run time (QueueAdd), not listed in queues.toml."""
    router = getattr(getattr(control, "service", None), "router", None)
    if router is None:
        return "static", 0
    spec = router.queues.get(queue)
    agent = router.agents.get(ext)
    kind = "dynamic" if spec is not None and ext not in spec.members else "static"
    return kind, agent.queues.get(queue, 0) if agent is not None else 0


def dial_target(msg: Message) -> str:
    """The number an Originate dials: ``Exten``, or the last part of ``Dial``'s data."""
    application = (msg.get("Application") or "").strip()
    if application:
        if application.lower() != "dial":
            raise ValueError(f"Application {application} is not supported: only Dial")
        data = (msg.get("Data") or "").split(",", 1)[0].strip()
        if not data:
            raise ValueError("Dial needs Data: PJSIP/<number>")
        return data.rsplit("/", 1)[-1].split("@", 1)[0]
    exten = (msg.get("Exten") or "").strip()
    if not exten:
        raise ValueError("Exten or Application: Dial is required")
    return exten


@dataclass(slots=True)
class _Pending:
    session: Session
    head: Pairs
    asynchronous: bool
    msg: Message
    channel: Any = None  # the agent's Channel, once the tracker made it
    reason: str = "hangup"


@dataclass
class Originations:
    """Originates waiting for their agent's answer, by contact id."""

    pending: dict[str, _Pending] = field(default_factory=dict)

    def add(self, contact_id: str, pending: _Pending, core: ManagerCore) -> None:
        pending.channel = core.tracker.caller_channel(contact_id)
        self.pending[contact_id] = pending

    def handle(self, event: Event, core: ManagerCore) -> None:
        """One bus event (after the tracker): answer the originates it settles."""
        cid = event.contact_id
        p = self.pending.get(cid) if cid is not None else None
        if p is None or cid is None:
            return
        if p.channel is None:
            p.channel = core.tracker.caller_channel(cid)
        kind = event.type
        if kind == "call.agent_failed":
            p.reason = str(event.data.get("reason") or "rejected")
        elif kind == "call.agent_answered":
            del self.pending[cid]
            self._settle(p, cid, True, "answered", core)
        elif kind == "call.ended":
            del self.pending[cid]
            self._settle(p, cid, False, p.reason, core)

    def _settle(self, p: _Pending, cid: str, ok: bool, reason: str, core: ManagerCore) -> None:
        session = p.session
        if not p.asynchronous:
            if ok:
                session.send([("Response", "Success"), *p.head,
                              ("Message", "Originate successfully queued")])  # fmt: skip
            else:
                session.send([("Response", "Error"), *p.head, ("Message", "Originate failed")])
            return
        ch = p.channel
        msg = p.msg
        event = AmiEvent("OriginateResponse", tuple((k, str(v)) for k, v in [
            *p.head,
            ("Response", "Success" if ok else "Failure"),
            ("Channel", ch.name if ch is not None else msg.get("Channel") or ""),
            ("Context", msg.get("Context") or ""),
            ("Exten", msg.get("Exten") or ""),
            ("Application", msg.get("Application") or ""),
            ("Data", msg.get("Data") or ""),
            ("Reason", ORIGINATE_REASONS.get(reason, 0)),
            ("Uniqueid", ch.uniqueid if ch is not None else "<null>"),
            ("CallerIDNum", ch.caller_num if ch is not None else "<unknown>"),
            ("CallerIDName", ch.caller_name if ch is not None else "<unknown>"),
            ("ContactID", cid),
        ]))  # fmt: skip
        # The originating session gets it whatever its event mask (its client
        # waits for it); the others as any call event.
        session.send(event.pairs())
        for other in list(core.sessions):
            if other is not session:
                other.deliver(event)

    def forget(self, session: Session) -> None:
        """A session closed: nobody is left to answer."""
        for cid, p in list(self.pending.items()):
            if p.session is session:
                del self.pending[cid]


class OriginateActions:
    """The Session actions of this module (mixed into `cti.ami.server.Session`)."""

    core: ManagerCore

    def send(self, pairs: Pairs) -> None:  # pragma: no cover - Session's
        raise NotImplementedError

    def _control(self) -> CallControl:  # pragma: no cover - Session's
        raise NotImplementedError

    def _channel(self, msg: Message) -> Any:  # pragma: no cover - Session's
        raise NotImplementedError

    def _do_originate(self, msg: Message, head: Pairs) -> None:
        channel = msg.get("Channel") or ""
        agent = interface_extension(channel)
        if not agent:
            raise ActionError("Channel not specified")
        try:
            number = dial_target(msg)
        except ValueError as exc:
            raise ActionError(str(exc)) from None
        asynchronous = (msg.get("Async") or "").strip().lower() in _TRUE
        timeout: float | None = None
        if msg.get("Timeout"):
            try:
                timeout = max(1.0, min(120.0, int(msg.get("Timeout") or "0") / 1000))
            except ValueError:
                raise ActionError("Invalid timeout") from None
        control = self._control()
        session: Session = self  # type: ignore[assignment]
        core = self.core

        async def start() -> None:
            try:
                view = await control.click_to_call(agent, number, via="ami", ring_timeout=timeout)
            except Exception as exc:  # a ControlError: why it cannot start
                message = getattr(exc, "message", None) or str(exc)
                if not hasattr(exc, "error_id"):
                    log.exception("ami: originate %s -> %s failed", agent, number)
                session.send([("Response", "Error"), *head, ("Message", message)])
                return
            pending = _Pending(session, head, asynchronous, msg)
            core.originations.add(view["contact_id"], pending, core)
            if asynchronous:
                session.send([("Response", "Success"), *head,
                              ("Message", "Originate successfully queued")])  # fmt: skip

        core.spawn(start())

    def _transfer(self, msg: Message, head: Pairs, exten_key: str) -> None:
        ch = self._channel(msg)
        exten = (msg.get(exten_key) or "").strip()
        if not exten:
            raise ActionError(f"{exten_key} not specified")
        control = self._control()
        if exten in {q["queue"] for q in control.queues()}:
            control.transfer_to_queue(ch.contact_id, exten)
        elif exten in control.extensions:
            control.transfer_to_agent(ch.contact_id, exten)
        else:
            control.transfer_to_number(ch.contact_id, exten)
        self.send([("Response", "Success"), *head, ("Message", "Redirect successful")])

    def _do_redirect(self, msg: Message, head: Pairs) -> None:
        self._transfer(msg, head, "Exten")

    def _do_blindtransfer(self, msg: Message, head: Pairs) -> None:
        self._transfer(msg, head, "Exten")

    def _member(self, msg: Message) -> tuple[str, str]:
        queue = (msg.get("Queue") or "").strip()
        agent = interface_extension(msg.get("Interface") or "")
        if not queue or not agent:
            raise ActionError("'Queue' and 'Interface' are required")
        return queue, agent

    def _do_queueadd(self, msg: Message, head: Pairs) -> None:
        queue, agent = self._member(msg)
        try:
            penalty = int(msg.get("Penalty") or "0")
        except ValueError:
            raise ActionError("Penalty must be a number") from None
        control = self._control()
        try:
            control.queue_add(queue, agent, penalty)
        except Exception as exc:  # a ControlError: in Asterisk's words (app_queue.c)
            error_id = getattr(exc, "error_id", "")
            raise ActionError(_QUEUE_ADD_ERRORS.get(error_id, str(exc))) from None
        paused = (msg.get("Paused") or "").strip().lower() in _TRUE
        if paused:
            control.agent_pause(agent, msg.get("Reason") or self.core.default_pause_reason)
        self.core.broadcast(AmiEvent("QueueMemberAdded", (
            ("Queue", queue), ("Interface", f"PJSIP/{agent}"),
            ("MemberName", msg.get("MemberName") or control.extensions.get(agent, agent)),
            ("StateInterface", f"PJSIP/{agent}"), ("Membership", "dynamic"),
            ("Penalty", str(penalty)), ("Paused", "1" if paused else "0"),
        )))  # fmt: skip
        self.send([("Response", "Success"), *head, ("Message", "Added interface to queue")])

    def _do_queueremove(self, msg: Message, head: Pairs) -> None:
        queue, agent = self._member(msg)
        control = self._control()
        try:
            control.queue_remove(queue, agent)
        except Exception as exc:
            error_id = getattr(exc, "error_id", "")
            raise ActionError(_QUEUE_REMOVE_ERRORS.get(error_id, str(exc))) from None
        self.core.broadcast(AmiEvent("QueueMemberRemoved", (
            ("Queue", queue), ("Interface", f"PJSIP/{agent}"),
            ("MemberName", control.extensions.get(agent, agent)),
            ("StateInterface", f"PJSIP/{agent}"), ("Membership", "dynamic"),
        )))  # fmt: skip
        self.send([("Response", "Success"), *head, ("Message", "Removed interface from queue")])
