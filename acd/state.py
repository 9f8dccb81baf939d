"""The ACD's live state behind one interface: queued calls, agents, reservations.

The router (`acd.router`) decides who should get a call; a `LiveState` makes
that decision stick when several nodes share the same agents. Two backends
implement it: `acd.state_memory` (one node, the default) and `acd.state_redis`
(several nodes sharing one Redis). Both pass the same conformance suite.

The one guarantee that matters across nodes is `LiveState.reserve`: it checks
and marks a (call, agent) pair in one atomic step, so no call is ever offered
to two agents and no agent is ever offered two calls, whatever the nodes'
views say. A reservation lapses after its ttl unless confirmed or released,
so a node that dies while a phone rings does not keep the agent.

Every mutation is announced on the change feed (`LiveState.changes`), in the
order the store committed it; each node keeps its view current from the feed
and reloads a `Snapshot` when the feed says it may have missed something
(`RESYNC`).

Times are seconds since the epoch (wall clock): they are compared between
nodes, so a monotonic clock would mean nothing on another machine.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from acd.router import AVAILABLE, ON_CALL
from acd.stats import QueueTally

if TYPE_CHECKING:
    from ccserver.config.schema import StateConfig

__all__ = [
    "AGENT",
    "AVAILABLE",
    "BINDING",
    "CALL_ADDED",
    "CALL_REMOVED",
    "CONFIRMED",
    "NODE_LOST",
    "NODE_LOST_REASON",
    "ON_CALL",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "RELEASED",
    "RESERVED",
    "RESYNC",
    "AgentRecord",
    "BindingRecord",
    "Change",
    "ChangeFeed",
    "ChangeKind",
    "Fanout",
    "Heartbeat",
    "LiveState",
    "QueuedCall",
    "Reservation",
    "Snapshot",
    "StateError",
    "StateUnavailable",
    "live_state_from_config",
    "order_bindings",
    "queue_score",
    "tallies_from_json",
    "tallies_to_json",
    "ttl_ms",
]

# -- change kinds ------------------------------------------------------------------

ChangeKind = Literal[
    "call-added",
    "call-removed",
    "agent",
    "reserved",
    "released",
    "confirmed",
    "binding",
    "node-lost",
    "resync",
]
CALL_ADDED: Final = "call-added"  # data: {"call": QueuedCall}
CALL_REMOVED: Final = "call-removed"  # data: {"call": QueuedCall, "agent": str | None}
AGENT: Final = "agent"  # data: {"record": AgentRecord}
RESERVED: Final = "reserved"  # data: {"reservation": Reservation}
RELEASED: Final = "released"  # data: {"call_id", "agent", "reason", "record": AgentRecord|None}
CONFIRMED: Final = "confirmed"  # data: {"call_id", "agent", "record": AgentRecord}
BINDING: Final = "binding"  # data: {"aor", "node"}
#: A node's heartbeat lapsed and what it owned was cleared (announced after the
#: call-removed, agent and binding changes of that clean-up). data: {"node"}
NODE_LOST: Final = "node-lost"
#: Not a mutation: the feed may have lost changes (a reconnect, a slow reader);
#: reload a `Snapshot` before trusting the view again.
RESYNC: Final = "resync"

# -- queue order -------------------------------------------------------------------

#: Priorities a queued call may carry. The bounds keep `queue_score` an exact
#: integer below 2**53, where a Redis sorted-set score (a double) is exact.
PRIORITY_MIN: Final = -1000
PRIORITY_MAX: Final = 1000
_BAND: Final = 2**42  # ms: wider than any epoch in milliseconds until the year 2109


def queue_score(priority: int, enqueued_at: float) -> int:
    """Position key of a call in its queue: higher priority first, then first come.

    One number so Redis can keep a queue as a sorted set: the priority band
    (highest first) times a span wider than any epoch in milliseconds, plus the
    arrival in milliseconds. Calls in the same millisecond fall back to their
    call id, in both backends.
    """
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority {priority} outside {PRIORITY_MIN}..{PRIORITY_MAX}")
    arrival = round(enqueued_at * 1000)
    if not 0 <= arrival < _BAND:
        raise ValueError(f"enqueued_at {enqueued_at} is not an epoch time in seconds")
    return (PRIORITY_MAX - priority) * _BAND + arrival


# -- records -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """A call waiting in a queue. `node` answered it and is the only one that offers it.

    `priority` is what the call model gave the router (before tier and
    aging); `skills` the router's requirements, skill -> minimum level.
    """

    call_id: str
    queue: str
    node: str
    priority: int = 0
    enqueued_at: float = 0.0
    skills: Mapping[str, int] = field(default_factory=dict, hash=False)
    tier: str | None = None
    callback: bool = False

    def __post_init__(self) -> None:
        queue_score(self.priority, self.enqueued_at)  # range check, with its message
        if not self.call_id or not self.queue:
            raise ValueError("a queued call needs a call id and a queue")

    @property
    def score(self) -> int:
        return queue_score(self.priority, self.enqueued_at)

    def order_key(self) -> tuple[int, str]:
        """Sort key shared by both backends (the sorted set's own order)."""
        return (self.score, self.call_id)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skills"] = dict(self.skills)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueuedCall:
        return cls(
            call_id=str(data["call_id"]),
            queue=str(data["queue"]),
            node=str(data["node"]),
            priority=int(data.get("priority", 0)),
            enqueued_at=float(data.get("enqueued_at", 0.0)),
            skills={str(k): int(v) for k, v in (data.get("skills") or {}).items()},
            tier=None if data.get("tier") is None else str(data["tier"]),
            callback=bool(data.get("callback", False)),
        )


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent as every node sees it.

    `state` uses the router's names (`available`, `on-call`, `wrap-up`, ...);
    only `available` can be reserved. `since` is when the state began (for
    `available`, the idle start that longest-idle routing compares). `node` is
    where the agent logged in; `call_id` the call being talked, if any;
    `call_node` the node holding the agent's call (on-call, wrap-up), which
    is what a node's clean-up looks for when that node dies.
    A reservation does not change the record: it is a separate mark, so that
    its expiry needs nothing restored.
    """

    agent: str
    state: str
    reason: str | None = None
    since: float = 0.0
    node: str | None = None
    call_id: str | None = None
    call_node: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentRecord:
        def opt(key: str) -> str | None:
            value = data.get(key)
            return None if value is None or value == "" else str(value)

        return cls(
            agent=str(data["agent"]),
            state=str(data["state"]),
            reason=opt("reason"),
            since=float(data.get("since") or 0.0),
            node=opt("node"),
            call_id=opt("call_id"),
            call_node=opt("call_node"),
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    """An offer being made: `node` rings `agent` for `call_id` until `expires_at`."""

    call_id: str
    agent: str
    node: str
    expires_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        return cls(
            call_id=str(data["call_id"]),
            agent=str(data["agent"]),
            node=str(data["node"]),
            expires_at=float(data["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """A registered contact, shared so that any node can ring any phone.

    `node` holds the registration; `source` and `transport` are where the
    REGISTER came from (the address to use for a phone behind NAT).
    """

    aor: str
    contact: str
    node: str
    expires_at: float
    source: tuple[str, int] | None = None
    transport: str = "udp"
    q: float = 1.0
    instance: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = list(self.source) if self.source is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BindingRecord:
        src = data.get("source")
        return cls(
            aor=str(data["aor"]),
            contact=str(data["contact"]),
            node=str(data["node"]),
            expires_at=float(data["expires_at"]),
            source=(str(src[0]), int(src[1])) if src else None,
            transport=str(data.get("transport", "udp")),
            q=float(data.get("q", 1.0)),
            instance=None if data.get("instance") is None else str(data["instance"]),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One committed mutation, as announced on the feed; `data` is plain JSON."""

    kind: ChangeKind
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def call_id(self) -> str | None:
        """The call concerned, whatever the kind."""
        for key in ("call", "reservation"):
            inner = self.data.get(key)
            if isinstance(inner, Mapping):
                return str(inner["call_id"])
        value = self.data.get("call_id")
        return None if value is None else str(value)

    @property
    def agent(self) -> str | None:
        """The agent concerned, whatever the kind."""
        for key in ("record", "reservation"):
            inner = self.data.get(key)
            if isinstance(inner, Mapping):
                return str(inner["agent"])
        value = self.data.get("agent")
        return None if value is None else str(value)

    def call(self) -> QueuedCall | None:
        raw = self.data.get("call")
        return QueuedCall.from_dict(raw) if isinstance(raw, Mapping) else None

    def record(self) -> AgentRecord | None:
        raw = self.data.get("record")
        return AgentRecord.from_dict(raw) if isinstance(raw, Mapping) else None

    def reservation(self) -> Reservation | None:
        raw = self.data.get("reservation")
        return Reservation.from_dict(raw) if isinstance(raw, Mapping) else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a node's view needs, read in one atomic step."""

    calls: tuple[QueuedCall, ...]  # every queue, in queue order
    agents: Mapping[str, AgentRecord]
    reservations: Mapping[str, Reservation]  # by call id

    def queue(self, name: str) -> list[QueuedCall]:
        return [c for c in self.calls if c.queue == name]

    def reserved_agents(self) -> dict[str, Reservation]:
        return {r.agent: r for r in self.reservations.values()}


#: Reason written on the records of agents a lost node held (docs/cluster.md).
NODE_LOST_REASON: Final = "node lost"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one heartbeat found.

    `known`: the store held a live heartbeat of this node before this one.
    False at a node's first beat, and when its heartbeat lapsed meanwhile (a
    stall longer than the ttl): other nodes may then have cleared what it
    owned, so it writes its state again. `lost`: the nodes whose heartbeat
    this beat found lapsed and cleared; each is cleared by one beat only.
    """

    known: bool
    lost: tuple[str, ...] = ()


class StateError(Exception):
    """A live-state operation that cannot be done as asked."""


class StateUnavailable(StateError):
    """The shared store cannot be reached (after the client's retries)."""


# -- the interface -----------------------------------------------------------------


class LiveState(Protocol):
    """The ACD's shared live state. Every method is atomic in the store.

    Results that report a lost race (`reserve`, `confirm`, `release` returning
    False) are normal traffic between nodes, not errors; `StateUnavailable` is
    raised when the store cannot be reached at all.
    """

    async def start(self) -> None:
        """Connect, and subscribe the change feed before returning."""

    async def close(self) -> None:
        """Stop background work and end every open feed."""

    async def add_call(self, call: QueuedCall) -> None:
        """Queue a call, or replace it if its id is queued (so a retry is harmless)."""

    async def remove_call(self, call_id: str) -> QueuedCall | None:
        """Take a call out (abandoned, overflowed); frees any agent reserved for it."""

    async def set_agent(self, record: AgentRecord) -> None:
        """Write an agent's record; a reservation the agent holds is left alone."""

    async def reserve(self, call_id: str, agent: str, node: str, ttl: float) -> bool:
        """Atomically mark `call_id` and `agent` for one offer, for `ttl` seconds.

        True only when the call is queued and unreserved and the agent is
        `available` and unreserved. False means the caller's view was stale.
        """

    async def release(self, call_id: str, agent: str, record: AgentRecord | None = None) -> bool:
        """End the offer without a connection: the call stays queued.

        `record`, when given, is written in the same atomic step (an agent who
        did not answer becomes not ready before anyone else can reserve them).
        False, and nothing written, when the reservation is no longer held.
        """

    async def confirm(self, call_id: str, agent: str) -> bool:
        """The agent answered: the call leaves its queue, the agent goes on-call.

        Succeeds when the reservation is still held, and also when it lapsed
        but neither side was taken since (the phone did answer). Repeating a
        confirm that succeeded succeeds again.
        """

    async def calls(self, queue: str | None = None) -> list[QueuedCall]:
        """Queued calls (reserved ones included) in queue order."""

    async def agents(self) -> dict[str, AgentRecord]:
        """Every agent record."""

    async def reservations(self) -> dict[str, Reservation]:
        """Reservations still held, by call id."""

    async def snapshot(self) -> Snapshot:
        """Calls, agents and reservations read together."""

    async def set_bindings(self, aor: str, node: str, bindings: Sequence[BindingRecord]) -> None:
        """Replace the contacts `node` holds for `aor` (empty: the node holds none)."""

    async def bindings(self, aor: str) -> list[BindingRecord]:
        """Unexpired contacts of `aor` from every node, highest q first."""

    async def heartbeat(self, node: str, ttl: float, *, restart: bool = False) -> Heartbeat:
        """Say `node` is alive for `ttl` more seconds, and clear the nodes that are not.

        A node whose heartbeat lapsed is cleared in the same atomic step, once:
        its queued calls leave (their callers went with it, and so do the
        agents reserved for them), agents whose call it held become not
        ready with reason `NODE_LOST_REASON`, agents logged in at it (their
        phones registered there) become logged out with that reason unless
        another node holds their call, and its registrations leave the
        location service. Only a beat that finds `node`'s own heartbeat still
        held clears others: after an outage of the store itself every
        heartbeat has lapsed, and the nodes beat again within one interval.
        `restart`: `node` is starting, so what its last run
        left (queued calls, agents whose call it held) is cleared first; its
        logins and registrations stay (its phones are still reachable).
        """

    async def share_tallies(
        self, node: str, ttl: float, tallies: Mapping[str, QueueTally]
    ) -> dict[str, dict[str, QueueTally]]:
        """Publish `node`'s statistics tallies by queue for `ttl` seconds; read every node's.

        Returns the tallies of every node with a heartbeat (this one
        included), by node then queue.
        """

    def changes(self, maxsize: int = 10_000) -> ChangeFeed:
        """A feed of every change committed from now on, by any client.

        It may also carry a few changes committed just before (still on their
        way from Redis). Open the feed before reading a snapshot, and apply
        its changes over the snapshot: every change is a whole new value, so
        applying one twice or late leaves the view right once the feed catches up.
        """


# -- the change feed ---------------------------------------------------------------


class ChangeFeed:
    """One consumer's bounded queue of changes; iterate it or `get()` from it.

    Publishing never waits for the consumer. A consumer that falls `maxsize`
    changes behind loses them all and finds one `RESYNC` instead: a view
    missing one change is wrong, so it must reload rather than limp on.
    """

    def __init__(self, on_close: Callable[[ChangeFeed], None], maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a change feed holds at least one change")
        self._on_close = on_close
        self._queue: deque[Change] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.overflows = 0

    def put(self, change: Change) -> None:
        if self.closed:
            return
        if len(self._queue) >= self._maxsize:
            self.overflows += 1
            self._queue.clear()
            change = Change(RESYNC, {"reason": "overflow"})
        self._queue.append(change)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __len__(self) -> int:
        """Changes received and not yet taken."""
        return len(self._queue)

    def get_nowait(self) -> Change | None:
        return self._queue.popleft() if self._queue else None

    async def get(self) -> Change:
        """The next change; `StopAsyncIteration` once closed and drained."""
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[Change]:
        return self

    async def __anext__(self) -> Change:
        return await self.get()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._on_close(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Fanout:
    """Hands each change to every open feed; shared by both backends."""

    def __init__(self) -> None:
        self._feeds: list[ChangeFeed] = []

    def open(self, maxsize: int) -> ChangeFeed:
        feed = ChangeFeed(self._discard, maxsize)
        self._feeds.append(feed)
        return feed

    def _discard(self, feed: ChangeFeed) -> None:
        if feed in self._feeds:
            self._feeds.remove(feed)

    def publish(self, change: Change) -> None:
        for feed in list(self._feeds):
            feed.put(change)

    def close(self) -> None:
        for feed in list(self._feeds):
            feed.close()


# -- helpers shared by the backends ------------------------------------------------


def tallies_to_json(tallies: Mapping[str, QueueTally]) -> str:
    return json.dumps({q: t.as_dict() for q, t in tallies.items()}, separators=(",", ":"))


def tallies_from_json(raw: str) -> dict[str, QueueTally]:
    data = json.loads(raw)
    return {str(q): QueueTally.from_dict(t) for q, t in data.items() if isinstance(t, dict)}


def order_bindings(bindings: Iterable[BindingRecord], now: float) -> list[BindingRecord]:
    """Unexpired bindings, most preferred first (RFC 3261 §16.6: highest q)."""
    live = [b for b in bindings if b.expires_at > now]
    return sorted(live, key=lambda b: (-b.q, -b.expires_at, b.node, b.contact))


def ttl_ms(ttl: float) -> int:
    """A ttl in whole milliseconds, at least one (Redis refuses PX 0)."""
    if not ttl > 0 or math.isinf(ttl):
        raise ValueError(f"a reservation needs a finite positive ttl, got {ttl}")
    return max(1, math.ceil(ttl * 1000))


def live_state_from_config(cfg: StateConfig, *, prefix: str | None = None) -> LiveState:
    """The backend `[state]` asks for, not yet started.

    Every node of one cluster must use the same Redis database and prefix
    (`key_prefix`, unless `prefix` overrides it).
    """
    if cfg.backend == "redis":
        from acd.state_redis import RedisLiveState

        if cfg.redis_url is None:  # refused by the config schema already
            raise StateError('backend = "redis" needs a redis_url')
        return RedisLiveState(cfg.redis_url, prefix=cfg.key_prefix if prefix is None else prefix)
    from acd.state_memory import MemoryLiveState

    return MemoryLiveState()
