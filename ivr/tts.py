"""IVR prompts: text rendered once by espeak-ng and cached as 8 kHz PCM.

Callers must never wait for synthesis, so the server renders every static
prompt at start (``render_all``) and plays from memory afterwards. The choices
below were checked against pyttsx3 2.99 and espeak-ng 1.51 (Debian 12).

Engine
    pyttsx3's espeak driver over ``libespeak-ng.so.1`` (Debian ``libespeak-ng1``)
    is the primary engine. The ``espeak-ng`` command (Debian ``espeak-ng``),
    run as ``espeak-ng -v VOICE -s RATE -w FILE --stdin``, is only a fallback:
    used when pyttsx3 cannot start, or after a synthesis through it fails or
    hangs (the renderer then stays on the command). ``engine="espeak-ng"``
    forces it, as an escape hatch for operators and so tests cover it.

One engine per process
    libespeak-ng is initialised once per process and its synth callback is
    process-global, so all renderers share one pyttsx3 engine, kept for the
    life of the process behind a lock. Each renderer owns one worker thread
    that does all its engine, disk and resampling work; ``close()`` stops it.

pyttsx3 pitfalls handled here
    * ``runAndWait()`` can return before the WAV exists: espeak synthesises
      asynchronously in retrieval mode. We wait for the ``finished-utterance``
      notification, then for ``espeak_IsPlaying()`` to drop (the driver's
      callback has returned), before touching the engine again; otherwise
      the callback thread and ours would both pump pyttsx3's command queue.
    * ``runAndWait()`` calls ``espeak_Cancel()`` if espeak is still busy, and
      voice/rate changes are themselves queued inside espeak: seen here as a
      prompt at the default rate, or one cut off ("not completed") now and
      then. We wait for espeak to go idle before every ``runAndWait()``.
    * Two ``save_to_file()`` before one ``runAndWait()`` write only the last,
      and the driver keeps the last text and path, so a later ``runAndWait()``
      can rewrite that file: one utterance per ``runAndWait()``, each to its own
      temporary file, read and deleted at once.
    * A voice espeak rejects is reported only through the ``error``
      notification (synthesis goes on with the old voice), so we listen to it.
    * The driver prints ``Audio saved to ...`` on stdout for every file.

    Measured here: about 15 ms per prompt through pyttsx3 (half of it the
    driver's fixed 10 ms loop sleep), roughly 200 times faster than real time.

Cache
    Key = sha256 over (output format, engine name + version, espeak voice id,
    rate, text). The engine is espeak-ng and its library version, the same
    for both paths, so a prompt rendered through the fallback is a hit for
    pyttsx3 and back. Files: ``<key>.npy`` (int16, 8 kHz mono) and a
    ``<key>.json`` sidecar saying what it holds, both written atomically.

Voices
    A language tag maps to an espeak-ng voice id: ``en`` -> ``gmw/en``
    (British English), ``en-us`` -> ``gmw/en-us``, ``zh``/``zh-cn``/``cmn`` ->
    ``sit/cmn`` (Mandarin), ``ko`` -> ``ko``. Lookup tries the voice id, its last
    path part, then the voice's language, dropping subtags from the end
    (``ko-kr`` -> ``ko``, RFC 4647 §3.4). An espeak id such as ``gmw/en-us`` is
    accepted as is.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ivr.audio import SAMPLE_RATE, load_wav_8k, read_wav, resample_to_8k, tone

__all__ = [
    "Prompt",
    "PromptRenderer",
    "TtsError",
    "TtsUnavailable",
    "UnknownVoice",
    "canonical_voice",
    "load_wav_8k",
    "resample_to_8k",
    "tone",
]

log = logging.getLogger(__name__)

Engine = Literal["auto", "pyttsx3", "espeak-ng"]

_FORMAT = "s16le/8000/mono/soxr-hq/v1"
"""Part of every cache key: bump it when the stored audio changes meaning."""

_ALIASES = {"zh": "cmn", "zh-cmn": "cmn", "zh-cn": "cmn", "zh-hans": "cmn"}
"""Tags espeak-ng's voice list does not carry (pyttsx3 exposes one language per voice)."""

