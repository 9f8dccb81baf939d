"""An IVR flow's steps as a state machine: events in, actions out.

`FlowRun` knows nothing of RTP or SIP. The call model feeds it what happened
(the prompt finished, the caller pressed a key, a timer fired) with `now`,
and carries out the actions it returns (play this text, wait until then,
put the caller in that queue, hang up). Every step it takes also comes out
as a `Step` for the contact's timeline, so supervisors see where callers go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class NodeSpec(Protocol):
    kind: str


class FlowSpec(Protocol):
    start: str
    language: str
    nodes: Any  # Mapping[str, NodeSpec]


# -- actions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Play:
    text: str
    voice: str
    barge_in: bool = True


@dataclass(frozen=True, slots=True)
class StopPrompt:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    """Call `handle_timer` at `deadline` (replaces any earlier deadline)."""

    deadline: float


@dataclass(frozen=True, slots=True)
class Enqueue:
    queue: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


@dataclass(frozen=True, slots=True)
class Step:
    """A timeline entry: what the caller did or met in the flow."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


Action = Play | StopPrompt | Wait | Enqueue | Hangup | Step

DTMF_KEYS = frozenset("0123456789*#ABCD")


class FlowRun:
    """One caller's way through one flow."""

    def __init__(self, flow: FlowSpec, name: str = "") -> None:
        self.flow = flow
        self.name = name
        self.node_name = ""
        self.node: Any = None
        self.finished = False
        self._tries = 0
        self._prompt_playing = False
        self._waiting_input = False
        self._deadline: float | None = None
        self._typeahead: list[str] = []

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def start(self, now: float) -> list[Action]:
        return self._enter(self.flow.start, now)

    # -- events -----------------------------------------------------------------
    def prompt_finished(self, now: float) -> list[Action]:
        if self.finished or not self._prompt_playing:
            return []
        self._prompt_playing = False
        node = self.node
        if node.kind == "play":
            nxt = getattr(node, "next", None)
            if nxt:
                return self._enter(nxt, now)
            return self._end("flow-end")
        if node.kind == "menu":
            self._waiting_input = True
            self._deadline = now + float(node.timeout)
            return [Wait(self._deadline)]
        return []

    def digit(self, digit: str, now: float) -> list[Action]:
        if self.finished or self.node is None:
            return [Step("digit", {"digit": digit, "node": self.node_name, "ignored": True})]
        actions: list[Action] = [Step("digit", {"digit": digit, "node": self.node_name})]
        if self.node.kind == "play":
            # Type-ahead: a key during an announcement skips it and is kept
            # for the menu that follows, as callers who know the menu expect.
            nxt = getattr(self.node, "next", None)
            if nxt is None or nxt not in self.flow.nodes or self.flow.nodes[nxt].kind != "menu":
                return actions
            self._typeahead.append(digit)
            if self._prompt_playing:
                self._prompt_playing = False
                actions.append(StopPrompt())
            return actions + self._enter(nxt, now)
        if self.node.kind != "menu":
            return actions
        return actions + self._choose(digit, now)

    def _choose(self, digit: str, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._prompt_playing:
            # Barge-in: a key stops the prompt at once.
            self._prompt_playing = False
            actions.append(StopPrompt())
        self._waiting_input = False
        self._deadline = None
        target = dict(self.node.choices).get(digit)
        if target is not None:
            actions.append(Step("branch", {"node": self.node_name, "digit": digit, "to": target}))
            return actions + self._enter(target, now)
        actions.append(Step("no_match", {"node": self.node_name, "digit": digit}))
        return actions + self._retry(now, "no_match")

    def handle_timer(self, now: float) -> list[Action]:
        if self.finished or self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self._waiting_input:
            self._waiting_input = False
            return [Step("no_input", {"node": self.node_name}), *self._retry(now, "no_input")]
        return []

    # -- steps ------------------------------------------------------------------
    def _retry(self, now: float, why: str) -> list[Action]:
        """A timeout or a wrong key uses one attempt; after 1 + retries, the fallback."""
        node = self.node
        self._tries += 1
        if self._tries > int(node.retries):
            fallback = getattr(node, why, None)
            if fallback:
                return self._enter(fallback, now)
            return self._end(f"{why}-exhausted")
        return self._play(node.prompt)

    def _enter(self, name: str, now: float) -> list[Action]:
        nodes = self.flow.nodes
        if name not in nodes:
            # Config validation refuses such flows; guard anyway.
            return self._end(f"missing-node:{name}")
        prev = self.node_name
        self.node_name = name
        self.node = nodes[name]
        self._tries = 0 if name != prev else self._tries
        self._deadline = None
        self._waiting_input = False
        kind = self.node.kind
        actions: list[Action] = [Step("node", {"node": name, "kind": kind})]
        if kind == "menu" and self._typeahead:
            return actions + self._choose(self._typeahead.pop(0), now)
        if kind in ("play", "menu"):
            return actions + self._play(self.node.prompt)
        if kind == "queue":
            self.finished = True
            return [*actions, Enqueue(self.node.queue, int(getattr(self.node, "priority", 0) or 0))]
        if kind == "hangup":
            return actions + self._end("hangup-node")
        return actions + self._end(f"unsupported-node:{kind}")

    def _play(self, text: str) -> list[Action]:
        self._prompt_playing = True
        return [
            Step("prompt", {"node": self.node_name, "text": text}),
            Play(text, self.flow.language),
        ]

    def _end(self, reason: str) -> list[Action]:
        self.finished = True
        self._deadline = None
        return [Hangup(reason)]
