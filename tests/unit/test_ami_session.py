"""Manager sessions without sockets: login, throttling, permissions, masks, lists."""

from __future__ import annotations

from ccserver.events import Event
from cti.ami.channels import ChannelTracker
from cti.ami.protocol import BANNER, Message, Parser
from cti.ami.server import LoginThrottle, ManagerCore, Session, User

SECRET = "s3cret"


class Peer:
    """One in-memory connection: what the session wrote, parsed back into blocks."""

    def __init__(self, core: ManagerCore, addr: str = "127.0.0.1", now: float = 0.0) -> None:
        self.raw = bytearray()
        self.closed = False
        self.now = now
        self.session = Session(core, addr, self.raw.extend, self._close, clock=lambda: self.now)
        self.session.connected()
        self._seen = 0

    def _close(self) -> None:
        self.closed = True

    def send(self, *pairs: tuple[str, str]) -> list[Message]:
        block = "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
        self.session.data_received(block.encode())
        return self.received()

    def received(self) -> list[Message]:
        data = bytes(self.raw[self._seen :])
        self._seen = len(self.raw)
        if data.startswith(BANNER):
            data = data[len(BANNER) :]
        parser = Parser()
        parser.receive_data(data)
        return list(parser.messages())

    def login(self, secret: str = SECRET, **extra: str) -> list[Message]:
        return self.send(("Action", "Login"), ("ActionID", "L1"), ("Username", "crm"),
                         ("Secret", secret), *extra.items())  # fmt: skip


def core(read: tuple[str, ...] = ("call", "agent", "system"), **kw: object) -> ManagerCore:
    users = {
        "crm": User(
            "crm", SECRET, frozenset(read), frozenset({"system", "call", "agent", "originate"})
        )
    }
    return ManagerCore(users, tracker=ChannelTracker(), **kw)  # type: ignore[arg-type]


def test_banner_login_and_fully_booted() -> None:
    peer = Peer(core())
    assert bytes(peer.raw).startswith(b"Asterisk Call Manager/6.0.0\r\n")
    ok, booted = peer.login()
    assert ok.pairs == [("Response", "Success"), ("ActionID", "L1"),
                        ("Message", "Authentication accepted")]  # fmt: skip
    assert booted.get("Event") == "FullyBooted"


def test_action_id_is_echoed_and_ping() -> None:
    peer = Peer(core())
    peer.login()
    (pong,) = peer.send(("Action", "Ping"), ("ActionID", "abc-1"))
    assert pong.get("Response") == "Success" and pong.get("ActionID") == "abc-1"
    assert pong.get("Ping") == "Pong"
    (unknown,) = peer.send(("Action", "Frobnicate"), ("ActionID", "2"))
    assert unknown.get("Response") == "Error" and unknown.get("ActionID") == "2"


def test_actions_need_login() -> None:
    peer = Peer(core())
    (resp,) = peer.send(("Action", "Status"), ("ActionID", "9"))
    assert resp.get("Message") == "Permission denied" and resp.get("ActionID") == "9"


def test_bad_secret_and_throttling() -> None:
    shared = core(throttle=LoginThrottle(max_failures=3, lockout=60.0))
    peer = Peer(shared, now=100.0)
    for attempt in range(3):
        (resp,) = peer.login("wrong")
        assert resp.get("Response") == "Error"
        assert resp.get("Message") == "Authentication failed"
        assert resp.get("ActionID") == "L1"
        assert peer.closed == (attempt == 2)
    # A new connection from the same address is refused while locked out ...
    again = Peer(shared, now=130.0)
    assert again.closed
    assert again.received()[0].get("Message") == "Too many failed logins"
    # ... another address is not, and the lock lifts after `lockout` seconds.
    other = Peer(shared, addr="127.0.0.9", now=130.0)
    assert other.login()[0].get("Response") == "Success"
    later = Peer(shared, now=161.0)
    assert not later.closed and later.login()[0].get("Response") == "Success"


def test_logoff() -> None:
    peer = Peer(core())
    peer.login()
    (bye,) = peer.send(("Action", "Logoff"), ("ActionID", "z"))
    assert bye.get("Response") == "Goodbye" and peer.closed


ARRIVED = Event("call.arrived", data={"caller": "0600000001", "caller_name": "", "dialed": "5001",
                                      "sip_call_id": "x"}, contact_id="c1")  # fmt: skip
QUEUED = Event("call.queued", data={"queue": "general"}, contact_id="c1", queue="general")


