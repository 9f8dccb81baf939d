"""kill -9 in the middle of calls: nothing acknowledged is lost, open contacts are closed.

The platform runs as a real process; SIPp callers are queued (no agent logged
in) when the process is killed with SIGKILL. A new process on the same data
directory replays the journal and closes the contacts it finds open with the
outcome "interrupted".
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from tests.integration.peers import wait_for
from tests.integration.peers.fixtures import Peers
from tests.integration.peers.ports import free_port, free_port_block
from tests.integration.server import ServerProcess, copy_config

pytestmark = pytest.mark.integration


def acknowledged(server: ServerProcess, kind: str) -> set[str]:
    """Contacts with a `kind` event in the journal files or in the database."""
    found: set[str] = set()
    for segment in (server.data_dir / "journal").glob("*/*.jsonl"):
        for line in segment.read_text(errors="replace").splitlines():
            try:
                op = json.loads(line)
            except ValueError:
                continue  # the line being written
            if isinstance(op, dict) and op.get("k") == "event" and op.get("t") == kind:
                found.add(op["c"])
    if server.db_path.exists():
        try:
            for contact in server.contacts():
                if any(e.type == kind for e in contact.events):
                    found.add(contact.id)
        except OperationalError:
            pass  # tables not created yet
    return found


async def test_kill_9_mid_call_closes_open_contacts_as_interrupted(
    tmp_path: Path, peers: Peers
) -> None:
    cfg = copy_config(tmp_path)
    data = tmp_path / "data"
    rtp = free_port_block(64)

    def node() -> ServerProcess:
        return ServerProcess(
            cfg, data, free_port(udp=True, tcp=True), free_port(udp=False, tcp=True),
            rtp_range=(rtp, rtp + 63),
        )  # fmt: skip

    first = node()
    await first.start()
    try:
        target = f"127.0.0.1:{first.sip_port}"
        for i in (1, 2):
            await peers.caller(
                target, service="5000", digits="0", greet_ms=800, talk_ms=20000,
                caller_id=f"06000000{i:02d}", local_ip="127.0.0.2", timeout=40,
            )  # fmt: skip
        # Kill only once both callers' "queued" steps are acknowledged: in the
        # journal on disk, or already committed (docs/contacts.md).
        await wait_for(lambda: len(acknowledged(first, "queued")) == 2, 15, "two queued events")
    finally:
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        await first.proc.wait()
        await first.stop()
    assert first.proc.returncode == -signal.SIGKILL

    second = node()
    await second.start()
    try:
        await second.wait_log(r"2 interrupted contact\(s\) closed")
        contacts = await second.wait_contact_closed(2, timeout=10)
        for contact in contacts:
            assert contact.outcome == "interrupted", contact
            kinds = [e.type for e in contact.events]
            # Everything the first process acknowledged before it died is there.
            assert kinds[:2] == ["arrived", "accepted"], kinds
            assert "queued" in kinds and kinds[-1] == "ended", kinds
            assert contact.ended_at is not None and contact.queue == "general"
        assert sorted(c.caller_number for c in contacts) == ["0600000001", "0600000002"]
    finally:
        await second.stop()
