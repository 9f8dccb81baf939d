"""REGISTER against the real server: challenges, refusals, bindings, agent events.

Digest credentials are computed with `ccserver.sip.digest`'s client side from a
raw UDP socket, and by SIPp 3.6.1 (`[authentication]`, MD5 only). Every test
ends by proving the server still answers OPTIONS. Expiry is tested with the
registrar's minimum lowered to one second (`registration_min_expires`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ccserver.sip.digest import build_authorization, parse_challenge, select_challenge
from ccserver.sip.message import Request, Response
from ccserver.sip.uri import SipUri
from tests.integration.peers import wait_for
from tests.integration.peers.sipp import SippError, SippProcess, scenario_path
from tests.integration.server import ServerProcess
from tests.integration.test_sip_bad_input import (
    PHONE,
    Uac,
    UdpPeer,
    assert_serving,
    digest_algorithms,
    udp_peer,
)

pytestmark = pytest.mark.integration


class Phone:
    """A phone registering one extension from a raw UDP socket (one Call-ID, RFC 3261 §10.2)."""

    def __init__(self, peer: UdpPeer, server: ServerProcess, extension: str) -> None:
        self.peer = peer
        self.uac = Uac(peer.address, (PHONE, server.sip_port), user=extension)
        self.extension = extension
        self.contact = f"sip:{extension}@{peer.address[0]}:{peer.address[1]}"
        self._nc = 0

    def register(self, expires: int, authorization: str | None = None) -> Request:
        host, port = self.uac.server
        headers = [("Expires", str(expires))]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        return self.uac.request(
            "REGISTER",
            None,
            to_user=self.extension,
            uri=SipUri(host=host, port=port),
            headers=headers,
        )

    async def send(self, request: Request) -> Response:
        self.peer.send(request, self.uac.server)
        return await self.peer.final("REGISTER")

    async def challenge(self, expires: int = 300) -> Response:
        resp = await self.send(self.register(expires))
        assert resp.status == 401, f"{resp.status} {resp.reason}"
        return resp

    def credentials(
        self, challenge: Response, password: str, *, username: str | None = None,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> str:  # fmt: skip
        """Answer the best challenge we support (RFC 8760 §2.4); nc counts per nonce."""
        chosen = select_challenge(
            challenge.headers.get_all("WWW-Authenticate"), algorithms=algorithms
        )
        assert chosen is not None, challenge.headers.get_all("WWW-Authenticate")
        self._nc += 1
        host, port = self.uac.server
        return build_authorization(
            chosen,
            username=username or self.extension,
            password=password,
            method="REGISTER",
            uri=str(SipUri(host=host, port=port)),
            nc=self._nc,
        )


def agent_states(server: ServerProcess, agent: str) -> list[str]:
    try:
        return [e.state for e in server.agent_events(agent)]
    except Exception:  # the writer has not created the table yet
        return []


async def wait_agent_state(server: ServerProcess, agent: str, state: str) -> list[str]:
    states: list[str] = await wait_for(
        lambda: (s := agent_states(server, agent)) and state in s and s,
        10.0,
        f"agent {agent} event {state!r}",
        diagnose=server.log_tail,
    )
    return states


async def test_register_challenge_bind_unbind(server: ServerProcess) -> None:
    """401 with the demo's one MD5 challenge; 200 with the binding and its expires;
    Expires: 0 removes it (200 without Contact, RFC 3261 §10.3 step 8); the agent's
    phone coming and going is recorded as agent events."""
    async with udp_peer() as peer:
        phone = Phone(peer, server, "1001")
        challenge = await phone.challenge()
        offered = challenge.headers.get_all("WWW-Authenticate")
        assert len(offered) == 1, offered  # the demo config offers MD5 only
        scheme, params = parse_challenge(offered[0])
        assert (scheme, params["algorithm"], params["realm"]) == ("Digest", "MD5", "ccserver")

        ok = await phone.send(phone.register(300, phone.credentials(challenge, "agent1001pw")))
        assert ok.status == 200, f"{ok.status} {ok.reason}"
        (binding,) = ok.contacts
        assert str(binding.uri) == phone.contact
        assert binding.params["expires"] in ("299", "300")
        assert ok.to.tag  # §8.2.6.2
        await server.wait_log(r"extension 1001 registered")
        await wait_agent_state(server, "1001", "registered")

        gone = await phone.send(phone.register(0, phone.credentials(challenge, "agent1001pw")))
        assert gone.status == 200, f"{gone.status} {gone.reason}"
        assert gone.contacts == []
        states = await wait_agent_state(server, "1001", "unregistered")
        assert states.index("registered") < states.index("unregistered")
    await assert_serving(server)


async def test_register_refusals(server: ServerProcess) -> None:
    """An extension that does not exist is challenged like any other and then
    refused with 403, so the registrar does not reveal which extensions exist;
    403 for another extension's valid credentials; 423 with Min-Expires for an
    interval below the registrar's 60 s."""
    async with udp_peer() as peer:
        stranger = Phone(peer, server, "1999")
        asked = await stranger.challenge()
        assert asked.status == 401
        resp = await stranger.send(
            stranger.register(300, stranger.credentials(asked, "guessed-password"))
        )
        assert resp.status == 403, f"{resp.status} {resp.reason}"

        phone = Phone(peer, server, "1001")
        challenge = await phone.challenge()
        theirs = phone.credentials(challenge, "agent1002pw", username="1002")
        resp = await phone.send(phone.register(300, theirs))
        assert (resp.status, resp.reason) == (403, "Wrong User For This AOR")

        brief = await phone.send(phone.register(10, phone.credentials(challenge, "agent1001pw")))
        assert brief.status == 423, f"{brief.status} {brief.reason}"
        assert brief.headers.get("Min-Expires") == "60"
    assert "registered" not in agent_states(server, "1001")
    await assert_serving(server)


