"""A process that records contacts as fast as it can, for tests to kill -9.

    python -m tests.integration.recorder_child URL JOURNAL_DIR [--node N] [--sync fsync|write]

It keeps eight contacts open, writes numbered timeline events into them and
closes each after 20 to 59 events, opening another at once. After each
round it waits for :meth:`ContactRecorder.sync` and only then prints what that
round acknowledged, one line per change, flushed at once:

    O <contact>          opened
    E <contact> <n>      event number n (data {"n": n}; n counts up from 0)
    C <contact>          closed as answered

So a line the test has read names a change that was acknowledged before the
kill, and recovery must find it in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ccserver.storage import ContactRecorder, make_engine
from ccserver.storage.journal import SyncPolicy

OPEN_AT_ONCE = 8
EVENTS_PER_CONTACT = 40
ROUND = 200  # changes between two sync() calls


async def run(url: str, journal: Path, node: str, sync: SyncPolicy) -> None:
    engine = make_engine(url)
    recorder = ContactRecorder(engine, node=node, journal_dir=journal, sync=sync)
    await recorder.start()
    out = sys.stdout
    print("READY", flush=True)
    live: dict[str, int] = {}  # contact -> events still to write
    n = 0
    serial = 0

    def refill(lines: list[str]) -> None:
        nonlocal serial
        while len(live) < OPEN_AT_ONCE:
            serial += 1
            cid = recorder.open_contact(
                caller_number=f"06{serial:08d}",
                dialed_number="5000",
                sip_call_id=f"child-{serial}@test",
            )
            # Calls of different lengths, so that they do not all end together.
            live[cid] = EVENTS_PER_CONTACT // 2 + serial % EVENTS_PER_CONTACT
            lines.append(f"O {cid}")

    while True:
        lines: list[str] = []
        refill(lines)
        while len(lines) < ROUND:
            for cid in list(live):
                recorder.event(cid, "tick", {"n": n})
                lines.append(f"E {cid} {n}")
                n += 1
                live[cid] -= 1
                if live[cid] == 0:
                    recorder.close_contact(cid, outcome="answered", disconnect_reason="caller")
                    lines.append(f"C {cid}")
                    del live[cid]
            # Refilled at once: every printed round leaves calls in progress.
            refill(lines)
        await recorder.sync()
        out.write("\n".join(lines) + "\n")
        out.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("journal", type=Path)
    parser.add_argument("--node", default="child")
    parser.add_argument("--sync", choices=["fsync", "write"], default="fsync")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.journal, args.node, args.sync))


if __name__ == "__main__":
    main()