_PROBE_TEXT = "ok"


class TtsError(RuntimeError):
    """A synthesis failed (engine error, timeout, no audio)."""


class TtsUnavailable(TtsError):
    """espeak-ng/pyttsx3 cannot run here; the message names the Debian package to install."""


class UnknownVoice(ValueError):
    """No espeak-ng voice matches the requested language tag."""


@dataclass(frozen=True, eq=False)
class Prompt:
    """One rendered prompt: 8 kHz mono int16 PCM, shared read-only by every call.

    ``voice`` is the canonical tag (``zh`` and ``cmn`` both give ``cmn``).
    Equality is identity: comparing arrays element-wise is not what a prompt
    lookup wants, and the PCM is frozen so sharing one object is safe.
    """

    text: str
    voice: str
    pcm: npt.NDArray[np.int16]

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise ValueError(f"prompt PCM must be 1-D int16, got {self.pcm.dtype} {self.pcm.shape}")
        self.pcm.flags.writeable = False

    @property
    def duration(self) -> float:
        """Length in seconds at 8 kHz."""
        return len(self.pcm) / SAMPLE_RATE


def canonical_voice(voice: str) -> str:
    """Normalise a language tag (case, ``_``) and apply aliases; no engine needed."""
    tag = voice.strip().lower().replace("_", "-")
    if not tag:
        raise UnknownVoice("voice must not be empty")
    return _ALIASES.get(tag, tag)


@dataclass(frozen=True)
class _Voice:
    id: str
    languages: tuple[str, ...]


def _resolve_voice(tag: str, voices: Sequence[_Voice]) -> str:
    """Map a canonical tag to an espeak-ng voice id (see the module docstring)."""
    candidates = [tag]
    parts = tag.split("-")
    while len(parts) > 1:
        parts.pop()
        shorter = "-".join(parts)
        candidates.append(_ALIASES.get(shorter, shorter))
    for cand in candidates:
        by_id = [v.id for v in voices if v.id == cand]
        by_name = [v.id for v in voices if v.id.rsplit("/", 1)[-1] == cand]
        by_language = [v.id for v in voices if cand in v.languages]
        for found in (by_id, by_name, by_language):
            if found:
                return found[0]
    raise UnknownVoice(f"espeak-ng has no voice for {tag!r} (try en, en-us, cmn, ko)")


