"""G.711 tables: known code points, quantisation bounds, law conversion, loudness."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from ccserver.media.g711 import (
    ALAW_SILENCE,
    ALAW_TO_ULAW,
    ULAW_SILENCE,
    ULAW_TO_ALAW,
    alaw_decode,
    alaw_encode,
    decoder_for,
    encoder_for,
    rms_dbov,
    silence,
    ulaw_decode,
    ulaw_encode,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


Encode = Callable[[npt.ArrayLike], bytes]
Decode = Callable[[bytes], npt.NDArray[np.int16]]
CODECS: list[tuple[Encode, Decode]] = [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]


def samples(*values: int) -> npt.NDArray[np.int16]:
    return np.array(values, dtype=np.int16)


def sine(frequency: float, amplitude: float, count: int = 8000) -> npt.NDArray[np.int16]:
    t = np.arange(count) / 8000.0
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t + 0.3)).astype(np.int16)


def test_ulaw_known_code_points() -> None:
    # Zero is the all-ones code; full scale is 0x80 / 0x00 (G.711 Table 2a).
    assert ulaw_encode(samples(0, 32767, -32768, -1, 1)) == bytes([0xFF, 0x80, 0x00, 0x7F, 0xFF])
    assert ULAW_SILENCE == 0xFF
    decoded = ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF0, 0x70, 0xBF, 0x8F]))
    assert decoded.tolist() == [0, 0, 32124, -32124, 120, -120, 1980, 16764]


def test_alaw_known_code_points() -> None:
    # Even bits inverted: zero is 0xD5 / 0x55, full scale 0xAA / 0x2A (G.711 Table 1a).
    assert alaw_encode(samples(0, -1, 32767, -32768)) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert ALAW_SILENCE == 0xD5
    decoded = alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A, 0xC5, 0x45]))
    assert decoded.tolist() == [8, -8, 32256, -32256, 264, -264]


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_round_trip_within_quantisation_error(encode: Encode, decode: Decode) -> None:
    decoded = decode(encode(ALL_SAMPLES)).astype(np.int64)
    error = np.abs(decoded - ALL_SAMPLES.astype(np.int64))
    # Half a step of the top segment (step 1024 for both laws), or the clip at
    # full scale (32767 - 32124 for µ-law).
    assert int(error.max()) <= 644
    # A logarithmic law: relative error about half a step of 1/16 of a
    # segment (at most 3.34 %, µ-law just below a segment boundary).
    magnitude = np.abs(ALL_SAMPLES.astype(np.int64))
    loud = magnitude > 1024
    assert float((error[loud] / magnitude[loud]).max()) < 0.034
    # Quiet samples are quantised finely (step 8 for µ-law, 16 for A-law).
    quiet = magnitude < 64
    assert int(error[quiet].max()) <= 8


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_codes_are_fixed_points(encode: Encode, decode: Decode) -> None:
    # Decoding then encoding any code gives it back (apart from µ-law's -0).
    codes = encode(decode(ALL_CODES))
    differing = [c for c, d in zip(ALL_CODES, codes, strict=True) if c != d]
    assert differing in ([], [0x7F])


def test_encoders_are_monotonic() -> None:
    for encode, decode in CODECS:
        levels = decode(encode(ALL_SAMPLES)).astype(np.int64)
        assert bool(np.all(np.diff(levels) >= 0))
        assert len(np.unique(levels)) in (255, 256)  # µ-law has +0 and -0


def test_law_conversion_tables() -> None:
    assert len(ALAW_TO_ULAW) == len(ULAW_TO_ALAW) == 256
    assert ALAW_TO_ULAW == ulaw_encode(alaw_decode(ALL_CODES))
    assert ULAW_TO_ALAW == alaw_encode(ulaw_decode(ALL_CODES))
    assert bytes([ALAW_SILENCE]).translate(ALAW_TO_ULAW) == b"\xfe"  # A-law has no zero: +8
    assert bytes([ULAW_SILENCE]).translate(ULAW_TO_ALAW) == bytes([ALAW_SILENCE])
    # A -> µ -> A changes each level by at most one A-law step.
    original = alaw_decode(ALL_CODES).astype(np.int64)
    back = alaw_decode(ALL_CODES.translate(ALAW_TO_ULAW).translate(ULAW_TO_ALAW)).astype(np.int64)
    steps = np.maximum(16, np.abs(original) // 16)
    assert bool(np.all(np.abs(back - original) <= steps))


def test_translate_keeps_signal_level() -> None:
    tone = sine(1000, 10000)
    via_alaw = ulaw_decode(alaw_encode(tone).translate(ALAW_TO_ULAW))
    assert rms_dbov(via_alaw) == pytest.approx(rms_dbov(tone), abs=0.1)


def test_codec_lookup() -> None:
    assert encoder_for("PCMU") is ulaw_encode
    assert encoder_for("pcma") is alaw_encode
    assert decoder_for("PCMA") is alaw_decode
    assert silence("PCMU", 3) == b"\xff\xff\xff"
    assert silence("PCMA", 2) == b"\xd5\xd5"
    with pytest.raises(ValueError, match="unsupported codec 'G729'"):
        encoder_for("G729")


def test_encode_accepts_wider_integers_and_clips() -> None:
    assert ulaw_encode(np.array([0, 40000, -40000], dtype=np.int32)) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode([0, 1, 2]) == alaw_encode(samples(0, 1, 2))
    with pytest.raises(ValueError, match="integer PCM"):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    assert ulaw_encode(np.zeros((2, 3), dtype=np.int16)) == b"\xff" * 6


def test_decode_types() -> None:
    pcm = ulaw_decode(b"\x00\xff")
    assert pcm.dtype == np.int16
    assert pcm.shape == (2,)
    assert len(alaw_decode(b"")) == 0


def test_rms_dbov() -> None:
    assert rms_dbov(sine(1000, 32767)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbov(sine(1000, 32767 / 10)) == pytest.approx(-23.01, abs=0.01)
    assert rms_dbov(np.full(160, -32768, dtype=np.int16)) == pytest.approx(0.0)
    assert rms_dbov(np.zeros(160, dtype=np.int16)) == -120.0
    assert rms_dbov(np.zeros(0, dtype=np.int16)) == -120.0
    assert rms_dbov(samples(1)) == pytest.approx(-90.3, abs=0.1)
    # What the platform's tests do: prove audio survived a G.711 leg.
    assert rms_dbov(ulaw_decode(ulaw_encode(sine(440, 8000)))) == pytest.approx(
        rms_dbov(sine(440, 8000)), abs=0.1
    )
    assert rms_dbov(alaw_decode(silence("PCMA", 160))) < -70
