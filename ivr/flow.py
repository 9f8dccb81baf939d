"""An IVR flow's steps as a state machine: events in, actions out.

`FlowRun` knows nothing of RTP, SIP or databases. The call model feeds it what
happened, each time with ``now`` (the loop's clock): the prompt finished, the
caller pressed a key or spoke, the customer lookup answered, the recording is
done, a timer fired, the agent hung up. It carries out the actions returned
(`ivr.actions`): play this, listen for these phrases, look that customer up,
put the caller in that queue, hang up. Every step also comes out as a `Step`
for the contact's timeline, so supervisors see where callers go and where
they give up.

One run is one caller's way through a flow and the subflows it calls. It is
always in one *phase*, and `_ACCEPTS` says which events matter in which
phase; anything else is stale (a timer armed before the caller pressed a key,
a prompt that finished after it was stopped) and ignored. Where the run goes
from a node is the flow's business: the config decides, not this module.

Input nodes (menu, collect, speech, survey) share one cycle: prompt, wait
``timeout`` seconds from the prompt's end, and on silence or a wrong answer
apologise and ask again, ``retries`` times, then take the fallback. A key
(or the start of speech) stops a prompt that allows barge-in. Keys pressed
during an announcement are kept for the next input node (type-ahead), so
callers who know the menus need not listen to them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from ccserver.config.flows import (
    BranchNode,
    CallbackNode,
    CollectNode,
    Flow,
    GotoNode,
    HangupNode,
    InputNode,
    LookupNode,
    MenuNode,
    Node,
    PlayNode,
    PromptText,
    QueueNode,
    ScheduleNode,
    SetNode,
    SpeechNode,
    SubflowNode,
    SurveyNode,
    TransferNode,
    VoicemailNode,
)
from ivr.actions import (
    Action,
    Enqueue,
    Hangup,
    Lookup,
    Play,
    Record,
    RequestCallback,
    SetAttribute,
    StartSpeech,
    Step,
    StopPrompt,
    StopRecording,
    StopSpeech,
    SurveyScore,
    Transfer,
    Wait,
)
from ivr.nodes import (
    PendingPlay,
    barge_in,
    branch_target,
    customer_variables,
    find_phrase,
    input_retries,
    input_timeout,
    inter_digit_timeout,
    min_confidence,
    phrases_for,
    prompt_plays,
    prompt_texts,
    queue_request,
    set_values,
)
from ivr.schedule import WallClock, is_open, system_wall_clock
from ivr.variables import Value, as_text, render

__all__ = [
    "MAX_HOPS",
    "MAX_SUBFLOWS",
    "SPEECH_RESULT_WAIT",
    "Action",
    "Enqueue",
    "FlowError",
    "FlowRun",
    "Hangup",
    "Lookup",
    "Phase",
    "Play",
    "Record",
    "RequestCallback",
    "SetAttribute",
    "SpeechOutcome",
    "StartSpeech",
    "Step",
    "StopPrompt",
    "StopRecording",
    "StopSpeech",
    "SurveyScore",
    "Transfer",
    "Wait",
    "prompt_texts",
]

log = logging.getLogger(__name__)

MAX_HOPS = 200
"""Nodes entered for one event before the run is judged to loop (set -> branch -> set...)."""
MAX_SUBFLOWS = 8
"""Subflows inside subflows: deeper is a flow calling itself by mistake."""
SPEECH_RESULT_WAIT = 15.0
"""Seconds after the caller began speaking to wait for the recogniser's verdict."""

Phase = Literal[
    "idle",
    "moving",
    "prompt",
    "input",
    "collecting",
    "speech",
    "lookup",
    "record",
    "handed-off",
    "done",
]

