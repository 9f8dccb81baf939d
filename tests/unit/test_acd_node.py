"""Two ACD nodes sharing one in-process live state: offers reserved, races lost cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from acd.node import ELSEWHERE, AcdNode
from acd.queues import Destination
from acd.router import (
    AVAILABLE,
    LOGGED_OUT,
    NOT_READY,
    ON_CALL,
    RESERVED,
    WRAP_UP,
    Offer,
    QueueSpec,
    Router,
)
from acd.state import (
    NODE_LOST_REASON,
    RESYNC,
    Change,
    ChangeFeed,
    LiveState,
    StateUnavailable,
)
from acd.state_memory import MemoryLiveState, MemoryStore

WAIT = 5.0


@dataclass
class Member:
    """One node under test: the node and the offers it told the call model to ring."""

    node: AcdNode
    state: LiveState
    rung: list[Offer] = field(default_factory=list)
    new_offer: asyncio.Event = field(default_factory=asyncio.Event)

    def ring(self, offer: Offer) -> None:
        self.rung.append(offer)
        self.new_offer.set()

    async def next_offer(self) -> Offer:
        async with asyncio.timeout(WAIT):
            while not self.rung:
                self.new_offer.clear()
                await self.new_offer.wait()
        return self.rung.pop(0)


def queues(ring_timeout: float = 10.0, wrap_up: float = 0.0) -> dict[str, QueueSpec]:
    spec = QueueSpec("q", ("a1", "a2"), ring_timeout=ring_timeout, wrap_up=wrap_up)
    return {"q": spec}


async def settle(*members: Member) -> None:
    """Until no node has a change left to apply (applying one may publish more)."""
    async with asyncio.timeout(WAIT):
        while any(m.node.behind for m in members):
            for m in members:
                await m.node.settle()


@pytest.fixture
async def cluster() -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for m in made:
        await m.node.close()
        await m.state.close()


class FakeTime:
    """A clock the test moves by hand (for the store's heartbeat deadlines)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def join(
    cluster: list[Member],
    name: str,
    state: LiveState,
    ring_timeout: float = 10.0,
    reserve_slack: float = 5.0,
    wrap_up: float = 0.0,
    clock: Callable[[], float] = time.time,
    keep_changes: bool = False,
    specs: dict[str, QueueSpec] | None = None,
    heartbeat: tuple[float, float] = (1.0, 5.0),
) -> Member:
    await state.start()
    holder: list[Member] = []
    node = AcdNode(
        name,
        Router(specs or queues(ring_timeout, wrap_up)),
        state,
        lambda o: holder[0].ring(o),
        clock=clock,
        reserve_slack=reserve_slack,
        keep_changes=keep_changes,
        heartbeat_interval=heartbeat[0],
        heartbeat_ttl=heartbeat[1],
    )
    member = Member(node, state)
    holder.append(member)
    cluster.append(member)
    await node.start()
    return member


async def test_a_call_rings_an_agent_logged_in_at_another_node(cluster: list[Member]) -> None:
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store))
    b = await join(cluster, "B", MemoryLiveState(store))
    await b.node.login("a1")
    await settle(a, b)
    await a.node.enqueue("c1", "q")
    assert await a.next_offer() == Offer("c1", "a1", "q")
    held = await a.state.reservations()
    assert (held["c1"].agent, held["c1"].node) == ("a1", "A")
    await settle(a, b)
    # Node B sees a1 taken: its router holds it out, so B cannot offer it.
    assert b.node.router.agents["a1"].state == LOGGED_OUT
    assert await a.node.answered("c1")
    record = (await b.state.agents())["a1"]
    assert (record.state, record.call_id, record.node) == (ON_CALL, "c1", "B")
    await a.node.hangup("a1")  # no wrap-up in this queue: available at once
    assert (await a.state.agents())["a1"].state == AVAILABLE
    await settle(a, b)
    assert b.node.router.agents["a1"].state == AVAILABLE


