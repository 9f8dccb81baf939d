"""The IVR side of a call: carrying out a flow's actions on the caller's leg.

`ivr.flow.FlowRun` decides (play this, listen for that, look the caller up,
queue them); this module does it with the call's real media and services and
feeds the results back as events with the loop's time.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from ccserver.calls.core import CallCore
from ccserver.calls.model import Call
from ccserver.media.g711 import decoder_for
from ccserver.media.player import EncodedAudio
from ivr import flow as ivr
from ivr.audio import load_wav_8k, tone
from ivr.schedule import system_wall_clock

#: Recording beep: 400 ms at 1 kHz, the tone callers know from voicemail.
BEEP = EncodedAudio(tone([1000.0], 0.4, level_dbfs=-12.0), "beep")


def customer_variables(customer: Any, account: str | None = None) -> dict[str, Any] | None:
    """A customer as the flow's variables (names documented in docs/ivr.md)."""
    if customer is None:
        return None
    balance = None
    if account is not None:
        for acc in getattr(customer, "accounts", ()):
            if getattr(acc, "number", None) == account:
                balance = getattr(acc, "balance", None)
    return {
        "customer_id": customer.id,
        "customer_name": customer.name,
        "tier": str(customer.tier).lower(),
        "customer_language": customer.language,
        "segment": customer.segment,
        "account_manager": customer.account_manager,
        "account_balance": balance,
    }


