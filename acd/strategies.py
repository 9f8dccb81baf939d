"""Which available agent gets a call: one ordering per strategy, kept sorted as agents come and go.

Each strategy is a sort key over the agents that are available, members of
the queue and meet the call's skill profile. The key starts with the member's
penalty (lower is tried first, as in Asterisk app_queue and the tier level of
FreeSWITCH mod_callcenter) and ends with the extension, so it is total and
deterministic. Every part of a key only changes while the agent is *not*
available (idle time starts when it becomes available; calls and talk time
grow during a call), so an agent's key stays valid for as long as it sits in
the index: picking is the first element of a sorted list, never a scan.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect_left, insort
from collections.abc import Container, Iterator
from typing import Any

from acd.agents import Agent
from acd.skills import Profile, score

__all__ = [
    "RING_ALL",
    "ROUND_ROBIN",
    "STRATEGIES",
    "AgentPool",
    "SortedKeys",
    "agent_key",
]

RING_ALL = "ring-all"
LONGEST_IDLE = "longest-idle"
ROUND_ROBIN = "round-robin"
FEWEST_CALLS = "fewest-calls"
LEAST_TALK_TIME = "least-talk-time"
TOP_DOWN = "top-down"
RANDOM = "random"
SKILL_WEIGHTED = "skill-weighted"
STRATEGIES = (
    RING_ALL,
    LONGEST_IDLE,
    ROUND_ROBIN,
    FEWEST_CALLS,
    LEAST_TALK_TIME,
    TOP_DOWN,
    RANDOM,
    SKILL_WEIGHTED,
)

Key = tuple[Any, ...]


class SortedKeys:
    """A sorted list of unique tuple keys: O(log n) search, a memmove to insert or delete.

    Plain ``bisect`` on a list: for the tens of thousands of entries a node
    holds, moving pointers is cheaper than any tree written in Python.
    """

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: list[Key] = []

    def add(self, key: Key) -> None:
        insort(self._keys, key)

    def discard(self, key: Key) -> None:
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            del self._keys[i]

    def rank(self, key: Key) -> int:
        """How many keys sort before ``key``."""
        return bisect_left(self._keys, key)

    def __getitem__(self, index: int) -> Key:
        return self._keys[index]

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)


def agent_key(
    strategy: str,
    agent: Agent,
    penalty: int,
    order: int,
    profile: Profile,
) -> Key:
    """The agent's place in a pool of ``strategy``: penalty first, the extension last."""
    ext = agent.ext
    if strategy == LONGEST_IDLE:
        return (penalty, agent.idle_since, order, ext)
    if strategy in (ROUND_ROBIN, TOP_DOWN, RING_ALL, RANDOM):
        return (penalty, order, ext)
    if strategy == FEWEST_CALLS:
        return (penalty, agent.calls, agent.idle_since, order, ext)
    if strategy == LEAST_TALK_TIME:
        return (penalty, agent.talk_time, agent.idle_since, order, ext)
    if strategy == SKILL_WEIGHTED:
        return (penalty, -score(agent.skills, profile), agent.idle_since, order, ext)
    raise ValueError(f"unknown strategy {strategy!r}")


class AgentPool:
    """The available agents of one queue that meet one skill profile, in the strategy's order."""

    __slots__ = ("_key_of", "keys", "strategy")

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.keys = SortedKeys()
        self._key_of: dict[str, Key] = {}

    def add(self, ext: str, key: Key) -> None:
        if ext in self._key_of:
            self.discard(ext)
        self._key_of[ext] = key
        self.keys.add(key)

    def discard(self, ext: str) -> None:
        key = self._key_of.pop(ext, None)
        if key is not None:
            self.keys.discard(key)

    def __contains__(self, ext: object) -> bool:
        return ext in self._key_of

    def __len__(self) -> int:
        return len(self._key_of)

    def pick(self, skip: Container[str], rr_last: int, rng: random.Random) -> list[str]:
        """The agents to ring: one, or for ring-all every one at the best penalty.

        ``skip`` holds agents the call must not ring now (they declined it);
        ``rr_last`` is the member order of the agent the queue rang last, for
        round-robin's memory; ``rng`` draws for the random strategy.
        """
        keys = self.keys
        first = next((i for i, key in enumerate(keys) if key[-1] not in skip), None)
        if first is None:
            return []
        penalty = keys[first][0]
        if self.strategy == RING_ALL:
            group: list[str] = []
            for i in range(first, len(keys)):
                key = keys[i]
                if key[0] != penalty:
                    break
                if key[-1] not in skip:
                    group.append(key[-1])
            return group
        if self.strategy == RANDOM:
            # A fresh draw among the best penalty band at each decision: keys
            # drawn once per agent would favour the agent that just came back.
            end = keys.rank((penalty + 1,))
            start = rng.randrange(first, end)
            for i in itertools.chain(range(start, end), range(first, start)):
                if keys[i][-1] not in skip:
                    return [keys[i][-1]]
        if self.strategy == ROUND_ROBIN:
            # The first member after the one rung last, else wrap to the first.
            for i in range(keys.rank((penalty, rr_last + 1)), len(keys)):
                key = keys[i]
                if key[0] != penalty:
                    break
                if key[-1] not in skip:
                    return [key[-1]]
        return [keys[first][-1]]
