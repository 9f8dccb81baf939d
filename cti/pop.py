"""The screen pop: who is calling and what they did so far, on the agent's screen as it rings.

:class:`PopService` follows the ``call.*`` events of the bus. It keeps, per
live contact, the steps of the caller's path (IVR nodes, keys, spoken
phrases, branches, the queue) and when the call arrived and was queued; and it
remembers which agent each contact was offered to, so the API can tell whether
an agent may touch a contact. When ``call.offered`` names an agent, it builds
the pop (:func:`build_pop`) and publishes it on the bus as ``screen.pop`` for
that agent; the WebSocket stream hands it to the agent's sockets and to
supervisors.

The pop must reach the screen while the phone rings, so nothing between the
offer and the pop waits on I/O: the customer was looked up when the call
arrived, and the only slow part, the caller's contact history, is fetched from
the arrival on too (an IVR or a queue gives it seconds). The pop is built from
what is known when the offer is seen. If the history is not in yet (the offer
came at once) the pop says ``"history": "pending"`` and a ``screen.history``
event follows with it, at most ``history_timeout`` later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ccserver.calls.control import CallControl, ControlError
from ccserver.events import Event, EventBus
from cti.customers import Customer, Phone, RecentContact

__all__ = ["CallTrack", "HistoryState", "PopService", "build_pop", "recent_contact_view"]

log = logging.getLogger(__name__)

# Timeline steps that are not part of the caller's path (media and ringing noise).
_NOT_PATH = frozenset(
    {
        "arrived",
        "accepted",
        "prompt",
        "prompt_played",
        "speech_started",
        "offered",
        "ringing",
        "no_answer",
        "declined",
        "answered",
        "ended",
        "hold",
        "resume",
        "disposition",
    }
)

History = Callable[[Any, int], Awaitable[list[RecentContact]]]
"""``(customer or caller number, limit) -> earlier contacts``: CustomerDirectory.recent_contacts."""

HistoryState = Literal["complete", "pending", "unavailable"]
"""``complete``: ``recent_contacts`` is final; ``pending``: a ``screen.history`` event
follows; ``unavailable``: no history could be read in time (or none is configured)."""


@dataclass(slots=True)
class CallTrack:
    """What the pop needs to know of one live contact, gathered from its events."""

    contact_id: str
    arrived_at: float
    caller: str | None = None
    queued_at: float | None = None
    path: list[dict[str, Any]] = field(default_factory=list)
    agents: set[str] = field(default_factory=set)
    """Every agent the contact was offered to (who may then wrap it up)."""
    history: asyncio.Task[list[RecentContact]] | None = None
    """The caller's earlier contacts, fetched from the arrival on (owned by the service)."""


def recent_contact_view(contact: RecentContact) -> dict[str, Any]:
    out = asdict(contact)
    for key in ("arrived_at", "ended_at"):
        value = out[key]
        out[key] = value.isoformat() if value is not None else None
    return out


def build_pop(
    call: dict[str, Any],
    track: CallTrack | None,
    history: list[RecentContact],
    *,
    agent: str,
    now: float,
    history_state: HistoryState = "complete",
) -> dict[str, Any]:
    """The pop's ``data``: the call as the API shows it, the caller's path and history."""
    arrived = track.arrived_at if track is not None else None
    queued = track.queued_at if track is not None else None
    return {
        "agent": agent,
        "contact_id": call["contact_id"],
        "caller": call["caller"],
        "dialed": call["dialed"],
        "queue": call["queue"],
        "customer": call["customer"],
        "tier": call["tier"],
        "attributes": call["attributes"],
        "ivr_path": list(track.path) if track is not None else [],
        "arrived_at": arrived,
        "wait_seconds": round(now - arrived, 3) if arrived is not None else None,
        "queue_wait_seconds": round(now - queued, 3) if queued is not None else None,
        "recent_contacts": [recent_contact_view(c) for c in history],
        "history": history_state,
        "call": call,
    }


def _customer(summary: dict[str, Any] | None) -> Customer | None:
    """Enough of the customer (id and numbers) to find their history."""
    if summary is None:
        return None
    phones = tuple(
        Phone(p["number"], p.get("label"), bool(p.get("primary"))) for p in summary["phones"]
    )
    return Customer(id=summary["id"], name=summary["name"], tier=summary["tier"], phones=phones)


