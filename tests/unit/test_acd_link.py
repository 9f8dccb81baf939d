"""The call model's ACD adapter over two nodes, the shared location service, `[state]`.

Both nodes share one in-process live state (the memory backend, which passes
the same conformance suite as Redis); tests/integration/test_acd_cluster.py
runs the same paths with real processes, phones and Redis.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from acd.decisions import Announce, Overflow
from acd.router import AVAILABLE, Offer, QueueSpec, Router
from acd.state import RESYNC, Change
from acd.state_memory import MemoryLiveState, MemoryStore
from ccserver.calls.acd_link import ClusterAcd, LocalAcd
from ccserver.config import ConfigError, load_config, shipped_config_dir
from ccserver.location_sharing import SharedLocation
from ccserver.sip.registrar import ContactRequest, LocationService
from tests.integration.peers import wait_for

WAIT = 5.0
T = TypeVar("T")


async def until(probe: Callable[[], T | None], what: str) -> T:
    """The probe's first truthy answer; the feed and the worker run meanwhile."""
    return await wait_for(probe, WAIT, what, interval=0.001)


class Node:
    """One node's adapter and what it handed the call model."""

    def __init__(
        self, name: str, store: MemoryStore, wrap_up: float = 0.0, announce: bool = False
    ) -> None:
        spec = QueueSpec("q", ("a1", "a2"), ring_timeout=10.0, wrap_up=wrap_up,
                         announce_position=announce)  # fmt: skip
        loop = asyncio.get_running_loop()
        self.acd = ClusterAcd(name, Router({"q": spec}), MemoryLiveState(store),
                              loop_time=loop.time)  # fmt: skip
        self.rung: list[Offer] = []
        self.decisions: list[Announce | Overflow] = []
        self.acd.deliver = self._deliver

    def _deliver(self, offers: list[Offer]) -> None:
        """What the call model's `_apply` does first: ring, then the router's own decisions."""
        self.rung.extend(offers)
        self.decisions.extend(self.acd.router.take_decisions())


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Node]]:
    store = MemoryStore()
    made: list[Node] = []

    def make(name: str, wrap_up: float = 0.0, announce: bool = False) -> Node:
        node = Node(name, store, wrap_up, announce)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.acd.close()


async def test_an_offer_reaches_the_call_model_only_once_reserved(
    nodes: Callable[..., Node],
) -> None:
    a, b = nodes("A"), nodes("B", wrap_up=30.0)
    await a.acd.start()
    await b.acd.start()
    now = asyncio.get_running_loop().time()
    assert a.acd.login("a1", now) == []  # queued: the answer comes through deliver
    await until(lambda: b.acd.agent_status("a1")[0] == AVAILABLE, "B sees a1")
    assert b.acd.enqueue("c1", "q", now) == []
    await until(lambda: b.rung, "the offer at B")
    assert b.rung == [Offer("c1", "a1", "q")] and a.rung == []
    held = await b.acd.state.reservations()
    assert (held["c1"].agent, held["c1"].node) == ("a1", "B")
    # Answered and hung up at B: wrap-up on B's router, on B's loop clock.
    b.acd.answered("c1", now, "a1")
    b.acd.hangup("a1", now)
    await until(lambda: a.acd.agent_status("a1")[0] == "wrap-up", "A sees the wrap-up")
    timer = b.acd.get_timer()
    assert timer is not None
    assert abs(timer - (asyncio.get_running_loop().time() + 30.0)) < 1.0
    # B logged its own changes for the call model; nothing for A's mirror.
    assert [(ch.agent, ch.new) for ch in b.acd.router.changes] == [
        ("a1", "reserved"),
        ("a1", "on-call"),
        ("a1", "wrap-up"),
    ]


async def test_events_apply_in_the_order_they_happened(nodes: Callable[..., Node]) -> None:
    """A caller joins and leaves before the store answered. The events run in
    that order: c1 is offered (the call model finds it gone and rings no
    one), then its abandon frees a1 for c2."""
    a = nodes("A")
    await a.acd.start()
    now = asyncio.get_running_loop().time()
    a.acd.login("a1", now)
    a.acd.enqueue("c1", "q", now)
    assert a.acd.abandon("c1", now) is None  # not in the router yet: nothing to report
    a.acd.enqueue("c2", "q", now)
    await until(lambda: len(a.rung) == 2, "the offer of c2")
    assert a.rung == [Offer("c1", "a1", "q"), Offer("c2", "a1", "q")]
    assert [c.call_id for c in await a.acd.state.calls()] == ["c2"]
    assert {r.agent for r in (await a.acd.state.reservations()).values()} == {"a1"}


async def test_queue_figures_count_every_node(nodes: Callable[..., Node]) -> None:
    a, b = nodes("A"), nodes("B")
    await a.acd.start()
    await b.acd.start()
    now = asyncio.get_running_loop().time()
    b.acd.login("a2", now)
    b.acd.pause("a2", now, "lunch")
    a.acd.enqueue("c1", "q", now)
    b.acd.enqueue("c2", "q", now)

    def seen() -> bool:
        stats = a.acd.queue_stats("q", now)
        return stats.waiting == 2 and stats.agents == {"not-ready": 1, "logged-out": 1}

    await until(seen, "A's figures")
    assert a.acd.agent_status("a2") == ("not-ready", "lunch")
    local = LocalAcd(a.acd.router).queue_stats("q", now)
    assert local.waiting == 1  # A's router holds A's calls only


