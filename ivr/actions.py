"""What a flow asks the call model to do, and the timeline entries it writes.

A `FlowRun` returns lists of these; the call model carries them out in order
and reports back with the matching event (`Play` -> ``prompt_finished``,
`Lookup` -> ``lookup_result``, `Record` -> ``recording_done``, `Wait` ->
``handle_timer``, `StartSpeech` -> ``speech_started`` / ``speech_result``).
Actions that need no answer (`SetAttribute`, `SurveyScore`,
`RequestCallback`, `Step`) are only carried out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Action",
    "Enqueue",
    "Hangup",
    "Lookup",
    "Play",
    "Record",
    "RequestCallback",
    "SetAttribute",
    "StartSpeech",
    "Step",
    "StopPrompt",
    "StopRecording",
    "StopSpeech",
    "SurveyScore",
    "Transfer",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Play:
    """Say ``text`` with the TTS voice ``voice``, or play the WAV ``file`` instead.

    Report ``prompt_finished`` when it has played to the end (not when stopped).
    ``file`` is as written in the flow: relative paths start at the config
    directory. ``barge_in`` says whether the caller may interrupt it.
    """

    text: str
    voice: str
    barge_in: bool = True
    file: str | None = None


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Stop the prompt playing now (barge-in): no ``prompt_finished`` is expected."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Call ``handle_timer`` at ``deadline`` (replaces any earlier deadline).

    A timer that fires after the flow moved on is ignored, so the call model
    need not cancel anything; `FlowRun.deadline` is the one that counts.
    """

    deadline: float


@dataclass(frozen=True, slots=True)
class StartSpeech:
    """Listen for one of ``phrases`` in ``language``; report ``speech_started`` and
    ``speech_result``.

    ``no_input_timeout`` and ``min_confidence`` are the recogniser's settings
    (`ivr.speech.SpeechService.start`). The flow times no-input itself from the
    end of the prompt, so a recogniser started during a prompt may be given more.
    """

    phrases: tuple[str, ...]
    language: str
    no_input_timeout: float
    min_confidence: float


@dataclass(frozen=True, slots=True)
class StopSpeech:
    """Stop listening and drop the recognition: its result is no longer wanted."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the customer directory by caller ``number`` or by ``account`` number.

    Answer with ``lookup_result``: the customer as variables, or None.
    """

    by: Literal["number", "account"]
    value: str


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Put the caller in ``queue``; the flow's part is over until the agent hangs up.

    ``priority`` is the flow's (0 to 100); the ACD adds the ``tier``'s own.
    ``skills`` maps each skill the agent needs to its minimum level.
    """

    queue: str
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """Send the call to an ``extension`` or an external ``number``.

    Report ``transfer_failed`` if it cannot be done (busy, unknown, no answer).
    """

    kind: Literal["extension", "number"]
    target: str


@dataclass(frozen=True, slots=True)
class Record:
    """Record the caller (after a beep if ``beep``) for at most ``max_seconds``.

    Attach the WAV to the contact, then report ``recording_done``.
    """

    max_seconds: float
    beep: bool = True


@dataclass(frozen=True, slots=True)
class StopRecording:
    """The caller pressed a key: end the recording now (``recording_done`` follows)."""


@dataclass(frozen=True, slots=True)
class RequestCallback:
    """Book a callback to ``number`` (by ``queue``'s agents when given)."""

    number: str
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class SetAttribute:
    """Call-attached data for the agent's screen pop: ``name`` is now ``value``."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SurveyScore:
    """Store the caller's satisfaction score (1 to ``scale``) on the contact."""

    score: int
    scale: int = 5


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call (BYE the caller) for ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Step:
    """A timeline entry: what the caller did or met in the flow."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


Action = (
    Play
    | StopPrompt
    | Wait
    | StartSpeech
    | StopSpeech
    | Lookup
    | Enqueue
    | Transfer
    | Record
    | StopRecording
    | RequestCallback
    | SetAttribute
    | SurveyScore
    | Hangup
    | Step
)
