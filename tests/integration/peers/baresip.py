"""baresip 1.0.0 (Debian ``baresip-core``) as a headless phone driven over ctrl_tcp.

`Baresip` writes a config folder, starts ``baresip -f DIR`` with no sound
card and no terminal, and talks to its ``ctrl_tcp`` module: netstring-framed
JSON, ``{"command": ..., "params": ..., "token": ...}`` out, responses
(``{"response": true, "ok": ..., "data": ..., "token": ...}``) and events
(``{"event": true, "type": "CALL_ESTABLISHED", ...}``) in.

Audio: the phone speaks a WAV file (``aufile``) and drops what it hears
(``aubridge``), while ``sndfile`` records both directions of every call to
``dump-<time>-enc.wav`` (what it sent) and ``dump-<time>-dec.wav`` (what it
heard) in its sound folder: `Recording`.

Accounts are created after the control connection is up (``uanew``), not
from the ``accounts`` file, so that REGISTERING / REGISTER_OK / REGISTER_FAIL
reach this object instead of firing before anyone listens.

baresip 1.0.0 hangs up when its audio file ends: ``aufile`` reports
AUDIO_ERROR ("0,end of file") and the call closes with CALL_CLOSED
("end of file"). The source file must outlast the longest call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import shutil
import struct
import subprocess
import tempfile
import wave
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from ccserver.media import g711

from . import PeerError, stop_process, wait_for
from .ports import LOOPBACK, free_port_block, free_tcp_port, is_bound

__all__ = [
    "AnswerMode",
    "Baresip",
    "BaresipError",
    "BaresipEvent",
    "Recording",
    "WavSummary",
    "make_speech_wav",
    "wav_summary",
]

BARESIP = "baresip"
MODULE_PATH = Path("/usr/lib/baresip/modules")
AnswerMode = Literal["auto", "manual"]

#: Modules for a headless phone: G.711, a WAV file as microphone, a dummy
#: speaker, recording to WAV, and the account/menu/ctrl_tcp applications.
#: Not ``stdio`` (needs a terminal) and not ``ausine`` (48 kHz only).
MODULES = ("g711.so", "aufile.so", "aubridge.so", "sndfile.so")
APP_MODULES = ("account.so", "menu.so", "ctrl_tcp.so")

_RIFF = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")


class BaresipError(PeerError):
    """baresip refused a command, exited, or an awaited event did not come."""


def make_speech_wav(
    path: Path, text: str, voice: str = "en", *, repeat: int = 1, min_seconds: float = 0.0
) -> Path:
    """Speech for a phone to send: espeak-ng, then sox to 8 kHz mono 16-bit.

    The sentence is said ``repeat`` times in a row, more if needed to last
    ``min_seconds``: baresip hangs up when its audio file ends (see
    `Baresip`), so the file must outlast the call. espeak-ng writes with
    ``-w``: its ``--stdout`` WAV header carries a bogus frame count.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        raw = Path(scratch) / "espeak.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=30,
        )
        with wave.open(str(raw), "rb") as reader:
            seconds = reader.getnframes() / reader.getframerate()
        if seconds <= 0:
            raise ValueError(f"espeak-ng produced no audio for {text!r}")
        repeat = max(repeat, math.ceil(min_seconds / seconds))
        effects = ["repeat", str(repeat - 1)] if repeat > 1 else []
        subprocess.run(
            ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
             str(path), *effects],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
    return path


