"""Live state in this process: the default for a single node.

`MemoryStore` holds the data; each `MemoryLiveState` is a client of it, as a
node is a client of Redis. One node needs one client. Tests attach several
clients to one store to play a cluster in a single process, which is how the
conformance suite races "nodes" against each other without a server.

Atomicity comes from the event loop: a store operation never awaits between
its checks and its writes. Each client method yields to the loop once before
touching the store, like a network round trip would, so callers that forget
that the state can change across an await fail here too, not only in a
cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from acd.router import LOGGED_OUT, NOT_READY
from acd.state import (
    AGENT,
    AVAILABLE,
    BINDING,
    CALL_ADDED,
    CALL_REMOVED,
    CONFIRMED,
    NODE_LOST,
    NODE_LOST_REASON,
    ON_CALL,
    RELEASED,
    RESERVED,
    AgentRecord,
    BindingRecord,
    Change,
    ChangeFeed,
    Fanout,
    Heartbeat,
    QueuedCall,
    Reservation,
    Snapshot,
    order_bindings,
    ttl_ms,
)
from acd.stats import QueueTally

__all__ = ["MemoryLiveState", "MemoryStore"]

log = logging.getLogger(__name__)


class MemoryStore:
    """The data of one in-process live state, shared by its clients."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._calls: dict[str, QueuedCall] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._by_call: dict[str, Reservation] = {}
        self._by_agent: dict[str, str] = {}  # agent -> call id, mirror of _by_call
        self._bindings: dict[str, dict[tuple[str, str], BindingRecord]] = {}
        self._nodes: dict[str, float] = {}  # node -> heartbeat deadline
        self._tallies: dict[str, tuple[float, dict[str, QueueTally]]] = {}  # node -> (until, ...)
        self._fanouts: list[Fanout] = []
        self._timer: asyncio.TimerHandle | None = None
        self._earliest: float | None = None  # first deadline among _by_call

    # -- clients -------------------------------------------------------------------
    def attach(self, fanout: Fanout) -> None:
        self._fanouts.append(fanout)

    def detach(self, fanout: Fanout) -> None:
        if fanout in self._fanouts:
            self._fanouts.remove(fanout)
        if not self._fanouts:
            # Nobody left to tell; the next operation reaps what expired meanwhile.
            self._arm()

    def _publish(self, change: Change) -> None:
        for fanout in list(self._fanouts):
            fanout.publish(change)

    # -- reservations expire -------------------------------------------------------
    def reap(self) -> None:
        """Drop the reservations whose time is up, announcing each."""
        now = self.clock()
        if self._earliest is None or self._earliest > now:
            return
        for held in sorted(self._by_call.values(), key=lambda r: r.expires_at):
            if held.expires_at > now:
                break
            self._drop(held)
            log.info("reservation of %s for call %s expired", held.agent, held.call_id)
            self._publish(
                Change(
                    RELEASED,
                    {
                        "call_id": held.call_id,
                        "agent": held.agent,
                        "reason": "expired",
                        "record": None,
                    },
                )
            )
        self._arm()

    def _arm(self) -> None:
        """One timer at the earliest deadline, so expiry is announced without traffic."""
        earliest = min((r.expires_at for r in self._by_call.values()), default=None)
        wanted = earliest is not None and bool(self._fanouts)
        if earliest == self._earliest and (self._timer is not None) == wanted:
            return
        self._earliest = earliest
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if earliest is None or not wanted:
            return
        loop = asyncio.get_running_loop()
        # A millisecond late rather than early, so the reap finds it due.
        self._timer = loop.call_later(max(0.0, earliest - self.clock()) + 0.001, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.reap()
        self._arm()  # the loop's clock and ours may disagree by a hair: try again

    def _drop(self, held: Reservation) -> None:
        del self._by_call[held.call_id]
        if self._by_agent.get(held.agent) == held.call_id:
            del self._by_agent[held.agent]

    # -- calls ---------------------------------------------------------------------
    def add_call(self, call: QueuedCall) -> None:
        self.reap()
        self._calls[call.call_id] = call
        self._publish(Change(CALL_ADDED, {"call": call.as_dict()}))

    def remove_call(self, call_id: str) -> QueuedCall | None:
        self.reap()
        call = self._calls.pop(call_id, None)
        if call is None:
            return None
        held = self._by_call.get(call_id)
        if held is not None:
            self._drop(held)
            self._arm()
        agent = held.agent if held is not None else None
        self._publish(Change(CALL_REMOVED, {"call": call.as_dict(), "agent": agent}))
        return call

    def calls(self, queue: str | None) -> list[QueuedCall]:
        self.reap()
        found = [c for c in self._calls.values() if queue is None or c.queue == queue]
        return sorted(found, key=QueuedCall.order_key)

    # -- agents --------------------------------------------------------------------
    def set_agent(self, record: AgentRecord) -> None:
        self.reap()
        self._agents[record.agent] = record
        self._publish(Change(AGENT, {"record": record.as_dict()}))

    def agents(self) -> dict[str, AgentRecord]:
        return dict(self._agents)

    # -- offers --------------------------------------------------------------------
    def reserve(self, call_id: str, agent: str, node: str, ttl: float) -> bool:
        span = ttl_ms(ttl) / 1000
        self.reap()
        record = self._agents.get(agent)
        refusal = (
            "no such call"
            if call_id not in self._calls
            else "call already reserved"
            if call_id in self._by_call
            else "agent already reserved"
            if agent in self._by_agent
            else "unknown agent"
            if record is None
            else f"agent {record.state}"
            if record.state != AVAILABLE
            else None
        )
        if refusal is not None:
            log.debug("reserve %s for call %s refused: %s", agent, call_id, refusal)
            return False
        held = Reservation(call_id, agent, node, self.clock() + span)
        self._by_call[call_id] = held
        self._by_agent[agent] = call_id
        self._publish(Change(RESERVED, {"reservation": held.as_dict()}))
        self._arm()
        return True

    def release(self, call_id: str, agent: str, record: AgentRecord | None) -> bool:
        if record is not None and record.agent != agent:
            raise ValueError(f"release of {agent} cannot write the record of {record.agent}")
        self.reap()
        held = self._by_call.get(call_id)
        if held is None or held.agent != agent:
            return False
        self._drop(held)
        self._arm()
        if record is not None:
            self._agents[agent] = record
        self._publish(
            Change(
                RELEASED,
                {
                    "call_id": call_id,
                    "agent": agent,
                    "reason": "released",
                    "record": record.as_dict() if record is not None else None,
                },
            )
        )
        return True

    def confirm(self, call_id: str, agent: str) -> bool:
        self.reap()
        record = self._agents.get(agent)
        if record is None:
            return False
        if record.state == ON_CALL and record.call_id == call_id and call_id not in self._calls:
            return True  # confirmed already: a repeat is not a failure
        if call_id not in self._calls:
            return False
        held = self._by_call.get(call_id)
        if held is not None and held.agent != agent:
            return False  # lapsed, and the call went to someone else
        if held is None and agent in self._by_agent:
            return False  # lapsed, and the agent was taken for another call
        if held is not None:
            self._drop(held)
            self._arm()
        call = self._calls.pop(call_id)
        record = replace(
            record,
            state=ON_CALL,
            call_id=call_id,
            since=self.clock(),
            reason=None,
            call_node=call.node,
        )
        self._agents[agent] = record
        self._publish(
            Change(CONFIRMED, {"call_id": call_id, "agent": agent, "record": record.as_dict()})
        )
        return True

    def reservations(self) -> dict[str, Reservation]:
        self.reap()
        return dict(self._by_call)

    # -- registrations -------------------------------------------------------------
    def set_bindings(self, aor: str, node: str, bindings: Sequence[BindingRecord]) -> None:
        for b in bindings:
            if b.aor != aor or b.node != node:
                raise ValueError(f"binding {b.contact} is for {b.aor} at {b.node}")
        held = self._bindings.setdefault(aor, {})
        for key in [k for k in held if k[0] == node]:
            del held[key]
        for b in bindings:
            held[(node, b.contact)] = b
        if not held:
            del self._bindings[aor]
        self._publish(Change(BINDING, {"aor": aor, "node": node}))

    def bindings(self, aor: str) -> list[BindingRecord]:
        held = self._bindings.get(aor, {})
        now = self.clock()
        for key in [k for k, b in held.items() if b.expires_at <= now]:
            del held[key]
        return order_bindings(held.values(), now)

    # -- nodes ---------------------------------------------------------------------
    def heartbeat(self, node: str, ttl: float, restart: bool) -> Heartbeat:
        span = ttl_ms(ttl) / 1000
        self.reap()
        now = self.clock()
        known = self._nodes.get(node, 0.0) > now
        if restart:
            self._bury(node, now, whole=False)
        # Only a node whose own heartbeat held clears others (heartbeat.lua says why).
        lost = sorted(n for n, t in self._nodes.items() if t <= now and n != node and known)
        for dead in lost:
            del self._nodes[dead]
            log.warning("node %s lost its heartbeat: clearing what it held", dead)
            self._bury(dead, now, whole=True)
            self._publish(Change(NODE_LOST, {"node": dead}))
        self._nodes[node] = now + span
        return Heartbeat(known, tuple(lost))

    def share_tallies(
        self, node: str, ttl: float, tallies: Mapping[str, QueueTally]
    ) -> dict[str, dict[str, QueueTally]]:
        now = self.clock()
        self._tallies[node] = (now + ttl_ms(ttl) / 1000, dict(tallies))
        return {
            n: dict(held)
            for n, (until, held) in sorted(self._tallies.items())
            if until > now and n in self._nodes
        }

    def _bury(self, dead: str, now: float, *, whole: bool) -> None:
        """What `heartbeat.lua` does through `bury` in `common.lua`, step for step."""
        for call in sorted(self._calls.values(), key=QueuedCall.order_key):
            if call.node == dead:
                self.remove_call(call.call_id)
        for name, record in sorted(self._agents.items()):
            state = None
            if record.call_node == dead:
                state = LOGGED_OUT if whole and record.node == dead else NOT_READY
            elif whole and record.node == dead and record.call_node is None:
                state = LOGGED_OUT
            if state is not None:
                self.set_agent(AgentRecord(name, state, NODE_LOST_REASON, now, record.node))
        if whole:
            for aor, held in list(self._bindings.items()):
                if any(node == dead for node, _ in held):
                    self.set_bindings(aor, dead, [])


class MemoryLiveState:
    """A client of a `MemoryStore`: the `LiveState` of a single-node deployment."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self._fanout = Fanout()
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self.store.attach(self._fanout)
            self._started = True

    async def close(self) -> None:
        if self._started:
            self.store.detach(self._fanout)
            self._started = False
        self._fanout.close()

    async def _turn(self) -> MemoryStore:
        # The round trip a real store would cost: other tasks may run here.
        await asyncio.sleep(0)
        return self.store

    async def add_call(self, call: QueuedCall) -> None:
        (await self._turn()).add_call(call)

    async def remove_call(self, call_id: str) -> QueuedCall | None:
        return (await self._turn()).remove_call(call_id)

    async def set_agent(self, record: AgentRecord) -> None:
        (await self._turn()).set_agent(record)

    async def reserve(self, call_id: str, agent: str, node: str, ttl: float) -> bool:
        return (await self._turn()).reserve(call_id, agent, node, ttl)

    async def release(self, call_id: str, agent: str, record: AgentRecord | None = None) -> bool:
        return (await self._turn()).release(call_id, agent, record)

    async def confirm(self, call_id: str, agent: str) -> bool:
        return (await self._turn()).confirm(call_id, agent)

    async def calls(self, queue: str | None = None) -> list[QueuedCall]:
        return (await self._turn()).calls(queue)

    async def agents(self) -> dict[str, AgentRecord]:
        return (await self._turn()).agents()

    async def reservations(self) -> dict[str, Reservation]:
        return (await self._turn()).reservations()

    async def snapshot(self) -> Snapshot:
        store = await self._turn()
        return Snapshot(tuple(store.calls(None)), store.agents(), store.reservations())

    async def set_bindings(self, aor: str, node: str, bindings: Sequence[BindingRecord]) -> None:
        (await self._turn()).set_bindings(aor, node, bindings)

    async def bindings(self, aor: str) -> list[BindingRecord]:
        return (await self._turn()).bindings(aor)

    async def heartbeat(self, node: str, ttl: float, *, restart: bool = False) -> Heartbeat:
        return (await self._turn()).heartbeat(node, ttl, restart)

    async def share_tallies(
        self, node: str, ttl: float, tallies: Mapping[str, QueueTally]
    ) -> dict[str, dict[str, QueueTally]]:
        return (await self._turn()).share_tallies(node, ttl, tallies)

    def changes(self, maxsize: int = 10_000) -> ChangeFeed:
        return self._fanout.open(maxsize)
