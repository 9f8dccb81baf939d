"""Free ports on 127.0.0.1 for the peers of one test run.

A port is free when it can be bound; the socket is closed again at once and
the number handed to the child process, which binds it for real. Numbers
handed out are remembered for the life of the process, so two peers of one
run never receive the same port even before either has bound it.

Blocks of consecutive ports serve media: SIPp binds its ``-mp`` port and
``-mp + 2`` (its video port), an RTP port is even and its RTCP port the odd
one above (RFC 3550 §11), and baresip listens on its SIP port and the one
above (TLS). Blocks are probed below the kernel's ephemeral range, where no
automatic bind (a client socket's source port) can take them meanwhile.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "LOOPBACK",
    "free_port",
    "free_port_block",
    "free_tcp_port",
    "free_udp_port",
    "is_bound",
]

LOOPBACK = "127.0.0.1"

_issued: set[int] = set()
_lock = threading.Lock()
_rng = random.Random()

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


#: Addresses peers bind: the phones' and the demo trunk's (127.0.0.2). A port
#: is only free when it is free on both, since a trunk caller binds media there.
PEER_ADDRESSES = (LOOPBACK, "127.0.0.2")


def _can_bind(port: int, kind: socket.SocketKind) -> bool:
    for address in PEER_ADDRESSES:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _kinds(udp: bool, tcp: bool) -> list[socket.SocketKind]:
    kinds = [socket.SOCK_DGRAM] if udp else []
    if tcp:
        kinds.append(socket.SOCK_STREAM)
    if not kinds:
        raise ValueError("ask for a UDP port, a TCP port or both")
    return kinds


def free_port(*, udp: bool = True, tcp: bool = False) -> int:
    """A port the kernel reports free (bind to port 0), free for every protocol asked."""
    kinds = _kinds(udp, tcp)
    for _ in range(100):
        with socket.socket(socket.AF_INET, kinds[0]) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        with _lock:
            if port in _issued:
                continue
            if all(_can_bind(port, kind) for kind in kinds[1:]):
                _issued.add(port)
                return port
    raise RuntimeError("no free port found on 127.0.0.1 after 100 tries")


def free_udp_port() -> int:
    """A free UDP port on 127.0.0.1."""
    return free_port(udp=True)


def free_tcp_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port(udp=False, tcp=True)


def _block_range() -> tuple[int, int]:
    """Where blocks are probed: below the ephemeral range, else above it."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(v) for v in text.split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low >= 12000:
        return 10000, low
    return high + 1, 65536


def free_port_block(count: int, *, even: bool = True, udp: bool = True, tcp: bool = False) -> int:
    """The first of ``count`` consecutive free ports; the first one is even when ``even``."""
    if count < 1:
        raise ValueError(f"a block holds at least one port, got {count}")
    kinds = _kinds(udp, tcp)
    low, high = _block_range()
    for _ in range(500):
        base = _rng.randrange(low, high - count)
        if even:
            base &= ~1
        block = range(base, base + count)
        with _lock:
            if any(port in _issued for port in block):
                continue
            if all(_can_bind(port, kind) for port in block for kind in kinds):
                _issued.update(block)
                return base
    raise RuntimeError(f"no block of {count} free ports found on 127.0.0.1")


_PROC_ADDRESSES = frozenset(
    {"00000000"} | {socket.inet_aton(a)[::-1].hex().upper() for a in PEER_ADDRESSES}
)


def _bound_ports(table: Path, listening_only: bool) -> set[int]:
    """Ports bound on a peer address (127.0.0.1, 127.0.0.2) or 0.0.0.0 according to
    /proc/net/{udp,tcp}, whose addresses are hex in host (little-endian) order."""
    ports: set[int] = set()
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port_hex = fields[1].partition(":")
        if address not in _PROC_ADDRESSES:
            continue
        if listening_only and fields[3] != _LISTEN:
            continue
        ports.add(int(port_hex, 16))
    return ports


def is_bound(ports: int | Iterable[int], *, udp: bool = True, tcp: bool = False) -> bool:
    """True when every port is bound (UDP) or listening (TCP) on a peer address.

    Reads /proc/net rather than trying to bind: a probe bind could take the
    port from the very process that is about to bind it.
    """
    wanted = {ports} if isinstance(ports, int) else set(ports)
    if udp and not wanted <= _bound_ports(Path("/proc/net/udp"), listening_only=False):
        return False
    return not (tcp and not wanted <= _bound_ports(Path("/proc/net/tcp"), listening_only=True))
