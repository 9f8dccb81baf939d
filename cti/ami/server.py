"""The AMI-compatible manager interface: sessions, actions, and a Twisted TCP listener.

`ManagerCore` holds the accounts, the login throttle, the channel tracker
and the live sessions; `Session` is one connection's state machine (greeted
-> logged in -> closed) fed with bytes and the current time, writing bytes
through a callable. Neither touches a socket, so tests drive them directly.
`AmiServer` is the thin adapter: a Twisted `Factory` listening on the
node's asyncio loop (the asyncio reactor is installed by `install_reactor`
before anything imports ``twisted.internet.reactor``) and a task that moves
bus events into the core.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from ccserver.events import EventBus
from cti.ami.channels import AGENT_DEVICE_STATE, AmiEvent, Channel, ChannelTracker
from cti.ami.originate import OriginateActions, Originations, interface_extension, membership
from cti.ami.protocol import (
    BANNER,
    ActionError,
    Message,
    Parser,
    RemoteProtocolError,
    clean,
    serialize,
)

if TYPE_CHECKING:
    from ccserver.calls.control import CallControl
    from ccserver.config.schema import AmiConfig

__all__ = [
    "AmiServer",
    "LoginThrottle",
    "ManagerCore",
    "Session",
    "User",
    "install_reactor",
    "start_ami",
]

log = logging.getLogger(__name__)

Pairs = list[tuple[str, Any]]


def install_reactor(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run Twisted on the node's asyncio loop (once per process; call it first)."""
    import sys

    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import asyncioreactor, reactor

        if not isinstance(reactor, asyncioreactor.AsyncioSelectorReactor):
            raise RuntimeError("a non-asyncio Twisted reactor was installed before the node")
        return
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop or asyncio.get_running_loop())  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class User:
    """A manager account: its secret and the read/write classes (manager.conf)."""

    name: str
    secret: str
    read: frozenset[str]
    write: frozenset[str]

    def can_read(self, klass: str) -> bool:
        return "all" in self.read or klass in self.read

    def can_write(self, classes: Iterable[str]) -> bool:
        wanted = set(classes)
        return not wanted or "all" in self.write or bool(wanted & self.write)


class LoginThrottle:
    """Failed logins per address; an address that failed too often is refused for a while.

    Time is an argument: `failed(addr, now)`, `locked(addr, now)`.
    """

    def __init__(self, max_failures: int = 3, lockout: float = 60.0) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self._failures: dict[str, list[float]] = {}

    def _recent(self, addr: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(addr, []) if now - t < self.lockout]
        if recent:
            self._failures[addr] = recent
        else:
            self._failures.pop(addr, None)
        return recent

    def locked(self, addr: str, now: float) -> bool:
        return len(self._recent(addr, now)) >= self.max_failures

    def failed(self, addr: str, now: float) -> bool:
        """Count a failure; True when the address is now locked out."""
        self._failures.setdefault(addr, []).append(now)
        return self.locked(addr, now)

    def succeeded(self, addr: str) -> None:
        self._failures.pop(addr, None)


# Which write classes an action needs (Asterisk's privileges; none = any logged-in user).
ACTION_CLASSES: dict[str, tuple[str, ...]] = {
    "ping": (),
    "logoff": (),
    "events": (),
    "filter": ("system",),
    "status": ("system", "call", "reporting"),
    "coreshowchannels": ("system", "reporting"),
    "hangup": ("system", "call"),
    "queuestatus": (),
    "queuesummary": (),
    "queuepause": ("agent",),
    "queueadd": ("agent",),
    "queueremove": ("agent",),
    "getvar": ("call", "reporting"),
    "setvar": ("call",),
    "originate": ("originate",),
    "redirect": ("call",),
    "blindtransfer": ("call",),
}

_TRUE = {"1", "true", "yes", "on", "y", "t"}


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