_ACCEPTS: dict[Phase, frozenset[str]] = {
    "idle": frozenset({"start"}),
    # Between two nodes, within one event: nothing can arrive.
    "moving": frozenset(),
    # A prompt (or a sequence of segments) is playing.
    "prompt": frozenset({"prompt_finished", "digit", "speech_started", "speech_result"}),
    # An input node waits for the first key or word, until the deadline.
    "input": frozenset({"digit", "speech_started", "speech_result", "timer"}),
    # A collect node has some digits and waits for more (inter-digit deadline).
    "collecting": frozenset({"digit", "timer"}),
    # The caller is speaking: wait for the recogniser's result (or a key).
    "speech": frozenset({"digit", "speech_result", "timer"}),
    # The customer directory was asked; keys typed meanwhile are kept.
    "lookup": frozenset({"lookup_result", "digit", "timer"}),
    "record": frozenset({"recording_done", "digit"}),
    # Queued or transferred: the flow waits for the agent's hang-up (survey).
    "handed-off": frozenset({"agent_hung_up", "transfer_failed"}),
    "done": frozenset(),
}
"""Which events matter in which phase; the others are stale and ignored."""

Status = Literal["running", "queued", "transferred", "ended"]


class FlowError(RuntimeError):
    """The call model drove the run wrongly (our bug, not the caller's)."""


class SpeechOutcome(Protocol):
    """What `speech_result` needs of a result (`ivr.speech.SpeechResult` has it)."""

    @property
    def outcome(self) -> str: ...

    @property
    def phrase(self) -> str | None: ...

    @property
    def confidence(self) -> float: ...

    @property
    def text(self) -> str: ...


