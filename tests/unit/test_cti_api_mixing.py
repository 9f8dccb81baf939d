"""The API of supervision, conference and consult transfer: roles, bodies, errors, OpenAPI.

The call model is replaced by the in-memory CallControl of `test_cti_api`
(calls c1 with agent 1001, c2 with agent 1002); what reaches it is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ccserver.calls.control import ControlError
from ccserver.events import Event, EventBus
from cti.api import ROUTES, ApiSettings, build_app
from cti.auth import Authenticator, Principal
from cti.openapi import openapi_document
from cti.ws import EventFilter
from tests.unit.test_cti_api import AGENT, SUP, TOKENS, FakeContacts, FakeControl, auth, error

Client = TestClient[web.Request, web.Application]


class MixControl(FakeControl):
    """Records the side-leg operations; a call without agent refuses like the real one."""

    def _op(self, *op: str) -> dict[str, Any]:
        contact_id = op[1]
        if self.live[contact_id]["agent"] is None:
            raise ControlError(409, "not-connected", "the call is not connected to an agent")
        self.ops.append(op)
        return self.live[contact_id]

    def monitor(self, contact_id: str, extension: str, mode: str, by: str) -> dict[str, Any]:
        return self._op("monitor", contact_id, extension, mode, by)

    def monitor_stop(self, contact_id: str) -> dict[str, Any]:
        return self._op("monitor_stop", contact_id)

    def conference(self, contact_id: str, kind: str, target: str, by: str) -> dict[str, Any]:
        return self._op("conference", contact_id, kind, target, by)

    def conference_drop(self, contact_id: str) -> dict[str, Any]:
        return self._op("conference_drop", contact_id)

    def consult(self, contact_id: str, kind: str, target: str, by: str) -> dict[str, Any]:
        return self._op("consult", contact_id, kind, target, by)

    def consult_complete(self, contact_id: str) -> dict[str, Any]:
        return self._op("consult_complete", contact_id)

    def consult_cancel(self, contact_id: str) -> dict[str, Any]:
        return self._op("consult_cancel", contact_id)


@pytest.fixture
async def env() -> AsyncIterator[tuple[Client, MixControl]]:
    control = MixControl()
    app = build_app(
        control=control,
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )
    async with TestClient(TestServer(app)) as client:
        yield client, control


async def test_monitor_is_for_supervisors_with_a_known_mode(env: tuple[Client, MixControl]) -> None:
    client, control = env
    body = {"extension": "1900", "mode": "whisper"}
    await error(
        await client.post("/api/calls/c1/monitor", headers=auth(AGENT), json=body),
        403,
        "forbidden",
    )
    resp = await client.post("/api/calls/c1/monitor", headers=auth(SUP), json=body)
    assert resp.status == 200, await resp.text()
    resp = await client.post("/api/calls/c1/monitor", headers=auth(SUP), json={"extension": "1900"})
    assert resp.status == 200
    assert (await client.delete("/api/calls/c1/monitor", headers=auth(SUP))).status == 200
    assert control.ops == [
        ("monitor", "c1", "1900", "whisper", "sup"),
        ("monitor", "c1", "1900", "listen", "sup"),  # listen is the default mode
        ("monitor_stop", "c1"),
    ]
    bad = await error(
        await client.post(
            "/api/calls/c1/monitor", headers=auth(SUP), json={"extension": "1900", "mode": "spy"}
        ),
        422,
        "invalid-data",
    )
    assert "mode" in str(bad["details"])
    await error(
        await client.post("/api/calls/c1/monitor", headers=auth(SUP), json={}),
        422,
        "invalid-data",
    )
    await error(
        await client.post("/api/calls/nope/monitor", headers=auth(SUP), json=body),
        404,
        "call-not-found",
    )


async def test_conference_and_consult_take_one_target_on_the_agents_own_call(
    env: tuple[Client, MixControl],
) -> None:
    client, control = env
    for path in ("conference", "consult"):
        resp = await client.post(
            f"/api/calls/c1/{path}", headers=auth(AGENT), json={"extension": "1005"}
        )
        assert resp.status == 200, await resp.text()
        resp = await client.post(
            f"/api/calls/c1/{path}", headers=auth(AGENT), json={"number": "+33612345678"}
        )
        assert resp.status == 200
        for wrong in ({}, {"extension": "1005", "number": "0612"}, {"number": "06-12"}):
            await error(
                await client.post(f"/api/calls/c1/{path}", headers=auth(AGENT), json=wrong),
                422,
                "invalid-data",
            )
        # Another agent's call.
        await error(
            await client.post(
                f"/api/calls/c2/{path}", headers=auth(AGENT), json={"extension": "1005"}
            ),
            403,
            "forbidden",
        )
    for tail in ("consult/complete", "consult/cancel"):
        assert (await client.post(f"/api/calls/c1/{tail}", headers=auth(AGENT))).status == 200
    assert (await client.delete("/api/calls/c1/conference", headers=auth(AGENT))).status == 200
    assert control.ops == [
        ("conference", "c1", "extension", "1005", "a1001"),
        ("conference", "c1", "number", "+33612345678", "a1001"),
        ("consult", "c1", "extension", "1005", "a1001"),
        ("consult", "c1", "number", "+33612345678", "a1001"),
        ("consult_complete", "c1"),
        ("consult_cancel", "c1"),
        ("conference_drop", "c1"),
    ]
    control.live["c1"]["agent"] = None
    control.live["c1"]["ringing"] = ["1001"]  # still the agent's, not connected yet
    await error(
        await client.post("/api/calls/c1/consult", headers=auth(AGENT), json={"extension": "1"}),
        409,
        "not-connected",
    )


def test_openapi_documents_the_new_routes_and_bodies() -> None:
    doc = openapi_document(ROUTES)
    monitor = doc["paths"]["/api/calls/{contact_id}/monitor"]
    assert set(monitor) == {"post", "delete"}
    assert "supervisor" in monitor["post"]["description"]
    schemas = doc["components"]["schemas"]
    assert schemas["MonitorBody"]["properties"]["mode"]["enum"] == ["listen", "whisper", "barge"]
    assert {"extension", "number"} <= set(schemas["TargetBody"]["properties"])
    for path in ("consult", "consult/complete", "consult/cancel", "conference"):
        assert f"/api/calls/{{contact_id}}/{path}" in doc["paths"]


async def test_an_agent_is_not_told_it_is_monitored(env: tuple[Client, MixControl]) -> None:
    client, control = env
    control.live["c1"]["monitor"] = {"target": "1900", "connected": True, "mode": "listen"}
    resp = await client.get("/api/calls/c1", headers=auth(AGENT))
    assert (await resp.json())["monitor"] is None
    resp = await client.get("/api/calls", headers=auth(AGENT))
    assert [c["monitor"] for c in await resp.json()] == [None]
    resp = await client.get("/api/calls/c1", headers=auth(SUP))
    assert (await resp.json())["monitor"]["mode"] == "listen"
    resp = await client.post("/api/calls/c1/conference", headers=auth(AGENT), json={"number": "1"})
    assert (await resp.json())["monitor"] is None

    own = EventFilter(Principal("a1001", frozenset({"agent"}), agent="1001"))
    boss = EventFilter(Principal("sup", frozenset({"supervisor"})))
    for kind in ("call.monitor_started", "call.monitor_mode", "call.monitor_stopped"):
        event = Event(kind, {"mode": "listen"}, contact_id="c1", agent="1001")
        assert not own.allows(event) and boss.allows(event)
    assert own.allows(Event("call.conference_joined", {}, contact_id="c1", agent="1001"))
