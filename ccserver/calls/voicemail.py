"""Overflow to voicemail: a caller nobody could serve in time leaves a message.

The router has let go of the call (`Overflow` with kind ``voicemail``); the
caller hears a greeting and a beep and is recorded exactly as by the IVR's
``voicemail`` node (`FlowSteps._start_recording`: a WAV under
``data/recordings`` attached to the contact), for at most the queue's
``voicemail_seconds``. The platform hangs up when that time is up; a caller
who hangs up first keeps what it said. The contact's outcome is
``voicemail`` (``overflowed`` when nothing was recorded) and its
``voicemail_box`` attribute names the box (the queue's name by default).
"""

from __future__ import annotations

from acd.decisions import Overflow
from ccserver.calls.flows import FlowSteps
from ccserver.calls.leg import Leg
from ccserver.calls.model import Call
from ivr import flow as ivr

#: What an overflowing caller hears before the beep.
GREETING = "All our agents are busy. Please leave a message after the tone."


class QueueVoicemail(FlowSteps):
    """Records the message of a caller that overflowed to voicemail, then hangs up."""

    def _overflow_to_voicemail(self, call: Call, d: Overflow) -> None:
        box = d.destination or d.queue
        call.state = "voicemail"
        self.clock.stop(call.caller.endpoint)
        self.recorder.update(call.contact_id, attributes={**call.attributes, "voicemail_box": box})
        self._note(call, "voicemail", {"box": box, "queue": d.queue, "reason": d.reason})
        seconds = self.s.queue_voicemail_seconds.get(d.queue, 120.0)
        self._spawn(call, self._greet_and_record(call, seconds))

    async def _greet_and_record(self, call: Call, seconds: float) -> None:
        audio = await self.render(GREETING, call.voice)
        if call.state != "voicemail":
            return
        pb = self.clock.play(call.caller.endpoint, [audio])
        if not await pb.done or call.state != "voicemail":
            return
        self._note(call, "record", {"max_seconds": seconds, "voicemail": True})
        self._start_recording(call, ivr.Record(seconds, beep=True))

    def _queued_digit(self, call: Call, digit: str) -> bool:
        """A key during the message ends it, as in the IVR's voicemail node."""
        if call.state == "voicemail" and call.recording is not None:
            self._stop_recording(call)
            return True
        return super()._queued_digit(call, digit)

    def _recording_stopped(self, call: Call) -> None:
        """The message reached its longest (or a key ended it): hang up."""
        if call.state == "voicemail":
            outcome = self._message_left(call)
            self._hangup_leg(call, call.caller, "system", send_bye=True, outcome=outcome)
        super()._recording_stopped(call)

    def _queue_leg_gone(self, call: Call, leg: Leg, who: str) -> bool:
        """The caller hung up while leaving its message: keep what it said."""
        if call.state == "voicemail" and leg is call.caller:
            self._end_call(call, who, self._message_left(call))
            return True
        return super()._queue_leg_gone(call, leg, who)

    def _message_left(self, call: Call) -> str:
        """Close the recording (if still running) and say what the contact's outcome is."""
        call.state = "leaving"  # so the recording's end does not hang up a second time
        self._stop_recording(call)
        self._note(call, "recorded", {"path": call.recording_path, "voicemail": True})
        return "voicemail" if call.recording_path else "overflowed"


__all__ = ["GREETING", "QueueVoicemail"]