class _RunLog(logging.LoggerAdapter[logging.Logger]):
    """Every log line names its call (STYLE habit 9)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['call'] if self.extra else '-'}] {msg}", kwargs


class FlowRun:
    """One caller's way through one flow (and the flows it calls).

    ``flows`` holds the flows that ``subflow`` and ``goto`` may enter (by
    name); ``variables`` the call's own (``caller``, ``dialed``);
    ``wall_clock`` maps ``now`` to the date for schedule nodes.
    """

    def __init__(
        self,
        flow: Flow,
        name: str = "",
        *,
        flows: Mapping[str, Flow] | None = None,
        variables: Mapping[str, Value] | None = None,
        wall_clock: WallClock | None = None,
        call_id: str = "",
    ) -> None:
        self.name = name or flow.name
        self.flows: dict[str, Flow] = {**(flows or {}), self.name: flow}
        self.flow = flow
        self._top = flow
        self.node_name = ""
        self.node: Node | None = None
        self.variables: dict[str, Value] = {"language": flow.language, **(variables or {})}
        self.phase: Phase = "idle"
        self.status: Status = "running"
        self.log = _RunLog(log, {"call": call_id or "-"})
        self._wall_clock = wall_clock or system_wall_clock()
        self._deadline: float | None = None
        self._queue: list[PendingPlay] = []
        self._tries = 0
        self._digits = ""
        self._typeahead: list[str] = []
        self._listening = False
        self._stopping = False
        self._stack: list[tuple[str, str | None]] = []
        self._survey: tuple[str, str] | None = None
        self._hops = 0
        self._entries = 0

    @property
    def deadline(self) -> float | None:
        """When `handle_timer` is due, if a timer is armed."""
        return self._deadline

    @property
    def finished(self) -> bool:
        """Whether the flow is done with the call (queued, transferred or ended)."""
        return self.status != "running"

    @property
    def wants_survey(self) -> bool:
        """Whether the caller should stay on the line for a survey when the agent hangs up."""
        return self.status == "queued" and self._survey is not None

    # -- events -------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Enter the flow's start node."""
        if self.phase != "idle":
            raise FlowError("start() called twice")
        self._hops = 0
        return self._enter(self.flow.start, now)

    def prompt_finished(self, now: float) -> list[Action]:
        """The last `Play` played to its end."""
        if not self._accepts("prompt_finished"):
            return []
        self._hops = 0
        if self._queue:
            return self._emit_play(*self._queue.pop(0))
        self._set_phase("moving")
        node = self.node
        if isinstance(node, PlayNode):
            return self._next(node.next, now)
        if isinstance(node, VoicemailNode):
            return self._record(node)
        if isinstance(node, InputNode):
            return self._await_input(node, now)
        return []

    def digit(self, digit: str, now: float, method: str | None = None) -> list[Action]:
        """The caller pressed ``digit`` (``method``: how it came, for the timeline)."""
        self._hops = 0
        data: dict[str, Any] = {"digit": digit, "node": self.node_name}
        if method:
            data["method"] = method
        step = Step("digit", data)
        if not self._accepts("digit"):
            data["ignored"] = True
            return [step]
        node = self.node
        if self.phase == "record":
            if self._stopping:
                return [step]
            self._stopping = True
            return [step, StopRecording()]
        if self.phase == "lookup":
            self._typeahead.append(digit)
            return [step]
        if self.phase == "prompt":
            barge = self._barge(node)
            if isinstance(node, PlayNode):
                # Type-ahead: the key is kept for the next input node.
                self._typeahead.append(digit)
                if not barge:
                    return [step]
                return [step, *self._stop_prompt(), *self._next(node.next, now)]
            if not barge:
                data["ignored"] = True
                return [step]
            if isinstance(node, VoicemailNode):
                return [step, *self._stop_prompt(), *self._record(node)]
            return [step, *self._stop_prompt(), *self._input_digit(digit, now)]
        return [step, *self._input_digit(digit, now)]

    def speech_started(self, now: float) -> list[Action]:
        """The recogniser heard the caller begin to speak: barge-in, and wait for the words."""
        if not self._listening or not self._accepts("speech_started"):
            return []
        actions: list[Action] = [Step("speech_started", {"node": self.node_name})]
        actions += self._stop_prompt()
        self._set_phase("speech")
        self._deadline = now + SPEECH_RESULT_WAIT
        return [*actions, Wait(self._deadline)]

    def speech_result(self, result: SpeechOutcome, now: float) -> list[Action]:
        """The recogniser's verdict on what the caller said."""
        if not self._listening or not self._accepts("speech_result"):
            return []
        self._hops = 0
        self._listening = False
        node = self.node
        assert isinstance(node, MenuNode | SpeechNode)
        if result.outcome == "no-input":
            deadline = self._deadline
            waiting = self.phase == "input" and deadline is not None and now < deadline
            if self.phase == "prompt" or waiting:
                # The recogniser gave up before the flow's own timeout (counted from
                # the prompt's end): listen again and let the flow's timer decide.
                return self._listen(node)
            return self._failed("no_input", now, {"by": "speech"})
        phrases = phrases_for(node, self._language())
        confident = result.confidence >= min_confidence(node, self.flow.defaults)
        target = find_phrase(phrases, result.phrase) if result.outcome == "match" else None
        data: dict[str, Any] = {
            "node": self.node_name,
            "outcome": result.outcome,
            "phrase": result.phrase,
            "confidence": round(result.confidence, 3),
            "text": result.text,
        }
        if target is not None and not confident:
            data["low_confidence"] = True
        actions: list[Action] = [Step("speech", data), *self._stop_prompt()]
        self._deadline = None
        if target is None or not confident:
            return actions + self._failed("no_match", now, {"by": "speech"})
        if isinstance(node, MenuNode):
            branch = {"node": self.node_name, "phrase": result.phrase, "to": target}
            return [*actions, Step("branch", branch), *self._enter(target, now)]
        return actions + self._answer(node, target, now, {"phrase": result.phrase})

    def lookup_result(self, result: Mapping[str, Any] | None, now: float) -> list[Action]:
        """The customer directory's answer: the customer as variables, or None."""
        if not self._accepts("lookup_result"):
            return []
        self._hops = 0
        return self._lookup_done(result, now, timed_out=False)

    def recording_done(self, path: str | None, seconds: float, now: float) -> list[Action]:
        """The voicemail recording ended (``path`` None if nothing was kept)."""
        node = self.node
        if not self._accepts("recording_done") or not isinstance(node, VoicemailNode):
            return []
        self._hops = 0
        data = {"node": self.node_name, "path": path, "seconds": round(seconds, 2)}
        return [Step("recorded", data), *self._next(node.next, now)]

    def transfer_failed(self, now: float, reason: str = "") -> list[Action]:
        """The `Transfer` could not be carried out."""
        node = self.node
        if self.status != "transferred" or not isinstance(node, TransferNode):
            return []
        self._hops = 0
        self.status = "running"
        step = Step("transfer_failed", {"node": self.node_name, "reason": reason})
        if node.failed is None:
            return [step, *self._end("transfer-failed")]
        return [step, *self._enter(node.failed, now)]

    def agent_hung_up(self, now: float) -> list[Action]:
        """The agent ended the call: run the flow's survey, if it has one.

        Returns nothing when there is no survey; the call model then ends the
        call as usual. Check `wants_survey` to know before the agent's BYE.
        """
        if not self.wants_survey or self._survey is None:
            return []
        self._hops = 0
        flow, node = self._survey
        self._survey = None
        self._stack.clear()
        self._switch(flow)
        self.status = "running"
        return self._enter(node, now)

    def handle_timer(self, now: float) -> list[Action]:
        """The deadline of the last `Wait` (or a later one) has come."""
        if self._deadline is None or now < self._deadline or not self._accepts("timer"):
            return []
        self._hops = 0
        self._deadline = None
        node = self.node
        if self.phase == "input":
            return self._failed("no_input", now, {})
        if self.phase == "collecting" and isinstance(node, CollectNode):
            return self._collect_done(node, now, "timeout")
        if self.phase == "speech":
            return self._failed("no_match", now, {"by": "speech", "reason": "no result"})
        if self.phase == "lookup":
            return self._lookup_done(None, now, timed_out=True)
        return []

    # -- entering nodes -----------------------------------------------------------------

    def _enter(self, name: str, now: float) -> list[Action]:
        self._hops += 1
        if self._hops > MAX_HOPS:
            self.log.warning("flow %s loops at node %s", self.name, name)
            return self._end("loop")
        actions = self._leave()
        node = self.flow.nodes.get(name)
        if node is None:
            # Config validation refuses such flows; guard anyway.
            return actions + self._end(f"missing-node:{name}")
        self.node_name = name
        self.node = node
        self._entries += 1
        self._tries = 0
        self._digits = ""
        data: dict[str, Any] = {"node": name, "kind": node.kind}
        if self._stack:
            data["flow"] = self.name
        actions.append(Step("node", data))
        return actions + self._run(node, now)

    def _run(self, node: Node, now: float) -> list[Action]:
        """What entering ``node`` does (the node kinds, one by one)."""
        match node:
            case PlayNode():
                if self._typeahead and self._barge(node):
                    return self._next(node.next, now)  # the caller knows where to go
                return self._start_prompts(self._plays(node.prompt, node.audio, node))
            case InputNode():
                return self._enter_input(node, now)
            case VoicemailNode():
                plays = self._plays(node.prompt, node.audio, node)
                return self._start_prompts(plays) if plays else self._record(node)
            case BranchNode():
                target, case = branch_target(node, self.variables)
                data: dict[str, Any] = {"node": self.node_name, "to": target}
                data.update({"case": case} if case is not None else {"default": True})
                return [Step("branch", data), *self._enter(target, now)]
            case SetNode():
                values = set_values(node, self.variables)
                step = Step("set", {"node": self.node_name, "values": dict(values)})
                return [step, *self._assign(values), *self._next(node.next, now)]
            case LookupNode():
                value = render(node.value or "{caller}", self.variables).text
                self._set_phase("lookup")
                self._deadline = now + node.timeout
                return [Lookup(node.by, value), Wait(self._deadline)]
            case ScheduleNode():
                return self._schedule(node, now)
            case QueueNode():
                request = queue_request(node, self.variables)
                return [*self._hand_off("queued"), request]
            case TransferNode():
                if node.extension is not None:
                    transfer = Transfer("extension", node.extension)
                else:
                    transfer = Transfer("number", render(node.number or "", self.variables).text)
                step = Step("transfer", {"node": self.node_name, "to": transfer.target})
                return [step, *self._hand_off("transferred"), transfer]
            case CallbackNode():
                return self._callback(node, now)
            case HangupNode():
                return self._end(node.reason or "hangup-node")
            case GotoNode():
                if node.flow is not None and not self._switch(node.flow):
                    return self._end(f"missing-flow:{node.flow}")
                return self._enter(node.node or self.flow.start, now)
            case SubflowNode():
                if len(self._stack) >= MAX_SUBFLOWS:
                    return self._end("subflow-depth")
                caller = self.name
                if not self._switch(node.flow):
                    return self._end(f"missing-flow:{node.flow}")
                self._stack.append((caller, node.next))
                step = Step("subflow", {"node": self.node_name, "flow": node.flow})
                return [step, *self._enter(self.flow.start, now)]
        raise FlowError(f"no step for node kind {node.kind!r}")

    def _next(self, target: str | None, now: float) -> list[Action]:
        """Go to ``target``; without one the flow ends (a subflow returns to its caller)."""
        if target is not None:
            return self._enter(target, now)
        if not self._stack:
            return self._end("flow-end")
        caller, back_to = self._stack.pop()
        step = Step("return", {"from": self.name, "to": caller})
        self._switch(caller)
        return [step, *self._next(back_to, now)]

    def _switch(self, name: str) -> bool:
        flow = self.flows.get(name)
        if flow is None:
            return False
        self.flow, self.name = flow, name
        return True

    def _leave(self) -> list[Action]:
        """Tidy up the node being left: its prompt, its recogniser, its timer."""
        actions = self._stop_prompt() + self._stop_listening()
        self._deadline = None
        self._queue.clear()
        return actions

    def _end(self, reason: str) -> list[Action]:
        actions = self._leave()
        self._typeahead.clear()
        self.status = "ended"
        self._set_phase("done")
        return [*actions, Hangup(reason)]

    def _hand_off(self, status: Status) -> list[Action]:
        """Queued or transferred: remember the survey to offer when the agent hangs up."""
        actions = self._leave()
        self._typeahead.clear()
        self.status = status
        self._set_phase("handed-off")
        owners = [self.name, *(name for name, _ in reversed(self._stack))]
        self._survey = next(
            ((name, survey) for name in owners if (survey := self.flows[name].survey)), None
        )
        return actions

    # -- prompts ------------------------------------------------------------------------

    def _language(self) -> str:
        return as_text(self.variables.get("language") or self.flow.language)

    def _barge(self, node: object) -> bool:
        return barge_in(node, self.flow.defaults)

    def _plays(
        self, prompt: PromptText | None, audio: PromptText | None, node: object
    ) -> list[PendingPlay]:
        return prompt_plays(
            prompt,
            audio,
            barge=self._barge(node),
            language=self._language(),
            flow_language=self.flow.language,
            variables=self.variables,
        )

    def _start_prompts(self, plays: list[PendingPlay]) -> list[Action]:
        self._queue = plays[1:]
        self._set_phase("prompt")
        return self._emit_play(*plays[0])

    def _emit_play(self, play: Play, missing: tuple[str, ...]) -> list[Action]:
        data: dict[str, Any] = {"node": self.node_name, "voice": play.voice}
        if play.file is not None:
            data["file"] = play.file
        else:
            data["text"] = play.text
        if missing:
            data["missing"] = list(missing)
        return [Step("prompt", data), play]

    def _stop_prompt(self) -> list[Action]:
        """Barge-in: the prompt stops now and the rest of its segments are dropped."""
        if self.phase != "prompt":
            return []
        self._queue.clear()
        self._set_phase("moving")
        return [StopPrompt()]

    # -- input nodes --------------------------------------------------------------------

    def _enter_input(self, node: InputNode, now: float) -> list[Action]:
        if not self._typeahead or isinstance(node, SurveyNode):
            return self._attempt(node, now, None)
        # Keys typed ahead answer this node without its prompt.
        self._set_phase("input")
        entries = self._entries
        actions: list[Action] = []
        while (
            self._typeahead and self._entries == entries and self.phase in ("input", "collecting")
        ):
            actions += self._input_digit(self._typeahead.pop(0), now)
        return actions

    def _attempt(self, node: InputNode, now: float, lead: PromptText | None) -> list[Action]:
        """Ask (again): the apology ``lead`` if any, then the node's prompt."""
        plays = self._plays(lead, None, node) + self._plays(node.prompt, node.audio, node)
        actions: list[Action] = []
        if plays:
            actions += self._start_prompts(plays)
        if self._barge(node) and self._listens(node) and not self._listening:
            actions += self._listen(node)
        if not plays:
            actions += self._await_input(node, now)
        return actions

    def _await_input(self, node: InputNode, now: float) -> list[Action]:
        """The prompt is over: the no-input timeout runs from now."""
        self._set_phase("input")
        self._deadline = now + input_timeout(node, self.flow.defaults)
        actions: list[Action] = [Wait(self._deadline)]
        if self._listens(node) and not self._listening:
            actions += self._listen(node)
        return actions

    def _input_digit(self, digit: str, now: float) -> list[Action]:
        node = self.node
        actions = self._stop_listening()
        self._deadline = None
        self._set_phase("moving")
        match node:
            case MenuNode():
                target = node.choices.get(digit)
                if target is None:
                    return actions + self._failed("no_match", now, {"digit": digit})
                branch = {"node": self.node_name, "digit": digit, "to": target}
                return [*actions, Step("branch", branch), *self._enter(target, now)]
            case CollectNode():
                return actions + self._collect_digit(node, digit, now)
            case SpeechNode():
                value = node.keys.get(digit)
                if value is None:
                    return actions + self._failed("no_match", now, {"digit": digit})
                return actions + self._answer(node, value, now, {"digit": digit})
            case SurveyNode():
                if not digit.isdigit() or not 1 <= int(digit) <= node.max_score:
                    return actions + self._failed("no_match", now, {"digit": digit})
                score = int(digit)
                data = {"node": self.node_name, "score": score, "scale": node.max_score}
                return [
                    *actions,
                    Step("survey", data),
                    SurveyScore(score, node.max_score),
                    *self._assign({node.variable: score}),
                    *self._next(node.next, now),
                ]
        return actions

    def _collect_digit(self, node: CollectNode, digit: str, now: float) -> list[Action]:
        if node.terminator and digit == node.terminator:
            return self._collect_done(node, now, "terminator")
        self._digits += digit
        if len(self._digits) >= node.max_length:
            return self._collect_done(node, now, "max_length")
        self._set_phase("collecting")
        self._deadline = now + inter_digit_timeout(node, self.flow.defaults)
        return [Wait(self._deadline)]

    def _collect_done(self, node: CollectNode, now: float, ended_by: str) -> list[Action]:
        digits, self._digits = self._digits, ""
        self._set_phase("moving")
        shown = "*" * len(digits) if node.mask else digits
        if not digits:
            return self._failed("no_match", now, {"reason": "empty"})
        if len(digits) < node.min_length:
            return self._failed("no_match", now, {"input": shown, "reason": "too short"})
        if node.pattern is not None and not re.fullmatch(node.pattern, digits):
            return self._failed("no_match", now, {"input": shown, "reason": "pattern"})
        data = {
            "node": self.node_name,
            "variable": node.variable,
            "value": shown,
            "ended_by": ended_by,
        }
        return [
            Step("collected", data),
            *self._assign({node.variable: digits}),
            *self._next(node.next, now),
        ]

    def _answer(
        self, node: SpeechNode, value: str, now: float, how: dict[str, Any]
    ) -> list[Action]:
        data = {"node": self.node_name, "variable": node.variable, "value": value, **how}
        return [
            Step("answer", data),
            *self._assign({node.variable: value}),
            *self._next(node.next, now),
        ]

    def _failed(self, why: str, now: float, data: dict[str, Any]) -> list[Action]:
        """No input or no match: one attempt used; ask again or take the fallback."""
        node = self.node
        assert isinstance(node, InputNode)
        self._tries += 1
        self._typeahead.clear()
        self._digits = ""
        self._deadline = None
        self._set_phase("moving")
        actions: list[Action] = self._stop_listening()
        actions.append(Step(why, {"node": self.node_name, "attempt": self._tries, **data}))
        if self._tries > input_retries(node, self.flow.defaults):
            target = getattr(node, why) or node.fallback or self.flow.defaults.fallback
            if target is None:
                return actions + self._end(f"{why}-exhausted")
            fallback = {"node": self.node_name, "why": why, "to": target}
            return [*actions, Step("fallback", fallback), *self._enter(target, now)]
        defaults = self.flow.defaults
        if why == "no_input":
            lead = node.no_input_prompt or defaults.no_input_prompt
        else:
            lead = node.no_match_prompt or defaults.no_match_prompt
        return actions + self._attempt(node, now, lead)

    def _listens(self, node: InputNode) -> bool:
        return isinstance(node, MenuNode | SpeechNode) and bool(phrases_for(node, self._language()))

    def _listen(self, node: MenuNode | SpeechNode | InputNode) -> list[Action]:
        assert isinstance(node, MenuNode | SpeechNode)
        self._listening = True
        defaults = self.flow.defaults
        phrases = tuple(phrases_for(node, self._language()))
        timeout = input_timeout(node, defaults)
        return [StartSpeech(phrases, self._language(), timeout, min_confidence(node, defaults))]

    def _stop_listening(self) -> list[Action]:
        if not self._listening:
            return []
        self._listening = False
        return [StopSpeech()]

    # -- other nodes --------------------------------------------------------------------

    def _lookup_done(
        self, result: Mapping[str, Any] | None, now: float, *, timed_out: bool
    ) -> list[Action]:
        node = self.node
        assert isinstance(node, LookupNode)
        self._deadline = None
        self._set_phase("moving")
        values = customer_variables(result)
        found = result is not None
        data: dict[str, Any] = {"node": self.node_name, "by": node.by, "found": found}
        if timed_out:
            data["timeout"] = True
        if "customer_id" in values:
            data["customer_id"] = values["customer_id"]
        actions: list[Action] = [Step("lookup", data), *self._assign(values)]
        return actions + self._next(node.found if found else node.not_found, now)

    def _schedule(self, node: ScheduleNode, now: float) -> list[Action]:
        opening = is_open(node, self._wall_clock(now))
        if opening.open:
            target = node.open
        elif opening.holiday:
            target = node.holiday or node.closed
        else:
            target = node.closed
        data = {
            "node": self.node_name,
            "open": opening.open,
            "holiday": opening.holiday,
            "local": opening.local.isoformat(timespec="minutes"),
            "to": target,
        }
        return [Step("schedule", data), *self._enter(target, now)]

    def _callback(self, node: CallbackNode, now: float) -> list[Action]:
        number = render(node.number, self.variables).text.strip()
        data: dict[str, Any] = {"node": self.node_name, "number": number, "queue": node.queue}
        if not any(char.isdigit() for char in number):
            data["error"] = "no number"
            return [Step("callback", data), *self._next(node.next, now)]
        return [
            Step("callback", data),
            RequestCallback(number, node.queue),
            *self._next(node.next, now),
        ]

    def _record(self, node: VoicemailNode) -> list[Action]:
        self._set_phase("record")
        self._stopping = False
        step = Step("record", {"node": self.node_name, "max_seconds": node.max_seconds})
        return [step, Record(node.max_seconds, node.beep)]

    def _assign(self, values: Mapping[str, Value]) -> list[Action]:
        """Store variables; those the flow attaches to the call go to the screen pop."""
        attached = set(self._top.attach) | set(self.flow.attach)
        actions: list[Action] = []
        for name, value in values.items():
            changed = self.variables.get(name) != value
            self.variables[name] = value
            if name == "language" and changed:
                self.log.info("language now %s", value)
            if changed and name in attached:
                actions.append(SetAttribute(name, as_text(value)))
        return actions

    # -- bookkeeping --------------------------------------------------------------------

    def _accepts(self, event: str) -> bool:
        if event in _ACCEPTS[self.phase]:
            return True
        self.log.debug("%s ignored in phase %s (node %s)", event, self.phase, self.node_name)
        return False

    def _set_phase(self, phase: Phase) -> None:
        if phase != self.phase:
            self.log.debug("%s: %s -> %s", self.node_name or "-", self.phase, phase)
            self.phase = phase