async def test_two_nodes_never_ring_one_agent_and_the_loser_decides_again(
    cluster: list[Member],
) -> None:
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store))
    b = await join(cluster, "B", MemoryLiveState(store))
    await a.node.enqueue("c1", "q")
    await b.node.enqueue("c2", "q")
    await settle(a, b)
    await a.node.login("a1")  # both nodes have a caller waiting for this agent
    await settle(a, b)
    assert [o.call_id for o in a.rung + b.rung] == ["c1"]
    assert b.node.offers() == {} and b.node.router.agents["a1"].state == LOGGED_OUT
    # No answer: a1 is not ready everywhere, c1 keeps its place, nobody is rung.
    await a.node.no_answer(a.rung.pop().call_id)
    await settle(a, b)
    assert (await b.state.agents())["a1"].state == NOT_READY
    assert a.rung == b.rung == []
    # The caller of c1 hangs up while a1 is still away: c2 is next when a1 is back.
    await a.node.remove("c1")
    await a.node.ready("a1")
    assert await b.next_offer() == Offer("c2", "a1", "q")
    assert a.rung == []


async def test_a_dead_node_frees_its_agent_after_the_reservation_lapses(
    cluster: list[Member],
) -> None:
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store), ring_timeout=0.05, reserve_slack=0.05)
    b = await join(cluster, "B", MemoryLiveState(store))
    await b.node.enqueue("c2", "q")
    await a.node.enqueue("c1", "q")
    await settle(a, b)
    await a.node.login("a1")
    assert await a.next_offer() == Offer("c1", "a1", "q")
    await settle(a, b)
    assert not b.rung  # B tried too, was refused, and holds a1 out
    # Node A dies while a1's phone rings: nobody releases the reservation.
    cluster.remove(a)
    await a.node.close()
    await a.state.close()
    assert await b.next_offer() == Offer("c2", "a1", "q")


