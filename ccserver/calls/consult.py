"""Consult (attended) transfer: hold the caller, talk to the target, then hand over.

The caller hears hold music while the agent's phone is connected to the
target (an extension, any agent's among them, or an external number through
the trunk). `complete` connects the caller to the target and releases the
agent (timeline `transfer` with kind `consult`); `cancel` hangs up the target
and the agent has the caller back. If the target hangs up or does not answer,
the agent has the caller back too; if the agent hangs up while connected to
the target, the transfer completes (as desk phones do).
"""

from __future__ import annotations

from ccserver.calls.hold import CONSULT
from ccserver.calls.model import Call
from ccserver.calls.sidelegs import FeatureRefused, SideLeg, SideLegs, side_of


class ConsultTransfer(SideLegs):
    """Attended transfer of a connected caller."""

    def consult(self, contact_id: str, kind: str, target: str, by: str) -> Call:
        call = self._connected_call(contact_id)
        state = side_of(call)
        if state.legs:
            busy = sorted(state.legs)[0]
            raise FeatureRefused(
                409,
                f"{busy}-in-progress",
                f"end the {busy} before a consult transfer",
                {"contact_id": contact_id},
            )
        contact, source = self._destination(kind, target)
        side = SideLeg("consult", target, by=by)

        def answered() -> None:
            self._note(call, "consult_answered", {"target": target})

        def gone() -> None:
            self._consult_over(call)
            self._note(call, "consult_ended", {"target": target, "reason": "hung up"})

        def failed(why: str) -> None:
            self._consult_over(call)  # `consult_failed` is in the timeline already

        side.on_answer = answered
        side.on_failed = failed
        side.on_left = gone
        self._hold_begins(call, CONSULT)
        self._note(call, "hold", {"by": "agent", "via": "consult"})
        self._dial_side(call, side, contact, source)
        self._rewire(call)  # the caller hears hold music from now on
        return call

    def consult_cancel(self, contact_id: str) -> Call:
        call, side = self._consulting(contact_id)
        self._drop_side(call, side)
        self._consult_over(call)
        self._note(call, "consult_ended", {"target": side.target, "reason": "cancelled"})
        self._rewire(call)
        return call

    def consult_complete(self, contact_id: str) -> Call:
        call, side = self._consulting(contact_id)
        if not side.connected:
            raise FeatureRefused(
                409,
                "consult-not-answered",
                f"{side.target} has not answered yet; cancel or wait",
                {"target": side.target},
            )
        self._consult_complete(call)
        return call

    def _consulting(self, contact_id: str) -> tuple[Call, SideLeg]:
        call = self.calls.get(contact_id)
        side = side_of(call).legs.get("consult") if call is not None else None
        if call is None or side is None:
            raise FeatureRefused(
                404,
                "no-consult",
                f"call {contact_id} has no consult transfer",
                {"contact_id": contact_id},
            )
        return call, side

    def _consult_over(self, call: Call) -> None:
        self._hold_ends(call, CONSULT)

    def _consult_complete(self, call: Call, agent_hung_up: bool = False) -> None:
        """Caller to target; the agent's leg is hung up and the agent released."""
        side = side_of(call).legs.pop("consult")
        agent = call.agent_leg
        assert agent is not None and side.leg is not None
        self._cancel_side_timer(side)
        if not agent_hung_up:
            self._send_bye(agent)
        agent.state = "terminated"
        agent.endpoint.unbridge()
        side.leg.endpoint.unbridge()
        self._release_leg(agent)
        if agent.agent is not None:
            self._apply(self.acd.hangup(agent.agent, self.now()))
        call.agent_leg = side.leg
        self._consult_over(call)
        self._note(
            call,
            "transfer",
            {
                "kind": "consult",
                "from_agent": agent.agent,
                "to": side.target,
                "agent_hung_up": agent_hung_up,
            },
        )
        self._note(call, "resume", {"by": "agent", "via": "consult"})
        self._rewire(call)
