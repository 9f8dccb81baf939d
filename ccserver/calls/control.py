"""Call control and live views for software: the REST API, the console and the AMI.

One facade over the call model, so every interface (HTTP, WebSocket,
manager interface) offers the same operations with the same checks and the
same errors. Errors carry an HTTP-style status and a machine-readable id.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from acd.router import AcdError
from ccserver.calls.hold import CONTROL
from ccserver.calls.model import Call
from ccserver.calls.outbound import OriginateError
from ccserver.calls.service import CallService
from ccserver.calls.sidelegs import FeatureRefused, has_side_legs


class ControlError(Exception):
    """A refused operation: `status` (HTTP semantics), `error_id`, message, details."""

    def __init__(
        self, status: int, error_id: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error_id": self.error_id,
            "message": self.message,
            "details": self.details,
        }


def customer_summary(customer: Any) -> dict[str, Any] | None:
    """The customer as a screen pop shows it (JSON-ready)."""
    if customer is None:
        return None
    return {
        "id": customer.id,
        "name": customer.name,
        "tier": customer.tier,
        "phones": [dataclasses.asdict(p) for p in getattr(customer, "phones", ())],
        "accounts": [dataclasses.asdict(a) for a in getattr(customer, "accounts", ())],
        "email": customer.email,
        "segment": customer.segment,
        "language": customer.language,
        "account_manager": customer.account_manager,
        "notes": customer.notes,
        "open_complaints": [
            dataclasses.asdict(c) for c in getattr(customer, "open_complaints", ())
        ],
    }


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class CallControl:
    """What software may see and do on this node."""

    def __init__(self, service: CallService, extensions: dict[str, str]) -> None:
        self.service = service
        self.extensions = extensions  # number -> name
        self.started = time.time()

    # -- views ----------------------------------------------------------------------
    def _call(self, contact_id: str) -> Call:
        call = self.service.calls.get(contact_id)
        if call is None:
            raise ControlError(404, "call-not-found", f"no active call {contact_id}",
                               {"contact_id": contact_id})  # fmt: skip
        return call

    def call_view(self, call: Call) -> dict[str, Any]:
        flow = call.flow
        return {
            "contact_id": call.contact_id,
            "caller": call.caller_number,
            "dialed": call.dialed,
            "state": call.state,
            "queue": call.queue,
            "agent": call.agent_leg.agent if call.agent_leg is not None else None,
            "ringing": sorted(call.ringing),
            "on_hold": call.caller.on_hold or call.held_by_control,
            "customer": customer_summary(call.customer),
            "tier": call.tier,
            "attributes": dict(call.attributes),
            "ivr_node": flow.node_name if flow is not None else None,
            "codec": call.caller.endpoint.codec,
            **self.service.side_view(call),
            "direction": "outbound" if call.origination is not None else "inbound",
        }

    def calls(self) -> list[dict[str, Any]]:
        return [self.call_view(c) for c in list(self.service.calls.values())]

    def call(self, contact_id: str) -> dict[str, Any]:
        return self.call_view(self._call(contact_id))

    def agents(self) -> list[dict[str, Any]]:
        now = self.service.now()
        out = []
        for ext, agent in sorted(self.service.router.agents.items()):
            state, reason = self.service.acd.agent_status(ext)
            out.append({
                "agent": ext,
                "name": self.extensions.get(ext, ext),
                "state": state,
                "reason": reason,
                "seconds_in_state": round(max(0.0, now - agent.since), 3),
                "contact_id": agent.call_id,
                "queue": agent.queue,
                "registered": bool(self.service.reg.lookup(ext, now)),
            })  # fmt: skip
        return out

    def agent(self, ext: str) -> dict[str, Any]:
        for row in self.agents():
            if row["agent"] == ext:
                return row
        raise ControlError(404, "agent-not-found", f"no agent {ext}", {"agent": ext})

    def queues(self) -> list[dict[str, Any]]:
        router = self.service.router
        now = self.service.now()
        out = []
        for name in router.queues:
            stats = _jsonable(self.service.acd.queue_stats(name, now))
            out.append({"queue": name, "members": router.members(name), **stats})
        return out

    # -- agents ----------------------------------------------------------------------
    def _agent_op(self, ext: str, op: str, reason: str | None = None) -> dict[str, Any]:
        svc = self.service
        router = svc.router
        if ext not in router.agents:
            raise ControlError(404, "agent-not-found", f"no agent {ext}", {"agent": ext})
        now = svc.now()
        try:
            if op == "login":
                if not svc.reg.lookup(ext, now):
                    raise ControlError(409, "phone-not-registered",
                                       f"agent {ext} has no registered phone to ring")  # fmt: skip
                offers = svc.acd.login(ext, now, reason)
            elif op == "logout":
                offers = svc.acd.logout(ext, now, reason or "logout")
            elif op == "ready":
                offers = svc.acd.ready(ext, now)
            elif op == "pause":
                if not reason:
                    raise ControlError(
                        422, "reason-required", "a not-ready reason code is required"
                    )
                svc.acd.pause(ext, now, reason)
                offers = []
            else:  # pragma: no cover - callers pass known ops
                raise ControlError(400, "unknown-operation", op)
        except AcdError as exc:
            raise ControlError(409, "invalid-agent-state", str(exc), {"agent": ext}) from None
        except ValueError as exc:
            raise ControlError(422, "invalid-reason", str(exc), {"agent": ext}) from None
        svc._apply(offers)
        return self.agent(ext)

    def agent_login(self, ext: str, reason: str | None = None) -> dict[str, Any]:
        return self._agent_op(ext, "login", reason)

    def agent_logout(self, ext: str, reason: str | None = None) -> dict[str, Any]:
        return self._agent_op(ext, "logout", reason)

    def agent_ready(self, ext: str) -> dict[str, Any]:
        return self._agent_op(ext, "ready")

    def agent_pause(self, ext: str, reason: str) -> dict[str, Any]:
        return self._agent_op(ext, "pause", reason)

    # -- calls --------------------------------------------------------------------------
    def hangup(self, contact_id: str, by: str = "system") -> None:
        call = self._call(contact_id)
        svc = self.service
        svc._hangup_leg(call, call.caller, by, send_bye=True)

    def hold(self, contact_id: str) -> dict[str, Any]:
        """The agent (or a supervisor) holds the caller: hold music, no audio between them."""
        call = self._call(contact_id)
        leg = call.agent_leg
        if call.state != "bridged" or leg is None:
            raise ControlError(409, "not-connected", "only a connected call can be held")
        self._refuse_side_legs(call)
        if not call.held_by_control:
            call.held_by_control = True
            call.caller.endpoint.unbridge()
            leg.endpoint.unbridge()
            svc = self.service
            svc.clock.play(call.caller.endpoint, [svc.moh], loop=True)
            svc._hold_begins(call, CONTROL)
            svc._note(call, "hold", {"by": "agent", "via": "control"})
        return self.call_view(call)

    def resume(self, contact_id: str) -> dict[str, Any]:
        call = self._call(contact_id)
        leg = call.agent_leg
        if not call.held_by_control or leg is None:
            raise ControlError(409, "not-held", "the call is not on hold")
        svc = self.service
        call.held_by_control = False
        svc.clock.stop(call.caller.endpoint)
        call.caller.endpoint.bridge(leg.endpoint)
        leg.endpoint.bridge(call.caller.endpoint)
        svc._hold_ends(call, CONTROL)
        svc._note(call, "resume", {"by": "agent", "via": "control"})
        return self.call_view(call)

    def transfer_to_queue(self, contact_id: str, queue: str) -> dict[str, Any]:
        """Blind transfer of a connected caller to a queue: the agent is released."""
        call = self._call(contact_id)
        svc = self.service
        if queue not in svc.router.queues:
            raise ControlError(404, "queue-not-found", f"no queue {queue}", {"queue": queue})
        leg = call.agent_leg
        if call.state != "bridged" or leg is None:
            raise ControlError(409, "not-connected", "only a connected call can be transferred")
        self._refuse_side_legs(call)
        call.caller.endpoint.unbridge()
        leg.endpoint.unbridge()
        if call.held_by_control:  # transferred on hold: the hold ends here
            svc._hold_ends(call, CONTROL)
        svc._send_bye(leg)
        svc._release_leg(leg)
        if leg.agent:
            svc._apply(svc.acd.hangup(leg.agent, svc.now()))
        call.agent_leg = None
        call.held_by_control = False
        svc._note(call, "transferred", {"from_agent": leg.agent, "to_queue": queue})
        svc._enqueue(call, queue, 0)
        return self.call_view(call)

    def disposition(
        self, contact_id: str, disposition: str | None, notes: str | None
    ) -> dict[str, Any]:
        """Wrap-up data for a contact, live or just ended (the agent types it during wrap-up)."""
        fields: dict[str, Any] = {}
        if disposition is not None:
            fields["disposition"] = disposition
        if notes is not None:
            fields["notes"] = notes
        if not fields:
            raise ControlError(422, "nothing-to-set", "give a disposition or notes")
        self.service.recorder.update(contact_id, **fields)
        call = self.service.calls.get(contact_id)
        if call is not None:
            self.service._note(call, "disposition", fields)
        else:
            self.service.recorder.event(contact_id, "disposition", fields)
        return {"contact_id": contact_id, **fields}

    # -- supervision, conference and consult transfer (ccserver.calls.monitor, ...) ----
    @staticmethod
    def _refuse_side_legs(call: Call) -> None:
        if has_side_legs(call):
            raise ControlError(409, "side-legs-active",
                               "end the monitoring, conference or consult transfer first",
                               {"contact_id": call.contact_id})  # fmt: skip

    def _feature(self, op: Any, contact_id: str, *args: str) -> dict[str, Any]:
        try:
            call = op(contact_id, *args)
        except FeatureRefused as exc:
            raise ControlError(exc.status, exc.error_id, str(exc), exc.details) from None
        return self.call_view(call)

    def monitor(self, contact_id: str, extension: str, mode: str, by: str) -> dict[str, Any]:
        """Ring a supervisor's phone into the call (listen, whisper, barge), or change mode."""
        return self._feature(self.service.monitor, contact_id, extension, mode, by)

    def monitor_stop(self, contact_id: str) -> dict[str, Any]:
        return self._feature(self.service.monitor_stop, contact_id)

    def conference(self, contact_id: str, kind: str, target: str, by: str) -> dict[str, Any]:
        """Add a third party (kind "extension" or "number") to a connected call."""
        return self._feature(self.service.conference, contact_id, kind, target, by)

    def conference_drop(self, contact_id: str) -> dict[str, Any]:
        return self._feature(self.service.conference_drop, contact_id)

    def consult(self, contact_id: str, kind: str, target: str, by: str) -> dict[str, Any]:
        """Hold the caller and ring the target for the agent (attended transfer)."""
        return self._feature(self.service.consult, contact_id, kind, target, by)

    def consult_complete(self, contact_id: str) -> dict[str, Any]:
        return self._feature(self.service.consult_complete, contact_id)

    def consult_cancel(self, contact_id: str) -> dict[str, Any]:
        return self._feature(self.service.consult_cancel, contact_id)

    # -- calls placed for software (ccserver.calls.outbound) -----------------------------
    async def click_to_call(
        self, agent: str, number: str, *, via: str = "api", ring_timeout: float | None = None
    ) -> dict[str, Any]:
        """Ring `agent`'s phone, then call `number` and bridge them (see calls/outbound.py)."""
        try:
            call = await self.service.originate(
                agent, number, via=via, agent_name=self.extensions.get(agent),
                ring_timeout=ring_timeout,
            )  # fmt: skip
        except OriginateError as exc:
            raise ControlError(exc.status, exc.error_id, exc.message,
                               {"agent": agent, "number": number}) from None  # fmt: skip
        return self.call_view(call)

    def transfer_to_agent(self, contact_id: str, agent: str) -> dict[str, Any]:
        """Blind transfer of a connected caller to an agent's extension."""
        return self._blind_transfer(contact_id, "agent", agent)

    def transfer_to_number(self, contact_id: str, number: str) -> dict[str, Any]:
        """Blind transfer of a connected caller to a number through the trunk."""
        return self._blind_transfer(contact_id, "number", number)

    def _blind_transfer(self, contact_id: str, kind: str, target: str) -> dict[str, Any]:
        call = self._call(contact_id)
        if kind == "agent" and call.agent_leg is not None and call.agent_leg.agent == target:
            raise ControlError(409, "same-agent", f"the call is already with agent {target}",
                               {kind: target})  # fmt: skip
        try:
            self.service.blind_transfer(call, kind, target)
        except OriginateError as exc:
            raise ControlError(exc.status, exc.error_id, exc.message, {kind: target}) from None
        return self.call_view(call)

    # -- queue membership (live, not written back to queues.toml) -------------------------
    def queue_add(self, queue: str, agent: str, penalty: int = 0) -> dict[str, Any]:
        """Make `agent` a member of `queue` until the node restarts."""
        router = self.service.router
        if queue not in router.queues:
            raise ControlError(404, "queue-not-found", f"no queue {queue}", {"queue": queue})
        if agent not in self.extensions:
            raise ControlError(404, "agent-not-found", f"no extension {agent}", {"agent": agent})
        if agent in router.members(queue):
            raise ControlError(409, "already-member", f"{agent} is already in queue {queue}",
                               {"queue": queue, "agent": agent})  # fmt: skip
        svc = self.service
        svc._apply(svc.acd.add_member(queue, agent, svc.now(), penalty))
        return {"queue": queue, "agent": agent, "penalty": penalty,
                "members": router.members(queue)}  # fmt: skip

    def queue_remove(self, queue: str, agent: str) -> dict[str, Any]:
        """Take `agent` out of `queue`; a call it is on goes on."""
        router = self.service.router
        if queue not in router.queues:
            raise ControlError(404, "queue-not-found", f"no queue {queue}", {"queue": queue})
        if agent not in router.members(queue):
            raise ControlError(404, "not-a-member", f"{agent} is not in queue {queue}",
                               {"queue": queue, "agent": agent})  # fmt: skip
        svc = self.service
        svc._apply(svc.acd.remove_member(queue, agent, svc.now()))
        return {"queue": queue, "agent": agent, "members": router.members(queue)}
