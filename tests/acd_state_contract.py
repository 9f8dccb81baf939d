"""The conformance suite every `acd.state.LiveState` backend must pass.

A backend's test module subclasses `LiveStateContract` and provides one
fixture, `new_cluster`: a factory of `Cluster`s, each a fresh, empty store
that any number of clients can attach to (separate connections for Redis,
separate facades on one `MemoryStore` for memory). Several clients of one
cluster stand for several nodes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    PRIORITY_MAX,
    PRIORITY_MIN,
    RELEASED,
    RESERVED,
    RESYNC,
    AgentRecord,
    BindingRecord,
    Change,
    ChangeFeed,
    Heartbeat,
    LiveState,
    QueuedCall,
    Snapshot,
    queue_score,
)
from acd.stats import QueueTally

NOT_READY = "not-ready"
LOGGED_OUT = "logged-out"
LONG = 60.0  # a ttl no test outlives
WAIT = 5.0  # the longest any test waits for a change it expects


class Cluster:
    """Clients of one fresh store; closed together."""

    def __init__(self, connect: Callable[[], LiveState]) -> None:
        self._connect = connect
        self.clients: list[LiveState] = []

    async def client(self) -> LiveState:
        state = self._connect()
        await state.start()
        self.clients.append(state)
        return state

    async def close(self) -> None:
        clients, self.clients = self.clients, []
        for state in clients:
            await state.close()

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


NewCluster = Callable[[], Cluster]


async def next_change(feed: ChangeFeed, kind: str | None = None, timeout: float = WAIT) -> Change:
    """The next change (of `kind`, skipping others), or fail after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            change = await feed.get()
            if kind is None or change.kind == kind:
                return change


def call(call_id: str, queue: str = "q", at: float = 1000.0, priority: int = 0) -> QueuedCall:
    return QueuedCall(call_id, queue, "n1", priority, at)


def agent(name: str, state: str = AVAILABLE, since: float = 100.0, **kw: Any) -> AgentRecord:
    return AgentRecord(name, state, since=since, node="n1", **kw)


def assert_matching(snap: Snapshot) -> None:
    """No call with two agents, no agent with two calls, nothing reserved that is gone."""
    agents = [r.agent for r in snap.reservations.values()]
    assert len(agents) == len(set(agents)), f"an agent holds two calls: {snap.reservations}"
    queued = {c.call_id for c in snap.calls}
    for call_id, held in snap.reservations.items():
        assert held.call_id == call_id
        assert call_id in queued, f"reserved call {call_id} is not queued"


# -- hypothesis: operations of two clients ------------------------------------------

CALLS = ("c1", "c2", "c3")
AGENTS = ("a1", "a2", "a3")

_client = st.integers(0, 1)
_call = st.sampled_from(CALLS)
_agent = st.sampled_from(AGENTS)
OPERATION = st.one_of(
    st.tuples(st.just("reserve"), _client, _call, _agent),
    st.tuples(st.just("release"), _client, _call, _agent, st.booleans()),
    st.tuples(st.just("confirm"), _client, _call, _agent),
    st.tuples(st.just("remove"), _client, _call),
    st.tuples(st.just("add"), _client, _call, st.integers(0, 2)),
    st.tuples(st.just("agent"), _client, _agent, st.sampled_from([AVAILABLE, NOT_READY])),
)
#: One batch runs its operations concurrently (asyncio.gather); a batch of one
#: is checked against the model exactly.
BATCHES = st.lists(st.lists(OPERATION, min_size=1, max_size=3), min_size=1, max_size=20)


