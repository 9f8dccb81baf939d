"""The HTTP and WebSocket API in memory: auth, roles, the error shape, validation, OpenAPI, pops.

The call model is replaced by a CallControl whose operations work on a few
dictionaries; the app, its middleware, the event bus and the screen-pop
service are the real ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from ccserver.calls.control import CallControl, ControlError
from ccserver.config.schema import ApiConfig, ApiToken
from ccserver.events import Event, EventBus
from cti.api import POP, ROUTES, ApiSettings, build_app
from cti.auth import Authenticator
from cti.customers import RecentContact
from cti.openapi import openapi_document

SUP = "supervisor-token-0123456789"
AGENT = "agent-1001-token-0123456789"
AGENT2 = "agent-1002-token-0123456789"
TOKENS = {
    "sup": ApiToken(token=SUP, roles=("supervisor",)),
    "a1001": ApiToken(token=AGENT, roles=("agent",), agent="1001"),
    "a1002": ApiToken(token=AGENT2, roles=("agent",), agent="1002"),
}


def view(cid: str, agent: str | None, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "contact_id": cid,
        "caller": "0600000009",
        "dialed": "5001",
        "state": "bridged" if agent else "queued",
        "queue": "general",
        "agent": agent,
        "ringing": [],
        "on_hold": False,
        "customer": None,
        "tier": None,
        "attributes": {},
        "ivr_node": None,
        "codec": "PCMU",
    }
    return base | kw


class FakeControl(CallControl):
    """CallControl's interface over dictionaries (no call model)."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {
            "c1": view("c1", "1001"),
            "c2": view("c2", "1002"),
        }
        self.states = {"1001": "available", "1002": "on-call"}
        self.ops: list[tuple[str, ...]] = []
        self.explode = False

    def calls(self) -> list[dict[str, Any]]:
        if self.explode:
            raise RuntimeError("secret database password in a message")
        return list(self.live.values())

    def call(self, contact_id: str) -> dict[str, Any]:
        if contact_id not in self.live:
            raise ControlError(404, "call-not-found", f"no active call {contact_id}")
        return self.live[contact_id]

    def agents(self) -> list[dict[str, Any]]:
        return [{"agent": a, "state": s} for a, s in sorted(self.states.items())]

    def _agent_op(self, ext: str, op: str, reason: str | None = None) -> dict[str, Any]:
        if ext not in self.states:
            raise ControlError(404, "agent-not-found", f"no agent {ext}", {"agent": ext})
        if op == "ready" and self.states[ext] == "on-call":
            raise ControlError(409, "invalid-agent-state", "on a call", {"agent": ext})
        self.ops.append((op, ext, reason or ""))
        self.states[ext] = {"pause": "not-ready", "logout": "logged-out"}.get(op, "available")
        return self.agent(ext)

    def hangup(self, contact_id: str, by: str = "system") -> None:
        self.ops.append(("hangup", contact_id, by))
        del self.live[contact_id]

    def transfer_to_queue(self, contact_id: str, queue: str) -> dict[str, Any]:
        self.ops.append(("transfer", contact_id, queue))
        return self.live[contact_id]

    def transfer_to_agent(self, contact_id: str, agent: str) -> dict[str, Any]:
        self.ops.append(("transfer-agent", contact_id, agent))
        return self.live[contact_id]

    def transfer_to_number(self, contact_id: str, number: str) -> dict[str, Any]:
        self.ops.append(("transfer-number", contact_id, number))
        return self.live[contact_id]

    async def click_to_call(
        self, agent: str, number: str, *, via: str = "api", ring_timeout: float | None = None
    ) -> dict[str, Any]:
        if agent not in self.states:
            raise ControlError(404, "agent-not-found", f"no agent {agent}", {"agent": agent})
        self.ops.append(("dial", agent, number, via))
        self.live["c9"] = view("c9", None, caller=agent, dialed=number, ringing=[agent])
        return self.live["c9"]

    def disposition(
        self, contact_id: str, disposition: str | None, notes: str | None
    ) -> dict[str, Any]:
        self.ops.append(("disposition", contact_id, disposition or "", notes or ""))
        return {"contact_id": contact_id, "disposition": disposition, "notes": notes}

    def queues(self) -> list[dict[str, Any]]:
        return [{"queue": "general", "waiting": 0}]