class FlowSteps(CallCore):
    """Plays prompts, listens for keys and speech, looks callers up, records, queues."""

    def _start_entry(self, call: Call, entry: tuple[str, str]) -> None:
        """Start the DID's flow, or queue the caller directly."""
        if entry[0] == "flow":
            self._run_flow(call, entry[1])
        else:
            self._enqueue(call, entry[1], 0)

    def _run_flow(self, call: Call, name: str) -> None:
        flow = self.s.flows[name]
        call.state = "ivr"
        call.voice = flow.language
        run = ivr.FlowRun(
            flow,
            name,
            flows=self.s.flows,
            variables={"caller": call.caller_number, "dialed": call.dialed},
            wall_clock=system_wall_clock(self.loop.time),
            call_id=call.contact_id,
        )
        call.flow = run
        self._flow_actions(call, run.start(self.now()))

    def _flow_actions(self, call: Call, actions: list[ivr.Action]) -> None:
        for action in actions:
            if call.state == "ended":
                return
            if isinstance(action, ivr.Step):
                self._note(call, action.type, action.data)
            elif isinstance(action, ivr.Play):
                self._play_prompt(call, action)
            elif isinstance(action, ivr.StopPrompt):
                call.play_seq += 1
                self.clock.stop(call.caller.endpoint)
            elif isinstance(action, ivr.Wait):
                self._arm_flow(call, action.deadline)
            elif isinstance(action, ivr.StartSpeech):
                self._start_speech(call, action)
            elif isinstance(action, ivr.StopSpeech):
                self._stop_speech(call)
            elif isinstance(action, ivr.Lookup):
                self._spawn(call, self._lookup(call, action))
            elif isinstance(action, ivr.SetAttribute):
                call.attributes[action.name] = action.value
                self.recorder.update(call.contact_id, attributes=dict(call.attributes))
            elif isinstance(action, ivr.SurveyScore):
                self.recorder.update(call.contact_id, survey_score=action.score)
            elif isinstance(action, ivr.Record):
                self._start_recording(call, action)
            elif isinstance(action, ivr.StopRecording):
                self._stop_recording(call)
            elif isinstance(action, ivr.RequestCallback):
                call.callback_number = action.number
                self.recorder.update(call.contact_id, attributes={
                    **call.attributes, "callback_number": action.number,
                    "callback_queue": action.queue})  # fmt: skip
            elif isinstance(action, ivr.Transfer):
                self._cancel_flow_timer(call)
                self._stop_speech(call)
                if action.kind == "extension":
                    self._transfer_to_extension(call, action.target)
                else:
                    self._transfer_to_number(call, action.target)
            elif isinstance(action, ivr.Enqueue):
                self._cancel_flow_timer(call)
                self._stop_speech(call)
                if action.tier is not None:
                    call.tier = action.tier.lower()
                self._enqueue(call, action.queue, action.priority, dict(action.skills) or None)
            elif isinstance(action, ivr.Hangup):
                self._cancel_flow_timer(call)
                self._stop_speech(call)
                outcome = "callback" if call.callback_number else (
                    "voicemail" if call.recording_path else "completed-ivr")  # fmt: skip
                self._hangup_leg(call, call.caller, "system", send_bye=True, outcome=outcome)

    def _feed(self, call: Call, event: Any) -> None:
        """Feed one event to the call's run, if it is still in the IVR."""
        if call.flow is None or call.state != "ivr":
            return
        self._flow_actions(call, event(call.flow, self.now()))

    # -- prompts ------------------------------------------------------------------
    def _play_prompt(self, call: Call, action: ivr.Play) -> None:
        call.voice = action.voice or call.voice
        call.play_seq += 1
        seq = call.play_seq
        if action.file:
            audio: EncodedAudio | None = self._audio_file(action.file)
        else:
            audio = self.prompt(action.text, action.voice)
        if audio is not None:
            self._start_playback(call, audio, seq)
            return
        self._spawn(call, self._render_and_play(call, action, seq))

    async def _render_and_play(self, call: Call, action: ivr.Play, seq: int) -> None:
        # Prompts with variables ("your balance is ...") are synthesised now.
        audio = await self.render(action.text, action.voice)
        if call.play_seq == seq and call.state == "ivr":
            self._start_playback(call, audio, seq)

    def _audio_file(self, path: str) -> EncodedAudio:
        full = Path(path) if Path(path).is_absolute() else self.s.config_dir / path
        cached = self.audio_files.get(str(full))
        if cached is None:
            cached = self.audio_files[str(full)] = EncodedAudio(load_wav_8k(full), str(full))
        return cached

    def _start_playback(self, call: Call, audio: EncodedAudio, seq: int) -> None:
        pb = self.clock.play(call.caller.endpoint, [audio])
        pb.done.add_done_callback(
            lambda f: self._prompt_done(call, f.result()) if call.play_seq == seq else None
        )

    def _prompt_done(self, call: Call, completed: bool) -> None:
        if not completed or call.flow is None or call.state != "ivr":
            return
        self._note(call, "prompt_played", {"node": call.flow.node_name})
        self._flow_actions(call, call.flow.prompt_finished(self.now()))

    # -- timers and keys ---------------------------------------------------------------
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
            self._flow_actions(call, call.flow.digit(digit, self.now(), method))
        elif not self._queued_digit(call, digit):  # a queue callback key?
            self._note(call, "digit", {"digit": digit, "method": method, "state": call.state})

    # -- speech --------------------------------------------------------------------------
    def _start_speech(self, call: Call, action: ivr.StartSpeech) -> None:
        self._stop_speech(call)
        service = self.speech
        if service is None or service.model_for(action.language) is None:
            # No model for this language: keys still work, and the flow's own
            # timer handles silence.
            return
        self._spawn(call, self._listen(call, action))

    async def _listen(self, call: Call, action: ivr.StartSpeech) -> None:
        assert self.speech is not None
        stream = await self.speech.start(
            list(action.phrases),
            action.language,
            no_input_timeout=action.no_input_timeout,
            min_confidence=action.min_confidence,
            call_id=call.contact_id,
        )
        if call.state != "ivr":
            stream.close()
            return
        call.speech = stream
        endpoint = call.caller.endpoint
        endpoint.listeners.append(stream.listener)

        async def started() -> None:
            await stream.speech_started.wait()
            if call.speech is stream:
                self._feed(call, lambda run, now: run.speech_started(now))

        watcher = self.loop.create_task(started())
        try:
            result = await stream.result
        finally:
            watcher.cancel()
            if stream.listener in endpoint.listeners:
                endpoint.listeners.remove(stream.listener)
            stream.close()
        if call.speech is stream:
            call.speech = None
            self._feed(call, lambda run, now: run.speech_result(result, now))

    def _stop_speech(self, call: Call) -> None:
        stream, call.speech = call.speech, None
        if stream is not None:
            if stream.listener in call.caller.endpoint.listeners:
                call.caller.endpoint.listeners.remove(stream.listener)
            stream.stop()

    # -- lookups --------------------------------------------------------------------------
    async def _lookup(self, call: Call, action: ivr.Lookup) -> None:
        customer = None
        account = None
        if action.by == "number":
            customer = call.customer if action.value == call.caller_number else None
            if customer is None and self.lookup is not None:
                customer = await self.lookup(action.value, call.contact_id)
        elif self.lookup_account is not None:
            account = action.value
            customer = await self.lookup_account(action.value, call.contact_id)
        if customer is not None and call.customer is None:
            call.customer = customer
            call.tier = str(customer.tier).lower()
            self.recorder.update(call.contact_id, customer_id=customer.id)
        found = customer_variables(customer, account)
        self._feed(call, lambda run, now: run.lookup_result(found, now))

    # -- voicemail ----------------------------------------------------------------------
    def _start_recording(self, call: Call, action: ivr.Record) -> None:
        """Record what the caller says after the beep, to a WAV attached to the contact."""
        folder = self.s.data_dir / "recordings"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{call.contact_id}-{int(time.time())}.wav"
        chunks: list[np.ndarray] = []
        limit = int(action.max_seconds * 8000)

        def listen(payload: bytes, codec: str) -> None:
            if sum(len(c) for c in chunks) < limit:
                chunks.append(decoder_for(codec)(payload))

        def start() -> None:
            call.caller.endpoint.listeners.append(listen)
            self._arm_recording(call, action.max_seconds)

        call.recording = (path, chunks, listen)
        if action.beep:
            pb = self.clock.play(call.caller.endpoint, [BEEP])
            pb.done.add_done_callback(lambda f: start() if call.recording else None)
        else:
            start()

    def _arm_recording(self, call: Call, seconds: float) -> None:
        self._cancel_flow_timer(call)
        call.flow_timer = self.loop.call_later(seconds, self._stop_recording, call)

    def _stop_recording(self, call: Call) -> None:
        rec, call.recording = call.recording, None
        if rec is None:
            return
        path, chunks, listen = rec
        if listen in call.caller.endpoint.listeners:
            call.caller.endpoint.listeners.remove(listen)
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        seconds = len(pcm) / 8000
        kept: str | None = None
        if len(pcm):
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(pcm.astype("<i2").tobytes())
            kept = str(path)
            call.recording_path = kept
            self.recorder.update(call.contact_id, recording=kept)
        self._feed(call, lambda run, now: run.recording_done(kept, seconds, now))
        self._recording_stopped(call)


__all__ = ["FlowSteps", "customer_variables"]
