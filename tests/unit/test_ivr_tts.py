"""Prompt rendering with the real espeak-ng on this machine, and the audio helpers.

Synthesised audio varies by a few samples between runs, so speech is checked
by length and energy, never by hashing.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ivr.audio import load_wav_8k, read_wav, resample_to_8k, tone
from ivr.tts import (
    Prompt,
    PromptRenderer,
    TtsUnavailable,
    UnknownVoice,
    canonical_voice,
)

WELCOME = "Welcome to Demo Bank"
KOREAN = "데모 은행에 오신 것을 환영합니다"
MANDARIN = "欢迎致电演示银行"


def rms_dbfs(pcm: npt.NDArray[np.int16]) -> float:
    """RMS level relative to a full-scale square wave."""
    rms = math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * math.log10(max(rms, 1e-9) / 32768)


def sine_dbfs(pcm: npt.NDArray[np.int16]) -> float:
    """RMS level where a full-scale sine is 0 dBFS (AES17), as tone() defines it."""
    return rms_dbfs(pcm) + 20 * math.log10(math.sqrt(2))


def peak_freqs(pcm: npt.NDArray[np.int16], rate: int, count: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return sorted(float(freqs[i]) for i in np.argsort(spectrum)[-count:])


def npy_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.npy"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "tts-cache"


@pytest.fixture
async def renderer(cache_dir: Path) -> AsyncIterator[PromptRenderer]:
    r = PromptRenderer(cache_dir)
    r.check()
    yield r
    await r.close()
    # A silent switch to the espeak-ng command would hide a pyttsx3 regression.
    assert r.engine == "pyttsx3"


# -- synthesis -------------------------------------------------------------


async def test_english_prompt_is_8khz_int16_speech(renderer: PromptRenderer) -> None:
    prompt = await renderer.render(WELCOME)

    assert renderer.engine == "pyttsx3"  # the primary engine, not the fallback
    assert prompt.text == WELCOME
    assert prompt.voice == "en"
    assert prompt.pcm.dtype == np.int16
    assert prompt.pcm.ndim == 1
    assert 0.8 < prompt.duration < 4.0
    assert prompt.duration == len(prompt.pcm) / 8000
    assert rms_dbfs(prompt.pcm) > -35.0  # silence would be below -90
    assert renderer.synth_count == 1


@pytest.mark.parametrize(
    ("text", "voice", "canonical"),
    [(KOREAN, "ko", "ko"), (MANDARIN, "zh", "cmn"), (MANDARIN, "cmn", "cmn")],
)
async def test_korean_and_mandarin_render(
    renderer: PromptRenderer, text: str, voice: str, canonical: str
) -> None:
    prompt = await renderer.render(text, voice)

    assert prompt.voice == canonical
    assert prompt.duration > 0.8
    assert rms_dbfs(prompt.pcm) > -35.0


async def test_second_render_is_a_memory_hit(renderer: PromptRenderer) -> None:
    assert renderer.cached(WELCOME) is None
    first = await renderer.render(WELCOME)
    second = await renderer.render(WELCOME, "en")

    assert second is first
    assert renderer.cached(WELCOME, "EN") is first
    assert renderer.synth_count == 1


async def test_new_renderer_loads_from_disk_without_synthesis(
    renderer: PromptRenderer, cache_dir: Path
) -> None:
    first = await renderer.render(WELCOME)
    [npy] = npy_files(cache_dir)
    meta = json.loads(npy.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["text"] == WELCOME
    assert meta["espeak_voice"] == "gmw/en"
    assert meta["rate"] == 160
    assert meta["sample_rate"] == 8000
    assert meta["samples"] == len(first.pcm)
    assert meta["engine"].startswith("espeak-ng ")

    other = PromptRenderer(cache_dir)
    try:
        again = await other.render(WELCOME)
    finally:
        await other.close()

    assert other.synth_count == 0
    np.testing.assert_array_equal(again.pcm, first.pcm)


async def test_concurrent_renders_of_one_text_synthesise_once(
    renderer: PromptRenderer,
) -> None:
    prompts = await asyncio.gather(*(renderer.render(WELCOME) for _ in range(8)))

    assert renderer.synth_count == 1
    assert all(p is prompts[0] for p in prompts)


async def test_different_voice_is_a_different_entry(
    renderer: PromptRenderer, cache_dir: Path
) -> None:
    british = await renderer.render(WELCOME, "en")
    american = await renderer.render(WELCOME, "en-us")

    assert renderer.synth_count == 2
    assert american is not british
    assert american.voice == "en-us"
    assert len(npy_files(cache_dir)) == 2


async def test_language_aliases_share_one_entry(renderer: PromptRenderer) -> None:
    a = await renderer.render(MANDARIN, "zh")
    b = await renderer.render(MANDARIN, "cmn")
    c = await renderer.render(MANDARIN, "zh_CN")
    d = await renderer.render(KOREAN, "ko-KR")  # region dropped: ko

    assert a is b is c
    assert d.voice == "ko-kr"
    assert renderer.synth_count == 2


async def test_render_all_keys_by_the_voice_given(renderer: PromptRenderer) -> None:
    items: list[tuple[str, str | None]] = [
        (WELCOME, None),
        (WELCOME, "en"),
        (KOREAN, "ko"),
        (MANDARIN, "zh"),
    ]
    out = await renderer.render_all(items)

    assert set(out) == {(WELCOME, "en"), (KOREAN, "ko"), (MANDARIN, "zh")}
    assert out[(MANDARIN, "zh")].voice == "cmn"
    assert renderer.synth_count == 3
    assert renderer.cached(MANDARIN, "cmn") is out[(MANDARIN, "zh")]


async def test_unknown_voice_and_blank_text_are_rejected(renderer: PromptRenderer) -> None:
    with pytest.raises(UnknownVoice, match="tlh"):
        await renderer.render(WELCOME, "tlh")
    with pytest.raises(ValueError, match="blank"):
        await renderer.render("   ")
    with pytest.raises(ValueError, match="blank"):
        await renderer.render_all([(WELCOME, None), ("", "en")])
    assert renderer.synth_count == 0


async def test_unknown_default_voice_fails_check(cache_dir: Path) -> None:
    r = PromptRenderer(cache_dir, default_voice="tlh")
    try:
        with pytest.raises(UnknownVoice):
            r.check()
    finally:
        await r.close()


async def test_corrupt_cache_file_is_rendered_again(
    renderer: PromptRenderer, cache_dir: Path
) -> None:
    await renderer.render(WELCOME)
    [npy] = npy_files(cache_dir)
    npy.write_bytes(b"not numpy")

    other = PromptRenderer(cache_dir)
    try:
        prompt = await other.render(WELCOME)
    finally:
        await other.close()

    assert other.synth_count == 1
    assert prompt.duration > 0.8
    assert np.load(npy).dtype == np.int16  # the bad file was replaced


async def test_close_finishes_queued_renders_then_refuses(cache_dir: Path) -> None:
    r = PromptRenderer(cache_dir)
    queued = r._submit(WELCOME, None)  # queued on the worker, not yet awaited
    await r.close()

    assert queued.done()
    assert queued.result().duration > 0.8
    with pytest.raises(RuntimeError, match="closed"):
        await r.render(WELCOME)
    await r.close()  # idempotent


async def test_prompt_pcm_is_read_only(renderer: PromptRenderer) -> None:
    prompt = await renderer.render(WELCOME)
    with pytest.raises(ValueError, match="read-only"):
        prompt.pcm[0] = 1


async def test_espeak_ng_command_fallback_shares_the_cache(cache_dir: Path) -> None:
    cli = PromptRenderer(cache_dir, engine="espeak-ng")
    try:
        cli.check()
        by_cli = await cli.render(WELCOME)
    finally:
        await cli.close()
    assert cli.engine == "espeak-ng"
    assert 0.8 < by_cli.duration < 4.0
    assert rms_dbfs(by_cli.pcm) > -35.0

    primary = PromptRenderer(cache_dir)
    try:
        loaded = await primary.render(WELCOME)
        fresh = await primary.render(WELCOME, "en-us")
    finally:
        await primary.close()
    # Same espeak-ng underneath, so same key: a hit for pyttsx3 too.
    assert primary.synth_count == 1
    np.testing.assert_array_equal(loaded.pcm, by_cli.pcm)
    assert abs(fresh.duration - by_cli.duration) < 0.3


async def test_missing_engine_names_the_debian_package(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    r = PromptRenderer(cache_dir, engine="espeak-ng")
    try:
        with pytest.raises(TtsUnavailable, match="Debian package espeak-ng"):
            r.check()
    finally:
        await r.close()


def test_constructor_validates_rate_and_engine(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rate"):
        PromptRenderer(tmp_path, rate=20)
    with pytest.raises(ValueError, match="engine"):
        PromptRenderer(tmp_path, engine="festival")  # type: ignore[arg-type]


def test_canonical_voice() -> None:
    assert canonical_voice(" EN_us ") == "en-us"
    assert canonical_voice("zh") == "cmn"
    assert canonical_voice("zh-CN") == "cmn"
    with pytest.raises(UnknownVoice):
        canonical_voice(" ")


def test_prompt_rejects_non_int16() -> None:
    with pytest.raises(ValueError, match="int16"):
        Prompt("x", "en", np.zeros(10, dtype=np.float32))


# -- WAV loading and resampling -----------------------------------------------


def write_wav(path: Path, frames: npt.NDArray[np.float64], rate: int, width: int) -> None:
    """Write (frames, channels) floats in [-1, 1) with the stdlib wave module."""
    channels = frames.shape[1]
    if width == 1:
        raw = np.clip(np.rint(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    else:
        full = 2 ** (8 * width - 1)
        ints = np.clip(np.rint(frames * full), -full, full - 1).astype("<i8")
        raw = ints.reshape(-1, 1).view(np.uint8)[:, :width].tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def sine(freq: float, seconds: float, rate: int, amplitude: float) -> npt.NDArray[np.float64]:
    t = np.arange(round(seconds * rate)) / rate
    return np.asarray(amplitude * np.sin(2 * np.pi * freq * t), dtype=np.float64)


def test_load_wav_22050_mono(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    write_wav(path, sine(1000, 1.0, 22050, 0.5)[:, None], 22050, 2)

    pcm = load_wav_8k(path)

    assert pcm.dtype == np.int16
    assert abs(len(pcm) - 8000) <= 1
    assert peak_freqs(pcm, 8000, 1) == pytest.approx([1000], abs=2)
    assert sine_dbfs(pcm[400:-400]) == pytest.approx(20 * math.log10(0.5), abs=0.1)


def test_load_wav_16k_stereo_mixes_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left = sine(440, 1.0, 16000, 0.4)
    right = sine(1200, 1.0, 16000, 0.4)
    write_wav(path, np.stack([left, right], axis=1), 16000, 2)

    pcm = load_wav_8k(path)

    assert len(pcm) == 8000
    assert peak_freqs(pcm, 8000, 2) == pytest.approx([440, 1200], abs=2)
    # Each channel is halved in the mix: two sines at 0.2 each.
    assert sine_dbfs(pcm[400:-400]) == pytest.approx(20 * math.log10(0.2) + 3.01, abs=0.1)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_load_wav_sample_widths(tmp_path: Path, width: int) -> None:
    path = tmp_path / f"w{width}.wav"
    write_wav(path, sine(500, 0.5, 8000, 0.5)[:, None], 8000, width)

    pcm = load_wav_8k(path)

    assert len(pcm) == 4000
    tolerance = 0.2 if width == 1 else 0.01  # 8-bit quantisation noise
    assert sine_dbfs(pcm) == pytest.approx(20 * math.log10(0.5), abs=tolerance)


def test_read_wav_extensible_float_with_streaming_size(tmp_path: Path) -> None:
    """WAVE_FORMAT_EXTENSIBLE + IEEE float, data size left at 0xFFFFFFFF by a streaming writer."""
    samples = sine(300, 0.25, 48000, 0.25).astype("<f4")
    float_guid = struct.pack("<HHI", 0x0003, 0x0000, 0x00100000) + bytes.fromhex("800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 48000, 48000 * 4, 4, 32, 22, 32, 4) + float_guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", 0xFFFFFFFF) + samples.tobytes()
    path = tmp_path / "ext.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + body)

    frames, rate = read_wav(path)

    assert rate == 48000
    assert frames.shape == (len(samples), 1)
    np.testing.assert_allclose(frames[:, 0], samples, atol=1e-7)
    assert len(load_wav_8k(path)) == 2000


def test_read_wav_rejects_what_it_cannot_decode(tmp_path: Path) -> None:
    not_wav = tmp_path / "x.wav"
    not_wav.write_bytes(b"ID3\x03" + bytes(64))
    with pytest.raises(ValueError, match="not a WAV"):
        read_wav(not_wav)

    adpcm = tmp_path / "adpcm.wav"
    fmt = struct.pack("<HHIIHH", 0x0002, 1, 8000, 4000, 256, 4)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
    adpcm.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    with pytest.raises(ValueError, match="0x0002"):
        read_wav(adpcm)


def test_resample_to_8k_accepts_int_and_float() -> None:
    as_float = sine(700, 1.0, 22050, 0.5)
    as_int = np.rint(as_float * 32768).astype(np.int16)

    from_float = resample_to_8k(as_float, 22050)
    from_int = resample_to_8k(as_int, 22050)

    assert from_float.dtype == from_int.dtype == np.int16
    assert abs(len(from_float) - 8000) <= 1
    assert np.max(np.abs(from_float.astype(np.int32) - from_int)) <= 2
    np.testing.assert_array_equal(resample_to_8k(as_int[:0], 22050), np.zeros(0, np.int16))
    with pytest.raises(ValueError):
        resample_to_8k(as_int, 0)


# -- tones -----------------------------------------------------------------------


def test_tone_level_frequencies_and_length() -> None:
    ringback = tone([440, 480], 2.0, level_dbfs=-12.0)

    assert ringback.dtype == np.int16
    assert len(ringback) == 16000
    assert sine_dbfs(ringback[400:-400]) == pytest.approx(-12.0, abs=0.05)
    assert peak_freqs(ringback, 8000, 2) == pytest.approx([440, 480], abs=1)
    assert abs(int(ringback[0])) < 50 and abs(int(ringback[-1])) < 50  # faded, no click
    single = tone([1000], 1.0, level_dbfs=-20.0, rate=16000)
    assert len(single) == 16000
    assert sine_dbfs(single[200:-200]) == pytest.approx(-20.0, abs=0.05)


def test_tone_refuses_to_clip_or_alias() -> None:
    with pytest.raises(ValueError, match="clip"):
        tone([440, 480], 1.0, level_dbfs=0.0)
    with pytest.raises(ValueError, match="outside"):
        tone([4000], 1.0)
    with pytest.raises(ValueError):
        tone([], 1.0)