class FlakyState(MemoryLiveState):
    """A memory client whose store can be cut away, like a Redis that went down."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.down = False
        self.failures = 0  # operations still to fail after `down` is cleared
        self.feeds: list[ChangeFeed] = []

    def changes(self, maxsize: int = 10_000) -> ChangeFeed:
        feed = super().changes(maxsize)
        self.feeds.append(feed)
        return feed

    def back(self) -> None:
        """The store answers again, and the feed says what a reconnect says."""
        self.down = False
        for feed in self.feeds:
            feed.put(Change(RESYNC, {"reason": "reconnected"}))

    async def _turn(self) -> MemoryStore:
        store = await super()._turn()
        if self.down:
            raise StateUnavailable("cut away by the test")
        if self.failures:
            self.failures -= 1
            raise StateUnavailable("cut away by the test, briefly")
        return store


async def test_an_unreachable_store_means_no_offers_then_everything_is_caught_up(
    cluster: list[Member],
) -> None:
    store = MemoryStore()
    flaky = FlakyState(store)
    a = await join(cluster, "A", flaky)
    b = await join(cluster, "B", MemoryLiveState(store))
    await a.node.login("a1")
    await settle(a, b)
    flaky.down = True
    await a.node.enqueue("c1", "q")  # queued here only: never rung without a reservation
    assert a.rung == [] and a.node.router.agents["a1"].state == LOGGED_OUT
    flaky.back()
    assert await a.next_offer() == Offer("c1", "a1", "q")
    assert [c.call_id for c in await b.state.calls("q")] == ["c1"]  # written again
    flaky.down = True
    assert await a.node.answered("c1")  # the phone answered: bridged anyway
    flaky.back()
    await settle(a, b)
    record = (await b.state.agents())["a1"]
    assert (record.state, record.call_id) == (ON_CALL, "c1")
    assert await b.state.calls("q") == []


async def test_a_store_back_before_its_resync_is_not_taken_for_a_stale_view(
    cluster: list[Member], caplog: pytest.LogCaptureFixture
) -> None:
    """The store returns (empty) between a failed reserve and the feed's resync:
    its refusals then mean it missed this node's writes, not that another
    node took the agent, so the node waits for the resync instead of deciding
    again and again."""
    store = MemoryStore()
    flaky = FlakyState(store)
    a = await join(cluster, "A", flaky)
    await a.node.enqueue("c1", "q")
    flaky.failures = 2  # the login's write and the reserve; the snapshot after succeeds
    await a.node.login("a1")
    assert a.rung == [] and not any(r.levelname == "ERROR" for r in caplog.records)
    assert "a1" not in await a.state.agents()  # the store never had it
    flaky.back()
    assert await a.next_offer() == Offer("c1", "a1", "q")


async def test_mirror_moves_do_not_reach_the_store(cluster: list[Member]) -> None:
    """The router's own log of mirror logins and logouts is not the cluster's log."""
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store))
    b = await join(cluster, "B", MemoryLiveState(store))
    feed = b.state.changes()
    await a.node.login("a1")
    await a.node.enqueue("c1", "q")
    await settle(a, b)
    kinds: Sequence[str] = [c.kind for c in iter(feed.get_nowait, None)]
    assert kinds == ["agent", "call-added", "reserved"]
    assert b.node.router.changes == [] and a.node.router.changes == []
    assert b.node.router.agents["a1"].reason == ELSEWHERE


async def test_the_node_that_handled_the_call_ends_the_wrap_up(cluster: list[Member]) -> None:
    store = MemoryStore()
    now = [1_800_000_000.0]
    a = await join(cluster, "A", MemoryLiveState(store), wrap_up=30.0, clock=lambda: now[0])
    b = await join(cluster, "B", MemoryLiveState(store), wrap_up=30.0, clock=lambda: now[0])
    await b.node.login("a1")
    await a.node.enqueue("c1", "q")
    assert await a.next_offer() == Offer("c1", "a1", "q")
    assert await a.node.answered("c1")
    await b.node.enqueue("c2", "q")
    await a.node.hangup("a1")
    assert (await b.state.agents())["a1"].state == "wrap-up"
    assert a.node.get_timer() == now[0] + 30.0
    await settle(a, b)
    assert b.rung == []  # c2 waits: a1 is wrapping up at node A
    now[0] += 30.0
    await a.node.handle_timer()
    assert await b.next_offer() == Offer("c2", "a1", "q")


async def test_each_node_logs_the_agent_changes_it_made(cluster: list[Member]) -> None:
    """With `keep_changes`, the router's log keeps this node's own changes and
    drops the mirror moves, so no change is logged twice across the nodes."""
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store), wrap_up=30.0, keep_changes=True)
    b = await join(cluster, "B", MemoryLiveState(store), wrap_up=30.0, keep_changes=True)
    await a.node.login("a1")  # the phone registered at A
    await settle(a, b)
    await b.node.enqueue("c1", "q")
    assert await b.next_offer() == Offer("c1", "a1", "q")
    assert await b.node.answered("c1")
    await b.node.hangup("a1")
    await settle(a, b)

    def log(m: Member) -> list[tuple[str, str]]:
        return [(ch.agent, ch.new) for ch in m.node.router.changes]

    assert log(a) == [("a1", AVAILABLE)]
    assert log(b) == [("a1", RESERVED), ("a1", ON_CALL), ("a1", WRAP_UP)]
    # Node A's router holds a1 out while B writes its record.
    assert a.node.router.agents["a1"].reason == ELSEWHERE
    assert a.node.agent_status("a1") == (WRAP_UP, None)


async def test_every_node_sees_every_queued_call(cluster: list[Member]) -> None:
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store))
    b = await join(cluster, "B", MemoryLiveState(store))
    await a.node.enqueue("c1", "q")
    await b.node.enqueue("c2", "q", skills={"fr": 2}, tier="vip")
    await settle(a, b)
    for m in (a, b):
        assert [(c.call_id, c.node) for c in m.node.shared_calls("q")] == [
            ("c1", "A"),
            ("c2", "B"),
        ]
    (shared,) = [c for c in await a.state.calls("q") if c.call_id == "c2"]
    assert (dict(shared.skills), shared.tier) == ({"fr": 2}, "vip")
    await b.node.remove("c2", abandoned=True)
    await settle(a, b)
    assert [c.call_id for c in a.node.shared_calls()] == ["c1"]
    assert b.node.router.queue_stats("q", time.time()).abandoned == 1


async def test_a_call_the_router_lets_go_leaves_the_shared_state(cluster: list[Member]) -> None:
    """Max wait reached, overflow to a hangup: the router drops the call, and
    the node takes it out of the shared queue too, so no node counts or offers it."""
    store = MemoryStore()
    now = [1_800_000_000.0]
    spec = QueueSpec("q", ("a1",), max_wait=10.0, overflow=Destination("hangup"))
    a = await join(cluster, "A", MemoryLiveState(store), clock=lambda: now[0], specs={"q": spec})
    await a.node.enqueue("c1", "q")
    assert [c.call_id for c in await a.state.calls()] == ["c1"]
    now[0] += 10.0
    await a.node.handle_timer()
    assert await a.state.calls() == []
    assert a.node.shared_calls() == []


async def test_a_restarted_node_removes_the_calls_its_last_run_left(
    cluster: list[Member],
) -> None:
    store = MemoryStore()
    a = await join(cluster, "A", MemoryLiveState(store))
    b = await join(cluster, "B", MemoryLiveState(store))
    await a.node.enqueue("c1", "q")
    await b.node.enqueue("c2", "q")
    # Node A dies: its process, its callers and its view are gone.
    cluster.remove(a)
    await a.node.close()
    await a.state.close()
    assert {c.call_id for c in await b.state.calls()} == {"c1", "c2"}
    await join(cluster, "A", MemoryLiveState(store))
    assert [c.call_id for c in await b.state.calls()] == ["c2"]  # B's own stays


async def test_a_node_whose_heartbeat_lapses_is_cleared_by_a_survivor(
    cluster: list[Member],
) -> None:
    """Node A bridges a1 (logged in at B) to its caller, has c2 waiting, and dies.
    Once the heartbeat ttl has passed B's beat clears it: c2 leaves the shared
    queue, a1 is not ready "node lost" instead of on-call for good; made ready,
    a1 takes B's call."""
    clock = FakeTime()
    store = MemoryStore(clock)
    # The beats' own tasks never come round in this test: it beats by hand.
    beat = (3600.0, 7200.0)
    a = await join(cluster, "A", MemoryLiveState(store), clock=clock, heartbeat=beat)
    b = await join(cluster, "B", MemoryLiveState(store), clock=clock, heartbeat=beat)
    await b.node.login("a1")
    await settle(a, b)
    await a.node.enqueue("c1", "q")
    await a.node.enqueue("c2", "q")
    assert (await a.next_offer()).call_id == "c1"
    assert await a.node.answered("c1")
    await settle(a, b)
    assert b.node.agent_status("a1") == (ON_CALL, None)
    assert [c.call_id for c in b.node.shared_calls()] == ["c2"]
    # A dies: nothing of it runs any more, nothing is cleaned up by it.
    cluster.remove(a)
    await a.node.close()
    await a.state.close()
    clock.now += 5000.0
    await b.node.beat()  # within the ttl: A still counts as alive
    await settle(b)
    assert b.node.agent_status("a1") == (ON_CALL, None)
    clock.now += 5000.0  # A's deadline has passed, B's (renewed) has not
    await b.node.beat()
    await settle(b)
    assert b.node.agent_status("a1") == (NOT_READY, "node lost")
    assert b.node.shared_calls() == [] and await b.state.calls() == []
    await b.node.ready("a1")
    await b.node.enqueue("c3", "q")
    assert await b.next_offer() == Offer("c3", "a1", "q")