class PopService:
    """Tracks live contacts from the bus and publishes a ``screen.pop`` for every offer."""

    def __init__(
        self,
        bus: EventBus,
        control: CallControl,
        history: History | None,
        *,
        history_limit: int = 5,
        history_timeout: float = 0.2,
        remember: int = 10_000,
    ) -> None:
        self.bus = bus
        self.control = control
        self.history = history
        self.history_limit = history_limit
        self.history_timeout = history_timeout
        self.tracks: dict[str, CallTrack] = {}
        # Who handled recently ended contacts, for wrap-up rights (bounded).
        self.handled: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._remember = remember
        self._builds: set[asyncio.Task[None]] = set()

    # -- ownership ----------------------------------------------------------------
    def agents_of(self, contact_id: str) -> frozenset[str]:
        """The agents a live or recently ended contact was offered to."""
        track = self.tracks.get(contact_id)
        if track is not None:
            return frozenset(track.agents)
        return self.handled.get(contact_id, frozenset())

    # -- the event loop of the service ------------------------------------------------
    async def run(self) -> None:
        """Follow the bus until cancelled (owned by the HTTP app's cleanup context)."""
        sub = self.bus.subscribe(["call."])
        try:
            async for event in sub:
                self.handle(event)
        finally:
            sub.close()
            await self.close()

    async def close(self) -> None:
        builds = list(self._builds)
        for task in builds:
            task.cancel()
        if builds:
            await asyncio.wait(builds)

    def handle(self, event: Event) -> None:
        cid = event.contact_id
        if cid is None:
            return
        kind = event.type.removeprefix("call.")
        if kind == "arrived":
            arrived = self.tracks[cid] = CallTrack(cid, event.at, caller=event.data.get("caller"))
            self._prefetch(arrived)
            return
        track = self.tracks.get(cid)
        if track is None:  # a call that arrived before we listened
            track = self.tracks[cid] = CallTrack(cid, event.at, caller=event.data.get("caller"))
            self._prefetch(track)
        if kind == "ended":
            self.tracks.pop(cid, None)
            self.handled[cid] = frozenset(track.agents)
            while len(self.handled) > self._remember:
                self.handled.popitem(last=False)
            return
        if kind == "queued" and track.queued_at is None:
            track.queued_at = event.at
        if kind == "offered" and event.agent is not None:
            track.agents.add(event.agent)
            self._pop(track, event.agent)
            return
        if kind not in _NOT_PATH:
            data = {k: v for k, v in event.data.items() if k not in ("caller", "dialed")}
            track.path.append({"step": kind, "at": event.at, **data})

    def _own(self, task: asyncio.Task[Any]) -> None:
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)

    def _prefetch(self, track: CallTrack) -> None:
        """Start reading the caller's history now, so that it is ready when an agent rings."""
        if self.history is None or self.history_limit < 1:
            return
        try:
            summary = self.control.call(track.contact_id)["customer"]
        except ControlError:
            summary = None  # gone already; the caller's number still finds its history
        who = _customer(summary) or track.caller
        if who is None:
            return
        track.history = asyncio.create_task(
            self._read_history(track.contact_id, who),
            name=f"pop-history {track.contact_id[:8]}",
        )
        self._own(track.history)

    async def _read_history(self, contact_id: str, who: Customer | str) -> list[RecentContact]:
        assert self.history is not None
        started = time.monotonic()
        try:
            found = await self.history(who, self.history_limit + 1)
        except Exception as exc:
            log.warning("[%s] contact history unavailable: %s", contact_id[:8], exc)
            return []
        log.debug("[%s] history in %.1f ms", contact_id[:8], (time.monotonic() - started) * 1e3)
        return [c for c in found if c.contact_id != contact_id][: self.history_limit]

    def _pop(self, track: CallTrack, agent: str) -> None:
        """Publish the pop at once, from what is known; the history follows if not in yet."""
        contact_id = track.contact_id
        try:
            call = self.control.call(contact_id)
        except ControlError:
            return  # gone already (the caller hung up)
        task = track.history
        history: list[RecentContact] = []
        state: HistoryState = "unavailable"
        if task is not None and task.done():
            if not task.cancelled() and task.exception() is None:
                history, state = task.result(), "complete"
        elif task is not None:
            state = "pending"
        data = build_pop(call, track, history, agent=agent, now=time.time(), history_state=state)
        self.bus.emit(
            "screen.pop", contact_id=contact_id, agent=agent, queue=call["queue"], data=data
        )
        log.debug("[%s] screen pop for agent %s (history %s)", contact_id[:8], agent, state)
        if task is not None and state == "pending":
            self._own(
                asyncio.create_task(
                    self._history_follows(contact_id, agent, call["queue"], task),
                    name=f"pop-history-follows {contact_id[:8]} {agent}",
                )
            )

    async def _history_follows(
        self,
        contact_id: str,
        agent: str,
        queue: str | None,
        task: asyncio.Task[list[RecentContact]],
    ) -> None:
        history: list[RecentContact] = []
        state: HistoryState = "complete"
        try:
            async with asyncio.timeout(self.history_timeout):
                # Shielded: one agent's deadline must not cancel the read others share.
                history = await asyncio.shield(task)
        except TimeoutError:
            state = "unavailable"
            log.warning(
                "[%s] contact history slower than %.0f ms after the pop: sent as unavailable",
                contact_id[:8],
                self.history_timeout * 1000,
            )
        if contact_id not in self.tracks:
            return  # the call ended meanwhile
        self.bus.emit(
            "screen.history",
            contact_id=contact_id,
            agent=agent,
            queue=queue,
            data={
                "agent": agent,
                "contact_id": contact_id,
                "history": state,
                "recent_contacts": [recent_contact_view(c) for c in history],
            },
        )
