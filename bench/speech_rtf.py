"""What speech input costs: model load, and the recogniser's real-time factor alone and shared.

Prints a table and JSON lines:

* model load time and the memory it adds (RSS);
* one stream, then N concurrent streams through `SpeechService` (each stream
  answers ``--utterances`` prompts in turn, as callers walking through speech
  nodes), audio fed as fast as it is taken. ``rtf_cpu`` is recogniser time
  per second of audio (1 / rtf_cpu streams fit on one core); ``rtf_wall`` is
  how long a stream's audio took to get through, per second of it, with N
  streams sharing the workers: below 1, N callers are served in real time.
  The loop's worst lag is measured by a 5 ms ticker meanwhile;
* the in-band DTMF detector's cost per 20 ms packet, on speech and on silence.

Audio is espeak-ng speech (the Korean voice for the default model), rendered
once to a temporary cache.

    .venv/bin/python bench/speech_rtf.py [--streams 1,2,4,8] [--workers N]
    .venv/bin/python bench/speech_rtf.py --model /srv/vosk-model-small-en-us-0.15 \\
        --language en --voice en-us --phrases "yes" "no" "agent"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.inband import InbandDtmfDetector
from ivr.speech import SpeechModel, SpeechService, default_test_model_path
from ivr.tts import PromptRenderer

RATE = 8000
PACKET = 160
KOREAN = ["아니요", "상담원 연결", "네", "여덟", "오"]

Pcm = npt.NDArray[np.int16]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Run:
    streams: int
    workers: int
    audio_per_stream: float
    rtf_cpu: float
    rtf_wall: float
    max_lag_ms: float
    matched: int
    answers: int
    dropped: float
    rss_mb: float


async def render(phrases: list[str], voice: str) -> dict[str, Pcm]:
    with tempfile.TemporaryDirectory(prefix="speech-bench-") as cache:
        # The espeak-ng command, not pyttsx3: its driver prints a line per file.
        renderer = PromptRenderer(Path(cache), default_voice=voice, engine="espeak-ng")
        try:
            return {p: (await renderer.render(p)).pcm for p in phrases}
        finally:
            await renderer.close()


def utterance(pcm: Pcm) -> Pcm:
    quiet = np.zeros(RATE * 3 // 10, dtype=np.int16)
    return np.concatenate([quiet, pcm, np.zeros(RATE * 2, dtype=np.int16)])


async def concurrent(
    model: SpeechModel,
    audio: dict[str, Pcm],
    phrases: list[str],
    language: str,
    streams: int,
    workers: int,
    utterances: int,
) -> Run:
    loop = asyncio.get_running_loop()
    service = SpeechService(model, workers=workers, max_backlog=60.0)
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    async def caller(index: int) -> tuple[float, float, int, float]:
        busy = fed = dropped = 0.0
        matched = 0
        for turn in range(utterances):
            phrase = phrases[(index + turn) % len(phrases)]
            stream = await service.start(phrases, language, call_id=f"bench-{index}")
            pcm = utterance(audio[phrase])
            for start in range(0, len(pcm), PACKET):
                stream.feed(pcm[start : start + PACKET])
                if start % (25 * PACKET) == 0:
                    await asyncio.sleep(0)  # other callers' packets arrive meanwhile
            result = await stream.result
            busy += stream.busy_seconds
            fed += result.audio_seconds
            dropped += stream.dropped_seconds
            matched += result.phrase == phrase
        return busy, fed, matched, dropped

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(caller(i) for i in range(streams)))
    finally:
        wall = time.perf_counter() - started
        done.set()
        await tick
        memory = rss_mb()
        await service.close()
    busy = sum(o[0] for o in outcomes)
    fed = sum(o[1] for o in outcomes)
    per_stream = fed / streams
    return Run(
        streams=streams,
        workers=workers,
        audio_per_stream=per_stream,
        rtf_cpu=busy / fed,
        rtf_wall=wall / per_stream,
        max_lag_ms=max(lags, default=0.0) * 1000,
        matched=sum(o[2] for o in outcomes),
        answers=streams * utterances,
        dropped=sum(o[3] for o in outcomes),
        rss_mb=memory,
    )


def inband_cost(pcm: Pcm) -> float:
    """Microseconds per 20 ms packet."""
    detector = InbandDtmfDetector()
    packets = [pcm[i : i + PACKET] for i in range(0, len(pcm) - PACKET + 1, PACKET)]
    started = time.perf_counter()
    for packet in packets:
        detector.feed(packet)
    return (time.perf_counter() - started) / len(packets) * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="vosk model directory (default: the test model)")
    ap.add_argument("--language", default="ko")
    ap.add_argument("--voice", default="ko", help="espeak-ng voice to render the phrases")
    ap.add_argument("--phrases", nargs="+", default=KOREAN)
    ap.add_argument("--streams", default="1,2,4,8", help="comma-separated stream counts")
    ap.add_argument("--workers", type=int, help="worker threads (default: CPUs - 1)")
    ap.add_argument("--utterances", type=int, default=5, help="answers per stream")
    args = ap.parse_args()
    path = args.model or default_test_model_path()

    before = rss_mb()
    model = await SpeechModel.load(path, args.language)
    model_mb = rss_mb() - before
    audio = await render(args.phrases, args.voice)
    workers = args.workers or max(1, (os.cpu_count() or 2) - 1)
    runs = [
        await concurrent(model, audio, args.phrases, args.language, n, workers, args.utterances)
        for n in (int(s) for s in args.streams.split(","))
    ]
    speech = np.concatenate([utterance(p) for p in audio.values()] * 4)
    inband_speech = inband_cost(speech)
    inband_silence = inband_cost(np.zeros(RATE * 10, dtype=np.int16))

    print(f"model {path} ({args.language}), {os.cpu_count()} CPUs")
    print(f"{'model load (s)':<40} {model.load_seconds:>10.2f}")
    print(f"{'model memory (MB RSS)':<40} {model_mb:>10.0f}")
    print(
        f"{'streams':>7} {'workers':>7} {'audio/stream s':>14} {'rtf_cpu':>8} {'rtf_wall':>8} "
        f"{'loop lag ms':>11} {'matched':>9} {'dropped s':>9} {'RSS MB':>7}"
    )
    for r in runs:
        print(
            f"{r.streams:>7} {r.workers:>7} {r.audio_per_stream:>14.1f} {r.rtf_cpu:>8.3f} "
            f"{r.rtf_wall:>8.3f} {r.max_lag_ms:>11.1f} {r.matched:>4}/{r.answers:<4} "
            f"{r.dropped:>9.1f} {r.rss_mb:>7.0f}"
        )
    print(f"{'in-band DTMF, speech (µs/packet)':<40} {inband_speech:>10.1f}")
    print(f"{'in-band DTMF, silence (µs/packet)':<40} {inband_silence:>10.1f}")

    base = {"bench": "speech_rtf", "model": str(path), "language": args.language}
    print(
        json.dumps(
            {**base, "measure": "model_load", "seconds": round(model.load_seconds, 3)}
            | {"rss_mb": round(model_mb, 1)},
            ensure_ascii=False,
        )
    )
    for r in runs:
        row = {
            **base,
            "measure": "recognition",
            "streams": r.streams,
            "workers": r.workers,
            "audio_per_stream_s": round(r.audio_per_stream, 2),
            "rtf_cpu": round(r.rtf_cpu, 4),
            "rtf_wall": round(r.rtf_wall, 4),
            "max_loop_lag_ms": round(r.max_lag_ms, 2),
            "matched": r.matched,
            "answers": r.answers,
            "dropped_s": round(r.dropped, 2),
            "rss_mb": round(r.rss_mb, 1),
        }
        print(json.dumps(row, ensure_ascii=False))
    for name, value in (("inband_speech", inband_speech), ("inband_silence", inband_silence)):
        print(json.dumps({**base, "measure": name, "us_per_packet": round(value, 2)}))


if __name__ == "__main__":
    asyncio.run(main())