async def test_register_with_sha256_when_offered(start_server: Callable[..., object]) -> None:
    """With SHA-256 configured first, a UAC that has it answers the SHA-256 challenge
    (RFC 8760) and is registered."""
    server = await start_server(digest_algorithms("SHA-256", "MD5"))  # type: ignore[misc]
    assert isinstance(server, ServerProcess)
    async with udp_peer() as peer:
        phone = Phone(peer, server, "1002")
        challenge = await phone.challenge()
        offered = [parse_challenge(v)[1]["algorithm"]
                   for v in challenge.headers.get_all("WWW-Authenticate")]  # fmt: skip
        assert offered == ["SHA-256", "MD5"]
        answer = phone.credentials(challenge, "agent1002pw")
        assert "algorithm=SHA-256" in answer
        ok = await phone.send(phone.register(300, answer))
        assert ok.status == 200, f"{ok.status} {ok.reason}"
    await wait_agent_state(server, "1002", "registered")
    await assert_serving(server)


async def test_sipp_wrong_password_gets_403(server: ServerProcess, tmp_path: Path) -> None:
    """register_bad_password.xml: the challenge answered with a wrong password: 403."""
    sipp = SippProcess(
        scenario_path("register_bad_password.xml"),
        workdir=tmp_path,
        remote=f"{PHONE}:{server.sip_port}",
        service="1001",
        auth_user="1001",
        auth_password="wrong-password",
        timeout=10,
    )
    async with sipp:
        await sipp.wait()
    assert [m.status for m in sipp.messages() if not m.sent] == [401, 403]
    assert "registered" not in agent_states(server, "1001")
    await assert_serving(server)


async def test_sipp_registers_with_md5(server: ServerProcess, tmp_path: Path) -> None:
    """SIPp 3.6.1 computes MD5 digests only; with the demo's MD5 challenge it
    registers, stays registered briefly, and unregisters."""
    sipp = SippProcess.agent(
        f"{PHONE}:{server.sip_port}", tmp_path, expect_call=False, wait_ms=300, timeout=10
    )
    async with sipp:
        await sipp.wait()
    authorizations = [m.header("Authorization") for m in sipp.messages() if m.sent]
    answered = [a for a in authorizations if a]
    assert answered and all("algorithm=MD5" in a for a in answered), authorizations
    states = await wait_agent_state(server, "1001", "unregistered")
    assert states.index("registered") < states.index("unregistered")
    await assert_serving(server)


async def test_sipp_361_cannot_answer_sha256_first(
    start_server: Callable[..., object], tmp_path: Path
) -> None:
    """Why the demo offers MD5 only. SIPp 3.6.1 answers the first WWW-Authenticate
    it sees and knows only MD5, so with SHA-256 listed first (RFC 8760 §2.4 order)
    it gives up instead of picking the MD5 challenge below it. Pinned so that an
    upgraded SIPp that can cope tells us to revisit the default."""
    server = await start_server(digest_algorithms("SHA-256", "MD5"))  # type: ignore[misc]
    assert isinstance(server, ServerProcess)
    sipp = SippProcess.agent(
        f"{PHONE}:{server.sip_port}", tmp_path, expect_call=False, wait_ms=300, timeout=5
    )
    async with sipp:
        with pytest.raises(SippError, match="MD5 or AKAv1-MD5"):
            await sipp.wait()
    assert not any(m.header("Authorization") for m in sipp.messages() if m.sent)
    await assert_serving(server)


def short_registrations(config: Path) -> None:
    """A config edit for `start_server`: accept registrations of one second."""
    toml = config / "ccserver.toml"
    text = toml.read_text().replace("[server]\n", "[server]\nregistration_min_expires = 1\n", 1)
    toml.write_text(text)


async def test_registration_expires_and_logs_the_agent_out(
    start_server: Callable[..., object],
) -> None:
    """A phone that stops refreshing is dropped when its registration runs out,
    and its agent is logged out (no call is offered to a dead phone)."""
    server = await start_server(short_registrations)  # type: ignore[misc]
    assert isinstance(server, ServerProcess)
    async with udp_peer() as peer:
        phone = Phone(peer, server, "1003")
        challenge = await phone.challenge(2)
        ok = await phone.send(phone.register(2, phone.credentials(challenge, "agent1003pw")))
        assert ok.status == 200, f"{ok.status} {ok.reason}"
        assert ok.contacts[0].params["expires"] in ("1", "2")
    await server.wait_log(r"extension 1003 registration expired", timeout=6)
    states = await wait_agent_state(server, "1003", "logged-out")
    assert states == ["registered", "available", "unregistered", "logged-out"], states
    await assert_serving(server)
