"""Supervision: a supervisor's own phone listens to, whispers into or barges into a call.

The supervisor's phone is rung like any side leg (`ccserver.calls.sidelegs`);
once it answers, the call's media goes through the mixer with the mode's
hearing relation. The supervisor always hears caller and agent; in *listen*
nobody hears the supervisor, in *whisper* only the agent does, in *barge*
everyone does. The mode can change while connected; when the supervisor hangs
up (or is dropped through the API) the call is a plain two-party relay again.
"""

from __future__ import annotations

from ccserver.calls.model import Call
from ccserver.calls.sidelegs import MONITOR_MODES, FeatureRefused, SideLeg, SideLegs, side_of


class Supervision(SideLegs):
    """Listen, whisper and barge from the supervisor's registered phone."""

    def monitor(self, contact_id: str, extension: str, mode: str, by: str) -> Call:
        """Start monitoring `contact_id` from `extension`'s phone, or change the mode."""
        if mode not in MONITOR_MODES:
            raise FeatureRefused(
                422, "invalid-mode", f"mode must be one of {MONITOR_MODES}", {"mode": mode}
            )
        call = self._connected_call(contact_id)
        state = side_of(call)
        side = state.legs.get("monitor")
        if side is not None:
            if side.target != extension:
                raise FeatureRefused(
                    409,
                    "already-monitored",
                    f"the call is monitored from {side.target}",
                    {"extension": side.target},
                )
            if side.mode != mode:
                previous, side.mode = side.mode, mode
                if side.connected:
                    self._note(
                        call,
                        "monitor_mode",
                        {"supervisor": extension, "mode": mode, "from": previous},
                    )
                    self._rewire(call)
            return call
        if "consult" in state.legs:
            raise FeatureRefused(
                409, "consult-in-progress", "the agent is consulting; monitor after the transfer"
            )
        if call.agent_leg is not None and call.agent_leg.agent == extension:
            raise FeatureRefused(409, "own-call", "an agent cannot monitor its own call")
        contact, source = self._destination("extension", extension)
        side = SideLeg("monitor", extension, mode=mode, by=by)

        def started() -> None:
            self._note(call, "monitor_started", {"supervisor": extension, "mode": side.mode})

        def left() -> None:
            self._note(
                call,
                "monitor_stopped",
                {"supervisor": extension, "mode": side.mode, "by": "supervisor"},
            )

        side.on_answer = started
        side.on_left = left
        self._dial_side(call, side, contact, source)
        return call

    def monitor_stop(self, contact_id: str) -> Call:
        """Hang up the supervisor's leg (or stop it ringing)."""
        call = self.calls.get(contact_id)
        side = side_of(call).legs.get("monitor") if call is not None else None
        if call is None or side is None:
            raise FeatureRefused(
                404,
                "not-monitored",
                f"call {contact_id} is not monitored",
                {"contact_id": contact_id},
            )
        connected = side.connected
        self._drop_side(call, side)
        if connected:
            self._note(
                call, "monitor_stopped", {"supervisor": side.target, "mode": side.mode, "by": "api"}
            )
        self._rewire(call)
        return call
