"""Audio helpers for the IVR: read WAV files, resample to 8 kHz, make tones.

Everything here produces what the media layer expects: 8 kHz mono int16 PCM
(the G.711 encoders take it from there).

Why a small RIFF reader instead of the ``wave`` module: on Python 3.11
``wave`` rejects WAVE_FORMAT_EXTENSIBLE (what sox and ffmpeg write for
24-bit or multichannel files) and IEEE float, and trusts the data chunk size,
which streaming writers such as ``espeak-ng --stdout`` leave bogus. Music on
hold files come from anywhere, so we parse the few chunks we need ourselves.

Resampling uses soxr ("HQ"), which handles 22,050 -> 8,000 Hz cleanly; we
resample in float32 and round once at the end so a full-scale input that
overshoots through the anti-alias filter clips instead of wrapping.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

__all__ = [
    "SAMPLE_RATE",
    "load_wav_8k",
    "read_wav",
    "resample_to_8k",
    "to_int16",
    "tone",
]

SAMPLE_RATE = 8000
"""G.711 runs at 8 kHz (ITU-T G.711 §1)."""

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE

FloatFrames = npt.NDArray[np.float32]
Int16Pcm = npt.NDArray[np.int16]


def read_wav(path: str | os.PathLike[str]) -> tuple[FloatFrames, int]:
    """Decode a PCM or float WAV into float32 frames in [-1, 1) of shape (frames, channels).

    Returns the samples and the file's sample rate. Raises ``ValueError`` naming
    what is unsupported (compressed formats such as ADPCM or G.711 WAVs, RF64).
    """
    data = Path(path).read_bytes()
    if len(data) < 12 or data[8:12] != b"WAVE":
        raise ValueError(f"{os.fspath(path)}: not a WAV file (no RIFF/WAVE header)")
    if data[0:4] != b"RIFF":
        kind = data[0:4].decode("latin-1")
        raise ValueError(f"{os.fspath(path)}: {kind!r} container is not supported, only RIFF")

    fmt: tuple[int, int, int, int, int] | None = None  # tag, channels, rate, block_align, bits
    payload: memoryview | None = None
    view = memoryview(data)
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = bytes(view[pos : pos + 4])
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + size], path)
        elif chunk_id == b"data":
            # A streaming writer cannot know the length up front and leaves
            # 0 or 0xFFFFFFFF here: take what the file really holds.
            payload = view[body : min(body + size, len(data))]
            break
        pos = body + size + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise ValueError(f"{os.fspath(path)}: WAV has no fmt chunk")
    if payload is None:
        raise ValueError(f"{os.fspath(path)}: WAV has no data chunk")

    tag, channels, rate, block_align, bits = fmt
    width = block_align // channels
    usable = len(payload) - len(payload) % block_align
    raw = np.frombuffer(payload[:usable], dtype=np.uint8).reshape(-1, channels, width)
    samples = _decode(raw, tag, width, bits, path)
    return samples, rate


def _parse_fmt(body: bytes, path: str | os.PathLike[str]) -> tuple[int, int, int, int, int]:
    if len(body) < 16:
        raise ValueError(f"{os.fspath(path)}: fmt chunk too short ({len(body)} bytes)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise ValueError(f"{os.fspath(path)}: WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        # The real format is the first two bytes of the SubFormat GUID.
        (tag,) = struct.unpack_from("<H", body, 24)
    if tag not in (_FORMAT_PCM, _FORMAT_FLOAT):
        raise ValueError(
            f"{os.fspath(path)}: WAV format tag 0x{tag:04x} is not supported; "
            "convert to PCM first (e.g. sox in.wav -e signed -b 16 out.wav)"
        )
    if channels < 1 or rate < 1 or block_align < channels or block_align % channels:
        raise ValueError(
            f"{os.fspath(path)}: inconsistent fmt chunk "
            f"(channels={channels}, rate={rate}, block_align={block_align})"
        )
    return tag, channels, rate, block_align, bits


def _decode(
    raw: npt.NDArray[np.uint8], tag: int, width: int, bits: int, path: str | os.PathLike[str]
) -> FloatFrames:
    """Turn (frames, channels, width) little-endian bytes into float32 samples."""
    frames, channels, _ = raw.shape
    if tag == _FORMAT_FLOAT:
        if width == 4:
            flat = raw.reshape(frames, channels * 4).copy().view("<f4")
            return flat.astype(np.float32)
        if width == 8:
            flat = raw.reshape(frames, channels * 8).copy().view("<f8")
            return flat.astype(np.float32)
        raise ValueError(f"{os.fspath(path)}: {bits}-bit float WAV is not supported")
    if width == 1:
        # 8-bit WAV is unsigned with a 128 offset; wider ones are signed.
        return ((raw[:, :, 0].astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if width in (2, 3, 4):
        # Left-align every sample in an int32 (low bytes zero) so one scale fits all widths.
        padded = np.zeros((frames, channels, 4), dtype=np.uint8)
        padded[:, :, 4 - width :] = raw
        ints = padded.reshape(frames, channels * 4).view("<i4")
        return (ints.astype(np.float64) / 2147483648.0).astype(np.float32)
    raise ValueError(f"{os.fspath(path)}: {width * 8}-bit PCM WAV is not supported")


def to_int16(samples: npt.NDArray[np.floating]) -> Int16Pcm:
    """Round float samples in [-1, 1) to int16, clipping what overshoots full scale."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def resample_to_8k(pcm: npt.NDArray[np.generic], rate: int) -> Int16Pcm:
    """Mix ``pcm`` to mono and resample it from ``rate`` to 8 kHz int16.

    ``pcm`` is 1-D (mono) or 2-D ``(frames, channels)``; integer samples are
    scaled by their type's full scale, float samples are taken as [-1, 1).
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    array = np.asarray(pcm)
    if array.ndim not in (1, 2):
        raise ValueError(f"expected 1-D or (frames, channels) audio, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        # Signed types are centred on 0; unsigned ones (8-bit WAV style) on half range.
        half = float(-int(info.min)) if info.min < 0 else (int(info.max) + 1) / 2.0
        offset = 0.0 if info.min < 0 else half
        floats = (array.astype(np.float64) - offset) / half
    elif np.issubdtype(array.dtype, np.floating):
        floats = array.astype(np.float64)
    else:
        raise ValueError(f"unsupported sample type {array.dtype}")
    mono = floats.mean(axis=1) if floats.ndim == 2 else floats
    mono32 = np.ascontiguousarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE and mono32.size:
        mono32 = np.asarray(soxr.resample(mono32, rate, SAMPLE_RATE, quality="HQ"))
    return to_int16(mono32)


def load_wav_8k(path: str | os.PathLike[str]) -> Int16Pcm:
    """Load any PCM/float WAV (8/16/24/32-bit, any channels, any rate) as 8 kHz mono int16."""
    samples, rate = read_wav(path)
    return resample_to_8k(samples, rate)


def tone(
    freqs: Sequence[float],
    seconds: float,
    *,
    level_dbfs: float = -12.0,
    rate: int = SAMPLE_RATE,
    ramp: float = 0.005,
) -> Int16Pcm:
    """Sum of equal-level sines, for ringback or a synthetic hold tune.

    ``level_dbfs`` is the RMS level of the whole tone where a full-scale sine is
    0 dBFS (the AES17 convention), so a dual tone is as loud as a single one at
    the same setting. ``ramp`` seconds of raised-cosine fade at each end avoid
    clicks when tones are chained into cadences. Raises ``ValueError`` if the
    summed peak would clip.
    """
    if not freqs:
        raise ValueError("tone needs at least one frequency")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if seconds < 0 or ramp < 0:
        raise ValueError("seconds and ramp must not be negative")
    nyquist = rate / 2
    for freq in freqs:
        if not 0 < freq < nyquist:
            raise ValueError(f"{freq} Hz is outside (0, {nyquist:g}) Hz at {rate} Hz")
    # Each of n uncorrelated sines of amplitude a adds a^2/2 of power; a full
    # scale sine has 1/2, so a = 10^(L/20) / sqrt(n) puts the sum at L dBFS.
    amplitude = 10.0 ** (level_dbfs / 20.0) / math.sqrt(len(freqs))
    if amplitude * len(freqs) > 1.0:
        raise ValueError(f"{len(freqs)} tones at {level_dbfs} dBFS would clip; lower level_dbfs")
    count = round(seconds * rate)
    t = np.arange(count, dtype=np.float64) / rate
    wave_sum = np.zeros(count, dtype=np.float64)
    for freq in freqs:
        wave_sum += amplitude * np.sin(2.0 * np.pi * freq * t)
    fade = min(round(ramp * rate), count // 2)
    if fade:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        wave_sum[:fade] *= edge
        wave_sum[count - fade :] *= edge[::-1]
    return to_int16(wave_sum)
