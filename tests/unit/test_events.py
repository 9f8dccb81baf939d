"""The event bus: fan-out, filtering, bounded queues that never block the publisher."""

from __future__ import annotations

import asyncio

from ccserver.events import Event, EventBus


async def test_subscribers_get_the_types_they_asked_for() -> None:
    bus = EventBus()
    calls = bus.subscribe(["call."])
    everything = bus.subscribe()
    bus.emit("call.arrived", contact_id="c1")
    bus.emit("agent.state", agent="1001", data={"state": "available"})
    first = await asyncio.wait_for(calls.get(), 1)
    assert first.type == "call.arrived" and first.contact_id == "c1"
    assert calls.get_nowait() is None
    assert [e.type for e in (everything.get_nowait(), everything.get_nowait())] == [
        "call.arrived",
        "agent.state",
    ]


async def test_slow_subscriber_loses_oldest_and_publisher_never_waits() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    for i in range(10):
        bus.publish(Event("call.digit", data={"i": i}))
    assert slow.dropped == 7
    got = [slow.get_nowait() for _ in range(3)]
    assert [e.data["i"] for e in got if e] == [7, 8, 9]


async def test_waiting_subscriber_wakes_on_publish_and_close_ends_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe(["queue."])
    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)  # let the waiter park on the empty queue
    assert not waiter.done()
    bus.emit("queue.joined", queue="general")
    assert (await asyncio.wait_for(waiter, 1)).queue == "general"
    sub.close()
    seen = [e async for e in sub]
    assert seen == []


def test_inline_listener_errors_do_not_stop_others() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.listen(broken)
    bus.listen(lambda e: seen.append(e.type), ["agent."])
    bus.emit("agent.state")
    bus.emit("call.ended")
    assert seen == ["agent.state"]
