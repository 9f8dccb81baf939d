"""The AMI-compatible manager interface with an unmodified Asterisk client library.

A real node runs with ``[ami]`` enabled on a free port; panoramisk (an
asyncio AMI client written for Asterisk) logs in, a SIPp agent registers, a
SIPp caller on the trunk dials DID 5001 (the general queue) and the agent
answers. The client sees the call as an Asterisk CRM would: the caller's
channel, the queue join, the agent being called and connected, the bridge,
the hangup and the agent's completion.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_tcp_port
from tests.integration.server import ServerProcess

panoramisk = pytest.importorskip("panoramisk")

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"
USER, SECRET = "crm", "demo-ami-secret-change-me"


def enable_ami(port: int) -> Callable[[Path], None]:
    def edit(cfg: Path) -> None:
        toml = cfg / "ccserver.toml"
        text = toml.read_text()
        text = re.sub(r"(?m)^enabled = false", "enabled = true", text)
        text = re.sub(r"(?m)^port = 5038", f"port = {port}", text)
        toml.write_text(text)

    return edit


class Client:
    """A panoramisk Manager plus every event it received, in order."""

    def __init__(self, port: int, secret: str = SECRET) -> None:
        self.events: list[Any] = []
        self._new = asyncio.Event()
        self.manager = panoramisk.Manager(
            loop=asyncio.get_running_loop(),
            host="127.0.0.1",
            port=port,
            username=USER,
            secret=secret,
            ping_delay=3600,
            reconnect_timeout=3600,
        )
        self.manager.register_event("*", self._on_event)

    def _on_event(self, manager: Any, event: Any) -> None:
        self.events.append(event)
        self._new.set()

    async def login(self) -> Any:
        await self.manager.connect()
        return await asyncio.wait_for(self.manager.authenticated_future, 5)

    def names(self) -> list[str]:
        return [str(e.event) for e in self.events]

    async def wait_event(self, name: str, timeout: float = 15.0) -> Any:
        async def seek() -> Any:
            while True:
                for e in self.events:
                    if e.event == name:
                        return e
                self._new.clear()
                await self._new.wait()

        try:
            return await asyncio.wait_for(seek(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {name} event within {timeout} s: {self.names()}") from None

    def close(self) -> None:
        self.manager.close()


@pytest.fixture
async def ami_node(start_server: Callable[..., Any]) -> AsyncIterator[tuple[ServerProcess, int]]:
    port = free_tcp_port()
    server: ServerProcess = await start_server(edit=enable_ami(port))
    await server.wait_log(rf"ami: manager interface on 127\.0\.0\.1:{port}")
    yield server, port


async def test_crm_follows_a_queue_call(ami_node: tuple[ServerProcess, int], peers: Peers) -> None:
    server, port = ami_node
    client = Client(port)
    try:
        resp = await client.login()
        assert resp.success and resp.message == "Authentication accepted", resp
        await client.wait_event("FullyBooted", 5)
        pong = await asyncio.wait_for(client.manager.send_action({"Action": "Ping"}), 5)
        assert pong.ping == "Pong"

        target = f"127.0.0.1:{server.sip_port}"
        agent = await peers.agent(target, extension="1001", password="agent1001pw", ring_ms=500)
        await server.wait_log(r"extension 1001 registered")

        status = await asyncio.wait_for(
            client.manager.send_action({"Action": "QueueStatus", "Queue": "general"}), 5
        )
        # The Success response with "EventList: start", the items, then the Complete event.
        assert status[0].response == "Success" and status[0].eventlist == "start"
        kinds = [m.event for m in status[1:]]
        assert kinds[0] == "QueueParams" and kinds[-1] == "QueueStatusComplete", kinds
        assert status[1].queue == "general"
        members = [m for m in status if m.event == "QueueMember"]
        assert "PJSIP/1001" in [m.location for m in members], members
        assert int(status[-1].listitems) == len(status) - 2

        caller = await peers.caller(
            target,
            service="5001",
            digits="0",
            greet_ms=500,
            talk_ms=2500,
            caller_id="0600000001",
            local_ip=TRUNK_IP,
            timeout=20,
        )
        hangup = await client.wait_event("AgentComplete", 25)
        assert (await caller.wait(timeout=20)).ok
        assert (await agent.wait(timeout=20)).ok
    finally:
        client.close()

    names = client.names()
    for expected in (
        "Newchannel",
        "QueueCallerJoin",
        "AgentCalled",
        "DialBegin",
        "AgentConnect",
        "BridgeEnter",
        "Hangup",
        "AgentComplete",
    ):
        assert expected in names, (expected, names)
    # In the order a CRM relies on.
    order = [names.index(n) for n in ("Newchannel", "QueueCallerJoin", "AgentCalled",
                                       "AgentConnect", "BridgeEnter", "Hangup")]  # fmt: skip
    assert order == sorted(order), names

    first = next(e for e in client.events if e.event == "Newchannel")
    assert first.channel.startswith("PJSIP/trunk-"), first
    assert first.calleridnum == "0600000001" and first.exten == "5001"
    linked = first.uniqueid
    join = next(e for e in client.events if e.event == "QueueCallerJoin")
    assert join.queue == "general" and join.position == "1" and join.uniqueid == linked
    called = next(e for e in client.events if e.event == "AgentCalled")
    assert called.destchannel.startswith("PJSIP/1001-") and called.interface == "PJSIP/1001"
    assert called.destlinkedid == linked
    connect = next(e for e in client.events if e.event == "AgentConnect")
    assert connect.queue == "general" and int(connect.holdtime) >= 0
    assert hangup.reason == "caller" and int(hangup.talktime) >= 1, hangup
    hangups = [e for e in client.events if e.event == "Hangup"]
    assert {e.linkedid for e in hangups} == {linked}
    assert all(e.cause == "16" for e in hangups), hangups


async def test_bad_secret_is_refused(ami_node: tuple[ServerProcess, int]) -> None:
    _, port = ami_node
    client = Client(port, secret="wrong")
    try:
        resp = await client.login()
        assert not resp.success and resp.message == "Authentication failed", resp
    finally:
        client.close()
