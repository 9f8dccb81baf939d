"""Bridged calls whose media ends at sockets we choose: through ccserver, or through rtpengine.

`ccserver_calls` starts a real `ccserver run` with as many bench agents as
calls (no wrap-up, no queue announcements), registers them, dials DID 5001
from a minimal UAC once per call and lets the agents answer. The caller's
SDP offer and each agent's SDP answer name sockets of the RTP generator
(`rtp_load.py`), so after set-up every call is a real SIP dialog whose two
legs the platform relays between generator sockets. It yields the pairs
(generator socket, platform port) to send on.

`rtpengine_calls` does the same through Debian's ``rtpengine`` (userspace,
loopback, pinned to a core), allocating each call's ports with the ng
control protocol (bencoded offer and answer over UDP), so both relays carry
the same traffic from the same generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_to_prompt import LOOPBACK, Call, Uac, running_server
from offer_to_pop import FIRST_AGENT, Agents, add_agents

from ccserver.sip.message import Request, Response, parse_message
from tests.integration.peers.ports import free_port, free_port_block
from tests.integration.server import ServerProcess

_M_AUDIO = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)
_FROM_USER = re.compile(r"sip:([^@;>]+)@")


def sdp_port(body: bytes | str) -> int:
    """The audio port of an SDP body (RFC 4566 §5.14)."""
    raw = body.encode() if isinstance(body, str) else body
    m = _M_AUDIO.search(raw)
    if m is None:
        raise ValueError("no m=audio line in the SDP")
    return int(m.group(1))


def pcmu_sdp(port: int, sess_id: int = 1) -> str:
    """PCMU and RFC 4733 events at 127.0.0.1:``port``, as a desk phone or trunk offers.

    One audio codec on both legs: no law translation in the relay. With
    telephone-event offered the platform takes keys from RFC 4733 packets,
    not from tones in the audio (a trunk without it costs an in-band
    detector on every packet: see docs/performance.md).
    """
    return (
        f"v=0\r\no=- {sess_id} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def pin(pid: int, core: int | None) -> None:
    """Pin every thread of ``pid`` to ``core`` (``taskset -a -c``), if the machine has it."""
    if core is None or core not in os.sched_getaffinity(0):
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {core})


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of the whole process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MediaCaller(Uac):
    """The bench's callers, with their media at a given port and the platform's port noted."""

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server)
        self.platform_port: dict[str, int] = {}
        self.invites: dict[str, tuple[str, str]] = {}

    async def dial(self, did: str, number: str, media_port: int) -> Call:
        call = Call(
            call_id=f"{secrets.token_hex(10)}@{LOOPBACK}", tag=secrets.token_hex(6), number=number
        )
        call.rtp_port = media_port
        uri = f"sip:{did}@{self.server[0]}:{self.server[1]}"
        self.calls[call.call_id] = call
        head = self._head("INVITE", uri, call, 1, f"<{uri}>") + "Content-Type: application/sdp\r\n"
        self.invites[call.call_id] = (head, pcmu_sdp(media_port))
        self._send(*self.invites[call.call_id])
        return call

    def retransmit(self, calls: list[Call]) -> int:
        """Send again, unchanged, the INVITE of each call with no final response yet.

        The same bytes, hence the same branch: a retransmission of the same
        transaction (RFC 3261 §17.1.1.2), which the platform absorbs if it
        did get the first one. Setting up hundreds of calls on a busy
        machine loses the odd datagram.
        """
        pending = [c for c in calls if not c.final.done()]
        for call in pending:
            self._send(*self.invites[call.call_id])
        return len(pending)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(Exception):
            message = parse_message(data)
            if isinstance(message, Response) and message.status == 200 and message.body:
                if message.cseq[1] == "INVITE":
                    self.platform_port[message.call_id] = sdp_port(message.body)
        super().datagram_received(data, addr)


class MediaAgents(Agents):
    """Bench agents that answer with a generator socket each and note the platform's port."""

    def __init__(self, server: tuple[str, int], numbers: list[str], media: list[int]) -> None:
        super().__init__(server, numbers)
        self.free_media = list(reversed(media))
        #: (our media port, the platform's port for this agent leg), per answered call.
        self.legs: dict[str, tuple[int, int]] = {}
        #: The caller's number (the INVITE's From), per answered call.
        self.caller_of: dict[str, str] = {}
        self.answered_event = asyncio.Event()
        self.expected = 0

    def sdp_answer(self, request: Request) -> str:
        known = self.legs.get(request.call_id)
        if known is None:
            known = (self.free_media.pop(), sdp_port(request.body))
            self.legs[request.call_id] = known
            caller = _FROM_USER.search(request.headers.get("From") or "")
            self.caller_of[request.call_id] = caller.group(1) if caller else ""
            if len(self.legs) >= self.expected:
                self.answered_event.set()
        return pcmu_sdp(known[0])