@dataclass(frozen=True, slots=True)
class WavSummary:
    """Loudness of a 16-bit WAV file, overall and per window."""

    path: Path
    rate: int
    frames: int
    dbov: float
    #: dBov per window of ``window`` seconds, from the start of the file.
    windows: tuple[float, ...]
    window: float

    @property
    def duration(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    def loud_seconds(self, threshold_dbov: float = -50.0) -> float:
        return self.window * sum(1 for level in self.windows if level > threshold_dbov)


def wav_summary(path: Path, window: float = 0.5) -> WavSummary:
    """Read a 16-bit PCM WAV file and measure it with `ccserver.media.g711.rms_dbov`."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * reader.getsampwidth()}-bit samples, expected 16")
        rate = reader.getframerate()
        channels = reader.getnchannels()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels)[:, 0]
    step = max(1, int(rate * window))
    windows = tuple(g711.rms_dbov(samples[i : i + step]) for i in range(0, len(samples), step))
    return WavSummary(path, rate, len(samples), g711.rms_dbov(samples), windows, window)


def _wav_complete(path: Path) -> bool:
    """True once the RIFF header has been finalised (libsndfile writes the
    sizes when the file is closed, at the end of the call)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if len(data) < _RIFF.size + _CHUNK.size:
        return False
    riff, size, wave_id = _RIFF.unpack_from(data)
    if riff != b"RIFF" or wave_id != b"WAVE" or size + 8 != len(data):
        return False
    pos = _RIFF.size
    while pos + _CHUNK.size <= len(data):
        chunk, length = _CHUNK.unpack_from(data, pos)
        if chunk == b"data":
            return int(length) > 0
        pos += _CHUNK.size + length + (length & 1)
    return False


@dataclass(frozen=True, slots=True)
class Recording:
    """The two sndfile dumps of one call."""

    sent: Path  # dump-...-enc.wav: what this phone sent
    heard: Path  # dump-...-dec.wav: what this phone received

    @property
    def complete(self) -> bool:
        return _wav_complete(self.sent) and _wav_complete(self.heard)

    def sent_audio(self, window: float = 0.5) -> WavSummary:
        return wav_summary(self.sent, window)

    def heard_audio(self, window: float = 0.5) -> WavSummary:
        return wav_summary(self.heard, window)


@dataclass(frozen=True, slots=True)
class BaresipEvent:
    """One ctrl_tcp event, e.g. ``CALL_INCOMING`` or ``REGISTER_OK``."""

    type: str
    klass: str
    account: str | None
    direction: str | None
    peer: str | None
    call_id: str | None
    param: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> BaresipEvent:
        return cls(
            type=str(message.get("type", "")),
            klass=str(message.get("class", "")),
            account=message.get("accountaor"),
            direction=message.get("direction"),
            peer=message.get("peeruri"),
            call_id=message.get("id"),
            param=message.get("param"),
            raw=message,
        )


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Baresip:
    """One headless baresip on 127.0.0.1, owned by the test that starts it.

    ``sip_port`` receives SIP (UDP and TCP; baresip also listens on the port
    above it for TLS, so both are allocated). RTP uses ``rtp_ports``, four
    consecutive ports starting even, so a capture can watch them.
    """

    _names = itertools.count(1)

    def __init__(
        self,
        workdir: Path,
        audio_source: Path,
        *,
        name: str | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name or f"baresip-{next(self._names)}"
        self.user = user or self.name.replace("-", "")
        self.audio_source = audio_source
        self.config_dir = workdir / self.name
        self.sound_dir = self.config_dir / "snd"
        self.log_path = self.config_dir / "baresip.log"
        self.sip_port = free_port_block(2, even=False, udp=True, tcp=True)
        self.ctrl_port = free_tcp_port()
        rtp = free_port_block(4)
        self.rtp_ports = range(rtp, rtp + 4)
        self.events: list[BaresipEvent] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Event()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tokens = itertools.count(1)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        """A SIP URI that reaches this phone directly, without a registrar."""
        return f"sip:{self.user}@{LOOPBACK}:{self.sip_port}"

    # -- configuration -----------------------------------------------------------

    def config_text(self) -> str:
        lines = [
            f"sip_listen {LOOPBACK}:{self.sip_port}",
            # An address, not "lo": without it the SDP names another interface.
            f"net_interface {LOOPBACK}",
            # Nothing here resolves names; never ask a real resolver.
            f"dns_server {LOOPBACK}:53",
            f"module_path {MODULE_PATH}",
            *(f"module {module}" for module in MODULES),
            *(f"module_app {module}" for module in APP_MODULES),
            f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}",
            f"audio_source aufile,{self.audio_source}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            f"snd_path {self.sound_dir}",
            f"rtp_ports {self.rtp_ports.start}-{self.rtp_ports.stop - 1}",
        ]
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        if not self.audio_source.is_file():
            raise FileNotFoundError(f"{self.name}: audio source {self.audio_source} missing")
        self.sound_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self.config_text())
        # Accounts come later through `uanew` (see the module docstring).
        (self.config_dir / "accounts").write_text("")
        (self.config_dir / "contacts").write_text("")

    # -- life cycle ----------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Start baresip and connect to its control port."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} already started")
        if shutil.which(BARESIP) is None:
            raise BaresipError("baresip is not installed (Debian package baresip-core)")
        self._write_config()
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                BARESIP,
                "-f",
                str(self.config_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.config_dir,
            )
        process = self._process

        def listening() -> bool:
            if process.returncode is not None:
                raise BaresipError(f"{self.name} exited at start\n{self.diagnostics()}")
            return is_bound(self.ctrl_port, udp=False, tcp=True) and is_bound(self.sip_port)

        await wait_for(listening, timeout, f"{self.name} to listen", diagnose=self.diagnostics)
        self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self.ctrl_port)
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"{self.name}-ctrl")

    async def stop(self, timeout: float = 5.0) -> int | None:
        """``quit`` (baresip unregisters its accounts and exits); SIGTERM, then
        SIGKILL, if it does not exit in ``timeout`` seconds."""
        if self._process is None:
            return None
        if self._process.returncode is None and self._writer is not None:
            with contextlib.suppress(BaresipError, ConnectionError, TimeoutError):
                await self.command("quit", timeout=timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), timeout)
        returncode = await stop_process(self._process, timeout=timeout)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = None
        return returncode

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def diagnostics(self, limit: int = 3000) -> str:
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            log = ""
        # The call statistics line is rewritten with \r many times a second.
        log = "\n".join(line.rsplit("\r", 1)[-1] for line in log.splitlines())
        if len(log) > limit:
            log = "…" + log[-limit:]
        recent = ", ".join(f"{e.type}({e.param or ''})" for e in self.events[-15:])
        return f"--- {self.name} log ({self.log_path}) ---\n{log}\n--- last events: {recent}"

    # -- control protocol ------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buffer = b""
        error: BaseException = BaresipError(f"{self.name}: control connection closed")
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    length, colon, rest = buffer.partition(b":")
                    if not colon:
                        break
                    size = int(length)
                    if len(rest) < size + 1:
                        break
                    self._dispatch(json.loads(rest[:size]))
                    buffer = rest[size + 1 :]
        except (ConnectionError, ValueError) as exc:
            error = BaresipError(f"{self.name}: control connection failed: {exc!r}")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()
            self._changed.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("event"):
            self.events.append(BaresipEvent.from_json(message))
            self._changed.set()
        elif message.get("response"):
            future = self._pending.pop(str(message.get("token")), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> str:
        """Run a long command (as listed by ``help``) and return its text.

        Raises `BaresipError` when baresip answers ``"ok": false``.
        """
        if self._writer is None:
            raise RuntimeError(f"{self.name} not started")
        if self._reader_task is None or self._reader_task.done():
            raise BaresipError(f"{self.name}: control connection closed\n{self.diagnostics()}")
        token = f"{self.name}-{next(self._tokens)}"
        request: dict[str, str] = {"command": command, "token": token}
        if params is not None:
            request["params"] = params
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        self._writer.write(_netstring(json.dumps(request).encode()))
        await self._writer.drain()
        try:
            response = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(token, None)
            raise BaresipError(
                f"{self.name}: no answer to {command!r} in {timeout:.1f} s\n{self.diagnostics()}"
            ) from None
        data = str(response.get("data", ""))
        if not response.get("ok"):
            raise BaresipError(f"{self.name}: {command} {params or ''} failed: {data.strip()}")
        return data

    async def wait_event(
        self,
        types: str | Collection[str],
        timeout: float = 10.0,
        *,
        predicate: Callable[[BaresipEvent], bool] | None = None,
    ) -> BaresipEvent:
        """The oldest event of ``types`` not returned before; waits for one if none.

        Events are kept from the start, so an event that came before the
        call to `wait_event` is found too. Each event is returned once.
        """
        wanted = {types} if isinstance(types, str) else set(types)

        def find() -> BaresipEvent | None:
            for index, event in enumerate(self.events):
                if index in self._taken or event.type not in wanted:
                    continue
                if predicate is None or predicate(event):
                    self._taken.add(index)
                    return event
            return None

        async def wait() -> BaresipEvent:
            while True:
                self._changed.clear()
                event = find()
                if event is not None:
                    return event
                if self._reader_task is None or self._reader_task.done():
                    raise BaresipError(f"{self.name}: control connection closed")
                await self._changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise BaresipError(
                f"{self.name}: no {'/'.join(sorted(wanted))} event in {timeout:.1f} s\n"
                f"{self.diagnostics()}"
            ) from None

    # -- phone actions -----------------------------------------------------------------

    async def add_account(
        self,
        aor: str,
        *,
        password: str | None = None,
        answermode: AnswerMode = "auto",
        regint: int = 0,
    ) -> None:
        """Create a user agent (``uanew``). ``regint`` 0: no registration."""
        params = [f"<{aor}>", f"answermode={answermode}", f"regint={regint}"]
        if password is not None:
            params.insert(1, f"auth_pass={password}")
        await self.command("uanew", ";".join(params))

    async def use_direct_account(self, answermode: AnswerMode = "auto") -> None:
        """An account that registers nowhere: reachable at `uri`."""
        await self.add_account(
            f"sip:{self.user}@{LOOPBACK}:{self.sip_port}", answermode=answermode, regint=0
        )

    async def register(
        self,
        registrar: str,
        extension: str,
        password: str,
        *,
        answermode: AnswerMode = "auto",
        regint: int = 300,
        timeout: float = 10.0,
    ) -> BaresipEvent:
        """Register ``extension`` at ``registrar`` (``host:port``) and wait for REGISTER_OK.

        Raises `BaresipError` on REGISTER_FAIL (the event's ``param`` is the
        status line, e.g. ``403 Forbidden``). baresip 1.0.0 registers the
        Contact ``sip:<extension>-0x<hex>@127.0.0.1:<sip_port>``.
        """
        aor = f"sip:{extension}@{registrar}"
        await self.add_account(aor, password=password, answermode=answermode, regint=regint)
        event = await self.wait_event(
            ("REGISTER_OK", "REGISTER_FAIL"), timeout, predicate=lambda e: e.account == aor
        )
        if event.type != "REGISTER_OK":
            raise BaresipError(f"{self.name}: registration of {aor} failed: {event.param}")
        return event

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def answer(self) -> None:
        """Answer the ringing incoming call (``accept``; manual answer mode)."""
        await self.command("accept")

    async def hangup(self) -> None:
        await self.command("hangup")

    async def set_answermode(self, mode: AnswerMode) -> None:
        await self.command("answermode", mode)

    async def send_dtmf(self, keys: str) -> None:
        """Send keys as RFC 4733 events (``sndcode``: missing from ``help`` in
        1.0.0 but present; several keys go one after another)."""
        await self.command("sndcode", keys)

    # -- recordings ---------------------------------------------------------------------

    def recordings(self) -> list[Recording]:
        """Every call's sndfile dump pair, oldest first (names hold the start time,
        to the second: two calls starting in the same second share one pair)."""
        pairs = []
        for heard in sorted(self.sound_dir.glob("dump-*-dec.wav")):
            sent = heard.with_name(heard.name.removesuffix("-dec.wav") + "-enc.wav")
            if sent.exists():
                pairs.append(Recording(sent=sent, heard=heard))
        return pairs

    async def wait_recording(self, count: int = 1, timeout: float = 5.0) -> Recording:
        """The ``count``-th recording once its files are closed (after the call ends)."""

        def ready() -> Recording | None:
            done = self.recordings()
            if len(done) >= count and done[count - 1].complete:
                return done[count - 1]
            return None

        return await wait_for(
            ready, timeout, f"{self.name}: recording {count} closed", diagnose=self.diagnostics
        )
