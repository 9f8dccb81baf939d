"""Asterisk queue_log lines from constructed contacts, timelines and agent changes."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ccserver.storage.database import make_engine
from ccserver.storage.migrate import create_schema
from ccserver.storage.models import AgentEvent, Contact, ContactEvent
from cti.exports import ExportFilter
from cti.queue_log import AgentLog, contact_entries, write_queue_log

T0 = datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)
E = 1740823200  # T0 in unix seconds


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def contact(cid: str, *, answered: float | None = None, ended: float, **kw: Any) -> Contact:
    fields: dict[str, Any] = {
        "id": cid,
        "caller_number": "+33600000001",
        "dialed_number": "+33900000000",
        "direction": "inbound",
        "initiation": "inbound",
        "sip_call_id": f"sip-{cid}",
        "queue": "sales",
        "arrived_at": T0,
        "answered_at": at(answered) if answered is not None else None,
        "ended_at": at(ended),
        "attributes": {},
        **kw,
    }
    return Contact(**fields)


def timeline(cid: str, *steps: tuple[float, str, dict[str, Any]]) -> list[ContactEvent]:
    return [
        ContactEvent(contact_id=cid, seq=i, type=type, at=at(t), data=data)
        for i, (t, type, data) in enumerate(steps)
    ]


def lines(c: Contact, events: list[ContactEvent], fmt: str = "PJSIP/{ext}") -> list[str]:
    return [e.line() for e in contact_entries(c, events, fmt)]


def test_answered_call_caller_hangs_up() -> None:
    c = contact("c1", answered=8, ended=68, agent="1001", disconnect_reason="caller")
    events = timeline(
        "c1",
        (0, "arrived", {}),
        (2, "queued", {"queue": "sales", "priority": 0}),
        (3, "offered", {"agent": "1001", "queue": "sales"}),
        (4, "ringing", {"agent": "1001"}),
        (8, "answered", {"agent": "1001", "codec": "PCMU"}),
        (68, "ended", {}),
    )
    assert lines(c, events) == [
        f"{E + 2}|c1|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 8}|c1|sales|PJSIP/1001|CONNECT|6|c1|5",
        f"{E + 68}|c1|sales|PJSIP/1001|COMPLETECALLER|6|60|1",
    ]


def test_abandon_uses_recorded_position_and_wait() -> None:
    c = contact("c2", ended=31, outcome="abandoned", disconnect_reason="caller")
    events = timeline(
        "c2",
        (1, "queued", {"queue": "sales"}),
        (31, "abandoned", {"queue": "sales", "waited": 30.4, "position": 2}),
    )
    assert lines(c, events) == [
        f"{E + 1}|c2|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 31}|c2|sales|NONE|ABANDON|2|1|30",
    ]


def test_ring_no_answer_then_another_agent_answers_agent_hangs_up() -> None:
    c = contact("c3", answered=20, ended=50, agent="1002", disconnect_reason="agent")
    events = timeline(
        "c3",
        (0, "queued", {"queue": "sales"}),
        (1, "offered", {"agent": "1001"}),
        (16.25, "no_answer", {"agent": "1001"}),
        (17, "offered", {"agent": "1002"}),
        (20, "answered", {"agent": "1002"}),
    )
    assert lines(c, events, "Agent/{ext}") == [
        f"{E}|c3|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 16}|c3|sales|Agent/1001|RINGNOANSWER|15250",
        f"{E + 20}|c3|sales|Agent/1002|CONNECT|20|c3|3",
        f"{E + 50}|c3|sales|Agent/1002|COMPLETEAGENT|20|30|1",
    ]


def test_transfer_ends_the_call_in_this_queue() -> None:
    c = contact("c4", answered=5, ended=90, agent="1001", disconnect_reason="caller")
    events = timeline(
        "c4",
        (0, "queued", {"queue": "sales"}),
        (1, "offered", {"agent": "1001"}),
        (5, "answered", {"agent": "1001"}),
        (45, "transferred", {"from_agent": "1001", "to_queue": "billing"}),
    )
    assert lines(c, events) == [
        f"{E}|c4|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 5}|c4|sales|PJSIP/1001|CONNECT|5|c4|4",
        f"{E + 45}|c4|sales|PJSIP/1001|TRANSFER|billing|queue|5|40|1",
    ]


def test_transfer_to_an_agent_is_one_transfer_line_and_no_second_connect() -> None:
    c = contact("c5", answered=5, ended=90, agent="1005", disconnect_reason="caller")
    events = timeline(
        "c5",
        (0, "queued", {"queue": "sales"}),
        (1, "offered", {"agent": "1001"}),
        (5, "answered", {"agent": "1001"}),
        (45, "transferred", {"from_agent": "1001", "to_agent": "1005"}),
        (47, "answered", {"extension": "1005", "transfer": True}),
    )
    assert lines(c, events)[-2:] == [
        f"{E + 5}|c5|sales|PJSIP/1001|CONNECT|5|c5|4",
        f"{E + 45}|c5|sales|PJSIP/1001|TRANSFER|1005|from-internal|5|40|1",
    ]


def test_overflow_on_max_wait_exits_with_timeout_and_enters_the_next_queue() -> None:
    c = contact("c5", ended=100, queue="support", outcome="abandoned")
    events = timeline(
        "c5",
        (0, "queued", {"queue": "sales"}),
        (60, "overflow", {"from": "sales", "kind": "queue", "to": "support",
                          "reason": "max-wait", "waited": 60.0}),
        (100, "abandoned", {"queue": "support", "waited": 40.0, "position": 1}),
    )  # fmt: skip
    assert lines(c, events) == [
        f"{E}|c5|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 60}|c5|sales|NONE|EXITWITHTIMEOUT|1|1|60",
        f"{E + 60}|c5|support|NONE|ENTERQUEUE||+33600000001",
        f"{E + 100}|c5|support|NONE|ABANDON|1|1|40",
    ]


def test_a_queue_callback_booked_by_overflow_stays_in_the_queue_until_connected() -> None:
    c = contact(
        "cb", answered=70, ended=130, agent="1001", disconnect_reason="agent", initiation="callback"
    )
    events = timeline(
        "cb",
        (1, "queued", {"queue": "sales"}),
        (61, "overflow", {"kind": "callback", "reason": "max-wait", "waited": 60.0}),
        (62, "callback_requested", {"queue": "sales", "number": "0600000001", "by": "overflow"}),
        (66, "caller_left", {"by": "system", "callback": "0600000001"}),
        (67, "offered", {"agent": "1001", "queue": "sales", "callback": "0600000001"}),
        (68, "answered", {"agent": "1001", "callback": "0600000001"}),
        (69, "customer_dialed", {"number": "0600000001"}),
        (70, "connected", {"number": "0600000001", "agent": "1001"}),
        (130, "ended", {}),
    )
    assert lines(c, events) == [
        f"{E + 1}|cb|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 68}|cb|sales|PJSIP/1001|CONNECT|67|cb|1",
        f"{E + 130}|cb|sales|PJSIP/1001|COMPLETEAGENT|67|62|1",
    ]


def test_leave_empty_overflow_is_exitempty_and_ivr_only_contact_has_no_lines() -> None:
    c = contact("c6", ended=10, outcome="voicemail")
    events = timeline(
        "c6",
        (0, "queued", {"queue": "sales"}),
        (9, "overflow", {"from": "sales", "kind": "voicemail", "to": "",
                         "reason": "leave-empty", "waited": 9.0}),
    )  # fmt: skip
    assert lines(c, events) == [
        f"{E}|c6|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 9}|c6|sales|NONE|EXITEMPTY|1|1|9",
    ]
    ivr = contact("c7", ended=30, queue=None, outcome="completed-ivr")
    assert lines(ivr, timeline("c7", (0, "arrived", {}), (3, "digit", {"digit": "1"}))) == []


def agent_event(t: float, state: str, old: str, reason: str | None = None) -> AgentEvent:
    return AgentEvent(agent="1001", state=state, reason=reason, at=at(t), data={"from": old})


def test_agent_login_pause_unpause_logoff() -> None:
    log = AgentLog()
    changes = [
        agent_event(0, "registered", "registered"),
        agent_event(10, "available", "logged-out"),
        agent_event(20, "not-ready", "available", "lunch"),
        agent_event(30, "available", "not-ready"),
        agent_event(3610, "logged-out", "available"),
    ]
    out = [e.line() for ch in changes for e in log.entries(ch)]
    assert out == [
        f"{E + 10}|NONE|NONE|PJSIP/1001|AGENTLOGIN|PJSIP/1001",
        f"{E + 20}|NONE|NONE|PJSIP/1001|PAUSE|lunch",
        f"{E + 30}|NONE|NONE|PJSIP/1001|UNPAUSE|",
        f"{E + 3610}|NONE|NONE|PJSIP/1001|AGENTLOGOFF|PJSIP/1001|3600",
    ]


def test_login_paused_gives_login_then_pause() -> None:
    out = [e.line() for e in AgentLog().entries(agent_event(5, "not-ready", "logged-out", "break"))]
    assert out == [
        f"{E + 5}|NONE|NONE|PJSIP/1001|AGENTLOGIN|PJSIP/1001",
        f"{E + 5}|NONE|NONE|PJSIP/1001|PAUSE|break",
    ]


def test_field_separator_in_data_cannot_split_a_line() -> None:
    c = contact("c8", ended=5, caller_number="a|b", outcome="abandoned")
    events = timeline("c8", (0, "queued", {"queue": "sales"}))
    assert lines(c, events) == [f"{E}|c8|sales|NONE|ENTERQUEUE||a/b"]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/contacts.db")
    await create_schema(engine)
    yield engine
    await engine.dispose()


async def test_export_merges_calls_and_agent_changes_in_time_order(engine: AsyncEngine) -> None:
    first = contact("a1", answered=8, ended=68, agent="1001", disconnect_reason="caller")
    second = contact("a2", ended=31, outcome="abandoned", arrived_at=at(20))
    async with AsyncSession(engine) as session, session.begin():
        session.add_all([first, second])
        session.add_all(
            timeline("a1", (2, "queued", {"queue": "sales"}), (3, "offered", {"agent": "1001"}),
                     (8, "answered", {"agent": "1001"}))
            + timeline("a2", (21, "queued", {"queue": "sales"}),
                       (31, "abandoned", {"waited": 10.0, "position": 1}))
        )  # fmt: skip
        session.add_all(
            [agent_event(1, "available", "logged-out"), agent_event(70, "not-ready", "wrap-up")]
        )
    out = io.StringIO()
    count = await write_queue_log(engine, out, ExportFilter(), agent_format="PJSIP/{ext}")
    assert out.getvalue().splitlines() == [
        f"{E + 1}|NONE|NONE|PJSIP/1001|AGENTLOGIN|PJSIP/1001",
        f"{E + 2}|a1|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 8}|a1|sales|PJSIP/1001|CONNECT|6|a1|5",
        f"{E + 21}|a2|sales|NONE|ENTERQUEUE||+33600000001",
        f"{E + 31}|a2|sales|NONE|ABANDON|1|1|10",
        f"{E + 68}|a1|sales|PJSIP/1001|COMPLETECALLER|6|60|1",
        f"{E + 70}|NONE|NONE|PJSIP/1001|PAUSE|",
    ]
    assert count == 7
    out = io.StringIO()
    await write_queue_log(engine, out, ExportFilter(since=at(10)))
    assert [line.split("|")[1] for line in out.getvalue().splitlines()] == [
        "a2", "a2", "NONE"
    ]  # fmt: skip