async def register_paced(agents: Agents, timeout: float, per_second: float = 400.0) -> None:
    """Register every agent, a few at a time, again for any whose REGISTER got no answer.

    The bench UAs do not retransmit (RFC 3261 §17.1.2 timers would only blur
    the figures), so a burst of hundreds at once would overrun the socket.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    batch = 20
    while not agents.all_registered.is_set():
        pending = [n for n in agents.numbers if n not in agents.registered]
        for i in range(0, len(pending), batch):
            agents.register(pending[i : i + batch])
            await asyncio.sleep(batch / per_second)
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise TimeoutError(f"{len(agents.registered)}/{len(agents.numbers)} agents registered")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agents.all_registered.wait(), min(left, 3.0))


@dataclass
class Bridged:
    """Set-up calls: which generator socket sends to which relay port, and the relay's pid."""

    pid: int
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (generator socket, relay port)
    server: ServerProcess | None = None

    def calls(self, n: int) -> list[tuple[int, int]]:
        """Both legs of the first ``n`` calls."""
        return self.pairs[: 2 * n]


def bench_queue(count: int) -> Callable[[Path], None]:
    """``count`` agents in the general queue, no wrap-up, nothing announced."""
    return add_agents(count, 0.0)  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def ccserver_calls(
    calls: int,
    ports: list[int],
    core: int | None,
    timeout: float = 120.0,
    rate: float = 100.0,
    on_idle: Callable[[int], Awaitable[None]] | None = None,
) -> AsyncIterator[Bridged]:
    """``calls`` bridged calls through a real ccserver pinned to ``core``.

    ``on_idle(pid)`` runs once the agents are registered, before the first call.
    """
    async with running_server(bench_queue(calls), rtp_ports=4 * calls + 200) as server:
        assert server.proc is not None
        pin(server.proc.pid, core)
        bridged = Bridged(pid=server.proc.pid, server=server)
        if calls == 0:
            yield bridged
            return
        loop = asyncio.get_running_loop()
        sip = (LOOPBACK, server.sip_port)
        numbers = [str(FIRST_AGENT + i) for i in range(calls)]
        caller_media, agent_media = ports[0::2][:calls], ports[1::2][:calls]
        agent_transport, agents = await loop.create_datagram_endpoint(
            lambda: MediaAgents(sip, numbers, agent_media), local_addr=(LOOPBACK, 0)
        )
        agents.expected = calls
        uac = await MediaCaller.open(sip)
        assert isinstance(uac, MediaCaller)
        placed: list[Call] = []
        try:
            await register_paced(agents, timeout)
            await asyncio.sleep(0.5)  # registration logs the agents in; let the ACD see them
            if on_idle is not None:
                await on_idle(bridged.pid)
            for i in range(calls):
                placed.append(await uac.dial("5001", f"07{i:08d}", caller_media[i]))
                await asyncio.sleep(1 / rate)
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                asyncio.gather(*(asyncio.shield(c.final) for c in placed)), 2.0
                            )
                        if not uac.retransmit(placed):
                            break
                    await agents.answered_event.wait()
            except TimeoutError:
                statuses: dict[str, int] = {}
                for c in placed:
                    key = str(c.final.result()) if c.final.done() else "none"
                    statuses[key] = statuses.get(key, 0) + 1
                raise TimeoutError(
                    f"{len(agents.legs)}/{calls} agents answered, callers' final statuses "
                    f"{statuses}\n{server.log_tail(20)}"
                ) from None
            index = {p: i for i, p in enumerate(ports)}
            # A step sends on the first N calls' two legs: pair each caller with its agent.
            by_caller = {agents.caller_of[cid]: leg for cid, leg in agents.legs.items()}
            for call in placed:
                ours, theirs = by_caller[call.number]
                bridged.pairs.append((index[call.rtp_port], uac.platform_port[call.call_id]))
                bridged.pairs.append((index[ours], theirs))
            yield bridged
        finally:
            await asyncio.gather(*(uac.hangup(c) for c in placed), return_exceptions=True)
            uac.close()
            agent_transport.close()


@contextlib.asynccontextmanager
async def profiled(folder: str | None, name: str, pid: int) -> AsyncIterator[None]:
    """py-spy sampling the Python process ``pid`` meanwhile, into ``folder/name.txt``.

    Collapsed stacks ("frame;frame;frame count" lines), the input of any
    flame graph tool; nothing happens when ``folder`` is None.
    """
    if folder is None:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    out = Path(folder) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        str(spy),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "250",
        "--nonblocking",
        "-o",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
        print(f"profile (collapsed stacks): {out}", flush=True)