async def test_a_node_cleared_as_lost_writes_its_state_again(cluster: list[Member]) -> None:
    """A stall longer than the ttl: B clears A, then A beats again and puts
    back its queued call and the agent it is talking through."""
    clock = FakeTime()
    store = MemoryStore(clock)
    beat = (3600.0, 7200.0)  # beats by hand; A stalls by not beating
    a = await join(cluster, "A", MemoryLiveState(store), clock=clock, heartbeat=beat)
    b = await join(cluster, "B", MemoryLiveState(store), clock=clock, heartbeat=beat)
    await a.node.login("a1")
    await a.node.enqueue("c1", "q")
    assert await a.node.answered((await a.next_offer()).call_id)
    await a.node.enqueue("c2", "q")
    clock.now += 5000.0
    await b.node.beat()  # only a node whose own beat holds may clear others
    clock.now += 5000.0
    await b.node.beat()
    assert (await b.state.agents())["a1"].reason == NODE_LOST_REASON
    assert await b.state.calls() == []
    assert (await b.state.agents())["a1"].state == LOGGED_OUT  # A was its home too
    await a.node.beat()  # A wakes up and finds itself cleared
    record = (await b.state.agents())["a1"]
    assert (record.state, record.call_id, record.call_node) == (ON_CALL, "c1", "A")
    assert [c.call_id for c in await b.state.calls()] == ["c2"]