@dataclass
class Model:
    """What a correct store holds after a sequence of operations, one at a time."""

    calls: set[str] = field(default_factory=lambda: set(CALLS))
    states: dict[str, str] = field(default_factory=lambda: dict.fromkeys(AGENTS, AVAILABLE))
    talking: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(AGENTS))
    held: dict[str, str] = field(default_factory=dict)  # call -> agent

    def apply(self, op: tuple[Any, ...]) -> object:
        kind = op[0]
        if kind == "reserve":
            _, _, c, a = op
            ok = (
                c in self.calls
                and c not in self.held
                and a not in self.held.values()
                and self.states[a] == AVAILABLE
            )
            if ok:
                self.held[c] = a
            return ok
        if kind == "release":
            _, _, c, a, not_ready = op
            if self.held.get(c) != a:
                return False
            del self.held[c]
            if not_ready:
                self.states[a], self.talking[a] = NOT_READY, None
            return True
        if kind == "confirm":
            _, _, c, a = op
            if c not in self.calls:
                return self.states[a] == ON_CALL and self.talking[a] == c
            holder = self.held.get(c)
            if holder not in (None, a) or (holder is None and a in self.held.values()):
                return False
            self.calls.discard(c)
            self.held.pop(c, None)
            self.states[a], self.talking[a] = ON_CALL, c
            return True
        if kind == "remove":
            _, _, c = op
            present = c in self.calls
            self.calls.discard(c)
            self.held.pop(c, None)
            return present
        if kind == "add":
            self.calls.add(op[2])
            return None
        if kind == "agent":
            _, _, a, state = op
            self.states[a], self.talking[a] = state, None
            return None
        raise AssertionError(op)

    def matches(self, snap: Snapshot) -> None:
        assert {c.call_id for c in snap.calls} == self.calls
        assert {c: r.agent for c, r in snap.reservations.items()} == self.held
        assert {a: r.state for a, r in snap.agents.items()} == self.states
        assert {a: r.call_id for a, r in snap.agents.items()} == self.talking

    @classmethod
    def of(cls, snap: Snapshot) -> Model:
        return cls(
            {c.call_id for c in snap.calls},
            {a: r.state for a, r in snap.agents.items()},
            {a: r.call_id for a, r in snap.agents.items()},
            {c: r.agent for c, r in snap.reservations.items()},
        )


async def run_operation(state: LiveState, op: tuple[Any, ...]) -> object:
    kind = op[0]
    if kind == "reserve":
        return await state.reserve(op[2], op[3], f"node{op[1]}", LONG)
    if kind == "release":
        record = agent(op[3], NOT_READY, reason="no answer") if op[4] else None
        return await state.release(op[2], op[3], record)
    if kind == "confirm":
        return await state.confirm(op[2], op[3])
    if kind == "remove":
        return (await state.remove_call(op[2])) is not None
    if kind == "add":
        await state.add_call(call(op[2], at=1000.0 + CALLS.index(op[2]), priority=op[3]))
        return None
    if kind == "agent":
        await state.set_agent(agent(op[2], op[3]))
        return None
    raise AssertionError(op)


# -- the suite ----------------------------------------------------------------------


