"""Asterisk ``queue_log`` lines from our contact records, for reports built for Asterisk.

Each line is ``timestamp|callid|queuename|agent|event|data1|data2|...``, one
per event, as app_queue writes them (docs.asterisk.org, *Operation → Logging →
Queue Logs*). The mapping, with the data fields in Asterisk's order:

- ENTERQUEUE(url, callerid): ``queued``, or an overflow into another queue
- RINGNOANSWER(ringtime in ms): ``no_answer``, ``declined``
- CONNECT(holdtime, bridged uniqueid, ringtime): ``answered``
- COMPLETECALLER / COMPLETEAGENT(holdtime, calltime, origposition): the end of
  an answered call, by who hung up (``agent_hung_up`` is COMPLETEAGENT)
- ABANDON(position, origposition, waittime): ``abandoned``
- EXITWITHTIMEOUT / EXITEMPTY(position, origposition, waittime): ``overflow``
  with reason ``max-wait`` / ``join-empty`` or ``leave-empty`` (none for an
  overflow to ``callback``: a queue callback keeps its place, and its CONNECT
  is the agent's answer)
- TRANSFER(extension, context, holdtime, calltime, origposition): ``transferred``;
  the extension is the target queue (context ``queue``), or the extension or
  number of a blind transfer (context ``from-internal``)
- AGENTLOGIN(channel), AGENTLOGOFF(channel, logintime): agent state out of /
  into ``logged-out``; PAUSE(reason), UNPAUSE(reason): into / out of ``not-ready``

Conventions: the callid is our contact id (Asterisk's is the caller channel's
uniqueid; report tools treat it as an opaque key) and the bridged uniqueid of
CONNECT is that same id; agents are named ``PJSIP/<extension>`` by default
(``agent_format``), the interface a queue member has on Asterisk with PJSIP
phones; agent lines carry the queue ``NONE`` (our agent log is not per queue);
durations are whole seconds, truncated as app_queue does; a position that the
timeline does not record is written as 1; a logoff whose login is before the
exported range has a logintime of 0.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TextIO

from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.storage.models import AgentEvent, Contact, ContactEvent
from cti.exports import ExportFilter, iter_agent_events, iter_contacts

__all__ = [
    "DEFAULT_AGENT_FORMAT",
    "AgentLog",
    "QueueLogEntry",
    "contact_entries",
    "write_queue_log",
]

DEFAULT_AGENT_FORMAT: Final = "PJSIP/{ext}"
NONE: Final = "NONE"
_EXIT_REASONS: Final = {
    "max-wait": "EXITWITHTIMEOUT",
    "join-empty": "EXITEMPTY",
    "leave-empty": "EXITEMPTY",
}


@dataclass(frozen=True, slots=True, order=True)
class QueueLogEntry:
    """One queue_log line; sorts by time (ties keep the order they were made in)."""

    at: datetime
    order: int = field(compare=True)
    callid: str = field(compare=False)
    queue: str = field(compare=False)
    agent: str = field(compare=False)
    event: str = field(compare=False)
    data: tuple[str, ...] = field(compare=False, default=())

    def line(self) -> str:
        fields = [str(int(self.at.timestamp())), self.callid, self.queue, self.agent, self.event]
        return "|".join(f.replace("|", "/").replace("\n", " ") for f in fields + list(self.data))


_order = itertools.count()


def _entry(
    at: datetime, callid: str, queue: str, agent: str, event: str, *data: Any
) -> QueueLogEntry:
    cells = tuple("" if d is None else str(d) for d in data)
    return QueueLogEntry(at, next(_order), callid, queue, agent, event, cells)


def _secs(start: datetime | None, end: datetime) -> int:
    return 0 if start is None else max(0, int((end - start).total_seconds()))


def contact_entries(
    contact: Contact,
    events: Sequence[ContactEvent],
    agent_format: str = DEFAULT_AGENT_FORMAT,
) -> list[QueueLogEntry]:
    """The queue_log lines of one contact, from its timeline, in timeline order.

    A contact that never queued (IVR only, outbound) has no lines.
    """
    cid = contact.id
    out: list[QueueLogEntry] = []
    queue = contact.queue or NONE
    queued_at: datetime | None = None
    origposition: Any = 1
    offered: dict[str, datetime] = {}
    connected: str | None = None
    connected_at: datetime | None = None
    holdtime = 0
    finished = False

    def name(ext: Any) -> str:
        return agent_format.format(ext=ext) if ext else NONE

    for ev in events:
        data = ev.data
        if ev.type == "queued":
            queue = data.get("queue") or queue
            queued_at = ev.at
            origposition = data.get("position") or 1
            out.append(_entry(ev.at, cid, queue, NONE, "ENTERQUEUE", "", contact.caller_number))
        elif ev.type == "offered" and data.get("agent"):
            offered[str(data["agent"])] = ev.at
        elif ev.type in ("no_answer", "declined") and data.get("agent"):
            start = offered.pop(str(data["agent"]), None)
            ms = 0 if start is None else max(0, int((ev.at - start).total_seconds() * 1000))
            out.append(_entry(ev.at, cid, queue, name(data["agent"]), "RINGNOANSWER", ms))
        elif ev.type == "answered" and queued_at is not None and not data.get("transfer"):
            connected = str(data.get("agent") or contact.agent or "")
            connected_at = ev.at
            holdtime = _secs(queued_at, ev.at)
            ringtime = _secs(offered.get(connected), ev.at)
            out.append(
                _entry(ev.at, cid, queue, name(connected), "CONNECT", holdtime, cid, ringtime)
            )
        elif ev.type == "transferred" and connected is not None and not finished:
            # TRANSFER|extension|context: a queue, an agent's extension or a number.
            target = data.get("to_queue") or data.get("to_agent") or data.get("to_number") or ""
            context = "queue" if data.get("to_queue") else "from-internal"
            out.append(
                _entry(ev.at, cid, queue, name(connected), "TRANSFER",
                       target, context, holdtime, _secs(connected_at, ev.at), origposition)
            )  # fmt: skip
            finished = True
        elif ev.type == "agent_hung_up" and connected is not None and not finished:
            out.append(
                _entry(ev.at, cid, queue, name(connected), "COMPLETEAGENT",
                       holdtime, _secs(connected_at, ev.at), origposition)
            )  # fmt: skip
            finished = True
        elif ev.type == "overflow" and data.get("kind") == "callback":
            pass  # a booked call back keeps its place: the caller has not left the queue
        elif ev.type == "overflow" and queued_at is not None and connected is None:
            event = _EXIT_REASONS.get(str(data.get("reason")), "EXITWITHTIMEOUT")
            waited = data.get("waited")
            wait = int(waited) if isinstance(waited, int | float) else _secs(queued_at, ev.at)
            position = data.get("position") or 1
            out.append(_entry(ev.at, cid, queue, NONE, event, position, origposition, wait))
            if data.get("kind") == "queue" and data.get("to"):
                # Asterisk sees the caller leave one queue and enter the next.
                queue = str(data["to"])
                queued_at = ev.at
                out.append(_entry(ev.at, cid, queue, NONE, "ENTERQUEUE", "", contact.caller_number))
            else:
                queued_at = None
        elif ev.type == "abandoned" and queued_at is not None and connected is None:
            waited = data.get("waited")
            wait = int(waited) if isinstance(waited, int | float) else _secs(queued_at, ev.at)
            position = data.get("position") or 1
            out.append(_entry(ev.at, cid, queue, NONE, "ABANDON", position, origposition, wait))
            queued_at = None
    if connected is not None and not finished and contact.ended_at is not None:
        event = "COMPLETECALLER" if contact.disconnect_reason == "caller" else "COMPLETEAGENT"
        calltime = _secs(connected_at, contact.ended_at)
        out.append(
            _entry(contact.ended_at, cid, queue, name(connected), event,
                   holdtime, calltime, origposition)
        )  # fmt: skip
    return out


class AgentLog:
    """Turns agent state changes into AGENTLOGIN/LOGOFF and PAUSE/UNPAUSE lines.

    Stateful across events: a logoff's logintime comes from the login seen earlier.
    """

    def __init__(self, agent_format: str = DEFAULT_AGENT_FORMAT) -> None:
        self.agent_format = agent_format
        self._login: dict[str, datetime] = {}

    def entries(self, ev: AgentEvent) -> list[QueueLogEntry]:
        old = ev.data.get("from")
        new = ev.state
        if new in ("registered", "unregistered") or old == new == "logged-out":
            return []  # phone registration, not an agent state
        name = self.agent_format.format(ext=ev.agent)
        reason = ev.reason or ""
        out: list[QueueLogEntry] = []
        if new == "logged-out":
            login = self._login.pop(ev.agent, None)
            out.append(_entry(ev.at, NONE, NONE, name, "AGENTLOGOFF", name, _secs(login, ev.at)))
            return out
        if old == "logged-out":
            self._login[ev.agent] = ev.at
            out.append(_entry(ev.at, NONE, NONE, name, "AGENTLOGIN", name))
        if new == "not-ready":
            out.append(_entry(ev.at, NONE, NONE, name, "PAUSE", reason))
        elif old == "not-ready":
            out.append(_entry(ev.at, NONE, NONE, name, "UNPAUSE", reason))
        return out


async def _merged(
    contacts: AsyncIterator[tuple[Contact, list[ContactEvent]]],
    agent_events: AsyncIterator[AgentEvent],
    agent_format: str,
) -> AsyncIterator[QueueLogEntry]:
    """Every entry in time order, holding only the calls still open at any moment.

    Contacts come in arrival order and no line of a contact is earlier than its
    arrival, so the lines pending before the next arrival can go out.
    """
    agents = AgentLog(agent_format)
    pending: list[QueueLogEntry] = []
    next_agent = await anext(agent_events, None)

    async def agent_lines_until(limit: datetime | None) -> None:
        nonlocal next_agent
        while next_agent is not None and (limit is None or next_agent.at <= limit):
            for entry in agents.entries(next_agent):
                heapq.heappush(pending, entry)
            next_agent = await anext(agent_events, None)

    def ready(limit: datetime | None) -> Iterable[QueueLogEntry]:
        while pending and (limit is None or pending[0].at < limit):
            yield heapq.heappop(pending)

    async for contact, events in contacts:
        await agent_lines_until(contact.arrived_at)
        for entry in ready(contact.arrived_at):
            yield entry
        for entry in contact_entries(contact, events, agent_format):
            heapq.heappush(pending, entry)
    await agent_lines_until(None)
    for entry in ready(None):
        yield entry


async def write_queue_log(
    engine: AsyncEngine,
    out: TextIO,
    flt: ExportFilter,
    *,
    agent_format: str = DEFAULT_AGENT_FORMAT,
) -> int:
    """Write the queue_log of the contacts (and agent changes) in range; returns lines."""
    count = 0
    contacts = iter_contacts(engine, flt, with_events=True)
    agent_events = iter_agent_events(engine, flt.since, flt.until)
    async for entry in _merged(contacts, agent_events, agent_format):
        out.write(entry.line())
        out.write("\n")
        count += 1
    return count