async def test_a_phone_registered_at_one_node_is_found_at_the_other() -> None:
    store = MemoryStore()
    loop = asyncio.get_running_loop()
    aor = "sip:1001@ccserver"
    here, there = LocationService(), LocationService()
    state_a, state_b = MemoryLiveState(store), MemoryLiveState(store)
    a = SharedLocation(state_a, "A", here, [aor], loop.time)
    b = SharedLocation(state_b, "B", there, [aor], loop.time)
    for s in (state_a, state_b):
        await s.start()
    await a.start()
    await b.start()
    try:

        def register(expires: int, cseq: int) -> None:
            here.register(
                aor, [ContactRequest("sip:1001@127.0.0.1:5099", expires)], wildcard=False,
                header_expires=None, call_id="reg-1", cseq=cseq, source=("127.0.0.1", 5099),
                transport="udp", now=loop.time(),
            )  # fmt: skip
            a.publish(aor)

        register(300, 1)
        (found,) = await until(lambda: b.lookup(aor, loop.time()), "1001 at B")
        assert (found.contact, found.source) == ("sip:1001@127.0.0.1:5099", ("127.0.0.1", 5099))
        assert abs(found.expires_at - (loop.time() + 300)) < 1.0
        assert a.lookup(aor, loop.time()) == []  # a node's own phones are not "remote"
        register(0, 2)  # unregistered
        await until(lambda: not b.lookup(aor, loop.time()), "1001 gone at B")
        # The store lost A's bindings (a Redis restart without persistence):
        # after the feed's resync, A writes them again.
        register(300, 3)
        await until(lambda: b.lookup(aor, loop.time()), "1001 back at B")
        await state_b.set_bindings(aor, "A", [])
        await until(lambda: not b.lookup(aor, loop.time()), "1001 lost at B")
        assert a._feed is not None
        a._feed.put(Change(RESYNC, {"reason": "reconnected"}))
        await until(lambda: b.lookup(aor, loop.time()), "1001 written again")
    finally:
        await a.close()
        await b.close()
        for s in (state_a, state_b):
            await s.close()


def test_redis_without_a_url_is_refused_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), cfg)
    toml = cfg / "ccserver.toml"
    toml.write_text(toml.read_text().replace('backend = "memory"', 'backend = "redis"', 1))
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    (error,) = caught.value.errors
    assert error.file.endswith("ccserver.toml") and error.key == "state.redis_url"
    assert 'required with backend = "redis"' in error.reason
    toml.write_text(
        toml.read_text().replace(
            'backend = "redis"', 'backend = "redis"\nredis_url = "redis://127.0.0.1:6390/1"', 1
        )
    )
    state = load_config(cfg).state
    assert (state.redis_url, state.key_prefix) == ("redis://127.0.0.1:6390/1", "ccserver:")


def test_a_heartbeat_that_lapses_before_the_next_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), cfg)
    toml = cfg / "ccserver.toml"
    redis = 'backend = "redis"\nredis_url = "redis://127.0.0.1:6390/1"'
    text = toml.read_text().replace('backend = "memory"', redis, 1)
    toml.write_text(text.replace(redis, redis + "\nheartbeat_interval = 2\nheartbeat_ttl = 3"))
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    (error,) = caught.value.errors
    assert error.file.endswith("ccserver.toml") and error.key == "state"
    assert "heartbeat_ttl (3.0) must be at least twice heartbeat_interval (2.0)" in error.reason
    toml.write_text(text.replace(redis, redis + "\nheartbeat_interval = 0.5\nheartbeat_ttl = 2"))
    state = load_config(cfg).state
    assert (state.heartbeat_interval, state.heartbeat_ttl) == (0.5, 2.0)


def test_ring_all_is_refused_in_a_cluster(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), cfg)
    toml = cfg / "ccserver.toml"
    toml.write_text(
        toml.read_text().replace(
            'backend = "memory"', 'backend = "redis"\nredis_url = "redis://127.0.0.1:6390/1"', 1
        )
    )
    queues = cfg / "queues.toml"
    queues.write_text(queues.read_text() + '\n[queues.all]\nstrategy = "ring-all"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    (error,) = caught.value.errors
    assert error.file.endswith("queues.toml") and error.key == "queues.all.strategy"
    assert "ring-all is not supported" in error.reason


async def test_the_routers_own_decisions_reach_the_call_model(nodes: Callable[..., Node]) -> None:
    a = nodes("A", announce=True)
    await a.acd.start()
    now = asyncio.get_running_loop().time()
    a.acd.enqueue("c1", "q", now)
    a.acd.enqueue("c2", "q", now)
    await until(lambda: len(a.decisions) == 2, "two announcements")
    assert all(isinstance(d, Announce) for d in a.decisions)
    assert [(d.call_id, getattr(d, "position", None)) for d in a.decisions] == [
        ("c1", 1),
        ("c2", 2),
    ]
