"""From the ACD's offer to the agent's screen pop, under a steady call rate.

Starts a real `ccserver run` (a copy of the demo config, speech off, free
loopback ports) whose `general` queue gets extra bench agents (2001, 2002,
... with no wrap-up), registers them from one UDP socket in this process
(digest auth, auto-answer), opens the supervisor's WebSocket on
`/api/events`, and places calls to DID 5001 at a fixed rate from a minimal
UAC. Each caller hangs up a moment after its answer.

For every contact it pairs `call.offered` with `screen.pop` and reports two
delays: from one event's `at` to the other's (the server's clock) and between
their arrivals on the socket (this process's clock). It also reports when the
caller's history reached the screen (with the pop, or in the `screen.history`
that follows a pop sent while it was still being read) and how many pops
carried it. Prints p50/p99/max, the counts, and the call rate actually
achieved; the target is p99 < 50 ms at 100 calls/s.

    .venv/bin/python bench/offer_to_pop.py [--rate 100] [--seconds 10] [--agents 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_to_prompt import (
    LOOPBACK,
    Uac,
    percentile,
    running_server,
)

from ccserver.sip.digest import build_authorization
from ccserver.sip.message import Request, Response, parse_message

TARGET_MS = 50.0
SUPERVISOR_TOKEN = "demo-supervisor-token-change-me"
FIRST_AGENT = 2001


def add_agents(count: int, wrap_up: float) -> object:
    """A config edit: ``count`` agents more in the general queue, and its wrap-up."""

    def edit(cfg: Path) -> None:
        numbers = [str(FIRST_AGENT + i) for i in range(count)]
        with (cfg / "extensions.toml").open("a") as out:
            for n in numbers:
                out.write(
                    f'\n[extensions."{n}"]\nname = "Bench {n}"\npassword = "bench{n}pw"\n'
                    f"agent = true\nskills = {{ english = 5 }}\n"
                )
        queues = cfg / "queues.toml"
        text = queues.read_text()
        general = 'members = ["1001", "1002", "1003", "1004", "1005"]'
        assert general in text, "the demo general queue changed: update the bench"
        listed = ", ".join(f'"{n}"' for n in numbers)
        text = text.replace(general, f"members = [{listed}]", 1)
        text = text.replace("wrap_up = 5\n", f"wrap_up = {wrap_up}\n", 1)
        text = text.replace("announce_position = true", "announce_position = false", 1)
        text = text.replace("announce_wait = true", "announce_wait = false", 1)
        text = text.replace("announce_every = 60", "", 1)
        queues.write_text(text)

    return edit


class Agents(asyncio.DatagramProtocol):
    """Agent phones sharing one UDP socket: register with digest, answer every call at once."""

    def __init__(self, server: tuple[str, int], numbers: list[str]) -> None:
        self.server = server
        self.numbers = numbers
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.registered: set[str] = set()
        self.all_registered = asyncio.Event()
        self.answered = 0
        self._reg_call_ids: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def register_all(self) -> None:
        self.register(self.numbers)

    def register(self, numbers: list[str]) -> None:
        for n in numbers:
            call_id = f"reg-{n}-{secrets.token_hex(6)}"
            self._reg_call_ids[call_id] = n
            self._register(n, call_id, 1, None)

    def _register(self, n: str, call_id: str, cseq: int, auth: str | None) -> None:
        assert self.transport is not None
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        text = (
            f"REGISTER {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port}"
            f";branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:{n}@{self.server[0]}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{n}@{self.server[0]}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{n}@{LOOPBACK}:{self.port}>\r\nExpires: 600\r\n"
        )
        if auth is not None:
            text += f"Authorization: {auth}\r\n"
        self.transport.sendto((text + "Content-Length: 0\r\n\r\n").encode(), self.server)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
        except Exception:
            return
        if isinstance(message, Response):
            self._on_response(message)
        else:
            self._on_request(message, addr)

    def _on_response(self, response: Response) -> None:
        n = self._reg_call_ids.get(response.call_id)
        if n is None:
            return
        cseq, _ = response.cseq
        if response.status == 401 and cseq == 1:
            challenge = response.headers.get("WWW-Authenticate") or ""
            auth = build_authorization(
                challenge,
                username=n,
                password=f"bench{n}pw",
                method="REGISTER",
                uri=f"sip:{self.server[0]}:{self.server[1]}",
            )
            self._register(n, response.call_id, 2, auth)
        elif response.status == 200:
            self.registered.add(n)
            if len(self.registered) == len(self.numbers):
                self.all_registered.set()

    def sdp_answer(self, request: Request) -> str:
        """The agent's SDP answer to ``request`` (an INVITE)."""
        # The media socket is never read: only signalling is measured here.
        return (
            f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
            f"m=audio 9 RTP/AVP 0 8\r\na=sendrecv\r\n"
        )

    def _on_request(self, request: Request, addr: tuple[str, int]) -> None:
        if request.method == "ACK":
            return
        assert self.transport is not None
        to = request.headers.get("To") or ""
        body = ""
        if request.method == "INVITE":
            if ";tag=" not in to:
                to += f";tag={secrets.token_hex(4)}"
            body = self.sdp_answer(request)
            self.answered += 1
        head = ["SIP/2.0 200 OK"]
        head += [f"Via: {v}" for v in request.headers.get_all("Via")]
        head += [f"From: {request.headers.get('From')}", f"To: {to}"]
        head += [f"Call-ID: {request.call_id}", f"CSeq: {request.headers.get('CSeq')}"]
        if request.method == "INVITE":
            head += [
                f"Contact: <sip:agent@{LOOPBACK}:{self.port}>",
                "Content-Type: application/sdp",
            ]
        text = "\r\n".join(head) + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body
        self.transport.sendto(text.encode(), addr)