class FakeContacts:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {
            "old1": {"id": "old1", "agent": "1001", "disposition": "resolved", "timeline": []},
        }

    async def get(self, contact_id: str) -> dict[str, Any] | None:
        return self.rows.get(contact_id)


HISTORY = [
    RecentContact(
        "old1", datetime(2026, 1, 2, 9, 0, tzinfo=UTC), None, "0600000009", "5001",
        "general", "1001", "answered", "resolved", "card blocked", 3.0, 60.0,
    ),
]  # fmt: skip


async def history(who: Any, limit: int) -> list[RecentContact]:
    return HISTORY[:limit]


@pytest.fixture
async def env() -> AsyncIterator[
    tuple[TestClient[web.Request, web.Application], FakeControl, EventBus]
]:
    control = FakeControl()
    bus = EventBus()
    app = build_app(
        control=control,
        bus=bus,
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(ws_heartbeat=30, pop_history=3, pop_timeout=0.2),
        history=history,
    )
    async with TestClient(TestServer(app)) as client:
        yield client, control, bus


Env = tuple[TestClient[web.Request, web.Application], FakeControl, EventBus]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error(resp: Any, status: int, error_id: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert set(body) == {"status", "error_id", "message", "details"}
    assert body["status"] == status and body["error_id"] == error_id, body
    return body


# -- authentication and roles ------------------------------------------------------------------


async def test_no_token_bad_token_and_wrong_scheme_are_401(env: Env) -> None:
    client, _, _ = env
    await error(await client.get("/api/calls"), 401, "unauthorized")
    resp = await client.get("/api/calls", headers=auth("nope-not-a-token-at-all"))
    body = await error(resp, 401, "unauthorized")
    assert "not valid" in body["message"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    await error(
        await client.get("/api/calls", headers={"Authorization": f"Basic {SUP}"}),
        401,
        "unauthorized",
    )
    # The query token is for the WebSocket only.
    await error(await client.get(f"/api/calls?token={SUP}"), 401, "unauthorized")


async def test_health_and_openapi_need_no_token(env: Env) -> None:
    client, _, _ = env
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"


async def test_agents_act_on_themselves_supervisors_on_anyone(env: Env) -> None:
    client, control, _ = env
    await error(await client.post("/api/agents/1002/login", headers=auth(AGENT)), 403, "forbidden")
    await error(await client.get("/api/agents/1002", headers=auth(AGENT)), 403, "forbidden")
    resp = await client.post("/api/agents/1001/login", headers=auth(AGENT))
    assert resp.status == 200 and (await resp.json())["state"] == "available"
    resp = await client.post(
        "/api/agents/1002/not-ready", headers=auth(SUP), json={"reason": "break"}
    )
    assert resp.status == 200 and (await resp.json())["state"] == "not-ready"
    assert control.ops == [("login", "1001", ""), ("pause", "1002", "break")]
    # An agent lists itself only; a supervisor everyone.
    resp = await client.get("/api/agents", headers=auth(AGENT))
    assert [a["agent"] for a in await resp.json()] == ["1001"]
    resp = await client.get("/api/agents", headers=auth(SUP))
    assert [a["agent"] for a in await resp.json()] == ["1001", "1002"]


async def test_agents_see_and_touch_only_their_calls(env: Env) -> None:
    client, control, _ = env
    resp = await client.get("/api/calls", headers=auth(AGENT))
    assert [c["contact_id"] for c in await resp.json()] == ["c1"]
    await error(await client.get("/api/calls/c2", headers=auth(AGENT)), 403, "forbidden")
    await error(await client.post("/api/calls/c2/hangup", headers=auth(AGENT)), 403, "forbidden")
    resp = await client.post("/api/calls/c1/hangup", headers=auth(AGENT))
    assert resp.status == 200
    resp = await client.post("/api/calls/c2/hangup", headers=auth(SUP))
    assert resp.status == 200
    assert control.ops == [("hangup", "c1", "agent"), ("hangup", "c2", "system")]


async def test_token_comparison_takes_every_token_into_account() -> None:
    # Two principals must never share a token: the config refuses it.
    with pytest.raises(ValidationError, match="are the same"):
        ApiConfig(tokens={"a": TOKENS["sup"], "b": TOKENS["sup"]})
    with pytest.raises(ValidationError, match="agent role needs"):
        ApiToken(token=AGENT, roles=("agent",))
    with pytest.raises(ValidationError):
        ApiToken(token="short", roles=("supervisor",))


# -- the error shape --------------------------------------------------------------------------


async def test_invalid_json_is_400(env: Env) -> None:
    client, _, _ = env
    resp = await client.post("/api/agents/1001/not-ready", headers=auth(AGENT), data=b"{nope")
    body = await error(resp, 400, "invalid-json")
    assert body["details"]["reason"]


async def test_schema_errors_are_422_naming_the_field(env: Env) -> None:
    client, _, _ = env
    resp = await client.post("/api/agents/1001/not-ready", headers=auth(AGENT), json={"reason": 5})
    body = await error(resp, 422, "invalid-data")
    assert [e["field"] for e in body["details"]["errors"]] == ["reason"]
    resp = await client.post(
        "/api/agents/1001/not-ready", headers=auth(AGENT), json={"reason": "break", "x": 1}
    )
    body = await error(resp, 422, "invalid-data")
    assert [e["field"] for e in body["details"]["errors"]] == ["x"]
    resp = await client.put("/api/contacts/c1/disposition", headers=auth(AGENT), json={})
    await error(resp, 422, "invalid-data")
    resp = await client.post("/api/agents/1001/not-ready", headers=auth(AGENT), json=[1])
    await error(resp, 422, "invalid-data")


async def test_unknown_ids_conflicts_routes_and_methods(env: Env) -> None:
    client, _, _ = env
    await error(await client.get("/api/calls/zz", headers=auth(SUP)), 404, "call-not-found")
    await error(await client.get("/api/agents/7777", headers=auth(SUP)), 404, "agent-not-found")
    await error(await client.get("/api/contacts/zz", headers=auth(SUP)), 404, "contact-not-found")
    await error(
        await client.put("/api/contacts/zz/disposition", headers=auth(SUP), json={"notes": "x"}),
        404,
        "contact-not-found",
    )
    await error(
        await client.post("/api/agents/1002/ready", headers=auth(SUP)), 409, "invalid-agent-state"
    )
    await error(await client.get("/api/nothing-here"), 404, "not-found")
    body = await error(await client.delete("/api/queues"), 405, "method-not-allowed")
    assert body["details"]["allowed"] == ["GET"]


async def test_unhandled_exception_is_500_without_details(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    client, control, _ = env
    control.explode = True
    body = await error(await client.get("/api/calls", headers=auth(SUP)), 500, "internal-error")
    assert "secret" not in json.dumps(body) and body["details"] == {}
    assert "unhandled error on GET /api/calls" in caplog.text


async def test_transfer_to_a_queue_an_agent_or_a_number(env: Env) -> None:
    client, control, _ = env
    for body in ({"queue": "general"}, {"agent": "1002"}, {"number": "+33612345678"}):
        resp = await client.post("/api/calls/c1/transfer", headers=auth(AGENT), json=body)
        assert resp.status == 200, await resp.text()
    assert control.ops == [
        ("transfer", "c1", "general"),
        ("transfer-agent", "c1", "1002"),
        ("transfer-number", "c1", "+33612345678"),
    ]
    for bad in ({}, {"queue": "general", "agent": "1002"}, {"number": "06 12"}):
        await error(
            await client.post("/api/calls/c1/transfer", headers=auth(AGENT), json=bad),
            422,
            "invalid-data",
        )
    # Not the agent's call.
    await error(
        await client.post("/api/calls/c2/transfer", headers=auth(AGENT), json={"agent": "1001"}),
        403,
        "forbidden",
    )


async def test_click_to_call_for_oneself_or_by_a_supervisor(env: Env) -> None:
    client, control, _ = env
    resp = await client.post("/api/calls", headers=auth(AGENT), json={"number": "0612345678"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["contact_id"] == "c9" and body["ringing"] == ["1001"]
    await error(
        await client.post(
            "/api/calls", headers=auth(AGENT), json={"agent": "1002", "number": "0612345678"}
        ),
        403,
        "forbidden",
    )
    resp = await client.post(
        "/api/calls", headers=auth(SUP), json={"agent": "1002", "number": "1005"}
    )
    assert resp.status == 200
    await error(
        await client.post("/api/calls", headers=auth(SUP), json={"number": "0612345678"}),
        422,
        "agent-required",
    )
    await error(
        await client.post("/api/calls", headers=auth(SUP), json={"agent": "1002", "number": "x"}),
        422,
        "invalid-data",
    )
    assert control.ops == [("dial", "1001", "0612345678", "api"), ("dial", "1002", "1005", "api")]


async def test_disposition_and_contacts_follow_ownership(env: Env) -> None:
    client, _, _ = env
    resp = await client.put(
        "/api/contacts/c1/disposition",
        headers=auth(AGENT),
        json={"disposition": "resolved", "notes": "ok"},
    )
    assert resp.status == 200 and (await resp.json())["disposition"] == "resolved"
    await error(
        await client.put("/api/contacts/c2/disposition", headers=auth(AGENT), json={"notes": "x"}),
        403,
        "forbidden",
    )
    resp = await client.get("/api/contacts/old1", headers=auth(AGENT))
    assert resp.status == 200 and (await resp.json())["disposition"] == "resolved"
    await error(await client.get("/api/contacts/old1", headers=auth(AGENT2)), 403, "forbidden")


# -- OpenAPI ----------------------------------------------------------------------------------


async def test_openapi_lists_every_registered_route(env: Env) -> None:
    client, _, _ = env
    doc = openapi_document(ROUTES)
    assert doc["openapi"] == "3.1.0"
    registered = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    # /api/health is registered by the node next to the API.
    assert registered | {("get", "/api/health")} == documented
    schemas = doc["components"]["schemas"]
    assert {"Error", "NotReadyBody", "TransferBody", "DispositionBody"} <= set(schemas)
    assert schemas["NotReadyBody"]["additionalProperties"] is False
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["operationId"] and op["responses"]


# -- the WebSocket stream and the screen pop -------------------------------------------------------


async def next_json(ws: Any) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 2)
    assert msg.type == WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def test_socket_without_valid_token_is_closed_4401(env: Env) -> None:
    client, _, _ = env
    for url in ("/api/events", "/api/events?token=wrong-token-123456"):
        ws = await client.ws_connect(url)
        msg = await asyncio.wait_for(ws.receive(), 2)
        assert msg.type == WSMsgType.CLOSE and msg.data == 4401
        await ws.close()


async def test_agent_stream_is_filtered_and_gets_its_pop(env: Env) -> None:
    client, control, bus = env
    agent_ws = await client.ws_connect(f"/api/events?token={AGENT}")
    sup_ws = await client.ws_connect("/api/events?types=call.,screen.", headers=auth(SUP))
    assert (await next_json(agent_ws))["type"] == "stream.ready"
    ready = await next_json(sup_ws)
    assert ready["data"]["types"] == ["call.", "screen."]

    bus.emit("agent.state", agent="1002", data={"state": "not-ready"})
    bus.emit("call.arrived", contact_id="c3", data={"caller": "0600000009"})
    bus.emit("call.node", contact_id="c3", data={"node": "menu"})
    bus.emit("call.digit", contact_id="c3", data={"digit": "0"})
    bus.emit("call.queued", contact_id="c3", queue="general", data={"queue": "general"})
    control.live["c3"] = view(
        "c3",
        None,
        ringing=["1001"],
        customer={"id": "C9", "name": "Eleanor", "tier": "VIP", "phones": [],
                  "open_complaints": [{"opened_on": date(2026, 2, 1)}]},
        tier="vip",
    )  # fmt: skip
    bus.emit("call.offered", contact_id="c3", agent="1001", queue="general")
    bus.emit("agent.state", agent="1001", data={"state": "reserved"})

    got = [await next_json(agent_ws) for _ in range(3)]
    assert [e["type"] for e in got] == ["call.offered", "agent.state", "screen.pop"]
    pop = got[2]
    assert pop["agent"] == "1001" and pop["contact_id"] == "c3"
    data = pop["data"]
    assert data["customer"]["name"] == "Eleanor" and data["tier"] == "vip"
    assert data["customer"]["open_complaints"][0]["opened_on"] == "2026-02-01"
    assert [s["step"] for s in data["ivr_path"]] == ["node", "digit", "queued"]
    assert data["ivr_path"][1]["digit"] == "0"
    assert data["wait_seconds"] >= 0
    # The offer came as the call arrived: the pop did not wait for the history,
    # which follows in its own event.
    assert data["history"] == "pending" and data["recent_contacts"] == []
    follow = await next_json(agent_ws)
    assert follow["type"] == "screen.history" and follow["agent"] == "1001"
    assert follow["data"]["history"] == "complete"
    assert follow["data"]["recent_contacts"][0]["disposition"] == "resolved"
    assert follow["data"]["recent_contacts"][0]["arrived_at"].startswith("2026-01-02")

    # The supervisor saw every call event (no agent.* with its filter) and the pop.
    sup = [await next_json(sup_ws) for _ in range(6)]
    assert [e["type"] for e in sup] == [
        "call.arrived", "call.node", "call.digit", "call.queued", "call.offered", "screen.pop",
    ]  # fmt: skip
    # Later events of the offered contact reach the agent, even without its name.
    bus.emit("call.ended", contact_id="c3", queue="general")
    assert (await next_json(agent_ws))["type"] == "call.ended"
    await agent_ws.close()
    await sup_ws.close()


async def test_history_read_since_the_arrival_goes_out_with_the_pop(env: Env) -> None:
    client, control, bus = env
    pops = client.server.app[POP]
    agent_ws = await client.ws_connect(f"/api/events?token={AGENT}&types=screen.")
    assert (await next_json(agent_ws))["type"] == "stream.ready"
    control.live["c4"] = view("c4", None, ringing=["1001"])
    # Handed to the service directly, so the test knows when it has seen it.
    pops.handle(Event("call.arrived", {"caller": "0600000009"}, contact_id="c4"))
    task = pops.tracks["c4"].history
    assert task is not None
    await asyncio.wait_for(task, 2)
    bus.emit("call.offered", contact_id="c4", agent="1001", queue="general")
    pop = await next_json(agent_ws)
    assert pop["type"] == "screen.pop" and pop["data"]["history"] == "complete"
    assert [c["contact_id"] for c in pop["data"]["recent_contacts"]] == ["old1"]
    bus.emit("call.ended", contact_id="c4", queue="general")
    await agent_ws.close()


async def test_history_too_slow_for_its_pop_is_reported_unavailable() -> None:
    gate = asyncio.Event()

    async def stuck(who: Any, limit: int) -> list[RecentContact]:
        await gate.wait()
        return HISTORY

    control, bus = FakeControl(), EventBus()
    app = build_app(
        control=control,
        bus=bus,
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(ws_heartbeat=30, pop_history=3, pop_timeout=0.05),
        history=stuck,
    )
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect(f"/api/events?token={AGENT}&types=screen.")
        assert (await next_json(ws))["type"] == "stream.ready"
        control.live["c5"] = view("c5", None, ringing=["1001"])
        bus.emit("call.arrived", contact_id="c5", data={"caller": "0600000009"})
        bus.emit("call.offered", contact_id="c5", agent="1001", queue="general")
        pop = await next_json(ws)
        assert pop["type"] == "screen.pop" and pop["data"]["history"] == "pending"
        follow = await next_json(ws)
        assert follow["type"] == "screen.history"
        assert follow["data"] == {
            "agent": "1001", "contact_id": "c5", "history": "unavailable", "recent_contacts": [],
        }  # fmt: skip
        gate.set()
        await ws.close()


async def test_closing_the_socket_ends_its_subscription(env: Env) -> None:
    client, _, bus = env
    before = len(bus._subs)
    ws = await client.ws_connect(f"/api/events?token={AGENT}")
    await next_json(ws)
    assert len(bus._subs) == before + 1
    await ws.close()
    for _ in range(100):
        if len(bus._subs) == before:
            break
        await asyncio.sleep(0)  # let the handler's finally run
    assert len(bus._subs) == before
