"""How the call model tells the ACD what happened: one node alone, or a cluster.

The call model reports ACD events (a caller queued, an agent answered, a
phone rang out, ...) through `CallCore.acd` and carries out the offers that
come back. Two implementations:

- `LocalAcd` (`[state] backend = "memory"`, the default): the node's `Router`
  called directly; the offers come back at once, as they always did.
- `ClusterAcd` (`backend = "redis"`): the same events go to `acd.node.AcdNode`,
  which reserves every offer in the shared live state before any phone
  rings. Its events need the store, so each is queued and run in order by
  one task the adapter owns; the offers, the agent log and the router's own
  decisions (announcements, overflows) reach the call model afterwards,
  through `deliver`, which is the call model's `_apply`.

In both cases `CallCore.router` is the node's router, read for views
(agents, members, the pending decisions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from acd.decisions import Departure
from acd.node import HEARTBEAT_INTERVAL, HEARTBEAT_TTL, AcdNode
from acd.router import AcdError, Offer, Router
from acd.state import LiveState, StateUnavailable
from acd.stats import QueueStats, merge_tallies
from ccserver.location_sharing import SharedLocation
from ccserver.registration import aor_of

__all__ = ["ClusterAcd", "LocalAcd"]

log = logging.getLogger("ccserver.acd")

Deliver = Callable[[list[Offer]], None]

#: Seconds a stopping node gives its last events (calls it hung up) to reach the store.
CLOSE_TIMEOUT = 3.0


class LocalAcd:
    """The node's router, called directly (one node; memory live state)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def enqueue(
        self,
        call_id: str,
        queue: str,
        now: float,
        priority: int = 0,
        *,
        skills: dict[str, int] | None = None,
        tier: str | None = None,
    ) -> list[Offer]:
        return self.router.enqueue(call_id, queue, now, priority, skills=skills, tier=tier)

    def remove(self, call_id: str, now: float) -> None:
        self.router.remove(call_id, now)

    def abandon(self, call_id: str, now: float) -> Departure | None:
        return self.router.abandon(call_id, now)

    def login(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        return self.router.login(ext, now, reason)

    def logout(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        return self.router.logout(ext, now, reason)

    def ready(self, ext: str, now: float) -> list[Offer]:
        return self.router.ready(ext, now)

    def pause(self, ext: str, now: float, reason: str) -> None:
        self.router.pause(ext, now, reason)

    def answered(self, call_id: str, now: float, agent: str | None = None) -> None:
        self.router.answered(call_id, now, agent=agent)

    def no_answer(
        self, call_id: str, now: float, reason: str = "no answer", agent: str | None = None
    ) -> list[Offer]:
        return self.router.no_answer(call_id, now, reason, agent=agent)

    def declined(self, call_id: str, now: float, agent: str | None = None) -> list[Offer]:
        return self.router.declined(call_id, now, agent=agent)

    def hangup(self, ext: str, now: float) -> list[Offer]:
        return self.router.hangup(ext, now)

    def dial(self, ext: str, now: float, call_id: str) -> None:
        self.router.dial(ext, now, call_id)

    def add_member(self, queue: str, ext: str, now: float, penalty: int = 0) -> list[Offer]:
        return self.router.add_member(queue, ext, now, penalty)

    def remove_member(self, queue: str, ext: str, now: float) -> list[Offer]:
        return self.router.remove_member(queue, ext, now)

    def get_timer(self) -> float | None:
        return self.router.get_timer()

    def handle_timer(self, now: float) -> list[Offer]:
        return self.router.handle_timer(now)

    def queue_stats(self, queue: str, now: float) -> QueueStats:
        return self.router.queue_stats(queue, now)

    def agent_status(self, ext: str) -> tuple[str, str | None]:
        """The agent's state and reason, as the API shows them."""
        agent = self.router.agents[ext]
        return agent.state, agent.reason


class ClusterAcd(LocalAcd):
    """The ACD of one node among several, over `AcdNode` and the shared live state.

    Every event method returns at once (with no offers) and queues the event;
    one worker applies them in order, so the call model's view and the shared
    state see them in the order they happened. Times the call model passes
    are its loop clock; the node's router runs on the wall clock the live
    state shares between machines, and `get_timer` converts back.
    """

    def __init__(
        self,
        node: str,
        router: Router,
        state: LiveState,
        *,
        clock: Callable[[], float] = time.time,
        loop_time: Callable[[], float] | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        heartbeat_ttl: float = HEARTBEAT_TTL,
    ) -> None:
        super().__init__(router)
        self.state = state
        self.clock = clock
        self._loop_time = loop_time
        self.deliver: Deliver = lambda offers: None
        self.location: SharedLocation | None = None  # where the agents' phones are
        self.node = AcdNode(
            node, router, state, self._offered, clock=clock, keep_changes=True,
            after_change=self._flush_soon, heartbeat_interval=heartbeat_interval,
            heartbeat_ttl=heartbeat_ttl,
        )  # fmt: skip
        self._jobs: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._offers: list[Offer] = []
        self._flush_queued = False

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to the store (raises `StateUnavailable`), load it, start the worker."""
        await self.state.start()
        await self.node.start()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="acd events")

    async def close(self) -> None:
        """Apply the events still queued (calls hung up at stop), then disconnect."""
        self.deliver = lambda offers: None  # the call model is closed: nothing rings now
        worker, self._worker = self._worker, None
        if worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._jobs.join(), CLOSE_TIMEOUT)
            worker.cancel()
            await asyncio.wait({worker})
        await self.node.close()
        await self.state.close()

    # -- events (queued) -------------------------------------------------------------
    def enqueue(
        self,
        call_id: str,
        queue: str,
        now: float,
        priority: int = 0,
        *,
        skills: dict[str, int] | None = None,
        tier: str | None = None,
    ) -> list[Offer]:
        self._run(lambda: self.node.enqueue(call_id, queue, priority, skills=skills, tier=tier))
        return []

    def remove(self, call_id: str, now: float) -> None:
        self._run(lambda: self.node.remove(call_id))

    def abandon(self, call_id: str, now: float) -> Departure | None:
        """The caller's wait and place, read now; the store is told in turn."""
        call = self.router.calls.get(call_id)
        departure = None
        if call is not None:
            departure = Departure(
                call_id, call.queue, max(0.0, self.clock() - call.joined_at),
                self.router.position(call_id), tuple(call.offered),
            )  # fmt: skip
        self._run(lambda: self.node.remove(call_id, abandoned=True))
        return departure

    def login(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        async def login() -> None:
            if self.location is not None:
                # The phone first: a node that sees the login must find the phone.
                await self.location.write(aor_of(ext))
            if reason is not None:
                await self.node.pause(ext, reason)
            else:
                await self.node.login(ext)

        self._run(login)
        return []

    def logout(self, ext: str, now: float, reason: str | None = None) -> list[Offer]:
        self._run(lambda: self.node.logout(ext, reason))
        return []

    def ready(self, ext: str, now: float) -> list[Offer]:
        self._run(lambda: self.node.ready(ext))
        return []

    def pause(self, ext: str, now: float, reason: str) -> None:
        self._run(lambda: self.node.pause(ext, reason))

    def answered(self, call_id: str, now: float, agent: str | None = None) -> None:
        async def confirm() -> None:
            if not await self.node.answered(call_id):
                # The phone answered after its reservation lapsed and another
                # node took the agent: the call stays bridged; see docs/cluster.md.
                log.error("call %s: answered by %s without a reservation", call_id, agent)

        self._run(confirm)

    def no_answer(
        self, call_id: str, now: float, reason: str = "no answer", agent: str | None = None
    ) -> list[Offer]:
        self._run(lambda: self.node.no_answer(call_id, reason))
        return []

    def declined(self, call_id: str, now: float, agent: str | None = None) -> list[Offer]:
        self._run(lambda: self.node.declined(call_id))
        return []

    def hangup(self, ext: str, now: float) -> list[Offer]:
        self._run(lambda: self.node.hangup(ext))
        return []

    def dial(self, ext: str, now: float, call_id: str) -> None:
        self._run(lambda: self.node.dial(ext, call_id))

    def add_member(self, queue: str, ext: str, now: float, penalty: int = 0) -> list[Offer]:
        self._run(lambda: self.node.add_member(queue, ext, penalty))
        return []

    def remove_member(self, queue: str, ext: str, now: float) -> list[Offer]:
        self._run(lambda: self.node.remove_member(queue, ext))
        return []

    def get_timer(self) -> float | None:
        """The router's next deadline, on the call model's loop clock."""
        deadline = self.node.get_timer()
        if deadline is None or self._loop_time is None:
            return deadline
        return deadline - self.clock() + self._loop_time()

    def handle_timer(self, now: float) -> list[Offer]:
        self._run(self.node.handle_timer)
        return []

    # -- views -------------------------------------------------------------------------
    def queue_stats(self, queue: str, now: float) -> QueueStats:
        """Every figure cluster-wide: the line and the members' states from the shared
        state, the window's counts summed over every node's shared tallies."""
        own = merge_tallies(
            self.router.queue_stats(queue, self.clock()), self.node.queue_tally(queue)
        )
        calls = self.node.shared_calls(queue)
        agents: dict[str, int] = {}
        for ext in self.router.members(queue):
            state = self.node.agent_state(ext)
            agents[state] = agents.get(state, 0) + 1
        oldest = min((c.enqueued_at for c in calls), default=None)
        return dataclasses.replace(
            own,
            waiting=len(calls),
            longest_wait=max(0.0, self.clock() - oldest) if oldest is not None else 0.0,
            agents=agents,
        )

    def agent_status(self, ext: str) -> tuple[str, str | None]:
        """From the shared record (this node's own view while it rings or talks through it)."""
        return self.node.agent_status(ext)

    # -- the worker --------------------------------------------------------------------
    def _run(self, job: Callable[[], Awaitable[Any]]) -> None:
        self._jobs.put_nowait(job)

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except (AcdError, ValueError, KeyError) as exc:
                # An event the router refuses (an agent already gone, an offer
                # already over): nothing to carry out.
                log.warning("ACD event not applied: %r", exc)
            except StateUnavailable as exc:
                log.warning("live state unreachable: %s", exc)
            try:
                await self._flush()  # what the event did, even if it failed halfway
            finally:
                self._jobs.task_done()

    def _offered(self, offer: Offer) -> None:
        """An offer reserved in the shared state: the call model rings the phone."""
        self._offers.append(offer)

    def _flush_soon(self) -> None:
        """A change from the feed was applied: its offers go out through the worker."""
        if not self._flush_queued:
            self._flush_queued = True
            self._run(self._flush)

    async def _flush(self) -> None:
        """Hand the reserved offers, agent log and decisions to the call model.

        Not while the node is inside an event (the router's log still holds
        mirror moves then): whoever holds it flushes when done.
        """
        self._flush_queued = False
        if self.node.busy:
            return
        offers, self._offers = self._offers, []
        if offers and self.location is not None:
            await self.location.find(aor_of(o.agent) for o in offers)
            if self.node.busy:  # a change came in meanwhile: its flush takes these too
                self._offers[:0] = offers
                return
        self.deliver(offers)