class Stream:
    """The supervisor's event stream: when each contact's offer and pop were sent and arrived."""

    def __init__(self) -> None:
        self.offered: dict[str, tuple[float, float]] = {}
        self.popped: dict[str, tuple[float, float]] = {}
        self.history_state: dict[str, str] = {}
        """How each first pop carried the history: complete, pending, unavailable."""
        self.history: dict[str, tuple[float, float]] = {}
        """When the history reached the socket: with the pop, or in its ``screen.history``."""
        self.dropped = 0
        self.ready = asyncio.Event()

    def unpaired(self) -> bool:
        return any(c not in self.popped for c in self.offered)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            arrived = time.time()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            kind = event.get("type")
            if kind == "stream.ready":
                self.ready.set()
            elif kind == "stream.dropped":
                self.dropped += event["data"]["dropped"]
            elif kind == "call.offered":
                self.offered.setdefault(event["contact_id"], (event["at"], arrived))
            elif kind == "screen.pop":
                cid = event["contact_id"]
                if cid not in self.popped:
                    self.popped[cid] = (event["at"], arrived)
                    state = event["data"].get("history", "complete")
                    self.history_state[cid] = state
                    if state == "complete":
                        self.history[cid] = (event["at"], arrived)
            elif kind == "screen.history":
                self.history.setdefault(event["contact_id"], (event["at"], arrived))


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


async def place_calls(
    uac: Uac, rate: float, seconds: float, hold: float, timeout: float
) -> tuple[int, float, dict[str, int]]:
    """Calls to 5001 at ``rate``/s for ``seconds``; each hangs up ``hold`` after its answer."""
    outcomes: dict[str, int] = {}

    async def one(i: int) -> None:
        call = await uac.invite("5001", f"07{i:08d}")
        try:
            try:
                status = await asyncio.wait_for(asyncio.shield(call.final), timeout)
            except TimeoutError:
                status = None
            key = "answered" if status == 200 else f"status-{status}"
            outcomes[key] = outcomes.get(key, 0) + 1
            if status == 200:
                await asyncio.sleep(hold)
        finally:
            await uac.hangup(call)

    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as tg:
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tg.create_task(one(i))
        sent = loop.time() - start
    # The last call is due at (total - 1) / rate: count the whole interval it opens.
    return total, total / (sent + 1 / rate), outcomes


