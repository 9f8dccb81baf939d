"""The live-state conformance suite against a real redis-server, and Redis's own failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acd.state import RESYNC, AgentRecord, QueuedCall, StateUnavailable
from acd.state_redis import RedisLiveState
from tests.acd_state_contract import Cluster, LiveStateContract, NewCluster, next_change
from tests.integration.redis_server import RedisServer, redis_server, unique_prefix

__all__ = ["redis_server"]  # the fixture, imported for pytest

pytestmark = pytest.mark.integration


@pytest.fixture
async def new_cluster(redis_server: RedisServer) -> AsyncIterator[NewCluster]:
    """Each cluster is a fresh key prefix on the shared server; clients are connections."""
    made: list[Cluster] = []

    def make() -> Cluster:
        prefix = unique_prefix("acd")
        cluster = Cluster(lambda: RedisLiveState(redis_server.url, prefix=prefix))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


class TestRedisLiveState(LiveStateContract):
    pass


async def test_redis_down_raises_and_the_feed_resyncs_when_it_returns(tmp_path: Path) -> None:
    """Cut Redis away from a client, then bring it back on the same port."""
    server = RedisServer(tmp_path / "redis")
    await server.start()
    state = RedisLiveState(server.url, prefix=unique_prefix(), retries=1, socket_timeout=1.0)
    try:
        await state.start()
        feed = state.changes()
        await state.add_call(QueuedCall("c1", "q", "n1", 0, 1000.0))
        await next_change(feed)
        await server.stop()
        with pytest.raises(StateUnavailable):
            await state.set_agent(AgentRecord("a1", "available", None, 1.0, "n1"))
        await server.start()  # empty: the test server persists nothing
        assert (await next_change(feed, timeout=10.0)).kind == RESYNC
        await state.set_agent(AgentRecord("a1", "available", None, 1.0, "n1"))
        assert (await next_change(feed)).agent == "a1"
        assert list(await state.agents()) == ["a1"]
    finally:
        await state.close()
        await server.stop()


async def test_start_fails_cleanly_when_redis_is_not_there(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "never-started")
    state = RedisLiveState(server.url, prefix=unique_prefix(), retries=0, socket_timeout=1.0)
    with pytest.raises(StateUnavailable):
        await state.start()
    await state.close()


async def test_scripts_answer_a_retried_reserve_as_the_first(redis_server: RedisServer) -> None:
    """A reply lost after the reservation was made: the retry must not read as a refusal."""
    state = RedisLiveState(redis_server.url, prefix=unique_prefix())
    await state.start()
    try:
        await state.add_call(QueuedCall("c1", "q", "n1", 0, 1000.0))
        await state.set_agent(AgentRecord("a1", "available", None, 1.0, "n1"))
        args = ("c1", "a1", "n1", 60_000, "token-1", "available")
        assert await state._run("reserve", *args) == "ok"
        assert await state._run("reserve", *args) == "ok"  # the same request again
        assert await state._run("reserve", *args[:4], "token-2", "available") != "ok"
    finally:
        await state.close()


async def test_many_concurrent_reservations_share_a_bounded_pool(
    redis_server: RedisServer,
) -> None:
    """More requests in flight than connections: they queue for the pool, none fail."""
    state = RedisLiveState(redis_server.url, prefix=unique_prefix(), max_connections=4)
    await state.start()
    try:
        for i in range(50):
            await state.add_call(QueuedCall(f"c{i}", "q", "n1", 0, 1000.0 + i))
            await state.set_agent(AgentRecord(f"a{i}", "available", None, 1.0, "n1"))
        results = await asyncio.gather(
            *(state.reserve(f"c{i}", f"a{i}", "n1", 60.0) for i in range(50))
        )
        assert all(results)
    finally:
        await state.close()
