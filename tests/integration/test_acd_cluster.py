"""Two nodes, one ACD: `ccserver run` twice, sharing a real `redis-server`.

Node A ("cc-a") holds the agents' registrations; callers also reach node B
("cc-b"). Each node keeps its own SQLite file (its own data directory): a
SQLite file is one node's, and a cluster shares one PostgreSQL instead
(docs/cluster.md). What one test reads therefore comes from both files, from
the SIPp phones' message logs, from the RTP on the wire and from the shared
state in Redis itself.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from acd.state import Snapshot
from acd.state_redis import RedisLiveState
from ccserver.storage.models import Contact
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_port_block
from tests.integration.peers.sipp import SippProcess
from tests.integration.redis_server import RedisServer, redis_server, unique_prefix
from tests.integration.server import ServerProcess
from tests.integration.test_acd_routing import (
    ConfigEdit,
    acd_agent,
    agent_reaches,
    caller,
    closed_contact,
    edits,
    ended,
    offered_to,
    queue_settings,
    received,
    when,
)
from tests.integration.test_call_flows import (
    AUDIBLE_DBOV,
    assert_clean_log,
    events,
    lingering_agent,
    states,
    summary_between,
    timeline,
)

__all__ = ["redis_server"]  # the fixture, imported for pytest

pytestmark = pytest.mark.integration

StartServer = Callable[..., Any]
T = TypeVar("T")

SUPERVISOR = {"Authorization": "Bearer demo-supervisor-token-change-me"}


def cluster_node(
    node: str, redis_url: str, prefix: str, heartbeat: tuple[float, float] | None = None
) -> ConfigEdit:
    """A config edit: this node is `node` and shares the live state in Redis
    (`heartbeat`: its interval and ttl, in seconds)."""
    beat = ""
    if heartbeat is not None:
        beat = f"\nheartbeat_interval = {heartbeat[0]}\nheartbeat_ttl = {heartbeat[1]}"

    def edit(cfg: Path) -> None:
        toml = cfg / "ccserver.toml"
        text = toml.read_text()
        text = re.sub(r'(?m)^node_name = "\w+"', f'node_name = "{node}"', text)
        text, n = re.subn(
            r'(?m)^backend = "memory".*$',
            f'backend = "redis"\nredis_url = "{redis_url}"\nkey_prefix = "{prefix}"{beat}',
            text,
        )
        assert n == 1, "ccserver.toml lost its [state] backend line"
        toml.write_text(text)

    return edit


async def two_nodes(
    start_server: StartServer,
    redis: RedisServer,
    prefix: str,
    heartbeat: tuple[float, float] | None = None,
    **general: object,
) -> tuple[ServerProcess, ServerProcess]:
    """Nodes A and B of one cluster, started together (each renders its prompts);
    queue "general" gets a 0.5 s wrap-up and the `general` settings."""
    settings: dict[str, object] = {"wrap_up": 0.5, **general}
    started = await asyncio.gather(
        *(
            start_server(
                edit=edits(
                    cluster_node(name, redis.url, prefix, heartbeat),
                    queue_settings("general", **settings),
                ),
                name=name,
            )
            for name in ("cc-a", "cc-b")
        )
    )
    a, b = started
    assert isinstance(a, ServerProcess) and isinstance(b, ServerProcess)
    for node in (a, b):
        await node.wait_log(r"live state: redis, node cc-")
    return a, b


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll an async probe until it returns something (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


async def shared_state(redis: RedisServer, prefix: str) -> Snapshot:
    state = RedisLiveState(redis.url, prefix=prefix)
    await state.start()
    try:
        return await state.snapshot()
    finally:
        await state.close()


async def api(node: ServerProcess, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{node.http_port}{path}", headers=SUPERVISOR) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


async def queue_view(node: ServerProcess, queue: str = "general") -> dict[str, Any]:
    rows: list[dict[str, Any]] = await api(node, "/api/queues")
    (row,) = [q for q in rows if q["queue"] == queue]
    return row


def talks(contacts: list[Contact], agent: str) -> list[tuple[datetime, datetime]]:
    """When `agent` was rung for or talking to each call, from offer to end."""
    spans = []
    for contact in contacts:
        for offer in events(contact, "offered"):
            if offer.data["agent"] == agent:
                spans.append((offer.at, ended(contact)))
    return sorted(spans)


def invites_from(phone: SippProcess, node: ServerProcess) -> int:
    """INVITEs `phone` received that `node` sent (its port in the top Via)."""
    return sum(
        1
        for m in phone.messages()
        if not m.sent
        and m.first_line.startswith("INVITE ")
        and re.search(rf"(?m)^Via: SIP/2.0/UDP [\d.]+:{node.sip_port};", m.text)
    )


async def test_call_at_node_b_rings_the_agent_registered_at_node_a(
    start_server: StartServer, peers: Peers, redis_server: RedisServer
) -> None:
    """1001 registers at node A only. A caller dials the queue at node B: B
    finds 1001 available in the shared state and its phone in the shared
    location service, reserves it, rings it at the contact it registered at
    A, and bridges the call; the caller hears the agent. Afterwards the
    shared record says 1001 is available again, logged in at A."""
    prefix = unique_prefix("cluster")
    a, b = await two_nodes(start_server, redis_server, prefix)
    phone = await acd_agent(peers, a, "1001", calls=1, linger_ms=20000)

    async def b_sees_1001_available() -> dict[str, Any] | None:
        view = await queue_view(b)
        return view if view["agents"].get("available") == 1 else None

    # Node B never saw a REGISTER: the login reached it through Redis.
    await eventually(b_sees_1001_available, 5, "node B to see 1001 available")
    assert not any("extension 1001 registered" in line for line in b.lines)
    seen_at_b = await api(b, "/api/agents/1001")
    assert (seen_at_b["state"], seen_at_b["registered"]) == ("available", True), seen_at_b

    port = free_port_block(4)
    capture = await peers.capture([port])
    call = await caller(peers, b, "0600000001", talk_ms=3000, media_port=port)
    await call.wait()
    await capture.stop()

    contact = await closed_contact(b, "0600000001")
    assert contact.outcome == "answered" and contact.agent == "1001", timeline(contact)
    assert timeline(contact) == [
        "arrived", "accepted", "queued", "offered", "ringing", "answered", "ended",
    ], timeline(contact)  # fmt: skip
    assert offered_to(contact) == ["1001"]
    assert invites_from(phone, b) == 1 and received(phone, "INVITE") == 1
    assert a.contacts() == []  # the call was node B's alone

    # The caller heard 1001's voice (g711a.pcap), relayed by node B.
    voice = summary_between(
        capture, port, when(contact, "answered").timestamp() + 0.3, ended(contact).timestamp()
    )
    assert voice.loud_seconds(AUDIBLE_DBOV) >= 1.0, voice.describe()

    # Node B logged what it did with 1001 (and its wrap-up ending); node A the login.
    await agent_reaches(b, "1001", "available")
    assert states(b.agent_events("1001"))[:4] == ["reserved", "on-call", "wrap-up", "available"]
    assert states(a.agent_events("1001"))[:2] == ["registered", "available"]

    async def settled() -> Snapshot | None:
        snap = await shared_state(redis_server, prefix)
        record = snap.agents.get("1001")
        done = record is not None and record.state == "available" and not snap.calls
        return snap if done and not snap.reservations else None

    snap = await eventually(settled, 5, "1001 available again in the shared state")
    assert snap.agents["1001"].node == "cc-a"
    for node in (a, b):
        assert_clean_log(node)


async def test_calls_at_both_nodes_never_ring_one_agent_twice(
    start_server: StartServer, peers: Peers, redis_server: RedisServer
) -> None:
    """Two agents registered at node A, four callers at once: two at A, two
    at B. Both nodes offer from the same two agents; every offer is reserved
    in Redis first, so no agent is ever rung for a second call while it rings
    or talks, and all four calls are answered (the agents hang up after
    1.5 s), the waiting ones once an agent is free again."""
    prefix = unique_prefix("cluster")
    a, b = await two_nodes(start_server, redis_server, prefix)
    phones = {
        ext: await acd_agent(peers, a, ext, calls=1, hangup_ms=1500, linger_ms=25000, wait_ms=25000)
        for ext in ("1001", "1002")
    }

    async def both_available_at_b() -> bool:
        return (await queue_view(b))["agents"].get("available") == 2

    await eventually(both_available_at_b, 5, "node B to see both agents available")

    placed = {"0600000001": a, "0600000004": b, "0600000005": a, "0600000006": b}
    callers = await asyncio.gather(
        *(caller(peers, node, number, wait_bye=True) for number, node in placed.items())
    )

    # Four calls queued across the nodes: each node's API counts them all
    # (some may already ring; none has been answered that fast).
    waiting = {n.http_port: (await queue_view(n))["waiting"] for n in (a, b)}
    assert all(w >= 2 for w in waiting.values()), waiting

    for process in callers:
        await process.wait()
    contacts = [await closed_contact(node, number, 15) for number, node in placed.items()]
    for contact in contacts:
        assert contact.outcome == "answered", timeline(contact)

    for ext, phone in phones.items():
        spans = talks(contacts, ext)
        assert spans, f"{ext} took no call"
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"{ext} rung while busy: {spans}"
        # Every INVITE the phone got is one of those offers, from either node.
        assert received(phone, "INVITE") == len(spans), (ext, spans)
        assert invites_from(phone, a) + invites_from(phone, b) == len(spans)
    assert sum(len(talks(contacts, ext)) for ext in phones) == 4

    async def idle() -> Snapshot | None:
        snap = await shared_state(redis_server, prefix)
        free = all(snap.agents[ext].state == "available" for ext in phones)
        return snap if free and not snap.calls and not snap.reservations else None

    await eventually(idle, 5, "both agents available and no call left in Redis")

    # Each node's figures cover the whole cluster: two calls answered at each
    # node, four in every node's /api/queues, and the ASA of all four waits.
    waits = [(when(c, "answered") - when(c, "queued")).total_seconds() for c in contacts]

    async def summed(node: ServerProcess) -> dict[str, Any] | None:
        view = await queue_view(node)
        return view if view["answered"] == 4 else None

    for node in (a, b):
        view = await eventually(partial(summed, node), 5, "the cluster's four answered calls")
        assert view["abandoned"] == 0 and view["abandon_rate"] == 0.0, view
        assert abs(view["asa"] - sum(waits) / 4) < 0.25, (view, waits)
    for node in (a, b):
        assert_clean_log(node)


async def test_no_answer_and_abandon_reach_the_shared_state(
    start_server: StartServer, peers: Peers, redis_server: RedisServer
) -> None:
    """1001 registered at node A never answers. Node B rings it for its
    caller; after the 2 s ring timeout B cancels the INVITE and releases the
    reservation with 1001 made not ready "no answer" for every node. The
    caller then hangs up: its call leaves the shared queue."""
    prefix = unique_prefix("cluster")
    a, b = await two_nodes(start_server, redis_server, prefix, ring_timeout=2)
    mark = len(a.lines)
    slow = await lingering_agent(
        peers, a, extension="1001", behaviour="noanswer", linger_ms=8000, wait_ms=15000
    )
    await a.wait_log(r"extension 1001 registered", start=mark)

    async def b_sees_1001_available() -> bool:
        return (await queue_view(b))["agents"].get("available") == 1

    await eventually(b_sees_1001_available, 5, "node B to see 1001 available")
    call = await caller(peers, b, "0600000001", talk_ms=4500)
    await call.wait()
    contact = await closed_contact(b, "0600000001")
    assert timeline(contact) == [
        "arrived", "accepted", "queued", "offered", "ringing", "no_answer", "abandoned", "ended",
    ], timeline(contact)  # fmt: skip
    assert contact.outcome == "abandoned"
    got = [m.method for m in slow.messages() if not m.sent and m.status is None]
    assert [m for m in got if m != "REGISTER"] == ["INVITE", "CANCEL", "ACK"], got
    assert invites_from(slow, b) == 1

    async def settled() -> Snapshot | None:
        snap = await shared_state(redis_server, prefix)
        return snap if not snap.calls and not snap.reservations else None

    snap = await eventually(settled, 5, "the call gone from the shared state")
    record = snap.agents["1001"]
    assert (record.state, record.reason) == ("not-ready", "no answer"), record
    # The agent's home node shows what node B wrote.
    at_a = await api(a, "/api/agents/1001")
    assert (at_a["state"], at_a["reason"]) == ("not-ready", "no answer"), at_a
    assert (await queue_view(a))["waiting"] == 0
    for node in (a, b):
        assert_clean_log(node)


async def test_a_node_refuses_to_start_without_its_redis(start_server: StartServer) -> None:
    """Redis unreachable at start: the node says which setting and why, and exits 1
    (running alone would let it ring agents another node is ringing)."""
    # A port held bound but not listening: refused, and nobody else can take it.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{held.getsockname()[1]}/0"
        with pytest.raises(RuntimeError) as caught:
            await start_server(
                edit=cluster_node("cc-a", closed, unique_prefix("cluster")), name="a"
            )
    message = str(caught.value)
    assert "server exited (1)" in message, message
    assert re.search(
        rf"cannot start: \S+ccserver\.toml: \[state\] redis_url: Redis at {re.escape(closed)}"
        r" unreachable",
        message,
    ), message
    assert "Traceback" not in message


async def test_a_killed_node_is_cleared_by_the_survivor(
    start_server: StartServer, peers: Peers, redis_server: RedisServer
) -> None:
    """1001 registers at node A and takes a call there; 1002 registers at
    node B and is being rung by A for a second caller of A's. Node A is
    killed (SIGKILL: nothing of it cleans up). Within its heartbeat ttl (1 s)
    node B clears it: 1001, on a call A bridged and with its phone at A, is
    logged out with reason "node lost" instead of on-call for good; A's
    waiting caller leaves the shared queue, which frees 1002 at once rather
    than when A's reservation would lapse (ring timeout 30 s + 5 s); A's
    registration of 1001 leaves the location service. A new call at B is
    then answered by 1002."""
    prefix = unique_prefix("cluster")
    a, b = await two_nodes(
        start_server, redis_server, prefix, heartbeat=(0.25, 1.0), ring_timeout=30
    )
    await acd_agent(peers, a, "1001", calls=1, linger_ms=30000, wait_ms=30000)

    async def agent_at_b(ext: str, state: str) -> dict[str, Any] | None:
        seen: dict[str, Any] = await api(b, f"/api/agents/{ext}")
        return seen if seen["state"] == state else None

    await eventually(lambda: agent_at_b("1001", "available"), 5, "B to see 1001 available")
    await caller(peers, a, "0600000001", talk_ms=30000)
    await eventually(lambda: agent_at_b("1001", "on-call"), 10, "1001 on-call through A")

    phone_b = await acd_agent(
        peers, b, "1002", calls=2, ring_ms=2500, hangup_ms=1000, linger_ms=30000, wait_ms=30000
    )
    await eventually(lambda: agent_at_b("1002", "available"), 5, "1002 available at B")
    await caller(peers, a, "0600000004", talk_ms=30000)
    await eventually(lambda: agent_at_b("1002", "reserved"), 5, "A ringing 1002")
    assert invites_from(phone_b, a) == 1

    assert a.proc is not None
    a.proc.kill()
    killed = time.monotonic()
    cleared = await eventually(
        lambda: agent_at_b("1001", "logged-out"), 5, "B to clear 1001", interval=0.05
    )
    took = time.monotonic() - killed
    assert cleared["reason"] == "node lost", cleared
    # ttl 1 s after A's last beat (at most 0.25 s before the kill), then B's next
    # beat (0.25 s), with room for a loaded machine.
    assert took < 1.0 + 0.25 + 1.5, f"cleared {took:.2f} s after the kill"
    assert await agent_at_b("1002", "available"), await api(b, "/api/agents/1002")
    assert (await queue_view(b))["waiting"] == 0
    await b.wait_log(r"node cc-a lost \(no heartbeat")

    shared = RedisLiveState(redis_server.url, prefix=prefix)
    await shared.start()
    try:
        snap = await shared.snapshot()
        assert snap.calls == () and snap.reservations == {}, snap
        record = snap.agents["1001"]
        assert (record.state, record.reason, record.call_id) == ("logged-out", "node lost", None)
        assert await shared.bindings("sip:1001@ccserver") == []
        assert [r.node for r in await shared.bindings("sip:1002@ccserver")] == ["cc-b"]
    finally:
        await shared.close()

    # B's caller is not held up by anything A left: 1002 takes it.
    call = await caller(peers, b, "0600000005", wait_bye=True)
    await call.wait()
    contact = await closed_contact(b, "0600000005")
    assert (contact.outcome, contact.agent) == ("answered", "1002"), timeline(contact)
    assert invites_from(phone_b, b) == 1
    assert_clean_log(b)


async def test_a_redis_outage_keeps_calls_up_and_offers_wait_for_its_return(
    start_server: StartServer, peers: Peers, tmp_path: Path
) -> None:
    """A node on its own Redis, which is stopped mid-run. The call 1001
    answered before stays bridged (1001's voice reaches the caller); a caller
    who arrives meanwhile is queued on the node alone and hears hold music;
    1002 registers meanwhile but is not rung, since no reservation can be
    made. Redis comes back empty: the node writes its state again and the
    waiting caller is offered to 1002, who answers."""
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    try:
        prefix = unique_prefix("cluster")
        a = await start_server(
            edit=edits(
                cluster_node("cc-a", redis.url, prefix), queue_settings("general", wrap_up=0.5)
            ),
            name="cc-a",
        )
        await a.wait_log(r"live state: redis, node cc-a")
        await acd_agent(peers, a, "1001", calls=1, hangup_ms=9000, linger_ms=20000, wait_ms=30000)
        await agent_reaches(a, "1001", "available")
        ports = free_port_block(4), free_port_block(4)
        capture = await peers.capture(list(ports))
        first = await caller(peers, a, "0600000001", wait_bye=True, media_port=ports[0])
        await agent_reaches(a, "1001", "on-call")

        mark = len(a.lines)
        await redis.stop()
        down = time.time()
        second = await caller(peers, a, "0600000004", wait_bye=True, media_port=ports[1])
        await a.wait_log(r"live state unreachable, queued here only", start=mark)
        await acd_agent(peers, a, "1002", calls=1, hangup_ms=1500, linger_ms=20000, wait_ms=30000)
        await a.wait_log(r"live state unreachable, 1002 not rung", start=mark, timeout=15)
        await redis.start()  # the same port, empty: the test server persists nothing
        up = time.time()

        await second.wait()
        await first.wait()
        await capture.stop()
        held = await closed_contact(a, "0600000004", 15)
        assert (held.outcome, held.agent) == ("answered", "1002"), timeline(held)
        assert when(held, "answered").timestamp() > up
        bridged = await closed_contact(a, "0600000001", 15)
        assert (bridged.outcome, bridged.agent) == ("answered", "1001"), timeline(bridged)
        assert ended(bridged).timestamp() > up  # it lasted through the outage

        # Through the outage: 1001's voice to the first caller, hold music to the second.
        # The relay never paused: the agent's recording (30 ms packets) kept arriving
        # across the whole outage. Loudness is counted in whole 0.5 s windows and the
        # recording has pauses, so it only has to show that this is the voice.
        voice = summary_between(capture, ports[0], down, up)
        assert voice.duration >= 0.95 * (up - down), voice.describe()
        assert voice.packets >= 0.9 * voice.duration / 0.030, voice.describe()
        assert voice.loud_seconds(AUDIBLE_DBOV) >= 0.5 * (up - down), voice.describe()
        waiting = summary_between(capture, ports[1], down + 1.0, up)
        assert waiting.loud_seconds(AUDIBLE_DBOV) >= 0.5 * (up - down - 1.0), waiting.describe()
        assert_clean_log(a)
    finally:
        await redis.stop()
