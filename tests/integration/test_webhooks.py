"""Outbound webhooks from the real server process to a receiver run by the test.

The platform is configured with ``[webhooks.receiver]`` pointing at an HTTP
server in this process. A SIPp carrier call from the demo VIP's number reaches
the general queue and a SIPp agent (1001) answers. The receiver answers its
first request 500 and the rest 200; it checks every request as a receiver
would (HMAC-SHA256 over ``timestamp.body`` with the shared secret, recomputed
here, and a timestamp close to now), and the test checks that the contact's
and the agent's events arrived, signed, in order, with the failed one retried
under the same delivery id. A second endpoint never answers: the call and the
first endpoint's deliveries go on regardless.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.peers.fixtures import Peers
from tests.integration.peers.http import HttpPeer
from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

TRUNK_IP = "127.0.0.2"
VIP_NUMBER = "0600000009"
SECRET = "webhook-integration-secret"


@dataclass
class Delivery:
    event: str
    delivery: str
    timestamp: str
    signature: str
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    def signed_correctly(self) -> bool:
        """What a receiver does: recompute the HMAC over the raw body, compare in
        constant time, and refuse a timestamp far from now (a replay)."""
        mac = hmac.new(SECRET.encode(), f"{self.timestamp}.".encode() + self.body, hashlib.sha256)
        fresh = abs(time.time() - int(self.timestamp)) < 300
        return fresh and hmac.compare_digest(f"sha256={mac.hexdigest()}", self.signature)


@dataclass
class Receiver:
    """Answers 500 to its first request, 200 to the others; keeps every request."""

    fail_first: int = 1
    got: list[Delivery] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        status = 500 if len(self.got) < self.fail_first else 200
        h = request.headers
        delivery = Delivery(
            event=h.get("X-Ccserver-Event", ""),
            delivery=h.get("X-Ccserver-Delivery", ""),
            timestamp=h.get("X-Ccserver-Timestamp", "0"),
            signature=h.get("X-Ccserver-Signature", ""),
            body=await request.read(),
            status=status,
        )
        async with self.changed:
            self.got.append(delivery)
            self.changed.notify_all()
        return web.Response(status=status)

    async def wait(self, done: Callable[[list[Delivery]], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: done(self.got))


def webhook_to(url: str, stuck_url: str) -> Callable[[Path], None]:
    def edit(cfg: Path) -> None:
        with (cfg / "ccserver.toml").open("a") as out:
            out.write(
                f'\n[webhooks.receiver]\nurl = "{url}"\nsecret = "{SECRET}"\n'
                'events = ["call.", "agent."]\ntimeout = 2\nmax_attempts = 4\n'
                # An endpoint that never answers: it must delay neither the
                # calls nor the other endpoint.
                f'\n[webhooks.stuck]\nurl = "{stuck_url}"\ntimeout = 60\n'
            )

    return edit


async def test_contact_and_agent_events_arrive_signed_and_a_failure_is_retried(
    start_server: Callable[..., Any], peers: Peers
) -> None:
    receiver = Receiver()
    release = asyncio.Event()
    stuck: list[str] = []

    async def never_answers(request: web.Request) -> web.Response:
        stuck.append(request.headers.get("X-Ccserver-Event", ""))
        await release.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/ccserver-events", receiver.handle)
    app.router.add_post("/stuck", never_answers)
    http = HttpPeer(app)
    await http.start()
    try:
        server: ServerProcess = await start_server(
            edit=webhook_to(http.url("/ccserver-events"), http.url("/stuck"))
        )
        target = f"127.0.0.1:{server.sip_port}"
        agent = await peers.agent(target, extension="1001", password="agent1001pw", ring_ms=300)
        caller = await peers.caller(
            target, service="5001", digits="0", greet_ms=300, talk_ms=1000,
            caller_id=VIP_NUMBER, local_ip=TRUNK_IP, timeout=20,
        )  # fmt: skip
        assert (await caller.wait(timeout=20)).ok
        await agent.wait(timeout=20)
        try:
            await receiver.wait(
                lambda got: any(d.event == "call.ended" and d.status == 200 for d in got), 15
            )
        except TimeoutError:
            print(server.log_tail(80))
            raise
    finally:
        release.set()
        await http.stop()

    # The stuck endpoint got its first event and nothing since, while the call
    # went through and the other endpoint got everything.
    assert len(stuck) == 1, stuck
    got = receiver.got
    assert all(d.signed_correctly() for d in got), [d.event for d in got]
    assert all(d.json["type"] == d.event for d in got)
    # The first request failed with 500 and came again, same event, same delivery id.
    first, retry = got[0], got[1]
    assert first.status == 500 and retry.status == 200
    assert (retry.delivery, retry.body) == (first.delivery, first.body)
    assert retry.timestamp >= first.timestamp
    # Each event delivered once (ids unique), in the bus's order.
    delivered = [d for d in got if d.status == 200]
    assert len({d.delivery for d in delivered}) == len(delivered)
    ats = [d.json["at"] for d in delivered]
    assert ats == sorted(ats)

    (contact,) = await server.wait_contact_closed(1, timeout=10)
    mine = [d.json for d in delivered if d.json["contact_id"] == contact.id]
    kinds = [e["type"] for e in mine]
    for kind in ("call.arrived", "call.queued", "call.offered", "call.answered", "call.ended"):
        assert kind in kinds, kinds
    assert kinds.index("call.offered") < kinds.index("call.answered") < kinds.index("call.ended")
    answered = mine[kinds.index("call.answered")]
    assert answered["agent"] == "1001" and answered["queue"] == "general"
    assert mine[0]["data"]["caller"] == VIP_NUMBER
    # The agent's own events: logged in by its registration, busy, back to work.
    states = [d.json["data"]["state"] for d in delivered if d.event == "agent.state"]
    assert "on-call" in states, states
    assert all(d.json["agent"] == "1001" for d in delivered if d.event == "agent.state")
