"""Outbound webhooks against a real aiohttp receiver on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ccserver.config.schema import Webhook
from ccserver.events import EventBus
from cti.webhooks import WebhookDispatcher, sign, verify

SECRET = "webhook-test-secret"
WAIT = 5.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint whose answers the test scripts: statuses, then 200s."""

    server: TestServer
    statuses: list[int] = field(default_factory=list)
    requests: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    gate: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    async def next(self) -> Received:
        return await asyncio.wait_for(self.requests.get(), WAIT)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    rx = Receiver(TestServer(app, host="127.0.0.1"))

    async def hook(request: web.Request) -> web.Response:
        rx.requests.put_nowait(Received(dict(request.headers), await request.read()))
        if rx.gate is not None:
            await rx.gate.wait()
        return web.Response(status=rx.statuses.pop(0) if rx.statuses else 200)

    app.router.add_post("/hook", hook)
    await rx.server.start_server()
    yield rx
    if rx.gate is not None:
        rx.gate.set()
    await rx.server.close()


def dispatcher(bus: EventBus, url: str, **kw: Any) -> WebhookDispatcher:
    settings: dict[str, Any] = {"url": url, "secret": SECRET, "timeout": 2.0, **kw}
    # No back-off: retries run at once, so the tests never wait on a clock.
    return WebhookDispatcher(bus, {"crm": Webhook(**settings)}, backoff_base=0.0)


async def test_event_is_posted_signed_with_the_bus_shape(receiver: Receiver) -> None:
    bus = EventBus()
    d = dispatcher(bus, receiver.url)
    await d.start()
    try:
        sent = bus.emit("call.answered", contact_id="c1", agent="1001", queue="sales",
                        data={"codec": "PCMU"})  # fmt: skip
        got = await receiver.next()
    finally:
        await d.stop()
    assert got.json == sent.as_dict()
    h = got.headers
    assert h["Content-Type"] == "application/json"
    assert h["X-Ccserver-Event"] == "call.answered"
    assert len(h["X-Ccserver-Delivery"]) == 32
    assert verify(SECRET, h["X-Ccserver-Timestamp"], got.body, h["X-Ccserver-Signature"])
    assert not verify(
        "other-secret", h["X-Ccserver-Timestamp"], got.body, h["X-Ccserver-Signature"]
    )
    assert h["X-Ccserver-Signature"] == sign(SECRET, h["X-Ccserver-Timestamp"], got.body)


async def test_retries_after_500_then_succeeds_with_the_same_delivery_id(
    receiver: Receiver,
) -> None:
    receiver.statuses = [500, 503]
    bus = EventBus()
    d = dispatcher(bus, receiver.url)
    await d.start()
    try:
        bus.emit("call.ended", contact_id="c1")
        tries = [await receiver.next() for _ in range(3)]
        bus.emit("call.arrived", contact_id="c2")
        after = await receiver.next()
    finally:
        await d.stop()
    assert {t.headers["X-Ccserver-Delivery"] for t in tries} == {
        tries[0].headers["X-Ccserver-Delivery"]
    }
    assert after.json["contact_id"] == "c2"
    assert d.stats["crm"].delivered == 2 and d.stats["crm"].attempts == 4


async def test_gives_up_after_max_attempts_then_goes_on_in_order(receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500]
    bus = EventBus()
    d = dispatcher(bus, receiver.url, max_attempts=3)
    await d.start()
    try:
        bus.emit("call.ended", contact_id="lost")
        bus.emit("call.ended", contact_id="next")
        got = [(await receiver.next()).json["contact_id"] for _ in range(4)]
    finally:
        await d.stop()
    assert got == ["lost", "lost", "lost", "next"]
    assert d.stats["crm"].failed == 1 and d.stats["crm"].delivered == 1


async def test_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    bus = EventBus()
    d = dispatcher(bus, receiver.url)
    await d.start()
    try:
        bus.emit("call.ended", contact_id="bad")
        bus.emit("call.ended", contact_id="good")
        got = [(await receiver.next()).json["contact_id"] for _ in range(2)]
    finally:
        await d.stop()
    assert got == ["bad", "good"] and d.stats["crm"].failed == 1


async def test_only_matching_event_types_are_sent(receiver: Receiver) -> None:
    bus = EventBus()
    d = dispatcher(bus, receiver.url, events=["agent.state"])
    await d.start()
    try:
        bus.emit("call.arrived", contact_id="c1")
        bus.emit("agent.phone", agent="1001")
        bus.emit("agent.state", agent="1001", data={"state": "available"})
        got = await receiver.next()
        bus.emit("queue.stats")
        bus.emit("agent.state", agent="1002")
        second = await receiver.next()
    finally:
        await d.stop()
    assert (got.json["type"], got.json["agent"]) == ("agent.state", "1001")
    assert second.json["agent"] == "1002"


async def test_connection_refused_is_retried_then_given_up() -> None:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/hook"))
    await server.close()  # nothing listens there any more
    bus = EventBus()
    outcomes: asyncio.Queue[tuple[str, str | None, bool]] = asyncio.Queue()
    d = WebhookDispatcher(
        bus,
        {"crm": Webhook(url=url, max_attempts=2)},
        backoff_base=0.0,
        on_outcome=lambda name, ev, ok: outcomes.put_nowait((name, ev.contact_id, ok)),
    )
    await d.start()
    try:
        bus.emit("call.ended", contact_id="c1")
        assert await asyncio.wait_for(outcomes.get(), WAIT) == ("crm", "c1", False)
    finally:
        await d.stop()
    assert d.stats["crm"].attempts == 2 and d.stats["crm"].delivered == 0


async def test_slow_endpoint_never_blocks_the_publisher_and_drops_oldest(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.gate = asyncio.Event()  # the endpoint holds every request until released
    bus = EventBus()
    d = dispatcher(bus, receiver.url, queue_size=5)
    await d.start()
    try:
        bus.emit("call.digit", data={"i": 0})
        first = await receiver.next()  # the worker is now stuck on event 0
        for i in range(1, 51):
            bus.emit("call.digit", data={"i": i})  # synchronous: returns at once
        receiver.gate.set()
        rest = [(await receiver.next()).json["data"]["i"] for _ in range(5)]
    finally:
        await d.stop()
    assert first.json["data"]["i"] == 0
    assert rest == [46, 47, 48, 49, 50]
    assert d.stats["crm"].dropped == 45
    assert "45 event(s) dropped" in caplog.text


async def test_stop_cancels_a_worker_stuck_on_a_slow_endpoint(receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()
    bus = EventBus()
    d = dispatcher(bus, receiver.url, timeout=60.0)
    await d.start()
    bus.emit("call.arrived", contact_id="c1")
    await receiver.next()
    async with asyncio.timeout(WAIT):
        await d.stop()
    assert all(ep.task is not None and ep.task.done() for ep in d._endpoints.values())


async def test_no_webhooks_means_no_session_and_no_tasks() -> None:
    d = WebhookDispatcher(EventBus(), {})
    await d.start()
    assert d.stats == {}
    await d.stop()


def test_backoff_doubles_with_full_jitter_up_to_the_cap() -> None:
    d = WebhookDispatcher(EventBus(), {}, backoff_base=0.5, backoff_max=60.0, rng=lambda: 1.0)
    assert [d.backoff(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 4.0, 60.0]
    half = WebhookDispatcher(EventBus(), {}, rng=lambda: 0.5)
    assert half.backoff(3) == 1.0
