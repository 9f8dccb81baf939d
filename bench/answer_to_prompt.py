"""How long a caller waits, after the answer, for the first prompt packet.

Starts a real `ccserver run` (a copy of the demo config, speech off, free
loopback ports, 127.0.0.1 trusted as a trunk so callers need no digest) and
dials DID 5000 from a minimal UAC in this process: INVITE with SDP, 200,
ACK, then it timestamps RTP arriving on the call's media socket. For every
call it records the time from the 200 OK to the first RTP packet carrying an
audio codec (PCMU/PCMA, the start of the greeting) and to the first packet
whose samples are not silence. Each call then holds a moment (the prompt
keeps streaming, so the other calls of the level are real load) and hangs
up with BYE.

Per concurrency level a fixed number of calls runs with at most that many
at once. Prints a table and JSON lines; the target is p99 < 50 ms.

    .venv/bin/python bench/answer_to_prompt.py [--levels 1,10,50] [--calls 100]

SIPp is not used because it cannot time a single call's first RTP packet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ccserver.sip.message import Request, Response, parse_message  # noqa: E402
from tests.integration.peers.ports import (  # noqa: E402
    LOOPBACK,
    free_port,
    free_port_block,
    free_tcp_port,
)
from tests.integration.server import ServerProcess, copy_config  # noqa: E402

TARGET_MS = 50.0

# -- G.711 silence test --------------------------------------------------------


def _ulaw(byte: int) -> int:
    """ITU-T G.711 µ-law byte -> linear sample (the bits are stored inverted)."""
    u = ~byte & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - magnitude) if u & 0x80 else (magnitude - 0x84)


def _alaw(byte: int) -> int:
    """ITU-T G.711 A-law byte -> linear sample (even bits are toggled on the wire)."""
    a = byte ^ 0x55
    exponent = (a & 0x70) >> 4
    mantissa = a & 0x0F
    value = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return value if a & 0x80 else -value


_LINEAR = {0: [abs(_ulaw(b)) for b in range(256)], 8: [abs(_alaw(b)) for b in range(256)]}
#: Peak level above which a packet counts as sound (about -40 dBFS).
_SOUND_LEVEL = 330


def rtp_audio(data: bytes) -> tuple[bool, bool]:
    """(is an audio-codec RTP packet, carries sound) for one datagram (RFC 3550 §5.1)."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return False, False
    pt = data[1] & 0x7F
    table = _LINEAR.get(pt)
    if table is None:
        return False, False
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= offset + 4:
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    payload = data[offset:end]
    return True, bool(payload) and max(table[b] for b in payload) > _SOUND_LEVEL


# -- a minimal UAC -----------------------------------------------------------------


@dataclass
class Call:
    """One outgoing call's dialog and its timestamps (perf_counter seconds)."""

    call_id: str
    tag: str
    number: str
    rtp: asyncio.DatagramTransport | None = None
    rtp_port: int = 0
    invited: float = 0.0
    answered: float | None = None
    first_rtp: float | None = None
    first_sound: float | None = None
    status: int | None = None
    remote_to: str = ""
    remote_target: str = ""
    bye_done: asyncio.Future[int] | None = None
    final: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    got_rtp: asyncio.Event = field(default_factory=asyncio.Event)
    got_sound: asyncio.Event = field(default_factory=asyncio.Event)


class _RtpSink(asyncio.DatagramProtocol):
    def __init__(self, call: Call, on_packet: Callable[[Call, bytes], None] | None) -> None:
        self.call = call
        self.on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.perf_counter()
        call = self.call
        if call.first_sound is not None:
            return
        audio, sound = rtp_audio(data)
        if audio and call.first_rtp is None:
            call.first_rtp = now
            call.got_rtp.set()
        if sound:
            call.first_sound = now
            call.got_sound.set()


