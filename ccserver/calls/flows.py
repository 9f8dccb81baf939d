"""The IVR side of a call: carrying out a flow's actions on the caller's leg."""

from __future__ import annotations

from ccserver.calls.core import CallCore
from ccserver.calls.model import Call
from ivr import flow as ivr


class FlowSteps(CallCore):
    """Plays prompts, arms input timers and feeds key presses to the caller's `FlowRun`."""

    def _start_entry(self, call: Call, entry: tuple[str, str]) -> None:
        """Start the DID's flow, or queue the caller directly."""
        if entry[0] == "flow":
            run = ivr.FlowRun(self.s.flows[entry[1]], entry[1])
            call.flow = run
            self._flow_actions(call, run.start(self.now()))
        else:
            self._enqueue(call, entry[1], 0)

    def _flow_actions(self, call: Call, actions: list[ivr.Action]) -> None:
        for action in actions:
            if call.state == "ended":
                return
            if isinstance(action, ivr.Step):
                self._note(call, action.type, action.data)
            elif isinstance(action, ivr.Play):
                self._play_prompt(call, action)
            elif isinstance(action, ivr.StopPrompt):
                self.clock.stop(call.caller.endpoint)
            elif isinstance(action, ivr.Wait):
                self._arm_flow(call, action.deadline)
            elif isinstance(action, ivr.Enqueue):
                self._cancel_flow_timer(call)
                self._enqueue(call, action.queue, action.priority)
            elif isinstance(action, ivr.Hangup):
                self._cancel_flow_timer(call)
                self._hangup_leg(
                    call, call.caller, "system", send_bye=True, outcome="completed-ivr"
                )

    def _play_prompt(self, call: Call, action: ivr.Play) -> None:
        audio = self.prompt(action.text, action.voice)
        if audio is None:
            call.log.warning("prompt not rendered: %r", action.text)
            self.loop.call_soon(self._prompt_done, call, True)
            return
        pb = self.clock.play(call.caller.endpoint, [audio])
        pb.done.add_done_callback(lambda f: self._prompt_done(call, f.result()))

    def _prompt_done(self, call: Call, completed: bool) -> None:
        if not completed or call.flow is None or call.state != "ivr":
            return
        self._note(call, "prompt_played", {"node": call.flow.node_name})
        self._flow_actions(call, call.flow.prompt_finished(self.now()))

    def _arm_flow(self, call: Call, deadline: float) -> None:
        self._cancel_flow_timer(call)

        def fire() -> None:
            call.flow_timer = None
            if call.flow is not None and call.state == "ivr":
                self._flow_actions(call, call.flow.handle_timer(self.now()))

        call.flow_timer = self.loop.call_at(deadline, fire)

    def _cancel_flow_timer(self, call: Call) -> None:
        if call.flow_timer is not None:
            call.flow_timer.cancel()
            call.flow_timer = None

    def _on_digit(self, call: Call, digit: str, method: str) -> None:
        call.log.info("digit %s (%s)", digit, method)
        if call.state == "ivr" and call.flow is not None:
            # The flow knows the key, not how it came: the timeline's digit
            # entry says which (RFC 4733 event or SIP INFO), as it does outside
            # the IVR.
            actions = [
                ivr.Step(a.type, {**a.data, "method": method})
                if isinstance(a, ivr.Step) and a.type == "digit"
                else a
                for a in call.flow.digit(digit, self.now())
            ]
            self._flow_actions(call, actions)
        else:
            self._note(call, "digit", {"digit": digit, "method": method, "state": call.state})