def test_events_need_read_class_and_mask() -> None:
    shared = core()
    calls_only = Peer(shared)
    calls_only.login(Events="call")
    off = Peer(shared)
    off.login(Events="off")
    nobody = Peer(shared)  # not logged in
    shared.publish(ARRIVED)
    shared.publish(QUEUED)
    assert [m.get("Event") for m in calls_only.received()] == ["Newchannel"]
    assert off.received() == [] and nobody.received() == []
    (resp,) = off.send(("Action", "Events"), ("EventMask", "on"))
    assert resp.get("Events") == "On"


def test_read_permission_limits_events() -> None:
    shared = core(read=("agent",))
    peer = Peer(shared)
    peer.login()  # no system class: no FullyBooted either
    shared.publish(ARRIVED)
    shared.publish(QUEUED)
    assert [m.get("Event") for m in peer.received()] == ["QueueCallerJoin"]


def test_filter_allow_list() -> None:
    shared = core()
    peer = Peer(shared)
    peer.login()
    peer.received()
    (resp,) = peer.send(("Action", "Filter"), ("Operation", "Add"),
                        ("Filter", "Event: QueueCallerJoin"))  # fmt: skip
    assert resp.get("Response") == "Success"
    shared.publish(ARRIVED)
    shared.publish(QUEUED)
    assert [m.get("Event") for m in peer.received()] == ["QueueCallerJoin"]


def test_status_event_list_and_variables() -> None:
    shared = core()
    peer = Peer(shared)
    peer.login(Events="off")
    shared.publish(ARRIVED)
    start, item, done = peer.send(("Action", "CoreShowChannels"), ("ActionID", "7"))
    assert start.get("EventList") == "start" and start.get("ActionID") == "7"
    channel = item.get("Channel")
    assert item.get("Event") == "CoreShowChannel" and item.get("ActionID") == "7"
    assert str(channel).startswith("PJSIP/trunk-")
    assert done.get("Event") == "CoreShowChannelsComplete"
    assert done.get("EventList") == "Complete" and done.get("ListItems") == "1"

    (ok,) = peer.send(("Action", "Setvar"), ("Channel", str(channel)), ("Variable", "CRM_ID"),
                      ("Value", "42"))  # fmt: skip
    assert ok.get("Response") == "Success"
    (got,) = peer.send(("Action", "Getvar"), ("Channel", str(channel)), ("Variable", "CRM_ID"))
    assert got.get("Value") == "42"
    (cid,) = peer.send(("Action", "Getvar"), ("Channel", str(channel)),
                       ("Variable", "CALLERID(num)"))  # fmt: skip
    assert cid.get("Value") == "0600000001"
    (missing,) = peer.send(("Action", "Hangup"), ("Channel", "PJSIP/trunk-ffffffff"))
    assert missing.get("Response") == "Error" and missing.get("Message") == "No such channel"


def test_write_classes_limit_actions() -> None:
    users = {"ro": User("ro", SECRET, frozenset({"all"}), frozenset())}
    peer = Peer(ManagerCore(users))
    peer.send(("Action", "Login"), ("Username", "ro"), ("Secret", SECRET))
    (denied,) = peer.send(("Action", "Hangup"), ("Channel", "PJSIP/trunk-00000001"))
    assert denied.get("Message") == "Permission denied"
    (pong,) = peer.send(("Action", "Ping"))
    assert pong.get("Ping") == "Pong"


def test_originate_refusals_say_why() -> None:
    peer = Peer(core())
    peer.login()
    (resp,) = peer.send(("Action", "Originate"), ("ActionID", "o"), ("Channel", "PJSIP/1001"))
    assert resp.get("Response") == "Error" and resp.get("ActionID") == "o"
    assert resp.get("Message") == "Exten or Application: Dial is required"
    (resp,) = peer.send(("Action", "Originate"), ("Channel", "PJSIP/1001"),
                        ("Application", "Playback"), ("Data", "hello"))  # fmt: skip
    assert "only Dial" in str(resp.get("Message"))
    (resp,) = peer.send(("Action", "Originate"), ("Exten", "0612345678"))
    assert resp.get("Message") == "Channel not specified"
    (resp,) = peer.send(("Action", "Originate"), ("Channel", "PJSIP/1001"),
                        ("Exten", "0612345678"))  # fmt: skip
    assert resp.get("Message") == "Call control is not available on this node"