class LiveStateContract:
    """Subclass in a test module and provide the `new_cluster` fixture."""

    @pytest.fixture
    async def cluster(self, new_cluster: NewCluster) -> AsyncIterator[Cluster]:
        async with new_cluster() as cluster:
            yield cluster

    # -- calls -----------------------------------------------------------------------
    async def test_calls_come_in_priority_then_arrival_order(self, cluster: Cluster) -> None:
        s = await cluster.client()
        await s.add_call(call("late", at=1002.0))
        await s.add_call(call("early", at=1001.0))
        await s.add_call(call("vip", at=1003.0, priority=PRIORITY_MAX))
        await s.add_call(call("low", at=1000.0, priority=PRIORITY_MIN))
        await s.add_call(call("other", queue="q2", at=999.0))
        assert [c.call_id for c in await s.calls("q")] == ["vip", "early", "late", "low"]
        assert [c.call_id for c in await s.calls("q2")] == ["other"]
        assert [c.call_id for c in await s.calls()] == ["vip", "other", "early", "late", "low"]
        assert await s.calls("empty") == []

    async def test_queued_call_keeps_every_field(self, cluster: Cluster) -> None:
        s, t = await cluster.client(), await cluster.client()
        full = QueuedCall("c1", "q", "n1", 3, 1234.5678, {"fr": 5, "cards": 1}, "gold", True)
        await s.add_call(full)
        assert await t.calls("q") == [full]

    async def test_adding_a_queued_call_again_replaces_it(self, cluster: Cluster) -> None:
        s = await cluster.client()
        await s.add_call(call("c1", at=1000.0))
        await s.add_call(call("c2", at=1001.0))
        await s.add_call(call("c1", queue="q2", at=1000.0))
        assert [c.call_id for c in await s.calls("q")] == ["c2"]
        assert [c.call_id for c in await s.calls("q2")] == ["c1"]

    async def test_remove_call_returns_it_once(self, cluster: Cluster) -> None:
        s, t = await cluster.client(), await cluster.client()
        await s.add_call(call("c1"))
        assert await t.remove_call("c1") == call("c1")
        assert await s.remove_call("c1") is None
        assert await s.calls("q") == []

    async def test_priority_and_arrival_outside_the_score_range_are_refused(self) -> None:
        assert queue_score(PRIORITY_MIN, 2**42 / 1000 - 0.001) < 2**53  # exact in a double
        with pytest.raises(ValueError, match="priority"):
            QueuedCall("c1", "q", "n1", PRIORITY_MAX + 1, 0.0)
        with pytest.raises(ValueError, match="enqueued_at"):
            QueuedCall("c1", "q", "n1", 0, time.time() * 1000)  # milliseconds by mistake

    # -- agents ----------------------------------------------------------------------
    async def test_agent_records_are_shared_and_overwritten(self, cluster: Cluster) -> None:
        s, t = await cluster.client(), await cluster.client()
        first = AgentRecord("1001", NOT_READY, "break", 1700000000.25, "n1", None)
        await s.set_agent(first)
        await s.set_agent(agent("1002"))
        assert await t.agents() == {"1001": first, "1002": agent("1002")}
        talking = AgentRecord("1001", ON_CALL, None, 1700000001.5, "n2", "c9")
        await t.set_agent(talking)
        assert (await s.agents())["1001"] == talking

    # -- reservations ----------------------------------------------------------------
    async def test_reserve_succeeds_once(self, cluster: Cluster) -> None:
        s, t = await cluster.client(), await cluster.client()
        for c in ("c1", "c2"):
            await s.add_call(call(c))
        for a in ("a1", "a2"):
            await s.set_agent(agent(a))
        assert await s.reserve("c1", "a1", "n1", LONG)
        assert not await t.reserve("c1", "a1", "n2", LONG)  # the very same pair
        assert not await t.reserve("c2", "a1", "n2", LONG)  # the agent is taken
        assert not await t.reserve("c1", "a2", "n2", LONG)  # the call is taken
        assert await t.reserve("c2", "a2", "n2", LONG)
        held = await t.reservations()
        assert {c: (r.agent, r.node) for c, r in held.items()} == {
            "c1": ("a1", "n1"),
            "c2": ("a2", "n2"),
        }
        before = time.time()
        assert all(before < r.expires_at <= before + LONG + 1 for r in held.values())
        # A reservation is a mark beside the record, not a change of it.
        assert (await s.agents())["a1"] == agent("a1")

    async def test_reserve_needs_a_queued_call_and_an_available_agent(
        self, cluster: Cluster
    ) -> None:
        s = await cluster.client()
        await s.add_call(call("c1"))
        await s.set_agent(agent("busy", ON_CALL, call_id="c0"))
        await s.set_agent(agent("paused", NOT_READY))
        assert not await s.reserve("c1", "ghost", "n1", LONG)
        assert not await s.reserve("c1", "busy", "n1", LONG)
        assert not await s.reserve("c1", "paused", "n1", LONG)
        await s.set_agent(agent("a1"))
        assert not await s.reserve("nope", "a1", "n1", LONG)
        assert await s.reservations() == {}
        with pytest.raises(ValueError):
            await s.reserve("c1", "a1", "n1", 0.0)

    async def test_release_frees_both_and_the_call_stays_queued(self, cluster: Cluster) -> None:
        s, t = await cluster.client(), await cluster.client()
        await s.add_call(call("c1"))
        await s.set_agent(agent("a1"))
        await s.set_agent(agent("a2"))
        assert await s.reserve("c1", "a1", "n1", LONG)
        assert not await t.release("c1", "a2")  # not that agent's reservation
        assert await t.release("c1", "a1")
        assert not await t.release("c1", "a1")  # released already
        assert await s.reservations() == {}
        assert [c.call_id for c in await s.calls("q")] == ["c1"]
        assert await t.reserve("c1", "a2", "n2", LONG)  # the call is free again
        assert await t.release("c1", "a2")
        assert await s.reserve("c1", "a1", "n1", LONG)  # and so is the agent

    async def test_release_writes_the_next_record_in_the_same_step(self, cluster: Cluster) -> None:
        s = await cluster.client()
        await s.add_call(call("c1"))
        await s.set_agent(agent("a1"))
        assert await s.reserve("c1", "a1", "n1", LONG)
        unanswered = agent("a1", NOT_READY, since=200.0, reason="no answer")
        assert await s.release("c1", "a1", unanswered)
        assert (await s.agents())["a1"] == unanswered
        assert not await s.reserve("c1", "a1", "n1", LONG)
        with pytest.raises(ValueError):
            await s.release("c1", "a1", agent("a2"))

    async def test_confirm_takes_the_call_out_and_puts_the_agent_on_call(
        self, cluster: Cluster
    ) -> None:
        s, t = await cluster.client(), await cluster.client()
        await s.add_call(call("c1"))
        await s.add_call(call("c2", at=1001.0))
        await s.set_agent(agent("a1", reason="back"))
        assert await s.reserve("c1", "a1", "n1", LONG)
        before = time.time()
        assert await t.confirm("c1", "a1")
        assert [c.call_id for c in await s.calls("q")] == ["c2"]
        assert await s.reservations() == {}
        record = (await s.agents())["a1"]
        assert (record.state, record.call_id, record.reason, record.node) == (
            ON_CALL,
            "c1",
            None,
            "n1",
        )
        assert before - 1 <= record.since <= time.time() + 1
        assert await s.confirm("c1", "a1")  # a repeat (a retried request) is no failure
        assert not await s.reserve("c2", "a1", "n1", LONG)  # on-call is not available

    async def test_confirm_refuses_when_the_call_went_elsewhere(self, cluster: Cluster) -> None:
        s = await cluster.client()
        await s.add_call(call("c1"))
        await s.add_call(call("c2", at=1001.0))
        for a in ("a1", "a2", "a3"):
            await s.set_agent(agent(a))
        assert await s.reserve("c1", "a1", "n1", LONG)
        assert not await s.confirm("c1", "a2")  # c1 is a1's
        assert await s.reserve("c2", "a3", "n1", LONG)
        assert await s.release("c1", "a1")
        assert not await s.confirm("c1", "a3")  # lapsed for c1, but a3 is held for c2
        assert not await s.confirm("gone", "a1")
        assert not await s.confirm("c1", "ghost")
        # Lapsed, and nobody took either side since: the answered phone stands.
        assert await s.confirm("c1", "a2")

    async def test_removing_a_reserved_call_frees_its_agent(self, cluster: Cluster) -> None:
        s, t = await cluster.client(), await cluster.client()
        await s.add_call(call("c1"))
        await s.add_call(call("c2", at=1001.0))
        await s.set_agent(agent("a1"))
        assert await s.reserve("c1", "a1", "n1", LONG)
        assert await t.remove_call("c1") == call("c1")
        assert await s.reservations() == {}
        assert await t.reserve("c2", "a1", "n2", LONG)

    async def test_a_lapsed_reservation_frees_agent_and_call(self, cluster: Cluster) -> None:
        node_a, node_b = await cluster.client(), await cluster.client()
        await node_a.add_call(call("c1"))
        await node_a.set_agent(agent("a1"))
        feed = node_b.changes()
        assert await node_a.reserve("c1", "a1", "n1", 0.15)
        # Node A "dies" mid-offer: nobody releases. B hears the lapse by itself.
        lapsed = await next_change(feed, RELEASED)
        assert lapsed.data == {"call_id": "c1", "agent": "a1", "reason": "expired", "record": None}
        assert await node_b.reservations() == {}
        assert await node_b.reserve("c1", "a1", "n2", LONG)

    async def test_a_lapsed_reservation_cannot_be_released_but_can_be_confirmed(
        self, cluster: Cluster
    ) -> None:
        s = await cluster.client()
        await s.add_call(call("c1"))
        await s.set_agent(agent("a1"))
        feed = s.changes()
        assert await s.reserve("c1", "a1", "n1", 0.05)
        await next_change(feed, RELEASED)
        assert not await s.release("c1", "a1", agent("a1", NOT_READY))
        assert (await s.agents())["a1"].state == AVAILABLE  # nothing written
        assert await s.confirm("c1", "a1")

    # -- the change feed -------------------------------------------------------------
    async def test_the_feed_delivers_each_mutation_in_commit_order(self, cluster: Cluster) -> None:
        writer, reader = await cluster.client(), await cluster.client()
        theirs, mine = reader.changes(), writer.changes()
        await writer.add_call(call("c1"))
        await writer.add_call(call("c2", at=1001.0))
        await writer.set_agent(agent("a1"))
        await writer.reserve("c1", "a1", "n1", LONG)
        await writer.release("c1", "a1", agent("a1", NOT_READY, reason="no answer"))
        await writer.set_agent(agent("a1"))
        await writer.reserve("c2", "a1", "n1", LONG)
        await writer.confirm("c2", "a1")
        await writer.reserve("c1", "a1", "n1", LONG)  # refused: no change
        await writer.remove_call("c1")
        await writer.remove_call("c1")  # nothing to remove: no change
        expected = [
            (CALL_ADDED, "c1", None),
            (CALL_ADDED, "c2", None),
            (AGENT, None, "a1"),
            (RESERVED, "c1", "a1"),
            (RELEASED, "c1", "a1"),
            (AGENT, None, "a1"),
            (RESERVED, "c2", "a1"),
            (CONFIRMED, "c2", "a1"),
            (CALL_REMOVED, "c1", None),
        ]
        for feed in (theirs, mine):
            got = [await next_change(feed) for _ in expected]
            assert [(c.kind, c.call_id, c.agent) for c in got] == expected
            assert got[0].call() == call("c1")
            assert got[2].record() == agent("a1")
            reservation = got[3].reservation()
            assert reservation is not None and reservation.node == "n1"
            assert got[4].data["reason"] == "released"
            assert got[4].record() == agent("a1", NOT_READY, reason="no answer")
            confirmed = got[7].record()
            assert confirmed is not None and (confirmed.state, confirmed.call_id) == (ON_CALL, "c2")
            assert got[8].call() == call("c1") and got[8].data["agent"] is None
            assert feed.get_nowait() is None

    async def test_removing_a_reserved_call_names_the_freed_agent(self, cluster: Cluster) -> None:
        s = await cluster.client()
        await s.add_call(call("c1"))
        await s.set_agent(agent("a1"))
        await s.reserve("c1", "a1", "n1", LONG)
        feed = s.changes()  # may still receive the reservation, in flight from Redis
        await s.remove_call("c1")
        removed = await next_change(feed, CALL_REMOVED)
        assert removed.data["agent"] == "a1"

    async def test_feeds_end_when_closed_or_when_their_client_closes(
        self, cluster: Cluster
    ) -> None:
        s = await cluster.client()
        one, two = s.changes(), s.changes()
        one.close()
        await s.add_call(call("c1"))
        assert [c async for c in one] == []
        assert (await next_change(two)).kind == CALL_ADDED
        await cluster.close()
        assert [c async for c in two] == []

    async def test_a_feed_that_falls_behind_is_told_to_resync(self, cluster: Cluster) -> None:
        s = await cluster.client()
        slow, probe = s.changes(maxsize=3), s.changes()
        for i in range(5):
            await s.add_call(call(f"c{i}", at=1000.0 + i))
        # Every feed of a client receives a change at the same moment.
        for i in range(5):
            assert (await next_change(probe)).call_id == f"c{i}"
        assert slow.overflows == 1
        got = [slow.get_nowait() for _ in range(3)]
        assert [(c.kind, c.call_id) if c else None for c in got] == [
            (RESYNC, None),
            (CALL_ADDED, "c4"),
            None,
        ]

    # -- registrations ---------------------------------------------------------------
    async def test_bindings_are_shared_and_each_node_replaces_only_its_own(
        self, cluster: Cluster
    ) -> None:
        node_a, node_b = await cluster.client(), await cluster.client()
        aor = "sip:1001@ccserver"
        later = time.time() + 300
        desk = BindingRecord(aor, "sip:1001@192.0.2.7:5060", "n1", later, ("192.0.2.7", 5060))
        soft = BindingRecord(
            aor,
            "sip:1001@198.51.100.9:5062;transport=tcp",
            "n2",
            later,
            None,
            "tcp",
            0.5,
            "<urn:x>",
        )
        feed = node_b.changes()
        await node_a.set_bindings(aor, "n1", [desk])
        await node_b.set_bindings(aor, "n2", [soft])
        assert await node_b.bindings(aor) == [desk, soft]  # highest q first
        assert (await next_change(feed, BINDING)).data == {"aor": aor, "node": "n1"}
        moved = BindingRecord(aor, "sip:1001@192.0.2.8:5060", "n1", later, ("192.0.2.8", 5060))
        await node_a.set_bindings(aor, "n1", [moved])
        assert await node_b.bindings(aor) == [moved, soft]
        await node_a.set_bindings(aor, "n1", [])
        assert await node_a.bindings(aor) == [soft]
        stale = BindingRecord(aor, "sip:1001@192.0.2.9", "n1", time.time() - 1)
        await node_a.set_bindings(aor, "n1", [stale])
        assert await node_a.bindings(aor) == [soft]
        assert await node_a.bindings("sip:nobody@ccserver") == []
        with pytest.raises(ValueError):
            await node_a.set_bindings(aor, "n2", [moved])

    # -- nodes -----------------------------------------------------------------------
    async def test_a_lost_node_is_cleared_once_by_a_surviving_node(self, cluster: Cluster) -> None:
        node_a, node_b = await cluster.client(), await cluster.client()
        aor_a, aor_b = "sip:1001@ccserver", "sip:1002@ccserver"
        later = time.time() + 300
        await node_a.set_bindings(
            aor_a, "n1", [BindingRecord(aor_a, "sip:1001@192.0.2.7", "n1", later)]
        )
        kept = BindingRecord(aor_b, "sip:1002@192.0.2.8", "n2", later)
        await node_b.set_bindings(aor_b, "n2", [kept])
        await node_a.add_call(QueuedCall("c1", "q", "n1", 0, 1000.0))
        await node_b.add_call(QueuedCall("c2", "q", "n2", 0, 1001.0))
        # a1 talks through n1; a2 is logged in at n1; a3 too, but talks through n2;
        # a4 (at n2) is being rung by n1 for c1.
        talking = AgentRecord("a1", ON_CALL, None, 100.0, "n2", "x1", "n1")
        await node_a.set_agent(talking)
        await node_a.set_agent(AgentRecord("a2", AVAILABLE, None, 100.0, "n1"))
        elsewhere = AgentRecord("a3", ON_CALL, None, 100.0, "n1", "x3", "n2")
        await node_b.set_agent(elsewhere)
        await node_b.set_agent(AgentRecord("a4", AVAILABLE, None, 100.0, "n2"))
        assert await node_a.reserve("c1", "a4", "n1", LONG)
        assert await node_a.heartbeat("n1", 0.05) == Heartbeat(False)
        assert (await node_b.heartbeat("n2", LONG)).lost == ()  # n1 is alive yet
        feed = node_b.changes()
        for _ in range(int(WAIT / 0.02)):  # n1 stops beating; n2 beats on
            beat = await node_b.heartbeat("n2", LONG)
            if beat.lost:
                break
            await asyncio.sleep(0.02)  # time passing for the ttl, not a wait for a task
        assert beat == Heartbeat(True, ("n1",))
        lost = await next_change(feed, NODE_LOST)
        assert lost.data == {"node": "n1"}
        snap = await node_b.snapshot()
        assert [c.call_id for c in snap.calls] == ["c2"] and snap.reservations == {}
        seen = {
            n: (r.state, r.reason, r.node, r.call_id, r.call_node) for n, r in snap.agents.items()
        }
        assert seen == {
            "a1": (NOT_READY, NODE_LOST_REASON, "n2", None, None),
            "a2": (LOGGED_OUT, NODE_LOST_REASON, "n1", None, None),
            "a3": (ON_CALL, None, "n1", "x3", "n2"),
            "a4": (AVAILABLE, None, "n2", None, None),
        }
        assert await node_b.bindings(aor_a) == [] and await node_b.bindings(aor_b) == [kept]
        # Once: the next beat finds nobody, and n1 coming back is told it was lost.
        assert (await node_b.heartbeat("n2", LONG)).lost == ()
        assert await node_a.heartbeat("n1", LONG) == Heartbeat(False)
        assert await node_a.heartbeat("n1", LONG) == Heartbeat(True)

    async def test_a_node_whose_own_beat_lapsed_clears_nobody(self, cluster: Cluster) -> None:
        """After an outage of the store every heartbeat has lapsed: the first
        beat back must not take the other nodes for dead."""
        node_a, node_b = await cluster.client(), await cluster.client()
        await node_a.add_call(QueuedCall("c1", "q", "n1", 0, 1000.0))
        await node_a.heartbeat("n1", 0.05)
        await node_b.heartbeat("n2", 0.05)
        await asyncio.sleep(0.1)  # neither beats: both heartbeats lapse (time, not a wait)
        first_back = await node_b.heartbeat("n2", LONG)
        assert first_back == Heartbeat(False)  # n1 has lapsed too, but is not cleared
        assert [c.call_id for c in await node_b.calls()] == ["c1"]
        assert await node_a.heartbeat("n1", LONG) == Heartbeat(False)
        assert await node_b.heartbeat("n2", LONG) == Heartbeat(True)

    async def test_a_restarting_node_clears_its_last_runs_calls(self, cluster: Cluster) -> None:
        s = await cluster.client()
        aor = "sip:1001@ccserver"
        mine = BindingRecord(aor, "sip:1001@192.0.2.7", "n1", time.time() + 300)
        await s.set_bindings(aor, "n1", [mine])
        await s.add_call(QueuedCall("c1", "q", "n1", 0, 1000.0))
        await s.add_call(QueuedCall("c2", "q", "n2", 0, 1001.0))
        await s.set_agent(AgentRecord("a1", ON_CALL, None, 100.0, "n1", "x1", "n1"))
        await s.set_agent(AgentRecord("a2", AVAILABLE, None, 100.0, "n1"))
        assert await s.heartbeat("n1", LONG, restart=True) == Heartbeat(False)
        snap = await s.snapshot()
        assert [c.call_id for c in snap.calls] == ["c2"]
        assert (snap.agents["a1"].state, snap.agents["a1"].reason) == (NOT_READY, NODE_LOST_REASON)
        assert snap.agents["a2"] == AgentRecord("a2", AVAILABLE, None, 100.0, "n1")
        assert await s.bindings(aor) == [mine]  # its phones are still there

    async def test_confirm_names_the_node_holding_the_call(self, cluster: Cluster) -> None:
        s = await cluster.client()
        await s.add_call(QueuedCall("c1", "q", "n2", 0, 1000.0))
        await s.set_agent(agent("a1"))
        assert await s.reserve("c1", "a1", "n2", LONG)
        assert await s.confirm("c1", "a1")
        record = (await s.agents())["a1"]
        assert (record.node, record.call_node) == ("n1", "n2")

    async def test_tallies_are_shared_while_their_node_beats(self, cluster: Cluster) -> None:
        node_a, node_b = await cluster.client(), await cluster.client()
        mine = {"q": QueueTally(answered=2, answered_in_time=1, wait_total=12.5)}
        theirs = {"q": QueueTally(abandoned=1), "r": QueueTally(handled=1, handle_total=80.0)}
        await node_a.heartbeat("n1", LONG)
        await node_b.heartbeat("n2", 0.2)
        assert await node_a.share_tallies("n1", LONG, mine) == {"n1": mine}
        assert await node_b.share_tallies("n2", 0.2, theirs) == {"n1": mine, "n2": theirs}
        for _ in range(int(WAIT / 0.02)):  # n2 stops beating: its tallies go with it
            if "n2" not in await node_a.share_tallies("n1", LONG, mine):
                break
            await asyncio.sleep(0.02)  # time passing for the ttl, not a wait for a task
        assert await node_a.share_tallies("n1", LONG, mine) == {"n1": mine}

    # -- concurrency -----------------------------------------------------------------
    async def test_racing_clients_never_double_book(self, cluster: Cluster) -> None:
        """Three nodes reserve overlapping pairs at once, thousands of times."""
        clients = [await cluster.client() for _ in range(3)]
        calls = [f"c{i}" for i in range(12)]
        agents = [f"a{i}" for i in range(8)]
        for i, c in enumerate(calls):
            await clients[0].add_call(call(c, at=1000.0 + i))
        for a in agents:
            await clients[0].set_agent(agent(a))
        rng = random.Random(20261124)
        attempts = granted = 0
        for round_no in range(25):
            pairs = [(rng.choice(calls), rng.choice(agents)) for _ in range(60)]
            jobs = [
                clients[i % 3].reserve(c, a, f"n{i % 3}", LONG) for i, (c, a) in enumerate(pairs)
            ]
            results = await asyncio.gather(*jobs)
            attempts += len(jobs)
            won = [pair for pair, ok in zip(pairs, results, strict=True) if ok]
            granted += len(won)
            assert len({c for c, _ in won}) == len(won), f"a call booked twice: {won}"
            assert len({a for _, a in won}) == len(won), f"an agent booked twice: {won}"
            snap = await clients[1].snapshot()
            assert_matching(snap)
            assert {(c, r.agent) for c, r in snap.reservations.items()} == set(won)
            # Every free agent that wanted a free call got one: the race lost nothing.
            wanted = {(c, a) for c, a in pairs}
            assert all(c in snap.reservations or a in snap.reserved_agents() for c, a in wanted)
            # End the round the way calls end: some answered, the rest released.
            ends = []
            for i, (c, a) in enumerate(won):
                client = clients[(i + round_no) % 3]
                ends.append(client.confirm(c, a) if i % 4 == 0 else client.release(c, a))
            assert all(await asyncio.gather(*ends))
            for i, (c, a) in enumerate(won):
                if i % 4 == 0:  # the answered call is done: a new one arrives, agent frees
                    await clients[2].add_call(call(c, at=2000.0 + round_no))
                    await clients[2].set_agent(agent(a))
        assert attempts == 1500 and granted > 25
        assert_matching(await clients[0].snapshot())

    def __init_subclass__(cls, **kw: Any) -> None:
        # One hypothesis test per backend: hypothesis wants each test function
        # run by one class only (its database replays examples per function).
        super().__init_subclass__(**kw)
        cls.test_interleavings_keep_the_invariants = _interleavings_test()  # type: ignore[attr-defined]


def _interleavings_test() -> Callable[..., Any]:
    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batches=BATCHES)
    async def test_interleavings_keep_the_invariants(
        self: LiveStateContract,
        new_cluster: NewCluster,
        batches: Sequence[Sequence[tuple[Any, ...]]],
    ) -> None:
        """Two clients, operations alone (checked against a model) or at once."""
        async with new_cluster() as cluster:
            clients = [await cluster.client(), await cluster.client()]
            for i, c in enumerate(CALLS):
                await clients[0].add_call(call(c, at=1000.0 + i))
            for a in AGENTS:
                await clients[1].set_agent(agent(a))
            model = Model()
            for batch in batches:
                results = await asyncio.gather(*(run_operation(clients[op[1]], op) for op in batch))
                snap = await clients[0].snapshot()
                assert_matching(snap)
                if len(batch) == 1:
                    assert results[0] == model.apply(batch[0]), batch[0]
                    model.matches(snap)
                else:
                    model = Model.of(snap)

    return test_interleavings_keep_the_invariants