@dataclass
class ManagerCore:
    """Accounts, throttle, channel state and the sessions events go to."""

    users: dict[str, User]
    tracker: ChannelTracker = field(default_factory=ChannelTracker)
    control: CallControl | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    default_pause_reason: str = "break"
    strategies: dict[str, str] = field(default_factory=dict)
    sessions: set[Session] = field(default_factory=set)
    originations: Originations = field(default_factory=Originations)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def from_config(cls, cfg: AmiConfig, **kw: Any) -> ManagerCore:
        users = {
            name: User(name, u.secret, frozenset(u.read), frozenset(u.write))
            for name, u in cfg.users.items()
        }
        throttle = LoginThrottle(cfg.max_login_failures, cfg.lockout)
        return cls(users, throttle=throttle, **kw)

    def publish(self, event: Any) -> list[AmiEvent]:
        """One bus event: update the channels, push the AMI events to every session."""
        out = self.tracker.handle(event)
        for ami in out:
            self.broadcast(ami)
        self.originations.handle(event, self)
        return out

    def broadcast(self, event: AmiEvent) -> None:
        """An event to every session whose user and mask want it."""
        for session in list(self.sessions):
            session.deliver(event)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an action's asynchronous part; the core owns the task (`close` cancels it)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class Session(OriginateActions):
    """One manager connection, without I/O: bytes in, bytes out through `send`."""

    def __init__(
        self,
        core: ManagerCore,
        peer: str,
        send: Callable[[bytes], None],
        close: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.peer = peer
        self._send = send
        self._close = close
        self.clock = clock
        self.parser = Parser()
        self.user: User | None = None
        self.events_on = True
        self.event_classes: frozenset[str] | None = None  # None: every class read allows
        self.allow: list[re.Pattern[str]] = []
        self.deny: list[re.Pattern[str]] = []
        self.failures = 0
        self.closed = False

    # -- transport side ----------------------------------------------------------
    def connected(self) -> None:
        if self.core.throttle.locked(self.peer, self.clock()):
            log.warning("ami: refusing %s: too many failed logins", self.peer)
            self._send(BANNER)
            self.send([("Response", "Error"), ("Message", "Too many failed logins")])
            self.close()
            return
        self.core.sessions.add(self)
        self._send(BANNER)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.receive_data(data)
        except RemoteProtocolError as exc:
            log.warning("ami: %s: %s", self.peer, exc)
            self.close()
            return
        for message in self.parser.messages():
            if self.closed:
                return
            self.handle(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.core.sessions.discard(self)
            self.core.originations.forget(self)
            self._close()

    def send(self, pairs: Pairs) -> None:
        if not self.closed:
            self._send(serialize((k, clean(v)) for k, v in pairs))

    # -- events --------------------------------------------------------------------
    def wants(self, event: AmiEvent) -> bool:
        if self.user is None or not self.events_on:
            return False
        klass = event.klass
        if not self.user.can_read(klass):
            return False
        if self.event_classes is not None and klass not in self.event_classes:
            return False
        if self.allow or self.deny:
            text = "\r\n".join(f"{k}: {v}" for k, v in event.pairs())
            if self.allow and not any(rx.search(text) for rx in self.allow):
                return False
            if any(rx.search(text) for rx in self.deny):
                return False
        return True

    def deliver(self, event: AmiEvent) -> None:
        if self.wants(event):
            self.send(event.pairs())

    # -- actions ------------------------------------------------------------------
    def handle(self, msg: Message) -> None:
        action = msg.action
        aid = msg.get("ActionID")
        head: Pairs = [("ActionID", aid)] if aid is not None else []
        if not action:
            self.send([("Response", "Error"), *head, ("Message", "Missing action in request")])
            return
        if action == "login":
            self._login(msg, head)
            return
        if action == "logoff":
            self.send([("Response", "Goodbye"), *head, ("Message", "Thanks for all the fish.")])
            self.close()
            return
        if self.user is None:
            self.send([("Response", "Error"), *head, ("Message", "Permission denied")])
            return
        classes = ACTION_CLASSES.get(action)
        handler = getattr(self, "_do_" + action, None)
        if classes is None or handler is None:
            self.send([("Response", "Error"), *head, ("Message", "Invalid/unknown command")])
            return
        if not self.user.can_write(classes):
            self.send([("Response", "Error"), *head, ("Message", "Permission denied")])
            return
        try:
            handler(msg, head)
        except ActionError as exc:
            self.send([("Response", "Error"), *head, ("Message", str(exc))])
        except Exception as exc:  # a ControlError or a bug: answer, keep the session
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if not hasattr(exc, "error_id"):
                log.exception("ami: %s: action %s failed", self.peer, action)
            self.send([("Response", "Error"), *head, ("Message", message)])

    def _login(self, msg: Message, head: Pairs) -> None:
        now = self.clock()
        throttle = self.core.throttle
        if throttle.locked(self.peer, now):
            self.send([("Response", "Error"), *head, ("Message", "Too many failed logins")])
            self.close()
            return
        name = msg.get("Username") or ""
        secret = msg.get("Secret") or ""
        user = self.core.users.get(name)
        ok = user is not None and hmac.compare_digest(
            user.secret.encode("utf-8"), secret.encode("utf-8")
        )
        if not ok or user is None:
            log.warning("ami: %s: authentication failed for %r", self.peer, name)
            self.send([("Response", "Error"), *head, ("Message", "Authentication failed")])
            if throttle.failed(self.peer, now):
                self.close()
            return
        throttle.succeeded(self.peer)
        self.user = user
        self._set_mask(msg.get("Events"))
        log.info("ami: %s logged in as %s", self.peer, name)
        self.send([("Response", "Success"), *head, ("Message", "Authentication accepted")])
        if self.events_on and user.can_read("system"):
            booted = [("Event", "FullyBooted"), ("Privilege", "system,all")]
            self.send([*booted, ("Uptime", "0"), ("LastReload", "0"), ("Status", "Fully Booted")])

    def _set_mask(self, mask: str | None) -> None:
        if mask is None:
            return
        value = mask.strip().lower()
        if value in ("on", "yes", "true", "1"):
            self.events_on, self.event_classes = True, None
        elif value in ("off", "no", "false", "0", ""):
            self.events_on, self.event_classes = False, None
        else:
            self.events_on = True
            self.event_classes = frozenset(c.strip() for c in value.split(",") if c.strip())

    def _do_ping(self, msg: Message, head: Pairs) -> None:
        self.send([("Response", "Success"), *head, ("Ping", "Pong"),
                   ("Timestamp", f"{time.time():.6f}")])  # fmt: skip

    def _do_events(self, msg: Message, head: Pairs) -> None:
        self._set_mask(msg.get("EventMask") or "off")
        state = "On" if self.events_on else "Off"
        self.send([("Response", "Success"), *head, ("Events", state)])

    def _do_filter(self, msg: Message, head: Pairs) -> None:
        operation = (msg.get("Operation") or "Add").lower()
        text = msg.get("Filter") or ""
        if operation != "add" or not text:
            raise ActionError("Filter: Operation: Add and a Filter are required")
        deny = text.startswith("!")
        try:
            rx = re.compile(text[1:] if deny else text)
        except re.error:
            raise ActionError("Filter Add Failed: invalid regular expression") from None
        (self.deny if deny else self.allow).append(rx)
        self.send([("Response", "Success"), *head, ("Message", "Filter Added Successfully")])

    # -- lists ---------------------------------------------------------------------
    def _list(self, head: Pairs, message: str, items: list[Pairs], complete: str) -> None:
        """An EventList: Success with ``EventList: start``, the items, then ``<X>Complete``."""
        self.send([("Response", "Success"), *head, ("EventList", "start"), ("Message", message)])
        for item in items:
            self.send([item[0], *head, *item[1:]])
        self.send([("Event", complete), *head, ("EventList", "Complete"),
                   ("ListItems", str(len(items))), ("Items", str(len(items)))])  # fmt: skip

    def _channel_items(self, event: str, channel: str | None) -> list[Pairs]:
        tracker = self.core.tracker
        now = time.time()
        items: list[Pairs] = []
        for ch in tracker.channels():
            if channel and ch.name.lower() != channel.lower():
                continue
            peer = tracker.bridged_with(ch)
            items.append([
                ("Event", event), *ch.header(),
                ("Application", "Queue" if ch.agent is None else "AppQueue"),
                ("ApplicationData", ch.variables.get("QUEUENAME", "")),
                ("Duration", _hms(now - ch.created)),
                ("Seconds", str(int(now - ch.created))),
                ("BridgeId", ch.contact_id if peer is not None else ""),
                ("BridgedChannel", peer.name if peer is not None else ""),
                ("BridgedUniqueid", peer.uniqueid if peer is not None else ""),
            ])  # fmt: skip
        return items

    def _do_status(self, msg: Message, head: Pairs) -> None:
        channel = msg.get("Channel")
        items = self._channel_items("Status", channel)
        if channel and not items:
            raise ActionError("No such channel")
        self._list(head, "Channel status will follow", items, "StatusComplete")

    def _do_coreshowchannels(self, msg: Message, head: Pairs) -> None:
        items = self._channel_items("CoreShowChannel", None)
        self._list(head, "Channels will follow", items, "CoreShowChannelsComplete")

    def _control(self) -> CallControl:
        if self.core.control is None:
            raise ActionError("Call control is not available on this node")
        return self.core.control

    def _queues(self, only: str | None) -> list[dict[str, Any]]:
        queues = self._control().queues()
        if only:
            queues = [q for q in queues if q["queue"] == only]
        return queues

    def _do_queuestatus(self, msg: Message, head: Pairs) -> None:
        control = self._control()
        only_member = msg.get("Member")
        agents = {a["agent"]: a for a in control.agents()}
        items: list[Pairs] = []
        for q in self._queues(msg.get("Queue")):
            name = q["queue"]
            items.append([
                ("Event", "QueueParams"), ("Queue", name), ("Max", "0"),
                ("Strategy", self.core.strategies.get(name, "ringall")),
                ("Calls", str(q.get("waiting", 0))),
                ("Holdtime", str(round(q.get("asa") or 0))),
                ("TalkTime", str(round(q.get("aht") or 0))),
                ("Completed", str(q.get("answered", 0))),
                ("Abandoned", str(q.get("abandoned", 0))),
                ("ServiceLevel", str(round(q.get("service_level_target") or 0))),
                ("ServicelevelPerf", f"{(q.get('service_level') or 0) * 100:.1f}"),
                ("ServicelevelPerf2", f"{(q.get('service_level') or 0) * 100:.1f}"),
                ("Weight", "0"),
            ])  # fmt: skip
            for ext in q.get("members", []):
                if only_member and only_member not in (ext, f"PJSIP/{ext}"):
                    continue
                a = agents.get(ext, {})
                state = a.get("state", "logged-out")
                paused = state == "not-ready"
                kind, penalty = membership(control, name, ext)
                items.append([
                    ("Event", "QueueMember"), ("Queue", name),
                    ("Name", a.get("name", ext)), ("Location", f"PJSIP/{ext}"),
                    ("StateInterface", f"PJSIP/{ext}"), ("Membership", kind),
                    ("Penalty", str(penalty)), ("CallsTaken", "0"), ("LastCall", "0"),
                    ("LastPause", "0"),
                    ("InCall", "1" if state in ("reserved", "on-call") else "0"),
                    ("Status", str(AGENT_DEVICE_STATE.get(state, 0))),
                    ("Paused", "1" if paused else "0"),
                    ("PausedReason", (a.get("reason") or "") if paused else ""),
                    ("Wrapuptime", "0"),
                ])  # fmt: skip
            now = time.time()
            for pos, ch, joined in self.core.tracker.waiting(name):
                items.append([
                    ("Event", "QueueEntry"), ("Queue", name), ("Position", str(pos)),
                    ("Channel", ch.name), ("Uniqueid", ch.uniqueid),
                    ("CallerIDNum", ch.caller_num or "<unknown>"),
                    ("CallerIDName", ch.caller_name or "<unknown>"),
                    ("ConnectedLineNum", ch.connected_num or "<unknown>"),
                    ("ConnectedLineName", ch.connected_name or "<unknown>"),
                    ("Wait", str(int(now - joined))), ("Priority", "0"),
                ])  # fmt: skip
        self._list(head, "Queue status will follow", items, "QueueStatusComplete")

    def _do_queuesummary(self, msg: Message, head: Pairs) -> None:
        control = self._control()
        agents = {a["agent"]: a for a in control.agents()}
        items: list[Pairs] = []
        for q in self._queues(msg.get("Queue")):
            states = [agents.get(m, {}).get("state", "logged-out") for m in q.get("members", [])]
            items.append([
                ("Event", "QueueSummary"), ("Queue", q["queue"]),
                ("LoggedIn", str(sum(s != "logged-out" for s in states))),
                ("Available", str(sum(s == "available" for s in states))),
                ("Callers", str(q.get("waiting", 0))),
                ("HoldTime", str(round(q.get("asa") or 0))),
                ("TalkTime", str(round(q.get("aht") or 0))),
                ("LongestHoldTime", str(round(q.get("longest_wait") or 0))),
            ])  # fmt: skip
        self._list(head, "Queue summary will follow", items, "QueueSummaryComplete")

    # -- control ------------------------------------------------------------------
    def _channel(self, msg: Message) -> Channel:
        name = msg.get("Channel")
        if not name:
            raise ActionError("No channel specified")
        ch = self.core.tracker.find(name)
        if ch is None:
            raise ActionError("No such channel")
        return ch

    def _do_hangup(self, msg: Message, head: Pairs) -> None:
        ch = self._channel(msg)
        self._control().hangup(ch.contact_id, by="system")
        self.send([("Response", "Success"), *head, ("Message", "Channel Hungup")])

    def _do_queuepause(self, msg: Message, head: Pairs) -> None:
        interface = msg.get("Interface") or ""
        ext = interface_extension(interface)
        if not ext:
            raise ActionError("Need 'Interface' and 'Paused' parameters.")
        control = self._control()
        if _bool(msg.get("Paused")):
            control.agent_pause(ext, msg.get("Reason") or self.core.default_pause_reason)
        else:
            control.agent_ready(ext)
        self.send([("Response", "Success"), *head, ("Message", "Interface paused successfully")])

    def _variables(self, ch: Channel) -> dict[str, str]:
        values: dict[str, str] = {}
        control = self.core.control
        if control is not None:
            try:
                attrs = control.call(ch.contact_id).get("attributes") or {}
            except Exception:  # the call ended meanwhile
                attrs = {}
            values.update({str(k): "" if v is None else str(v) for k, v in attrs.items()})
        values.update(ch.variables)
        values.update({
            "CHANNEL": ch.name, "UNIQUEID": ch.uniqueid, "CONTACT_ID": ch.contact_id,
            "CALLERID(num)": ch.caller_num, "CALLERID(name)": ch.caller_name,
            "EXTEN": ch.exten, "CONTEXT": ch.context,
        })  # fmt: skip
        return values

    def _do_getvar(self, msg: Message, head: Pairs) -> None:
        variable = msg.get("Variable")
        if not variable:
            raise ActionError("No variable specified")
        value = ""
        if msg.get("Channel"):
            value = self._variables(self._channel(msg)).get(variable, "")
        self.send([("Response", "Success"), *head, ("Variable", variable), ("Value", value)])

    def _do_setvar(self, msg: Message, head: Pairs) -> None:
        variable = msg.get("Variable")
        if not variable:
            raise ActionError("No variable specified")
        ch = self._channel(msg)
        ch.variables[variable] = msg.get("Value") or ""
        self.send([("Response", "Success"), *head, ("Message", "Variable Set")])


def _hms(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


# -- Twisted adapter ----------------------------------------------------------------
class _AmiProtocol(Protocol):
    def __init__(self, core: ManagerCore) -> None:
        self.core = core
        self.session: Session | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        peer: Any = transport.getPeer()
        host = str(getattr(peer, "host", peer))
        self.session = Session(self.core, host, transport.write, transport.loseConnection)
        self.session.connected()

    def dataReceived(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.session is not None:
            self.session.closed = True
            self.core.sessions.discard(self.session)
            self.core.originations.forget(self.session)


class _AmiFactory(Factory):
    def __init__(self, core: ManagerCore) -> None:
        self.core = core

    def buildProtocol(self, addr: IAddress | None) -> _AmiProtocol:
        return _AmiProtocol(self.core)


class AmiServer:
    """The listener and the task feeding bus events to the sessions; owned by the Node."""

    def __init__(self, core: ManagerCore, bus: EventBus) -> None:
        self.core = core
        self.bus = bus
        self._port: Any = None  # an IListeningPort
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, bind: str, port: int) -> None:
        from twisted.internet import reactor as _reactor

        reactor: Any = _reactor

        sub = self.bus.subscribe(("call.", "agent."))
        self._task = asyncio.get_running_loop().create_task(self._pump(sub))
        listening: Any = reactor.listenTCP(port, _AmiFactory(self.core), interface=bind)
        self._port = listening
        self.port = int(getattr(listening.getHost(), "port", port))
        log.info("ami: manager interface on %s:%d", bind, self.port)

    async def _pump(self, sub: Any) -> None:
        try:
            async for event in sub:
                try:
                    self.core.publish(event)
                except Exception:
                    log.exception("ami: could not map %s", event.type)
        finally:
            sub.close()

    async def stop(self) -> None:
        for session in list(self.core.sessions):
            session.close()
        await self.core.close()
        if self._port is not None:
            d = self._port.stopListening()
            self._port = None
            if d is not None:
                await d.asFuture(asyncio.get_running_loop())
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def start_ami(cfg: Any, bus: EventBus, control: CallControl | None) -> AmiServer | None:
    """Start the manager interface a node's config asks for; None when ``[ami]`` is off."""
    ami: AmiConfig = cfg.ami
    if not ami.enabled:
        return None

    def queues_of(agent: str) -> list[str]:
        if control is None:
            return []
        router = control.service.router
        return [q for q in router.queues if agent in router.members(q)]

    def member_name(agent: str) -> str:
        return control.extensions.get(agent, agent) if control is not None else agent

    reasons = list(cfg.acd.reason_codes)
    strategies = {name: q.strategy.replace("-", "") for name, q in cfg.queues.items()}
    core = ManagerCore.from_config(
        ami,
        tracker=ChannelTracker(queues_of, member_name),
        control=control,
        default_pause_reason=reasons[0] if reasons else "break",
        strategies=strategies,
    )
    server = AmiServer(core, bus)
    await server.start(ami.bind, ami.port)
    return server
