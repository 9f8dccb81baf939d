"""An IVR transfer node rings an extension's phone for the caller, outside the ACD.

A flow on its own DID (added to a copy of the demo config) says a sentence and
transfers to an extension: a registered SIPp phone answers and the caller is
bridged to it; an unregistered extension sends the flow down its failure
branch instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.peers.fixtures import Peers
from tests.integration.server import ServerProcess, outbound_to
from tests.integration.test_call_flows import (
    StartServer,
    assert_clean_log,
    events,
    flow_caller,
    simple_caller_vars,
    sipp_agent,
    timeline,
)

pytestmark = pytest.mark.integration

FLOW = """
[flow]
language = "en"
start = "hello"

[nodes.hello]
kind = "play"
prompt = "Please hold while we connect you."
next = "xfer"

[nodes.xfer]
kind = "transfer"
extension = "{ext}"
failed = "sorry"

[nodes.sorry]
kind = "play"
prompt = "Sorry, nobody can take your call right now."
"""


def transfer_flow(ext: str):  # type: ignore[no-untyped-def]
    """A config edit: DID 5009 runs a flow that transfers to `ext`."""

    def edit(config: Path) -> None:
        (config / "flows" / "transfer_demo.toml").write_text(FLOW.replace("{ext}", ext))
        with (config / "dids.toml").open("a") as f:
            f.write('\n[dids."5009"]\nflow = "transfer_demo"\n')

    return edit


async def test_transfer_node_rings_and_bridges_an_extension(
    start_server: StartServer, peers: Peers
) -> None:
    server: ServerProcess = await start_server(edit=transfer_flow("1005"))
    phone = await sipp_agent(peers, server, "1005", "answer", ring_ms=300)
    caller = await flow_caller(
        peers, server, service="5009", variables=simple_caller_vars(talk_ms=6000)
    )
    await caller.wait()
    await phone.wait()
    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    assert "transfer" in kinds and "transfer_ringing" in kinds, kinds
    (answered,) = events(contact, "answered")
    assert answered.data["extension"] == "1005" and answered.data["transfer"] is True
    assert contact.outcome == "answered" and contact.disconnect_reason == "caller"
    # The phone got exactly one INVITE from the platform, and the call was bridged.
    invites = [m for m in phone.messages() if not m.sent and m.method == "INVITE"]
    assert len(invites) == 1
    assert_clean_log(server)


async def test_transfer_to_an_unregistered_extension_takes_the_failure_branch(
    start_server: StartServer, peers: Peers
) -> None:
    server: ServerProcess = await start_server(edit=transfer_flow("1006"))
    caller = await flow_caller(
        peers, server, service="5009", variables=simple_caller_vars(wait_bye=True)
    )
    await caller.wait()
    (contact,) = await server.wait_contact_closed(1, timeout=10)
    kinds = timeline(contact)
    assert "transfer_failed" in kinds, kinds
    failed = events(contact, "transfer_failed")[0]
    assert "not registered" in failed.data["reason"]
    nodes = [e.data["node"] for e in events(contact, "node")]
    assert nodes[-1] == "sorry", nodes
    assert contact.outcome == "completed-ivr"
    assert_clean_log(server)


async def test_transfer_to_an_external_number_goes_out_through_the_trunk(
    start_server: StartServer, peers: Peers
) -> None:
    """With an outbound route on the trunk, a transfer node's number is called through
    the carrier (SIPp's built-in UAS plays the carrier here) and bridged."""
    carrier = await peers.uas()

    def edit(config: Path) -> None:
        transfer_flow("0")(config)
        flow = config / "flows" / "transfer_demo.toml"
        flow.write_text(flow.read_text().replace('extension = "0"', 'number = "0612345678"'))
        outbound_to(f"127.0.0.1:{carrier.local_port}")(config)

    server: ServerProcess = await start_server(edit=edit)
    caller = await flow_caller(
        peers, server, service="5009", variables=simple_caller_vars(talk_ms=5000)
    )
    await caller.wait()
    (contact,) = await server.wait_contact_closed(1, timeout=10)
    (answered,) = events(contact, "answered")
    assert answered.data["extension"] == "0612345678", timeline(contact)
    (invite,) = [m for m in carrier.messages() if not m.sent and m.method == "INVITE"]
    assert invite.first_line.startswith("INVITE sip:0612345678@127.0.0.1:"), invite.first_line
    assert contact.outcome == "answered"
    assert_clean_log(server)
