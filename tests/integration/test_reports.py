"""Reports of the running server count what real SIPp calls did.

One SIPp agent answers the first caller and hangs up; a second caller, who
finds the only agent busy, gives up in the queue. The report endpoints of the
`ccserver run` process must count one offered-and-answered and one
abandoned call, agree with the stored contacts, and export the same as CSV.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from acd.erlang import agents_required, offered_load
from tests.integration.peers import wait_for
from tests.integration.peers.fixtures import Peers
from tests.integration.server import ServerProcess
from tests.integration.test_call_flows import (
    StartServer,
    assert_clean_log,
    flow_caller,
    lingering_agent,
    simple_caller_vars,
)

pytestmark = pytest.mark.integration

SUPERVISOR = {"Authorization": "Bearer demo-supervisor-token-change-me"}


async def get(server: ServerProcess, path: str, **params: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(
            f"http://127.0.0.1:{server.http_port}{path}", params=params, headers=SUPERVISOR
        )
        await resp.read()
        return resp


async def test_reports_count_answered_and_abandoned_sipp_calls(
    start_server: StartServer, peers: Peers
) -> None:
    server: ServerProcess = await start_server()
    since = datetime.now(UTC) - timedelta(minutes=1)
    agent = await lingering_agent(
        peers, server, behaviour="answer_hangup", talk_ms=2000, linger_ms=500
    )
    answered = await flow_caller(
        peers, server, variables=simple_caller_vars(wait_bye=True), caller_id="0600000001"
    )
    await server.wait_log(r"agent 1001 answered")
    # The only agent is on the phone: this caller waits, then hangs up.
    gives_up = await flow_caller(
        peers, server, variables=simple_caller_vars(talk_ms=1500), caller_id="0600000002"
    )
    await gives_up.wait()
    await answered.wait()
    await agent.wait()
    contacts = await server.wait_contact_closed(2, timeout=10)
    outcome = {c.caller_number: c for c in contacts}
    assert outcome["0600000001"].outcome == "answered"
    assert outcome["0600000002"].outcome == "abandoned"
    wait = outcome["0600000001"].wait_seconds
    assert wait is not None

    until = datetime.now(UTC) + timedelta(minutes=1)
    span = {"from": since.isoformat(), "to": until.isoformat()}
    resp = await get(server, "/api/reports/queues", queue="general", **span)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    (row,) = body["rows"]
    assert (row["offered"], row["answered"], row["abandoned"]) == (2, 1, 1)
    # The answered call waited under 20 s; the abandoned one counts against.
    assert row["service_level"] == 0.5
    assert row["asa"] == pytest.approx(wait, abs=1e-3)
    assert row["abandon_rate"] == 0.5

    resp = await get(server, "/api/reports/agents", agent="1001", **span)
    (agent_row,) = (await resp.json())["rows"]
    assert agent_row["answered"] == 1 and agent_row["offers"] == 1
    assert agent_row["talk_seconds"] > 1.0 and agent_row["logged_in_seconds"] > 2.0

    resp = await get(server, "/api/reports/queues", format="csv", interval="hour", **span)
    assert resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text(), newline="")))
    general = [r for r in rows if r["queue"] == "general"]
    assert sum(int(r["offered"]) for r in general) == 2
    assert sum(int(r["abandoned"]) for r in general) == 1

    # The live figures (GET /api/queues) recomputed from the stored contacts. The
    # agent's wrap-up ends after the call (its phone unregisters, or the queue's
    # timer), and the contact keeps its length too.
    def wrapped() -> Any:
        rows = {c.caller_number: c for c in server.contacts()}
        done = rows["0600000001"]
        return done if done.wrap_seconds is not None else None

    done = await wait_for(wrapped, 10, "the answered contact's wrap-up time")
    resp = await get(server, "/api/queues")
    (live,) = [q for q in await resp.json() if q["queue"] == "general"]
    assert (live["answered"], live["abandoned"], live["waiting"]) == (1, 1, 0)
    assert live["service_level"] == 0.5 and live["abandon_rate"] == 0.5
    # The router times on the loop clock, the contact on the wall clock: equal to
    # within the few milliseconds between the two readings.
    assert live["asa"] == pytest.approx(done.wait_seconds, abs=0.05)
    handle = done.talk_seconds + (done.hold_seconds or 0.0) + done.wrap_seconds
    assert live["aht"] == pytest.approx(handle, abs=0.1)
    assert 0.0 < done.wrap_seconds <= 5.0 + 0.1  # at most the queue's wrap_up

    resp = await get(server, "/api/staffing", queue="general", calls="30", aht="180")
    staffing = await resp.json()
    # The general queue's own target and threshold (config/queues.toml): 80 % in 20 s.
    need = agents_required(offered_load(30, 900, 180), 180, target=0.8, threshold=20)
    assert staffing["required"]["agents"] == need.agents
    assert staffing["logged_in"] == 0  # the SIPp agent has logged out by now
    assert_clean_log(server)
