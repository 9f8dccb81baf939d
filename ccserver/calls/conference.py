"""Conference: the agent adds a third party (an extension or an external number).

All three hear each other through the mixer. The rules when one leaves:
the third party leaves -> caller and agent go on as before; the agent leaves ->
caller and third party stay connected (the agent is free for the next call,
the contact goes on with the third party); the caller leaves -> the contact is
over and everyone is hung up (the conference exists for the caller).
"""

from __future__ import annotations

from ccserver.calls.model import Call
from ccserver.calls.sidelegs import FeatureRefused, SideLeg, SideLegs, side_of


class Conferencing(SideLegs):
    """Three-party calls on top of a connected call."""

    def conference(self, contact_id: str, kind: str, target: str, by: str) -> Call:
        """Ring `target` (kind "extension" or "number") and join it to the call on answer."""
        call = self._connected_call(contact_id)
        state = side_of(call)
        if "conference" in state.legs or "consult" in state.legs:
            busy = "conference" if "conference" in state.legs else "consult"
            raise FeatureRefused(
                409,
                f"{busy}-in-progress",
                f"the call already has a {busy}",
                {"contact_id": contact_id},
            )
        contact, source = self._destination(kind, target)
        side = SideLeg("conference", target, by=by)

        def joined() -> None:
            self._note(call, "conference_joined", {"target": target, "kind": kind})

        def left() -> None:
            self._note(call, "conference_left", {"target": target, "who": "third-party"})

        side.on_answer = joined
        side.on_left = left
        self._dial_side(call, side, contact, source)
        return call

    def conference_drop(self, contact_id: str) -> Call:
        """The agent hangs up the third party (or stops it ringing)."""
        call = self.calls.get(contact_id)
        side = side_of(call).legs.get("conference") if call is not None else None
        if call is None or side is None:
            raise FeatureRefused(
                404,
                "no-conference",
                f"call {contact_id} has no third party",
                {"contact_id": contact_id},
            )
        connected = side.connected
        self._drop_side(call, side)
        if connected:
            self._note(call, "conference_left", {"target": side.target, "who": "dropped"})
        self._rewire(call)
        return call

    def _conference_takes_over(self, call: Call) -> None:
        """The agent left a conference: the third party stays with the caller."""
        state = side_of(call)
        side = state.legs.pop("conference")
        agent = call.agent_leg
        assert agent is not None and side.leg is not None
        agent.state = "terminated"
        agent.endpoint.unbridge()
        self._release_leg(agent)
        if agent.agent is not None:
            self._apply(self.acd.hangup(agent.agent, self.now()))
        call.agent_leg = side.leg
        self._note(
            call, "conference_left", {"who": "agent", "agent": agent.agent, "target": side.target}
        )
        self._rewire(call)