def _cache_key(engine_id: str, voice_id: str, rate: int, text: str) -> str:
    material = json.dumps([_FORMAT, engine_id, voice_id, rate, text], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _synth_timeout(text: str) -> float:
    # espeak-ng runs far faster than real time; this only bounds a hang.
    return 10.0 + len(text) / 20.0


@functools.cache
def _libespeak() -> ctypes.CDLL | None:
    """Our own handle on libespeak-ng's public C API (version, IsPlaying)."""
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError:
        return None
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_IsPlaying.restype = ctypes.c_int
    lib.espeak_IsPlaying.argtypes = []
    return lib


class _Backend(Protocol):
    name: str
    engine_id: str

    def voices(self) -> list[_Voice]: ...

    def synthesise(self, text: str, voice_id: str, rate: int, wav_path: Path) -> None: ...


class _Pyttsx3Backend:
    """The process-wide pyttsx3 engine. Built and used only under ``_SharedEngine.lock``.

    The rule that keeps it reliable: never let pyttsx3 reach ``runAndWait()``
    while espeak is busy. ``runAndWait()`` first runs ``endLoop``, which calls
    ``espeak_Cancel()`` if espeak is still applying our voice/rate commands (they
    go through espeak's own queue); that drops the rate and leaves a stop flag
    that cancels this or the next utterance, reported as "not completed".
    """

    name = "pyttsx3"

    def __init__(self) -> None:
        lib = _libespeak()
        if lib is None:
            raise TtsUnavailable(
                "libespeak-ng.so.1 is missing: install the Debian package libespeak-ng1"
            )
        try:
            import pyttsx3  # here, so a broken install still leaves the fallback usable
        except ImportError as exc:
            raise TtsUnavailable(
                f"pyttsx3 is not importable ({exc}); reinstall the project's dependencies"
            ) from exc
        try:
            self._engine = pyttsx3.init("espeak")
        except Exception as exc:  # pyttsx3 raises bare RuntimeError/OSError/ImportError
            raise TtsUnavailable(
                f"pyttsx3 could not start espeak-ng ({exc}): "
                "install the Debian package libespeak-ng1"
            ) from exc
        self._lib = lib
        version = lib.espeak_Info(None)
        self.engine_id = f"espeak-ng {version.decode() if version else 'unknown'}"
        self.broken = False
        self._done = threading.Event()
        self._completed = False
        self._failures: list[BaseException] = []
        self._engine.connect("finished-utterance", self._on_finished)
        self._engine.connect("error", self._on_error)
        # A new driver queues its commands until the first runAndWait(); run an
        # empty one (after the driver's own voice/rate setup has drained) so
        # later setProperty() calls reach espeak at once and we can wait on them.
        self._wait_idle("start")
        self._engine.runAndWait()
        if self._engine.isBusy():
            raise TtsUnavailable("pyttsx3's espeak driver stays busy after start")

    def _on_finished(self, completed: bool = True, **_: object) -> None:
        # Runs on espeak's callback thread, after the WAV is written.
        self._completed = completed
        self._done.set()

    def _on_error(self, exception: BaseException | None = None, **_: object) -> None:
        self._failures.append(exception or TtsError("pyttsx3 reported an error"))

    def voices(self) -> list[_Voice]:
        with _SharedEngine.lock:
            found = self._engine.getProperty("voices")
        return [
            _Voice(str(v.id).lower(), tuple(str(x).lower() for x in v.languages)) for v in found
        ]

    def synthesise(self, text: str, voice_id: str, rate: int, wav_path: Path) -> None:
        with _SharedEngine.lock:
            if self.broken:
                raise TtsError("pyttsx3 is out of service after an earlier failure")
            engine = self._engine
            if engine.isBusy():
                self.broken = True
                raise TtsError("pyttsx3's command queue is stuck busy")
            self._done.clear()
            self._completed = False
            self._failures.clear()
            try:
                engine.setProperty("voice", voice_id)
                engine.setProperty("rate", rate)
                engine.setProperty("volume", 1.0)
                engine.save_to_file(text, os.fspath(wav_path))
                self._wait_idle("voice and rate")
                engine.runAndWait()
            except TtsError:
                raise
            except Exception as exc:
                self.broken = True
                raise TtsError(f"pyttsx3 failed: {exc}") from exc
            if not self._done.wait(_synth_timeout(text)):
                self.broken = True
                raise TtsError(f"pyttsx3 did not finish {text[:40]!r}")
            # 'finished-utterance' fires inside espeak's callback, before the
            # driver re-arms its queue: wait for the callback to return too.
            self._wait_idle("end of utterance")
            if self._failures:
                raise TtsError(f"pyttsx3 failed: {self._failures[0]}") from self._failures[0]
            if not self._completed or not wav_path.exists():
                state = "interrupted" if not self._completed else "no WAV written"
                raise TtsError(f"pyttsx3 did not complete {text[:40]!r} ({state})")

    def _wait_idle(self, what: str) -> None:
        """Wait until espeak's command queue is empty (espeak_IsPlaying() == 0).

        espeak-ng has no completion callback for parameter commands, so this
        polls. Measured here: after setting voice and rate espeak was still
        busy 9 times in 10, for about 0.3 ms; after an utterance, almost never.
        """
        deadline = time.monotonic() + 2.0
        while self._lib.espeak_IsPlaying():
            if time.monotonic() > deadline:
                self.broken = True
                raise TtsError(f"espeak-ng stayed busy ({what})")
            time.sleep(0.0002)


class _SharedEngine:
    """Holds the one pyttsx3 engine of the process (espeak initialises only once)."""

    lock = threading.Lock()
    backend: _Pyttsx3Backend | None = None
    failure: str | None = None

    @classmethod
    def get(cls) -> _Pyttsx3Backend:
        with cls.lock:
            if cls.backend is None and cls.failure is None:
                try:
                    cls.backend = _Pyttsx3Backend()
                except TtsUnavailable as exc:
                    cls.failure = str(exc)
            if cls.backend is None:
                raise TtsUnavailable(cls.failure)
            return cls.backend


class _CliBackend:
    """``espeak-ng -w FILE`` in a subprocess: the fallback (``--stdout`` has a bogus header)."""

    name = "espeak-ng"

    def __init__(self, exe: str) -> None:
        self._exe = exe
        found = re.search(r"text-to-speech:\s*(\S+)", self._run(["--version"]))
        self.engine_id = f"espeak-ng {found.group(1) if found else 'unknown'}"

    @classmethod
    def find(cls) -> _CliBackend | None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            return None
        try:
            return cls(exe)
        except TtsError as exc:
            log.warning("espeak-ng command unusable: %s", exc)
            return None

    def _run(self, args: list[str], stdin: bytes | None = None, timeout: float = 10.0) -> str:
        try:
            proc = subprocess.run(
                [self._exe, *args], input=stdin, capture_output=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TtsError(f"espeak-ng {args[0]}: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise TtsError(f"espeak-ng exited with {proc.returncode}: {err}")
        return proc.stdout.decode("utf-8", "replace")

    def voices(self) -> list[_Voice]:
        # Columns: Pty Language Age/Gender VoiceName File Other-Languages,
        # the last as "(zh-cmn 5)(zh 5)"; names use '_' for spaces.
        out: list[_Voice] = []
        for line in self._run(["--voices"]).splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                others = re.findall(r"\(([^\s()]+) \d+\)", line)
                langs = (cols[1].lower(), *(o.lower() for o in others))
                out.append(_Voice(cols[4].lower(), langs))
        return out

    def synthesise(self, text: str, voice_id: str, rate: int, wav_path: Path) -> None:
        # Text goes in on stdin (-b 1: UTF-8) so a prompt starting with '-' is not an option.
        args = ["-b", "1", "-v", voice_id, "-s", str(rate), "-w", os.fspath(wav_path), "--stdin"]
        self._run(args, stdin=text.encode("utf-8"), timeout=_synth_timeout(text))
        if not wav_path.exists():
            raise TtsError("espeak-ng wrote no WAV file")


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write next to ``path`` and rename, so readers (other nodes too) never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PromptRenderer:
    """Renders text with pyttsx3/espeak-ng once, in one worker thread, and caches 8 kHz PCM on disk.

    Memory and disk lookups, synthesis and resampling all run on the worker,
    so the event loop never blocks on them; concurrent requests for one
    prompt share a single future. ``check()`` and ``close()`` bracket its life.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        *,
        default_voice: str = "en",
        rate: int = 160,
        engine: Engine = "auto",
    ) -> None:
        if not 80 <= rate <= 450:
            raise ValueError(f"rate must be 80-450 words per minute (espeak-ng), got {rate}")
        if engine not in ("auto", "pyttsx3", "espeak-ng"):
            raise ValueError(f"engine must be auto, pyttsx3 or espeak-ng, got {engine!r}")
        self._cache_dir = Path(cache_dir)
        self._default_voice = default_voice
        self._default_tag = canonical_voice(default_voice)
        self._rate = rate
        self._engine_choice: Engine = engine
        self._memory: dict[tuple[str, str], Prompt] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Prompt]] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivr-tts")
        self._closed = False
        # Touched only on the worker thread.
        self._backend: _Backend | None = None
        self._voices: list[_Voice] = []
        self._tmp_dir: Path | None = None
        self._seq = 0
        self._synth_count = 0

    @property
    def synth_count(self) -> int:
        """Prompts synthesised by this renderer (cache hits and check() excluded)."""
        return self._synth_count

    @property
    def engine(self) -> str | None:
        """``pyttsx3`` or ``espeak-ng`` (the fallback) once started, else None."""
        backend = self._backend
        return backend.name if backend is not None else None

    # -- public API ---------------------------------------------------------

    def check(self) -> None:
        """Start the engine and speak one word; raise TtsUnavailable naming the package if not.

        Blocks the caller briefly: meant for server start, before any call.
        """
        self._ensure_open()
        self._worker.submit(self._check_on_worker).result()

    async def render(self, text: str, voice: str | None = None) -> Prompt:
        """The prompt for ``text``, from memory, disk, or a new synthesis."""
        return await asyncio.shield(self._submit(text, voice))

    async def render_all(
        self, items: Iterable[tuple[str, str | None]]
    ) -> dict[tuple[str, str], Prompt]:
        """Render many prompts (warm-up at start), keyed by (text, voice as given or default).

        Everything is queued before the first await, so the worker never idles;
        on the first failure the rest still land in the cache.
        """
        wanted = [(text, voice) for text, voice in items]
        for text, voice in wanted:  # validate all before queuing any
            _check_text(text)
            canonical_voice(voice if voice is not None else self._default_voice)
        pending = [
            ((text, voice if voice is not None else self._default_voice), self._submit(text, voice))
            for text, voice in wanted
        ]
        out: dict[tuple[str, str], Prompt] = {}
        for key, fut in pending:
            out[key] = await asyncio.shield(fut)
        return out

    def cached(self, text: str, voice: str | None = None) -> Prompt | None:
        """Memory lookup only (no I/O): for the call path, after warm-up."""
        tag = canonical_voice(voice if voice is not None else self._default_voice)
        return self._memory.get((text, tag))

    async def close(self) -> None:
        """Let queued renders finish, remove temporary files and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        pending = list(self._inflight.values())
        if pending:
            await asyncio.wait(pending)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._stop_on_worker)
        self._worker.shutdown(wait=True)  # the thread is idle: this only joins it

    # -- event loop side ----------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError("PromptRenderer is closed")

    def _submit(self, text: str, voice: str | None) -> asyncio.Future[Prompt]:
        self._ensure_open()
        _check_text(text)
        key = (text, canonical_voice(voice if voice is not None else self._default_voice))
        loop = asyncio.get_running_loop()
        hit = self._memory.get(key)
        if hit is not None:
            done: asyncio.Future[Prompt] = loop.create_future()
            done.set_result(hit)
            return done
        fut = self._inflight.get(key)
        if fut is None:
            fut = loop.run_in_executor(self._worker, self._load_or_render, *key)
            self._inflight[key] = fut
            fut.add_done_callback(functools.partial(self._settle, key))
        return fut

    def _settle(self, key: tuple[str, str], fut: asyncio.Future[Prompt]) -> None:
        self._inflight.pop(key, None)
        if fut.cancelled():
            return
        exc = fut.exception()  # also marks it retrieved if every caller went away
        if exc is None:
            self._memory[key] = fut.result()

    # -- worker thread ------------------------------------------------------

    def _start(self) -> _Backend:
        if self._backend is not None:
            return self._backend
        backend: _Backend
        if self._engine_choice == "espeak-ng":
            cli = _CliBackend.find()
            if cli is None:
                raise TtsUnavailable(
                    "the espeak-ng command is missing: install the Debian package espeak-ng"
                )
            backend = cli
        else:
            try:
                backend = _SharedEngine.get()
            except TtsUnavailable as exc:
                cli = _CliBackend.find() if self._engine_choice == "auto" else None
                if cli is None:
                    raise
                log.warning("pyttsx3 unavailable (%s); using the espeak-ng command", exc)
                backend = cli
        self._voices = backend.voices()
        _resolve_voice(self._default_tag, self._voices)  # a bad default fails at start
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        self._tmp_dir = Path(tempfile.mkdtemp(prefix="ivr-tts-"))
        self._backend = backend
        log.info(
            "prompt synthesis: %s (%s), cache %s", backend.name, backend.engine_id, self._cache_dir
        )
        return backend

    def _check_on_worker(self) -> None:
        backend = self._start()
        voice_id = _resolve_voice(self._default_tag, self._voices)
        try:
            self._synthesise(_PROBE_TEXT, voice_id)
        except TtsError as exc:
            raise TtsUnavailable(
                f"{backend.name} could not synthesise a test word ({exc}); "
                "check the Debian packages espeak-ng and libespeak-ng1"
            ) from exc

    def _stop_on_worker(self) -> None:
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def _load_or_render(self, text: str, tag: str) -> Prompt:
        backend = self._start()
        voice_id = _resolve_voice(tag, self._voices)
        digest = _cache_key(backend.engine_id, voice_id, self._rate, text)
        pcm = self._read_cache(digest)
        if pcm is None:
            started = time.perf_counter()
            pcm = self._synthesise(text, voice_id)
            elapsed = time.perf_counter() - started
            self._synth_count += 1
            log.info(
                "prompt %s: synthesised %.2f s of audio (%s) in %.0f ms",
                digest[:12],
                len(pcm) / SAMPLE_RATE,
                voice_id,
                elapsed * 1000,
            )
            self._write_cache(digest, pcm, text, tag, voice_id, elapsed)
        return Prompt(text, tag, pcm)

    def _synthesise(self, text: str, voice_id: str) -> npt.NDArray[np.int16]:
        backend = self._start()
        assert self._tmp_dir is not None
        self._seq += 1
        wav = self._tmp_dir / f"{self._seq}.wav"
        try:
            try:
                backend.synthesise(text, voice_id, self._rate, wav)
            except TtsError as exc:
                if self._engine_choice != "auto" or backend.name == _CliBackend.name:
                    raise
                cli = _CliBackend.find()
                if cli is None:
                    raise
                log.warning(
                    "%s failed (%s); using the espeak-ng command from now on", backend.name, exc
                )
                self._backend = backend = cli
                wav.unlink(missing_ok=True)
                backend.synthesise(text, voice_id, self._rate, wav)
            samples, rate = read_wav(wav)
        finally:
            wav.unlink(missing_ok=True)
        pcm = resample_to_8k(samples, rate)
        if not pcm.size:
            raise TtsError(f"{backend.name} produced no audio for {text[:40]!r}")
        return pcm

    def _read_cache(self, digest: str) -> npt.NDArray[np.int16] | None:
        path = self._cache_dir / f"{digest}.npy"
        try:
            pcm = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("prompt %s: unreadable cache file, rendering again: %s", digest[:12], exc)
            return None
        if (
            not isinstance(pcm, np.ndarray)
            or pcm.dtype != np.int16
            or pcm.ndim != 1
            or not pcm.size
        ):
            log.warning("prompt %s: cache file is not 1-D int16 PCM, rendering again", digest[:12])
            return None
        return pcm

    def _write_cache(
        self,
        digest: str,
        pcm: npt.NDArray[np.int16],
        text: str,
        tag: str,
        voice_id: str,
        elapsed: float,
    ) -> None:
        backend = self._backend
        meta = {
            "text": text,
            "voice": tag,
            "espeak_voice": voice_id,
            "rate": self._rate,
            "engine": backend.engine_id if backend else None,
            "frontend": backend.name if backend else None,
            "format": _FORMAT,
            "sample_rate": SAMPLE_RATE,
            "samples": int(pcm.size),
            "synth_ms": round(elapsed * 1000, 1),
        }
        body = json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8")
        try:
            _atomic_write(self._cache_dir / f"{digest}.npy", lambda fh: np.save(fh, pcm))
            _atomic_write(self._cache_dir / f"{digest}.json", lambda fh: fh.write(body))
        except OSError as exc:
            # The prompt still plays from memory; only the next start pays again.
            log.warning("prompt %s: could not write the disk cache: %s", digest[:12], exc)


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt text must be a non-blank string")