class Uac(asyncio.DatagramProtocol):
    """Callers over one UDP SIP socket; requests from the server are answered 200.

    No retransmissions: everything is on loopback, and a lost message shows
    up as a failed call in the counts rather than as a slow one.
    """

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.calls: dict[str, Call] = {}
        self.stray = 0

    @classmethod
    async def open(cls, server: tuple[str, int]) -> Uac:
        loop = asyncio.get_running_loop()
        transport, uac = await loop.create_datagram_endpoint(
            lambda: cls(server), local_addr=(LOOPBACK, 0)
        )
        uac.port = transport.get_extra_info("sockname")[1]
        return uac

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, text: str, body: str = "") -> None:
        assert self.transport is not None
        data = (text + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()
        self.transport.sendto(data, self.server)

    def _head(self, method: str, uri: str, call: Call, cseq: int, to: str) -> str:
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port}"
            f";branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:{call.number}@{LOOPBACK}:{self.port}>;tag={call.tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{call.number}@{LOOPBACK}:{self.port}>\r\n"
        )

    async def invite(
        self, did: str, number: str, on_packet: Callable[[Call, bytes], None] | None = None
    ) -> Call:
        loop = asyncio.get_running_loop()
        call = Call(
            call_id=f"{secrets.token_hex(10)}@{LOOPBACK}", tag=secrets.token_hex(6), number=number
        )
        call.rtp, _ = await loop.create_datagram_endpoint(
            lambda: _RtpSink(call, on_packet), local_addr=(LOOPBACK, 0)
        )
        call.rtp_port = call.rtp.get_extra_info("sockname")[1]
        sdp = (
            f"v=0\r\no=- {call.rtp_port} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\n"
            f"t=0 0\r\nm=audio {call.rtp_port} RTP/AVP 0 8 101\r\n"
            f"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        uri = f"sip:{did}@{self.server[0]}:{self.server[1]}"
        self.calls[call.call_id] = call
        call.invited = time.perf_counter()
        self._send(
            self._head("INVITE", uri, call, 1, f"<{uri}>") + "Content-Type: application/sdp\r\n",
            sdp,
        )
        return call

    async def hangup(self, call: Call, timeout: float = 5.0) -> None:
        """BYE an answered call (and wait for its 200), then free its media socket."""
        try:
            if call.status == 200 and call.bye_done is None:
                call.bye_done = asyncio.get_running_loop().create_future()
                self._send(self._head("BYE", call.remote_target, call, 2, call.remote_to))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(call.bye_done), timeout)
        finally:
            if call.rtp is not None:
                call.rtp.close()
            self.calls.pop(call.call_id, None)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.perf_counter()
        try:
            message = parse_message(data)
        except Exception:
            self.stray += 1
            return
        call = self.calls.get(message.call_id)
        if isinstance(message, Request):
            self._answer_request(message, call)
            return
        assert isinstance(message, Response)
        if call is None:
            self.stray += 1
            return
        number, method = message.cseq
        if method == "BYE":
            if call.bye_done is not None and not call.bye_done.done():
                call.bye_done.set_result(message.status)
            return
        if method != "INVITE" or message.status < 200:
            return
        to = message.headers.get("To") or ""
        if message.status >= 300:
            # §17.1.1.3: the ACK of a failure belongs to the INVITE transaction.
            via = message.headers.get("Via") or ""
            uri = f"sip:{self.server[0]}:{self.server[1]}"
            ack = self._head("ACK", uri, call, number, to)
            ack = re.sub(r"(?m)^Via: .*$", f"Via: {via}", ack, count=1)
            self._send(ack)
        elif call.answered is None:
            call.answered = now
            call.remote_to = to
            contacts = message.contacts
            call.remote_target = (
                str(contacts[0].uri) if contacts else f"sip:{self.server[0]}:{self.server[1]}"
            )
        if message.status == 200:
            # §13.2.2.4: every 2xx (retransmissions too) is acknowledged end to end.
            self._send(self._head("ACK", call.remote_target, call, number, call.remote_to))
        if not call.final.done():
            call.status = message.status
            call.final.set_result(message.status)

    def _answer_request(self, request: Request, call: Call | None) -> None:
        if request.method == "ACK":
            return
        assert self.transport is not None
        head = ["SIP/2.0 200 OK"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            head += [f"{name}: {v}" for v in request.headers.get_all(name)]
        self.transport.sendto(
            ("\r\n".join(head) + "\r\nContent-Length: 0\r\n\r\n").encode(), _reply_addr(request)
        )
        if request.method == "BYE" and call is not None:
            call.status = 0  # the far end hung up: nothing left to BYE


def _reply_addr(request: Request) -> tuple[str, int]:
    via = request.top_via
    host = via.params.get("received") or via.host
    port = via.params.get("rport") or via.port or 5060
    return str(host), int(port)


# -- the server ---------------------------------------------------------------------


def trust_loopback(cfg: Path) -> None:
    """Let 127.0.0.1 call without digest, as a carrier trunk would."""
    trunks = cfg / "trunks.toml"
    trunks.write_text(
        trunks.read_text().replace(
            'addresses = ["127.0.0.2/32"]', 'addresses = ["127.0.0.1/32", "127.0.0.2/32"]'
        )
    )


@contextlib.asynccontextmanager
async def running_server(
    edit: Callable[[Path], None] | None = None, rtp_ports: int = 2000
) -> AsyncIterator[ServerProcess]:
    """`ccserver run` on free loopback ports in a temporary directory; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="ccbench-") as tmp:

        def configure(cfg: Path) -> None:
            trust_loopback(cfg)
            if edit is not None:
                edit(cfg)

        cfg = copy_config(Path(tmp), configure)
        data = Path(tmp) / "data"
        data.mkdir()
        base = free_port_block(rtp_ports)
        server = ServerProcess(
            cfg,
            data,
            sip_port=free_port(udp=True, tcp=True),
            http_port=free_tcp_port(),
            rtp_range=(base, base + rtp_ports - 1),
        )
        await server.start(timeout=60.0)
        try:
            yield server
        finally:
            await server.stop()


# -- the measurement ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


async def one_call(
    uac: Uac, did: str, i: int, hold: float, timeout: float
) -> tuple[str, float | None, float | None]:
    call = await uac.invite(did, f"06{i:08d}")
    try:
        try:
            status = await asyncio.wait_for(asyncio.shield(call.final), timeout)
        except TimeoutError:
            return "no-answer", None, None
        if status != 200:
            return f"status-{status}", None, None
        assert call.answered is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.got_sound.wait(), timeout)
        to_rtp = (call.first_rtp - call.answered) * 1000 if call.first_rtp else None
        to_sound = (call.first_sound - call.answered) * 1000 if call.first_sound else None
        await asyncio.sleep(hold)
        return ("ok" if to_rtp is not None else "no-rtp"), to_rtp, to_sound
    finally:
        await uac.hangup(call)


async def run_level(
    uac: Uac, did: str, concurrency: int, calls: int, hold: float, timeout: float
) -> dict[str, object]:
    gate = asyncio.Semaphore(concurrency)
    numbers = iter(range(calls))

    async def worker() -> list[tuple[str, float | None, float | None]]:
        out = []
        for i in numbers:
            async with gate:
                out.append(await one_call(uac, did, i, hold, timeout))
        return out

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(worker()) for _ in range(concurrency)]
    elapsed = time.perf_counter() - started
    results = [r for t in tasks for r in t.result()]
    to_rtp = [r[1] for r in results if r[1] is not None]
    to_sound = [r[2] for r in results if r[2] is not None]
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r[0]] = outcomes.get(r[0], 0) + 1
    return {
        "concurrency": concurrency,
        "calls": calls,
        "outcomes": outcomes,
        "seconds": round(elapsed, 2),
        "answer_to_first_rtp_ms": summary(to_rtp),
        "answer_to_sound_ms": summary(to_sound),
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


async def main_async(args: argparse.Namespace) -> int:
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    rows = []
    async with running_server(rtp_ports=max(200, 4 * max(levels) + 100)) as server:
        uac = await Uac.open((LOOPBACK, server.sip_port))
        try:
            # One call first: prompt synthesis and caches warm up outside the figures.
            await run_level(uac, args.did, 1, 1, 0.0, args.timeout)
            for level in levels:
                rows.append(
                    await run_level(uac, args.did, level, args.calls, args.hold, args.timeout)
                )
        finally:
            uac.close()
    print(
        f"{'concurrency':>11} {'calls':>6} {'ok':>5} "
        f"{'rtp p50':>8} {'rtp p99':>8} {'rtp max':>8} "
        f"{'sound p50':>9} {'sound p99':>9} {'sound max':>9}   (ms after 200 OK)"
    )
    for row in rows:
        rtp, sound = row["answer_to_first_rtp_ms"], row["answer_to_sound_ms"]
        assert (
            isinstance(rtp, dict) and isinstance(sound, dict) and isinstance(row["outcomes"], dict)
        )
        print(
            f"{row['concurrency']:>11} {row['calls']:>6} {row['outcomes'].get('ok', 0):>5} "
            f"{_fmt(rtp['p50']):>8} {_fmt(rtp['p99']):>8} {_fmt(rtp['max']):>8} "
            f"{_fmt(sound['p50']):>9} {_fmt(sound['p99']):>9} {_fmt(sound['max']):>9}"
        )
    failed = False
    for row in rows:
        p99 = row["answer_to_first_rtp_ms"]["p99"]  # type: ignore[index]
        failed |= p99 is None
        print(
            json.dumps(
                {
                    "bench": "answer_to_prompt",
                    "did": args.did,
                    "target_p99_ms": TARGET_MS,
                    **row,
                    "met": p99 is not None and p99 < TARGET_MS,
                }
            )
        )
    return 1 if failed else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,10,50", help="concurrency levels, comma-separated")
    ap.add_argument("--calls", type=int, default=100, help="calls per level")
    ap.add_argument(
        "--hold", type=float, default=0.5, help="seconds each call stays after the first sound"
    )
    ap.add_argument("--did", default="5000", help="the number dialled")
    ap.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the answer and the prompt"
    )
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
