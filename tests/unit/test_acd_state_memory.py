"""The live-state conformance suite against the in-process backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from acd.state import live_state_from_config
from acd.state_memory import MemoryLiveState, MemoryStore
from acd.state_redis import RedisLiveState
from tests.acd_state_contract import Cluster, LiveStateContract, NewCluster


@pytest.fixture
async def new_cluster() -> AsyncIterator[NewCluster]:
    """Each cluster is one `MemoryStore`; its clients are facades on it."""
    made: list[Cluster] = []

    def make() -> Cluster:
        store = MemoryStore()
        cluster = Cluster(lambda: MemoryLiveState(store))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


class TestMemoryLiveState(LiveStateContract):
    pass


def test_the_config_picks_the_backend() -> None:
    from ccserver.config.schema import StateConfig  # the config package, only for this test

    assert isinstance(live_state_from_config(StateConfig()), MemoryLiveState)
    shared = live_state_from_config(
        StateConfig(backend="redis", redis_url="redis://192.0.2.5:6379/2"), prefix="cc1:"
    )
    assert isinstance(shared, RedisLiveState)
    assert (shared.url, shared.prefix, shared.channel) == (
        "redis://192.0.2.5:6379/2",
        "cc1:",
        "cc1:changes",
    )
