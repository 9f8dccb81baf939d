"""One node's ACD in a cluster: a local `Router` decides, the `LiveState` makes it stick.

Each node routes only the calls it answered (their SIP dialogs and media
live there); agents are shared. The node's router therefore holds the
node's own calls and a mirror of every agent:

- an agent the shared state shows `available` and unreserved is logged in
  (or made ready) in the router, with its idle start from the shared record,
  so longest-idle order holds across nodes;
- any other agent is logged out of the router (reason `elsewhere`), unless
  this node itself is ringing it, talking through it or wrapping it up: then
  this node is the one that writes its record, and the mirror leaves it be.

Every `Offer` the router makes is reserved in the live state before the call
model hears of it (`on_offer`). A refused reservation means the view was
stale: the node reloads a snapshot, mirrors it into the router, and lets the
router decide again. No offer ever reaches the call model unreserved, which
is what keeps two nodes from ringing one agent.

This glue uses the router's public event methods only; mirror moves are
ordinary logins and logouts, so the router's statistics count them too. Its
agent log (`changes`) is dropped here, or, with `keep_changes`, left for the
call model with the mirror moves taken out: each node then logs the changes
it made itself (a login at its phone, an offer it made, a call it connected),
and no node logs another's. Ring-all queues are not supported across nodes: a
reservation holds one agent per call.

Every node beats (`LiveState.heartbeat`, every `heartbeat_interval`, alive
for `heartbeat_ttl`); the beat that finds another node's heartbeat lapsed
clears what that node held (its calls, the agents whose call it held, its
logins and registrations), so a dead node's state does not outlive it by
more than the ttl plus one interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from acd.agents import AgentChange
from acd.router import AVAILABLE, LOGGED_OUT, NOT_READY, ON_CALL, WRAP_UP, Offer, Router
from acd.router import RESERVED as RINGING
from acd.state import (
    AGENT,
    CALL_ADDED,
    CALL_REMOVED,
    CONFIRMED,
    NODE_LOST_REASON,
    RELEASED,
    RESERVED,
    RESYNC,
    AgentRecord,
    Change,
    ChangeFeed,
    LiveState,
    QueuedCall,
    Snapshot,
    StateUnavailable,
)
from acd.stats import QueueTally

__all__ = ["ELSEWHERE", "AcdNode"]

log = logging.getLogger(__name__)

#: Reason of a mirror logout: the agent is busy or away at another node.
ELSEWHERE = "elsewhere"
#: Reservations outlive the ring timeout by this much, so one never lapses
#: while its node is alive and ringing.
RESERVE_SLACK = 5.0
#: Fresh decisions after refused reservations, per event, before giving up
#: until the next change (a guard against a store that refuses for good).
MAX_REDECIDE = 8
#: Seconds between heartbeats, and how long one keeps a node alive ([state]).
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL = 5.0


@dataclass(slots=True)
class _Held:
    agent: str
    queue: str


class AcdNode:
    """The ACD of node `node`: routes its own calls over the cluster's agents.

    Methods are the call model's events; each runs under one lock, so events
    and changes from the feed are applied one at a time. Offers go to
    `on_offer` once reserved. Times are epoch seconds from `clock`.
    """

    def __init__(
        self,
        node: str,
        router: Router,
        state: LiveState,
        on_offer: Callable[[Offer], None],
        *,
        clock: Callable[[], float] = time.time,
        reserve_slack: float = RESERVE_SLACK,
        keep_changes: bool = False,
        after_change: Callable[[], None] | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        heartbeat_ttl: float = HEARTBEAT_TTL,
    ) -> None:
        if not 0 < heartbeat_interval < heartbeat_ttl:
            raise ValueError("a heartbeat must come more often than it lapses")
        self.node = node
        self.router = router
        self.state = state
        self.on_offer = on_offer
        self.clock = clock
        self.reserve_slack = reserve_slack
        self.keep_changes = keep_changes
        self.after_change = after_change  # told after each change from the feed is applied
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = heartbeat_ttl
        self._beater: asyncio.Task[None] | None = None
        #: The other nodes' statistics tallies by queue, as of the last heartbeat.
        self.tallies: dict[str, dict[str, QueueTally]] = {}
        self._lock = asyncio.Lock()
        self._in_hand = False  # the follower holds a change it has not applied yet
        self._applied = asyncio.Event()
        self._feed: ChangeFeed | None = None
        self._follower: asyncio.Task[None] | None = None
        self._records: dict[str, AgentRecord] = {}
        self._held_by: dict[str, str] = {}  # agent -> call id, by any node
        self._offers: dict[str, _Held] = {}  # our reserved offers, by call id
        self._engaged: set[str] = set()  # agents whose record this node writes now
        self._home: set[str] = set()  # agents logged in at this node
        self._queued: dict[str, QueuedCall] = {}  # our calls, as written to the store
        # Writes the store missed while unreachable, made again on the next RESYNC.
        self._outbox: dict[str, AgentRecord] = {}
        self._written: dict[str, AgentRecord] = {}  # the last record this node wrote, by agent
        self._to_confirm: dict[str, str] = {}  # call id -> agent
        self._to_remove: set[str] = set()
        self._shared_calls: dict[str, QueuedCall] = {}  # every node's queued calls

    # -- life cycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Follow the feed, beat, then load the state (the feed first: nothing is missed).

        The first beat clears what this node's last run left in the store
        (calls queued, agents whose call it held): those callers and calls
        went with that process.
        """
        self._feed = self.state.changes()
        async with self._lock:
            await self.state.heartbeat(self.node, self.heartbeat_ttl, restart=True)
            await self._reload()
        loop = asyncio.get_running_loop()
        self._follower = loop.create_task(self._follow(), name=f"acd node {self.node}")
        self._beater = loop.create_task(self._beat(), name=f"acd heartbeat {self.node}")

    async def close(self) -> None:
        if self._feed is not None:
            self._feed.close()  # ends the follower's loop
        tasks = [t for t in (self._follower, self._beater) if t is not None]
        self._follower = self._beater = None
        for task in tasks:
            task.cancel()  # in case it is waiting on the store
        if tasks:
            await asyncio.wait(tasks)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.beat()
            except StateUnavailable as exc:
                log.warning("heartbeat not written: %s", exc)

    async def beat(self) -> None:
        """One heartbeat: keep this node alive in the store, clear the nodes that are not.

        The node's own task calls it every `heartbeat_interval`; tests call it
        directly, with the store's clock moved on, to step a lapse.
        """
        beat = await self.state.heartbeat(self.node, self.heartbeat_ttl)
        for dead in beat.lost:
            log.warning("node %s lost (no heartbeat for %.1f s): its calls, agents and "
                        "registrations cleared", dead, self.heartbeat_ttl)  # fmt: skip
        if not beat.known:
            log.warning("this node's heartbeat had lapsed: writing its state again")
            async with self._lock:
                await self._rejoin()
        await self._share_tallies()

    async def _share_tallies(self) -> None:
        """Publish this node's queue statistics and keep the other nodes' (`tallies`)."""
        now = self.clock()
        mine = {q: self.router.stats.tally(q, now) for q in self.router.queues}
        shared = await self.state.share_tallies(self.node, self.heartbeat_ttl, mine)
        shared.pop(self.node, None)
        self.tallies = shared

    def queue_tally(self, queue: str) -> QueueTally:
        """The queue's statistics window over every node: this one's now, the others'
        as last shared (at most one heartbeat interval old)."""
        total = self.router.stats.tally(queue, self.clock())
        for theirs in self.tallies.values():
            total += theirs.get(queue, QueueTally())
        return total

    async def _rejoin(self) -> None:
        """Another node may have cleared this one as lost: write back what it holds."""
        snap = await self.state.snapshot()
        for ext in self._home | self._engaged:
            mine = self._written.get(ext)
            shared = snap.agents.get(ext)
            if mine is not None and shared is not None and shared.reason == NODE_LOST_REASON:
                await self._write(mine)
        await self._reload()  # and the queued calls

    # -- agents at this node ---------------------------------------------------------
    async def login(self, ext: str) -> None:
        async with self._lock:
            now = self.clock()
            self._home.add(ext)
            await self._write(AgentRecord(ext, AVAILABLE, None, now, self.node))
            await self._place(self._sync(ext, mirror=False))

    async def logout(self, ext: str, reason: str | None = None) -> None:
        async with self._lock:
            now = self.clock()
            record = AgentRecord(ext, LOGGED_OUT, reason, now, self.node)
            call_id = self._offer_of(ext)
            if call_id is not None:
                del self._offers[call_id]
            await self._write(record, releasing=call_id)
            self._engaged.discard(ext)
            self._home.discard(ext)
            await self._place(self.router.logout(ext, now, reason))

    async def ready(self, ext: str) -> None:
        async with self._lock:
            now = self.clock()
            home = self._records.get(ext)
            node = home.node if home is not None else self.node
            await self._write(AgentRecord(ext, AVAILABLE, None, now, node))
            self._engaged.discard(ext)
            await self._place(self._sync(ext, mirror=False))

    # -- calls this node owns ----------------------------------------------------------
    async def enqueue(
        self,
        call_id: str,
        queue: str,
        priority: int = 0,
        *,
        skills: dict[str, int] | None = None,
        tier: str | None = None,
    ) -> None:
        async with self._lock:
            now = self.clock()
            call = QueuedCall(call_id, queue, self.node, priority, now, skills or {}, tier)
            self._queued[call_id] = call
            self._shared_calls[call_id] = call
            try:
                await self.state.add_call(call)  # shared first: a reservation needs it
            except StateUnavailable:
                log.warning("call %s: live state unreachable, queued here only", call_id)
            offers = self.router.enqueue(call_id, queue, now, priority, skills=skills, tier=tier)
            await self._place(offers)

    async def answered(self, call_id: str) -> bool:
        """The agent answered. False if the shared state gave the call or agent away.

        With the store unreachable the answer stands (the call is bridged) and
        the confirm is made when the store is back.
        """
        async with self._lock:
            held = self._offers.pop(call_id)
            self._queued.pop(call_id, None)
            self._shared_calls.pop(call_id, None)
            try:
                confirmed = await self.state.confirm(call_id, held.agent)
            except StateUnavailable:
                log.warning("call %s: live state unreachable, confirm deferred", call_id)
                self._to_confirm[call_id] = held.agent
                confirmed = True
            if not confirmed:
                log.error(
                    "call %s: answered by %s but its reservation was lost", call_id, held.agent
                )
            # What confirm wrote, in case this node must write it again (`_rejoin`).
            home = self._records.get(held.agent)
            self._written[held.agent] = AgentRecord(
                held.agent,
                ON_CALL,
                None,
                self.clock(),
                home.node if home is not None else None,
                call_id,
                self.node,
            )
            self.router.answered(call_id, self.clock())
            self._drain()
            return confirmed

    async def no_answer(self, call_id: str, reason: str = "no answer") -> None:
        async with self._lock:
            held = self._offers.pop(call_id)
            now = self.clock()
            home = self._records.get(held.agent)
            record = AgentRecord(
                held.agent, NOT_READY, reason, now, home.node if home is not None else None
            )
            self._engaged.discard(held.agent)
            await self._write(record, releasing=call_id)
            await self._place(self.router.no_answer(call_id, now, reason))

    async def declined(self, call_id: str) -> None:
        async with self._lock:
            held = self._offers.pop(call_id)
            self._engaged.discard(held.agent)
            try:
                await self.state.release(call_id, held.agent)
            except StateUnavailable:
                pass  # the reservation lapses by itself
            await self._place(self.router.declined(call_id, self.clock()))

    async def remove(self, call_id: str, *, abandoned: bool = False) -> str | None:
        """The caller left; returns the agent being rung, whose INVITE must be cancelled.

        `abandoned`: the caller hung up (counted in the queue's statistics),
        rather than the call model taking it out.
        """
        async with self._lock:
            self._queued.pop(call_id, None)
            self._shared_calls.pop(call_id, None)
            held = self._offers.pop(call_id, None)
            try:
                await self.state.remove_call(call_id)  # frees a reserved agent too
            except StateUnavailable:
                self._to_remove.add(call_id)
            if abandoned:
                departure = self.router.abandon(call_id, self.clock())
                ringing = departure.agents[0] if departure and departure.agents else None
            else:
                ringing = self.router.remove(call_id, self.clock())
            if held is not None:
                self._engaged.discard(held.agent)
            # The router may match a freed agent on its next timer, not at once.
            await self._run_timers()
            return ringing

    async def pause(self, ext: str, reason: str) -> None:
        """The agent takes a break (`not-ready` with a reason code), written to the store."""
        async with self._lock:
            now = self.clock()
            self.router.pause(ext, now, reason)
            home = self._records.get(ext)
            node = home.node if home is not None else self.node
            await self._write(AgentRecord(ext, NOT_READY, reason, now, node))
            self._drain()

    async def dial(self, ext: str, call_id: str) -> None:
        """The agent is on a call outside the queues (click-to-call, a direct transfer).

        Written to the store as this node's, so no node offers it a queue call
        until `hangup`. There is no reservation: an offer another node made a
        moment earlier still rings (docs/cluster.md).
        """
        async with self._lock:
            now = self.clock()
            self.router.dial(ext, now, call_id)
            await self._write_router_state(ext, now)
            self._engaged.add(ext)
            self._drain()

    async def add_member(self, queue: str, ext: str, penalty: int = 0) -> None:
        """Live queue membership, on this node's router (not shared, not persisted)."""
        async with self._lock:
            await self._place(self.router.add_member(queue, ext, self.clock(), penalty))

    async def remove_member(self, queue: str, ext: str) -> None:
        async with self._lock:
            await self._place(self.router.remove_member(queue, ext, self.clock()))

    async def hangup(self, ext: str) -> None:
        """The agent's call (on this node) ended: wrap-up here, then available."""
        async with self._lock:
            now = self.clock()
            offers = self.router.hangup(ext, now)
            await self._write_router_state(ext, now)
            await self._place(offers)

    # -- time ------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        return self.router.get_timer()

    async def handle_timer(self) -> None:
        async with self._lock:
            await self._run_timers()

    async def _run_timers(self) -> None:
        """The router's due timers; a wrap-up that ended is published before any offer."""
        now = self.clock()
        wrapping = [e for e in self._engaged if self._router_state(e) == WRAP_UP]
        offers = self.router.handle_timer(now)
        for ext in wrapping:
            if self._router_state(ext) != WRAP_UP:
                await self._write_router_state(ext, now)
        await self._place(offers)

    # -- views -----------------------------------------------------------------------
    def offers(self) -> dict[str, str]:
        """Offers this node holds: call id -> agent."""
        return {call_id: held.agent for call_id, held in self._offers.items()}

    def shared_calls(self, queue: str | None = None) -> list[QueuedCall]:
        """Queued calls of every node (ringing ones included), as this node last saw them."""
        calls = sorted(self._shared_calls.values(), key=QueuedCall.order_key)
        return [c for c in calls if queue is None or c.queue == queue]

    def agent_state(self, ext: str) -> str:
        """The agent's state cluster-wide: its shared record, `reserved` while an offer holds it."""
        return self.agent_status(ext)[0]

    def agent_status(self, ext: str) -> tuple[str, str | None]:
        """State and reason cluster-wide; the router's own while this node writes the record."""
        if ext in self._held_by:
            return RINGING, None
        agent = self.router.agents.get(ext)
        if agent is not None and ext in self._engaged:
            return agent.state, agent.reason
        record = self._records.get(ext)
        if record is None:
            return LOGGED_OUT, None
        return record.state, record.reason

    # -- internals -------------------------------------------------------------------
    def _router_state(self, ext: str) -> str | None:
        agent = self.router.agents.get(ext)
        return agent.state if agent is not None else None

    def _offer_of(self, ext: str) -> str | None:
        return next((c for c, h in self._offers.items() if h.agent == ext), None)

    async def _write(self, record: AgentRecord, releasing: str | None = None) -> None:
        """Write an agent's record, ending our reservation `releasing` in the same step."""
        self._records[record.agent] = self._written[record.agent] = record
        try:
            if releasing is not None:
                await self.state.release(releasing, record.agent, record)
            else:
                await self.state.set_agent(record)
        except StateUnavailable:
            log.warning("agent %s: live state unreachable, %s kept", record.agent, record.state)
            self._outbox[record.agent] = record
        else:
            self._outbox.pop(record.agent, None)

    async def _write_router_state(self, ext: str, now: float) -> None:
        """Publish what the router says of an agent this node is finishing a call with."""
        agent = self.router.agents.get(ext)
        if agent is None:
            return
        home = self._records.get(ext)
        node = home.node if home is not None else self.node
        # Ringing already (the router matched it at once): the shared record says
        # available, the reservation that follows says the rest.
        state = AVAILABLE if agent.state == RINGING else agent.state
        holding = self.node if state in (ON_CALL, WRAP_UP) else None
        await self._write(AgentRecord(ext, state, agent.reason, now, node, call_node=holding))
        if agent.state == WRAP_UP:
            self._engaged.add(ext)
        else:
            self._engaged.discard(ext)

    def _drain(self) -> None:
        """Take the mirror moves out of the router's agent log (or all of it)."""
        if not self.keep_changes:
            self.router.changes.clear()  # the shared records are the cluster's agent log
            return
        self.router.changes[:] = [ch for ch in self.router.changes if not _mirror_move(ch)]

    def _unlog_offer(self, offer: Offer) -> None:
        """An offer that was never made leaves no `reserved` line in the agent log."""
        changes = self.router.changes
        for i in range(len(changes) - 1, -1, -1):
            ch = changes[i]
            if ch.agent == offer.agent and ch.new == RINGING and ch.call_id == offer.call_id:
                del changes[i]
                return

    async def _reconcile_calls(self) -> None:
        """Follow the router when it let go of a call or moved it (overflow, max wait)."""
        for call_id, call in list(self._queued.items()):
            if call_id in self._offers:
                continue
            queue = self.router.queue_of(call_id)
            if queue == call.queue:
                continue
            try:
                if queue is None:
                    del self._queued[call_id]
                    self._shared_calls.pop(call_id, None)
                    await self.state.remove_call(call_id)
                else:
                    moved = QueuedCall(call_id, queue, self.node, call.priority,
                                       call.enqueued_at, call.skills, call.tier)  # fmt: skip
                    self._queued[call_id] = self._shared_calls[call_id] = moved
                    await self.state.add_call(moved)
            except StateUnavailable:
                if queue is None:
                    self._to_remove.add(call_id)

    def _stand_down(self, offers: list[Offer]) -> None:
        """Take back offers that will not be reserved: their agents leave this router."""
        pending = deque(offers)
        while pending:
            offer = pending.popleft()
            pending.extend(self.router.logout(offer.agent, self.clock(), ELSEWHERE))

    async def _place(self, offers: list[Offer]) -> None:
        """Reserve each offer before anyone rings; decide again when the view was stale."""
        pending = deque(offers)
        redecided = 0
        while pending:
            offer = pending.popleft()
            ring_timeout = self.router.queues[offer.queue].ring_timeout
            try:
                won = offer.call_id not in self._offers and await self.state.reserve(
                    offer.call_id, offer.agent, self.node, ring_timeout + self.reserve_slack
                )
                if not won:
                    log.info("call %s: %s was taken meanwhile", offer.call_id, offer.agent)
            except StateUnavailable:
                log.warning(
                    "call %s: live state unreachable, %s not rung", offer.call_id, offer.agent
                )
                won = False
            if won:
                self._offers[offer.call_id] = _Held(offer.agent, offer.queue)
                self._engaged.add(offer.agent)
                self._held_by[offer.agent] = offer.call_id
                self.on_offer(offer)
                continue
            # Stale view: take the agent out of this router (the call goes back
            # to the head of its line), reload, and let the router decide again.
            self._unlog_offer(offer)
            pending.extend(self.router.logout(offer.agent, self.clock(), ELSEWHERE))
            redecided += 1
            if self._outbox or self._to_confirm or self._to_remove:
                # The store missed writes of ours while it was away (it may be
                # back, empty): its refusals say nothing of our view until the
                # resync has made them. Wait for it rather than decide again.
                log.info("call %s: waiting for the live state's resync", offer.call_id)
                self._stand_down(list(pending))
                break
            if redecided > MAX_REDECIDE:
                log.error("call %s: reservations keep failing; waiting for a change", offer.call_id)
                self._stand_down(list(pending))
                break
            try:
                snap = await self.state.snapshot()
            except StateUnavailable:
                # Nothing is offered until the store answers; the feed will resync.
                self._stand_down(list(pending))
                break
            pending.extend(self._mirror(snap))
        self._drain()
        await self._reconcile_calls()

    async def _reload(self) -> None:
        """Catch up on missed writes, put back what the store lost of ours, mirror."""
        for call_id in list(self._to_remove):
            await self.state.remove_call(call_id)
            self._to_remove.discard(call_id)
        for call_id, agent in list(self._to_confirm.items()):
            if not await self.state.confirm(call_id, agent):
                log.error("call %s: deferred confirm of %s refused", call_id, agent)
            del self._to_confirm[call_id]
        for ext, record in list(self._outbox.items()):
            await self.state.set_agent(record)
            del self._outbox[ext]
        snap = await self.state.snapshot()
        shared = {c.call_id for c in snap.calls}
        rewritten = False
        for call_id, call in self._queued.items():
            if call_id not in shared:
                log.warning("call %s: missing from the live state, writing it again", call_id)
                await self.state.add_call(call)
                rewritten = True
        for ext in self._home | self._engaged:  # the store restarted empty
            mine = self._records.get(ext)
            if mine is not None and ext not in snap.agents:
                await self.state.set_agent(mine)
                rewritten = True
        if rewritten:
            snap = await self.state.snapshot()
        await self._place(self._mirror(snap))

    def _mirror(self, snap: Snapshot) -> list[Offer]:
        self._records.update(snap.agents)
        self._shared_calls = {c.call_id: c for c in snap.calls}
        self._held_by = {r.agent: r.call_id for r in snap.reservations.values()}
        for call_id in list(self._offers):
            held = snap.reservations.get(call_id)
            if held is None or held.node != self.node:
                log.warning("call %s: our reservation lapsed", call_id)
        offers: list[Offer] = []
        for ext in list(self.router.agents):
            offers += self._sync(ext)
        return offers

    def _sync(self, ext: str, *, mirror: bool = True) -> list[Offer]:
        """Make the router's view of one agent match the shared state.

        `mirror`: the change was made elsewhere, so it stays out of this node's log.
        """
        state = self._router_state(ext)
        if ext in self._engaged or state is None or state == RINGING:
            return []  # ours to write, unknown here, or an offer being reserved
        record = self._records.get(ext)
        now = self.clock()
        mark = len(self.router.changes)
        offers: list[Offer] = []
        if record is not None and record.state == AVAILABLE and ext not in self._held_by:
            if state == LOGGED_OUT:
                # The shared idle start, so longest-idle compares across nodes.
                offers = self.router.login(ext, min(record.since, now))
            elif state in (NOT_READY, WRAP_UP):
                offers = self.router.ready(ext, now)
            else:
                return []
            if not mirror:
                return offers
            # Another node's change, mirrored: that node logs it, not this one.
            self.router.changes[mark:] = [
                ch for ch in self.router.changes[mark:]
                if not (ch.agent == ext and ch.new == AVAILABLE)
            ]  # fmt: skip
            return offers
        if state != LOGGED_OUT:
            return self.router.logout(ext, now, ELSEWHERE)
        return []

    async def _follow(self) -> None:
        feed = self._feed
        assert feed is not None
        async for change in feed:
            self._in_hand = True
            try:
                async with self._lock:
                    await self._apply(change)
            except StateUnavailable:
                log.warning("live state unreachable while applying %s", change.kind)
            finally:
                self._in_hand = False
                self._applied.set()
            if self.after_change is not None:
                self.after_change()

    async def settle(self) -> None:
        """Wait until every change received so far is applied to the router.

        With the memory backend a change is received when the mutation
        returns, so tests use this to step two nodes deterministically.
        """
        while self.behind:
            self._applied.clear()
            await self._applied.wait()

    @property
    def busy(self) -> bool:
        """True while an event or a change is being applied."""
        return self._lock.locked()

    @property
    def behind(self) -> bool:
        """True while changes received from the feed wait to be applied."""
        feed = self._feed
        return feed is not None and not feed.closed and (len(feed) > 0 or self._in_hand)

    async def _apply(self, change: Change) -> None:
        if change.kind == RESYNC:
            await self._reload()
            return
        if change.kind == CALL_ADDED:
            added = change.call()
            if added is not None:
                self._shared_calls[added.call_id] = added
        elif change.kind in (CALL_REMOVED, CONFIRMED) and change.call_id is not None:
            self._shared_calls.pop(change.call_id, None)
        ext = change.agent
        if ext is None:
            return
        if change.kind == AGENT:
            written = change.record()
            if written is not None:
                self._records[ext] = written
        elif change.kind == RESERVED:
            held = change.reservation()
            if held is not None:
                self._held_by[ext] = held.call_id
        elif change.kind in (RELEASED, CONFIRMED, CALL_REMOVED):
            self._held_by.pop(ext, None)
            record = change.record()
            if record is not None:
                self._records[ext] = record
            if change.kind == RELEASED and change.data.get("reason") == "expired":
                if change.call_id in self._offers:
                    # Still ringing here: the confirm decides (it succeeds if
                    # nobody took the agent meanwhile).
                    log.warning("call %s: reservation of %s lapsed", change.call_id, ext)
        else:
            return
        await self._place(self._sync(ext))


def _mirror_move(change: AgentChange) -> bool:
    """A logout that only mirrors another node's agent (busy or away there)."""
    return change.reason == ELSEWHERE