async def main_async(args: argparse.Namespace) -> int:
    numbers = [str(FIRST_AGENT + i) for i in range(args.agents)]
    stream = Stream()
    edit = add_agents(args.agents, args.wrap_up)
    async with running_server(edit, rtp_ports=4000) as server:  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        sip = (LOOPBACK, server.sip_port)
        agent_transport, agents = await loop.create_datagram_endpoint(
            lambda: Agents(sip, numbers), local_addr=(LOOPBACK, 0)
        )
        uac = await Uac.open(sip)
        url = f"http://{LOOPBACK}:{server.http_port}/api/events?token={SUPERVISOR_TOKEN}&types=call.offered,screen."
        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                reader = asyncio.create_task(stream.read(ws))
                try:
                    await asyncio.wait_for(stream.ready.wait(), 10)
                    agents.register_all()
                    await asyncio.wait_for(agents.all_registered.wait(), 20)
                    # Registration logs an agent in; give the ACD a moment to see them all.
                    await asyncio.sleep(0.5)
                    offered_before = len(stream.offered)
                    total, achieved, outcomes = await place_calls(
                        uac, args.rate, args.seconds, args.hold, args.timeout
                    )
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline and stream.unpaired():  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
        finally:
            uac.close()
            agent_transport.close()

    pairs = [(stream.offered[c], stream.popped[c]) for c in stream.offered if c in stream.popped]
    by_at = [(p[0] - o[0]) * 1000 for o, p in pairs]
    by_arrival = [(p[1] - o[1]) * 1000 for o, p in pairs]
    with_history = [
        (stream.offered[c], stream.history[c]) for c in stream.offered if c in stream.history
    ]
    to_history = [(h[0] - o[0]) * 1000 for o, h in with_history]
    states: dict[str, int] = {}
    for state in stream.history_state.values():
        states[state] = states.get(state, 0) + 1
    offered = len(stream.offered) - offered_before
    result = {
        "bench": "offer_to_pop",
        "rate_asked": args.rate,
        "rate_achieved": round(achieved, 1),
        "seconds": args.seconds,
        "agents": args.agents,
        "calls": total,
        "outcomes": outcomes,
        "offered": offered,
        "popped": len(pairs),
        "stream_dropped": stream.dropped,
        "offer_to_pop_at_ms": stats(by_at),
        "offer_to_pop_arrival_ms": stats(by_arrival),
        "pop_history": states,
        "offer_to_history_at_ms": stats(to_history),
        "target_p99_ms": TARGET_MS,
    }
    p99 = result["offer_to_pop_at_ms"]["p99"]  # type: ignore[index]
    result["met"] = p99 is not None and p99 < TARGET_MS and achieved >= args.rate * 0.95
    print(
        f"calls/s asked {args.rate:g}, achieved {achieved:.1f}; {total} calls, "
        f"{offered} offered, {len(pairs)} pops, {stream.dropped} events dropped; "
        f"history with the pop: {states}"
    )
    print(
        f"{'offer -> pop (ms)':<34} {'p50':>8} {'p99':>8} {'max':>8}   target p99 < {TARGET_MS:.0f}"
    )
    for label, key in (
        ("by the events' `at`", "offer_to_pop_at_ms"),
        ("by arrival on the socket", "offer_to_pop_arrival_ms"),
        ("offer -> history, by `at`", "offer_to_history_at_ms"),
    ):
        s = result[key]
        assert isinstance(s, dict)
        cells = ["-" if s[k] is None else f"{s[k]:.1f}" for k in ("p50", "p99", "max")]
        print(f"{label:<34} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8}")
    print(json.dumps(result))
    return 0 if pairs else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=100.0, help="calls per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long calls are placed")
    ap.add_argument("--agents", type=int, default=50, help="bench agents in the general queue")
    ap.add_argument("--wrap-up", type=float, default=0.0, help="the queue's wrap-up, seconds")
    ap.add_argument(
        "--hold", type=float, default=0.3, help="seconds a caller stays after its answer"
    )
    ap.add_argument(
        "--timeout", type=float, default=10.0, help="seconds a caller waits for its answer"
    )
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
