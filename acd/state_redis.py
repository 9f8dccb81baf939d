"""Live state in Redis, shared by the nodes of a cluster.

Layout (every key starts with the configured prefix, `ccserver:` by default):

==========================  =========  ===============================================
key                         type       holds
==========================  =========  ===============================================
``calls``                   hash       call id -> QueuedCall as JSON
``queue:<name>``            zset       call ids scored by `acd.state.queue_score`
``agent:<name>``            hash       the AgentRecord's fields (absent when None)
``agents``                  set        every agent name that has a record
``lock:call:<id>``          string     reservation token, expires at the deadline (PXAT)
``lock:agent:<name>``       string     the same token, same deadline
``reservations``            hash       call id -> Reservation JSON + token (the index)
``deadlines``               zset       call id scored by its deadline in ms
``loc:<aor>``               hash       "<node>\\n<contact>" -> BindingRecord JSON
``aors:<node>``             set        the AORs `node` holds bindings for
``nodes``                   zset       node name scored by its heartbeat deadline in ms
``tallies:<node>``          string     the node's statistics tallies by queue (JSON), PX ttl
``changes``                 channel    every change, published by the script that made it
==========================  =========  ===============================================

Every mutation is one Lua script (`acd/lua/`), which checks, writes and
publishes its change in one atomic step; subscribers therefore receive
changes in commit order, and a client dying between a write and its
announcement cannot happen. Deadlines come from the server's TIME, so the
nodes' clocks never decide whether a reservation is still held.

Connection loss: redis-py retries each command with backoff (`retries`);
after that the operation raises `StateUnavailable`. Scripts that could run
twice on such a retry are idempotent (a reserve carries a token, a repeated
confirm succeeds). The feed's reader reconnects on its own and, since
changes published meanwhile are lost, hands every feed a `RESYNC` once it is
subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from acd.router import LOGGED_OUT, NOT_READY
from acd.state import (
    AVAILABLE,
    ON_CALL,
    RESERVED,
    RESYNC,
    AgentRecord,
    BindingRecord,
    Change,
    ChangeFeed,
    Fanout,
    Heartbeat,
    QueuedCall,
    Reservation,
    Snapshot,
    StateUnavailable,
    order_bindings,
    tallies_from_json,
    tallies_to_json,
    ttl_ms,
)
from acd.stats import QueueTally

__all__ = ["RedisLiveState"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCRIPTS = (
    "add_call",
    "remove_call",
    "set_agent",
    "reserve",
    "release",
    "confirm",
    "read",
    "sweep",
    "set_bindings",
    "heartbeat",
    "share_tallies",
)
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


@cache
def script_source(name: str) -> str:
    """A script with the shared prelude in front (they share helpers, not state)."""
    lua = files("acd") / "lua"
    return (lua / "common.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _agent_fields(record: AgentRecord) -> list[str]:
    """The record as hash field/value pairs; None fields are left out."""
    out: list[str] = []
    for key, value in record.as_dict().items():
        if value is not None:
            out += [key, repr(value) if isinstance(value, float) else str(value)]
    return out


def _agent_from_fields(flat: Sequence[str]) -> AgentRecord:
    return AgentRecord.from_dict(dict(zip(flat[::2], flat[1::2], strict=True)))


def _expiry(change: Change) -> float:
    held = change.reservation()
    return held.expires_at if held is not None else 0.0


def _reservation(info: str) -> Reservation:
    return Reservation.from_dict(json.loads(info))


async def _finish(task: asyncio.Task[None]) -> None:
    """Cancel `task` until it ends.

    redis-py can lose a cancellation that lands while a command waits on one
    of its timeouts (redis/redis-py#2028, #2551): the command returns as if
    nothing happened. One cancel is then not enough; the loops also check
    `_closing` between commands.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        log.error("live-state task %s failed", task.get_name(), exc_info=task.exception())


class RedisLiveState:
    """A `LiveState` client on a Redis server; one per node (and more in tests)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ccserver:",
        retries: int = 5,
        max_connections: int = 32,
        socket_timeout: float = 5.0,
        ping_interval: float = 5.0,
        sweep_interval: float = 1.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}changes"
        self._retries = retries
        self._max_connections = max_connections
        self._socket_timeout = socket_timeout
        self._ping_interval = ping_interval
        self._sweep_interval = sweep_interval
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._fanout = Fanout()
        self._reader: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._wake_sweeper = asyncio.Event()
        self._sweep_at: float | None = None  # next planned sweep, in the server's epoch seconds
        self._connected = False  # the feed's view of the link, for logging once per outage
        self._closing = False

    # -- life cycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Connect, load the scripts and subscribe before returning.

        Subscribing first means a feed opened after `start` misses nothing
        committed after it was opened, by this client or any other.
        """
        if self._redis is not None:
            return
        self._closing = False
        pool = BlockingConnectionPool.from_url(
            self.url,
            decode_responses=True,
            max_connections=self._max_connections,
            timeout=self._socket_timeout,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.5), self._retries),
        )
        self._redis = Redis.from_pool(pool)
        self._scripts = {n: self._redis.register_script(script_source(n)) for n in _SCRIPTS}
        try:
            self._pubsub = self._redis.pubsub()
            await self._pubsub.subscribe(self.channel)
            first = await self._pubsub.get_message(timeout=self._socket_timeout)
            if first is None or first.get("type") != "subscribe":
                raise StateUnavailable(f"no subscription to {self.channel} from {self.url}")
        except StateUnavailable:
            await self.close()
            raise
        except _UNREACHABLE as exc:
            await self.close()
            raise StateUnavailable(f"Redis at {self.url} unreachable: {exc}") from exc
        self._connected = True
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_feed(), name=f"live-state feed {self.prefix}")
        self._sweeper = loop.create_task(self._sweep(), name=f"live-state sweep {self.prefix}")

    async def close(self) -> None:
        self._closing = True
        self._wake_sweeper.set()
        for task in (self._reader, self._sweeper):
            if task is not None:
                await _finish(task)
        self._reader = self._sweeper = None
        if self._pubsub is not None:
            with contextlib.suppress(*_UNREACHABLE):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        self._fanout.close()

    # -- plumbing ------------------------------------------------------------------
    async def _call(self, what: Callable[[], Awaitable[T]]) -> T:
        """Run one command; unreachable after the retries becomes `StateUnavailable`."""
        if self._redis is None:
            raise StateUnavailable("live state not started")
        try:
            return await what()
        except _UNREACHABLE as exc:
            raise StateUnavailable(f"Redis at {self.url} unreachable: {exc}") from exc

    async def _run(self, name: str, *args: str | int) -> Any:
        script = self._scripts[name]
        return await self._call(lambda: script(args=(self.prefix, *args)))

    # -- calls ---------------------------------------------------------------------
    async def add_call(self, call: QueuedCall) -> None:
        await self._run("add_call", call.call_id, call.queue, call.score, _dumps(call.as_dict()))

    async def remove_call(self, call_id: str) -> QueuedCall | None:
        raw = await self._run("remove_call", call_id)
        return QueuedCall.from_dict(json.loads(raw)) if raw else None

    async def calls(self, queue: str | None = None) -> list[QueuedCall]:
        raw, _, _ = await self._run("read", "calls", queue or "")
        found = [QueuedCall.from_dict(json.loads(c)) for c in raw if c]
        return found if queue else sorted(found, key=QueuedCall.order_key)

    # -- agents --------------------------------------------------------------------
    async def set_agent(self, record: AgentRecord) -> None:
        await self._run("set_agent", record.agent, _dumps(record.as_dict()), *_agent_fields(record))

    async def agents(self) -> dict[str, AgentRecord]:
        _, raw, _ = await self._run("read", "agents", "")
        records = (_agent_from_fields(flat) for flat in raw if flat)
        return {r.agent: r for r in records}

    # -- offers --------------------------------------------------------------------
    async def reserve(self, call_id: str, agent: str, node: str, ttl: float) -> bool:
        # The token makes the script idempotent under redis-py's retry: a reply
        # lost after the reservation was made is answered "ok" on the retry.
        token = secrets.token_hex(8)
        result = await self._run("reserve", call_id, agent, node, ttl_ms(ttl), token, AVAILABLE)
        if result != "ok":
            log.debug("reserve %s for call %s refused: %s", agent, call_id, result)
        return bool(result == "ok")

    async def release(self, call_id: str, agent: str, record: AgentRecord | None = None) -> bool:
        if record is None:
            result = await self._run("release", call_id, agent, "")
        else:
            if record.agent != agent:
                raise ValueError(f"release of {agent} cannot write the record of {record.agent}")
            result = await self._run(
                "release", call_id, agent, _dumps(record.as_dict()), *_agent_fields(record)
            )
        if result != "ok":
            log.debug("release %s for call %s: %s", agent, call_id, result)
        return bool(result == "ok")

    async def confirm(self, call_id: str, agent: str) -> bool:
        result = await self._run("confirm", call_id, agent, ON_CALL)
        if result != "ok":
            log.info("confirm %s for call %s refused: %s", agent, call_id, result)
        return bool(result == "ok")

    async def reservations(self) -> dict[str, Reservation]:
        _, _, raw = await self._run("read", "reservations", "")
        found = (_reservation(info) for info in raw)
        return {r.call_id: r for r in found}

    async def snapshot(self) -> Snapshot:
        calls, agents, reservations = await self._run("read", "snapshot", "")
        queued = sorted(
            (QueuedCall.from_dict(json.loads(c)) for c in calls), key=QueuedCall.order_key
        )
        records = (_agent_from_fields(flat) for flat in agents if flat)
        held = (_reservation(info) for info in reservations)
        return Snapshot(tuple(queued), {r.agent: r for r in records}, {r.call_id: r for r in held})

    # -- registrations -------------------------------------------------------------
    async def set_bindings(self, aor: str, node: str, bindings: Sequence[BindingRecord]) -> None:
        args: list[str] = []
        for b in bindings:
            if b.aor != aor or b.node != node:
                raise ValueError(f"binding {b.contact} is for {b.aor} at {b.node}")
            args += [b.contact, _dumps(b.as_dict())]
        await self._run("set_bindings", aor, node, *args)

    async def bindings(self, aor: str) -> list[BindingRecord]:
        redis = self._redis
        if redis is None:
            raise StateUnavailable("live state not started")
        key = f"{self.prefix}loc:{aor}"
        raw: list[bytes | str] = await self._call(lambda: redis.hvals(key))
        found = (BindingRecord.from_dict(json.loads(v)) for v in raw)
        return order_bindings(found, time.time())

    # -- nodes ---------------------------------------------------------------------
    async def heartbeat(self, node: str, ttl: float, *, restart: bool = False) -> Heartbeat:
        known, lost = await self._run(
            "heartbeat", node, ttl_ms(ttl), "1" if restart else "0", LOGGED_OUT, NOT_READY
        )
        return Heartbeat(bool(known), tuple(str(n) for n in lost))

    async def share_tallies(
        self, node: str, ttl: float, tallies: Mapping[str, QueueTally]
    ) -> dict[str, dict[str, QueueTally]]:
        flat = await self._run("share_tallies", node, ttl_ms(ttl), tallies_to_json(tallies))
        return {
            str(n): tallies_from_json(raw) for n, raw in zip(flat[::2], flat[1::2], strict=True)
        }

    # -- the feed ------------------------------------------------------------------
    def changes(self, maxsize: int = 10_000) -> ChangeFeed:
        return self._fanout.open(maxsize)

    async def _read_feed(self) -> None:
        """Move published changes to the feeds; reconnect, and say RESYNC after a gap."""
        pubsub = self._pubsub
        assert pubsub is not None
        pause = 0.05
        while not self._closing:
            try:
                message = await pubsub.get_message(timeout=self._ping_interval)
                if message is None:
                    # Quiet: a ping proves the link is alive (or starts the reconnect).
                    await pubsub.ping()
                    continue
            except _UNREACHABLE as exc:
                if self._connected:
                    log.warning("live-state feed lost its Redis link: %s", exc)
                    self._connected = False
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            pause = 0.05
            kind = message.get("type")
            if kind == "subscribe":
                # redis-py resubscribes by itself after a reconnect; what was
                # published in between is lost, so every view must reload.
                log.warning("live-state feed resubscribed to %s: views resync", self.channel)
                self._connected = True
                self._fanout.publish(Change(RESYNC, {"reason": "reconnected"}))
                self._wake_sweeper.set()
            elif kind == "message":
                self._deliver(message["data"])

    def _deliver(self, raw: str) -> None:
        try:
            decoded = json.loads(raw)
            change = Change(decoded["kind"], decoded.get("data") or {})
        except (ValueError, KeyError, TypeError):
            log.error("unreadable change on %s: %.200r", self.channel, raw)
            return
        self._fanout.publish(change)
        if change.kind == RESERVED and (self._sweep_at is None or _expiry(change) < self._sweep_at):
            self._wake_sweeper.set()  # a deadline before the planned sweep

    async def _sweep(self) -> None:
        """Announce lapsed reservations at their deadline, even with no other traffic.

        Every client sweeps; the script is atomic, so each expiry is announced once.
        """
        loop = asyncio.get_running_loop()
        delay = 0.0
        while not self._closing:
            # A timer that sets the event rather than asyncio.timeout: on 3.11 a
            # timeout expiring as close() cancels us can swallow the cancellation.
            alarm = loop.call_later(delay, self._wake_sweeper.set)
            try:
                await self._wake_sweeper.wait()
            finally:
                alarm.cancel()
            self._wake_sweeper.clear()
            try:
                now_ms, next_ms = await self._run("sweep")
            except StateUnavailable:
                delay = self._sweep_interval
                continue
            delay = self._sweep_interval
            if next_ms:
                # Server-relative: this node's clock does not enter into it.
                delay = min(delay, max(0.0, (int(next_ms) - int(now_ms)) / 1000) + 0.001)
            self._sweep_at = int(now_ms) / 1000 + delay
