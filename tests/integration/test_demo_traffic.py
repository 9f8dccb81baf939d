"""`ccserver run --demo-traffic`: the built-in agents and callers make real, recorded calls.

The run is seeded, so the test knows from the same plan which lines the
calls dial, which keys they press and which survey scores they give; the
database, the wire (dumpcap) and the report endpoint must agree with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ccserver.demo_traffic import DemoPlan, DemoSettings
from ccserver.demo_traffic.runner import AGENT_ADDRESS, RTP_PORTS, TRUNK_ADDRESS
from tests.integration.peers.capture import RtpCapture
from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

SUPERVISOR = "demo-supervisor-token-change-me"
SETTINGS = DemoSettings(calls=3, rate=120, talk=(2.0, 3.0), seed=13)
ARGS = (
    "--demo-traffic",
    "--demo-calls",
    "3",
    "--demo-rate",
    "120",
    "--demo-talk",
    "2-3",
    "--demo-seed",
    "13",
)


def planned() -> list[Any]:
    """The scripts the server's own plan draws, replayed here with the same seed."""
    plan = DemoPlan(SETTINGS, 0.0)
    scripts = []
    while (due := plan.next_time()) is not None:
        script = plan.take(due, set())
        assert script is not None
        scripts.append(script)
    return scripts


async def test_demo_traffic_calls_are_answered_recorded_and_reported(
    start_server: Callable[..., Any], tmp_path: Path
) -> None:
    scripts = planned()
    # The seed was chosen for a mix: direct queue calls, an IVR call pressing 0 and rating.
    assert [s.dialed for s in scripts] == ["5001", "5000", "5001"]
    assert [s.survey for s in scripts] == [None, "5", None]
    async with RtpCapture(tmp_path, [RTP_PORTS]) as capture:
        srv: ServerProcess = await start_server(args=ARGS)
        await srv.wait_log(r"demo traffic: 3 agents registered", 15)
        await srv.wait_log(r"demo traffic finished: 3 calls placed; agent 3", 60)
        contacts = await srv.wait_contact_closed(3, timeout=10)
    assert len(contacts) == 3
    # Arrival order within a fraction of a second is not guaranteed (the
    # customer lookup runs first), so contacts are matched by the line dialled;
    # calls to the same line have the same script but for the caller number.
    assert sorted(c.dialed_number for c in contacts) == sorted(s.dialed for s in scripts)
    by_line = {s.dialed: s for s in scripts}
    numbers = set(SETTINGS.numbers)
    for contact in contacts:
        script = by_line[contact.dialed_number]
        assert contact.caller_number in numbers
        assert contact.outcome == "answered", contact
        assert contact.agent in SETTINGS.agents
        assert contact.queue == "general"
        assert contact.talk_seconds is not None and contact.talk_seconds >= 2.0
        assert contact.survey_score == (int(script.survey) if script.survey else None)
        digits = [e.data.get("digit") for e in contact.events if e.type == "digit"]
        assert digits == [k.digit for k in script.keys] + ([script.survey] if script.survey else [])
    # Every agent registered and took calls: its phone logged it in.
    for agent in SETTINGS.agents:
        states = [e.state for e in srv.agent_events(agent)]
        assert "registered" in states and "on-call" in states

    # On the wire: every caller and agent sent audio; each agent heard its
    # caller's voice relayed by the node (nothing else is played to an
    # agent's leg); the keys went out as RFC 4733 events.
    assert srv.rtp_range is not None
    node = range(srv.rtp_range[0], srv.rtp_range[1] + 1)
    streams = capture.streams()
    from_callers = [s for s in streams if s.src[0] == TRUNK_ADDRESS and s.dst[1] in node]
    from_agents = [
        s
        for s in streams
        if s.src[0] == AGENT_ADDRESS and s.dst[1] in node and s.src[1] not in node
    ]
    to_agents = [
        s
        for s in streams
        if s.src[1] in node and s.dst[0] == AGENT_ADDRESS and s.dst[1] not in node
    ]
    described = "\n".join(s.describe() for s in streams)
    for group in (from_callers, from_agents, to_agents):
        assert len(group) == 3, described
        assert all(s.loud_seconds() >= 1.0 for s in group), described
    assert sorted("".join(s.keys for s in from_callers)) == ["0", "5"]

    # The report endpoint of the running server counts them.
    since = (contacts[0].arrived_at - timedelta(minutes=1)).astimezone(UTC)
    params = {"from": since.isoformat(), "to": datetime.now(UTC).isoformat(), "queue": "general"}
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{srv.http_port}/api/reports/queues",
            params=params,
            headers={"Authorization": f"Bearer {SUPERVISOR}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
    (row,) = body["rows"]
    assert (row["offered"], row["answered"], row["abandoned"]) == (3, 3, 0)
    assert row["surveys"] == 1 and row["survey_score"] == 5.0
