"""Bridged-call RTP traffic for a relay under test: send, receive, time every packet.

A child process (this file run as a script, pinned to one core with
``taskset``) binds one UDP socket per call leg and tells its parent the
ports; the parent puts them in the SDP of the calls it sets up, then asks
for runs: "these sockets send to these relay ports for S seconds". Each
active socket sends a 172-byte G.711 RTP packet (PCMU, 160 samples) every
20 ms, the sockets' packets spread evenly over the 20 ms as real phones'
are, and reads what the relay forwards to it. The payload carries a marker,
the run's number and the send time (CLOCK_MONOTONIC, ns), which the relay
passes through untouched, so each packet received gives one latency sample
(relay plus the two loopback hops) and the counts give the loss.

SIPp is not the generator because it cannot timestamp a packet or report a
per-packet delay, and one SIPp process delivers only ~500 concurrent pcap
streams intact here, below the relay's capacity. This generator also
reports how far behind its own schedule it fell, so a run in which the
generator and not the relay was the limit says so.

Protocol on stdin/stdout, one JSON object a line:
    <- {"ports": [p0, p1, ...]}
    -> {"run": 1, "seconds": 10, "dst": [[socket_index, relay_port], ...]}
    <- {"run": 1, "sent": ..., "received": ..., "latency_us": [...summary...], ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
SCRIPT = str(Path(__file__).resolve())
PTIME_NS = 20_000_000
PAYLOAD = 160
MAGIC = b"CCB1"
#: RTP header (RFC 3550 §5.1): V=2, PT 0 (PCMU), sequence, timestamp, SSRC.
_HEADER = struct.Struct("!BBHII")
#: After the header: marker, run number, send time in ns.
_STAMP = struct.Struct("!4sIq")
#: A packet this late against the schedule means the generator, not the relay, lagged.
LATE_NS = 5_000_000


def _summary(samples: array[int]) -> dict[str, float | None]:
    """p50/p99/max in microseconds (nearest rank)."""
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[max(0, -(-n * q // 100) - 1)] / 1000, 1)

    return {"p50": rank(50), "p99": rank(99), "max": round(ordered[-1] / 1000, 1)}


def run_traffic(
    socks: list[socket.socket], dst: list[tuple[int, int]], seconds: float, run: int
) -> dict[str, Any]:
    """Send and receive for ``seconds``; then drain for 200 ms and count."""
    active = [socks[i] for i, _ in dst]
    for (_, port), s in zip(dst, active, strict=True):
        s.connect((LOOPBACK, port))
    n = len(active)
    rounds = max(1, int(seconds * 1e9 // PTIME_NS))
    total = rounds * n
    interval = PTIME_NS / n
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in active}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    buf = bytearray(12 + PAYLOAD)
    buf[12 + _STAMP.size :] = b"\xff" * (PAYLOAD - _STAMP.size)  # µ-law silence
    latency = array("q")
    received = 0
    stray = 0
    late = 0
    worst_late = 0
    k = 0
    clock = time.monotonic_ns
    start = clock() + 10_000_000
    drain_until = start + rounds * PTIME_NS + 200_000_000
    pack_header = _HEADER.pack_into
    pack_stamp = _STAMP.pack_into
    unpack_stamp = _STAMP.unpack_from
    try:
        while True:
            now = clock()
            if k < total:
                due = min(total, int((now - start) / interval) + 1)
                while k < due:
                    seq, idx = divmod(k, n)
                    lag = now - (start + int(k * interval))
                    if lag > LATE_NS:
                        late += 1
                    worst_late = max(worst_late, lag)
                    pack_header(buf, 0, 0x80, 0, seq & 0xFFFF, (seq * PAYLOAD) & 0xFFFFFFFF, idx)
                    pack_stamp(buf, 12, MAGIC, run, clock())
                    try:
                        active[idx].send(buf)
                    except OSError:
                        pass  # ICMP unreachable reported on a connected socket: counted as loss
                    k += 1
                wait = max(0.0, (start + k * interval - clock()) / 1e9)
            else:
                now = clock()
                if now >= drain_until:
                    break
                wait = (drain_until - now) / 1e9
            for fd, _ in ep.poll(wait):
                s = by_fd[fd]
                while True:
                    try:
                        data = s.recv(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    arrived = clock()
                    off = 12 + 4 * (data[0] & 0x0F) if data else 0
                    if len(data) >= off + _STAMP.size:
                        magic, r, sent_at = unpack_stamp(data, off)
                        if magic == MAGIC and r == run:
                            received += 1
                            latency.append(arrived - sent_at)
                            continue
                    stray += 1
    finally:
        ep.close()
    return {
        "run": run,
        "legs": n,
        "seconds": rounds * PTIME_NS / 1e9,
        "sent": total,
        "received": received,
        "stray": stray,
        "loss_pct": round(100 * (total - received) / total, 4),
        "latency_us": _summary(latency),
        "late_sends": late,
        "worst_send_lag_ms": round(worst_late / 1e6, 2),
    }


def child(count: int) -> None:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.bind((LOOPBACK, 0))
        s.setblocking(False)
        socks.append(s)
    print(json.dumps({"ports": [s.getsockname()[1] for s in socks]}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        dst = [(int(i), int(p)) for i, p in cmd["dst"]]
        result = run_traffic(socks, dst, float(cmd["seconds"]), int(cmd["run"]))
        print(json.dumps(result), flush=True)


class RtpLoad:
    """The parent's handle on the generator process (``async with``)."""

    def __init__(self, legs: int, core: int | None) -> None:
        self.legs = legs
        self.core = core
        self.ports: list[int] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._runs = 0

    async def __aenter__(self) -> RtpLoad:
        cmd = [sys.executable, SCRIPT, "--legs", str(self.legs)]
        if self.core is not None and len(os.sched_getaffinity(0)) > 1:
            cmd = ["taskset", "-c", str(self.core), *cmd]
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        first = await asyncio.wait_for(self._line(), 30)
        self.ports = [int(p) for p in first["ports"]]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def _line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError("the RTP generator exited")
        result: dict[str, Any] = json.loads(raw)
        return result

    async def run(self, dst: list[tuple[int, int]], seconds: float) -> dict[str, Any]:
        """Traffic from socket ``i`` to relay port ``p`` for each pair, for ``seconds``."""
        assert self.proc is not None and self.proc.stdin is not None
        self._runs += 1
        cmd = {"run": self._runs, "seconds": seconds, "dst": dst}
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._line(), seconds + 60)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="RTP generator child (run by the benchmarks)")
    ap.add_argument("--legs", type=int, required=True, help="UDP sockets to bind")
    child(ap.parse_args().legs)