# -- rtpengine's ng control protocol: bencode over UDP -----------------------------


def bencode(value: object) -> bytes:
    if isinstance(value, bytes):
        return str(len(value)).encode() + b":" + value
    if isinstance(value, str):
        return bencode(value.encode())
    if isinstance(value, int):
        return f"i{value}e".encode()
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> object:
    def at(i: int) -> tuple[object, int]:
        c = data[i : i + 1]
        if c == b"i":
            end = data.index(b"e", i)
            return int(data[i + 1 : end]), end + 1
        if c in (b"l", b"d"):
            i += 1
            items: list[object] = []
            while data[i : i + 1] != b"e":
                item, i = at(i)
                items.append(item)
            if c == b"l":
                return items, i + 1
            pairs = zip(items[0::2], items[1::2], strict=True)
            return {k.decode() if isinstance(k, bytes) else k: v for k, v in pairs}, i + 1
        colon = data.index(b":", i)
        n = int(data[i:colon])
        return data[colon + 1 : colon + 1 + n], colon + 1 + n

    value, _ = at(0)
    return value


class Ng:
    """A blocking ng client (offer/answer/delete are a few hundred per run: no loop needed)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5.0)
        self.sock.connect((LOOPBACK, port))

    def request(self, message: dict[str, object]) -> dict[str, object]:
        cookie = secrets.token_hex(6).encode()
        self.sock.send(cookie + b" " + bencode(message))
        while True:
            data = self.sock.recv(65535)
            got, _, body = data.partition(b" ")
            if got == cookie:
                reply = bdecode(body)
                assert isinstance(reply, dict)
                if reply.get("result") not in (b"ok", b"pong"):
                    raise RuntimeError(f"rtpengine {message['command']}: {reply}")
                return reply

    def close(self) -> None:
        self.sock.close()


@contextlib.asynccontextmanager
async def rtpengine_calls(calls: int, ports: list[int], core: int | None) -> AsyncIterator[Bridged]:
    """``calls`` bridged calls through a userspace ``rtpengine`` pinned to ``core``."""
    binary = shutil.which("rtpengine")
    if binary is None:
        raise RuntimeError("rtpengine is not installed (Debian package rtpengine-daemon)")
    ng_port = free_port(udp=True)
    span = 4 * calls + 100
    base = free_port_block(span)
    cmd = [
        binary,
        "--table=-1",
        "--interface=127.0.0.1",
        f"--listen-ng=127.0.0.1:{ng_port}",
        "--foreground",
        "--log-stderr",
        "--log-level=3",
        "--num-threads=1",
        f"--port-min={base}",
        f"--port-max={base + span - 1}",
        "--timeout=3600",
        "--silent-timeout=3600",
        "--delete-delay=0",
    ]
    if core is not None and core in os.sched_getaffinity(0):
        cmd = ["taskset", "-c", str(core), *cmd]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - waited on with its own timeouts below
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        ng = Ng(ng_port)
        try:
            for _ in range(100):  # it binds the ng port within a moment of starting
                try:
                    ng.request({"command": "ping"})
                    break
                except (TimeoutError, ConnectionRefusedError, OSError):
                    if proc.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(f"rtpengine exited: {log.read().decode()}") from None
                    await asyncio.sleep(0.05)
            bridged = Bridged(pid=proc.pid)
            pin(proc.pid, core)
            call_ids = []
            for i in range(calls):
                a, b = 2 * i, 2 * i + 1
                call_id, from_tag, to_tag = f"bench-{i}", f"a{i}", f"b{i}"
                flags = {"replace": ["origin", "session-connection"], "ICE": "remove"}
                offer = ng.request(
                    {
                        "command": "offer",
                        "call-id": call_id,
                        "from-tag": from_tag,
                        "sdp": pcmu_sdp(ports[a]),
                        **flags,
                    }
                )
                answer = ng.request(
                    {
                        "command": "answer",
                        "call-id": call_id,
                        "from-tag": from_tag,
                        "to-tag": to_tag,
                        "sdp": pcmu_sdp(ports[b]),
                        **flags,
                    }
                )
                call_ids.append((call_id, from_tag))
                # The caller sends where the answer (sent to it) says, the agent where the
                # offer says.
                bridged.pairs.append((a, sdp_port(answer["sdp"])))  # type: ignore[arg-type]
                bridged.pairs.append((b, sdp_port(offer["sdp"])))  # type: ignore[arg-type]
            yield bridged
            for call_id, from_tag in call_ids:
                with contextlib.suppress(Exception):
                    ng.request({"command": "delete", "call-id": call_id, "from-tag": from_tag})
        finally:
            ng.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
