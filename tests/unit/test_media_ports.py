"""RtpPorts: even ports from the range, and each endpoint knows its address without asking
the socket again."""

from __future__ import annotations

import asyncio
import socket
import struct

from ccserver.media.endpoint import RtpPorts


async def test_endpoints_know_the_even_port_they_are_bound_to() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    low = probe.getsockname()[1] & ~1
    probe.close()
    ports = RtpPorts("127.0.0.1", low, low + 20)
    endpoints = [await ports.open(f"leg{i}") for i in range(3)]
    try:
        for ep in endpoints:
            assert ep.transport is not None
            assert ep.local == ep.transport.get_extra_info("sockname")[:2]
            assert ep.local[0] == "127.0.0.1" and ep.local[1] % 2 == 0
            assert low <= ep.local[1] <= low + 20
        assert len({ep.local for ep in endpoints}) == 3
        # A packet sent to the address it reports reaches it (and latches the sender).
        heard = asyncio.Event()
        target = endpoints[0]
        target.listeners.append(lambda payload, codec: heard.set())
        sender = endpoints[1]
        assert sender.transport is not None
        sender.transport.sendto(
            struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + b"\xff" * 160, target.local
        )
        await asyncio.wait_for(heard.wait(), 2.0)
        assert target.remote == sender.local
    finally:
        for ep in endpoints:
            ep.close()
