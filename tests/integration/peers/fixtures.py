"""pytest fixtures for the integration suite, to import into a conftest.py:

    from tests.integration.peers.fixtures import peers_fixture, speech_wav_fixture  # noqa: F401

(the fixtures are named ``peers`` and ``speech_wav``; the functions carry a
suffix so that importing them does not clash with test parameters).

`peers` gives a test one `Peers`: everything started through it (SIPp runs,
baresip phones, captures) is stopped when the test ends, last started first,
whatever the outcome.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from .baresip import AnswerMode, Baresip, make_speech_wav
from .capture import PortSpec, RtpCapture
from .sipp import SippProcess, scenario_path

__all__ = ["Peers", "peers_fixture", "speech_wav_fixture"]

SPEECH = (
    "Hello, you are speaking with the contact center test phone. "
    "One, two, three, four, five. The quick brown fox jumps over the lazy dog."
)


class Peers:
    """The peers of one test, all under ``workdir``."""

    def __init__(self, workdir: Path, speech: Path) -> None:
        self.workdir = workdir
        self.speech = speech
        self._started: list[SippProcess | Baresip | RtpCapture] = []
        self._names = itertools.count(1)

    async def sipp(self, process: SippProcess, *, ready: bool = False) -> SippProcess:
        """Start ``process``; with ``ready``, wait until it listens on its SIP port."""
        self._started.append(process)
        await process.start()
        if ready:
            await process.wait_ready()
        return process

    async def caller(self, target: str, **options: Any) -> SippProcess:
        """Start `SippProcess.caller` against ``target`` (``host:port``)."""
        return await self.sipp(SippProcess.caller(target, self.workdir, **options))

    async def agent(
        self, registrar: str, *, registered: bool = True, **options: Any
    ) -> SippProcess:
        """Start `SippProcess.agent`; with ``registered``, wait for its 200 to REGISTER."""
        agent = await self.sipp(SippProcess.agent(registrar, self.workdir, **options))
        if registered:
            await agent.wait_registered()
        return agent

    async def uas(self, **options: Any) -> SippProcess:
        """Start SIPp's built-in UAS and wait until it listens."""
        return await self.sipp(SippProcess.uas(self.workdir, **options), ready=True)

    async def registrar(
        self, users: dict[str, str] | None = None, *, realm: str = "ccserver"
    ) -> SippProcess:
        """A SIPp stand-in registrar (harness_registrar.xml) for one user and password."""
        ((user, password),) = (users or {"1001": "agent1001pw"}).items()
        process = SippProcess(
            scenario_path("harness_registrar.xml"),
            workdir=self.workdir,
            name=f"registrar-{next(self._names)}",
            calls=None,
            keys={"realm": realm},
            variables={"user": user, "password": password},
            timeout=120.0,
        )
        return await self.sipp(process, ready=True)

    async def baresip(
        self,
        name: str | None = None,
        *,
        user: str | None = None,
        direct: bool = True,
        answermode: AnswerMode = "auto",
        audio_source: Path | None = None,
    ) -> Baresip:
        """Start a headless phone; with ``direct``, give it an account reachable at
        its `Baresip.uri` without registering."""
        phone = Baresip(
            self.workdir,
            audio_source or self.speech,
            name=name or f"phone-{next(self._names)}",
            user=user,
        )
        self._started.append(phone)
        await phone.start()
        if direct:
            await phone.use_direct_account(answermode)
        return phone

    async def capture(self, ports: Iterable[PortSpec], **options: Any) -> RtpCapture:
        """Start capturing UDP on ``ports`` (returns once the capture is live)."""
        capture = RtpCapture(self.workdir, ports, name=f"capture-{next(self._names)}", **options)
        self._started.append(capture)
        await capture.start()
        return capture

    async def aclose(self) -> None:
        """Stop everything, newest first; the first error is raised after all are stopped."""
        errors: list[BaseException] = []
        while self._started:
            peer = self._started.pop()
            try:
                await peer.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session", name="speech_wav")
def speech_wav_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minute of English speech, 8 kHz mono 16-bit, for phones to send.

    A minute because baresip hangs up when its audio file ends.
    """
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    return make_speech_wav(path, SPEECH, min_seconds=60)


@pytest.fixture(name="peers")
async def peers_fixture(tmp_path: Path, speech_wav: Path) -> AsyncIterator[Peers]:
    """A `Peers` whose processes are all stopped at the end of the test."""
    group = Peers(tmp_path / "peers", speech_wav)
    group.workdir.mkdir(parents=True, exist_ok=True)
    try:
        yield group
    finally:
        await group.aclose()
