"""G.711 µ-law and A-law (ITU-T G.711) through lookup tables.

The tables are computed once at import with the segment/mantissa rules of
G.711 on 16-bit samples (µ-law uses the top 14 bits, A-law the top 13), so
encoding a frame is one numpy gather and law conversion one `bytes.translate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ALAW_TO_ULAW",
    "ULAW_SILENCE",
    "ULAW_TO_ALAW",
    "Pcm",
    "alaw_decode",
    "alaw_encode",
    "decoder_for",
    "encoder_for",
    "rms_dbov",
    "silence",
    "ulaw_decode",
    "ulaw_encode",
]

Pcm = npt.NDArray[np.int16]

#: The code for a zero sample: what a silent frame is filled with.
ULAW_SILENCE: int = 0xFF
ALAW_SILENCE: int = 0xD5


def _magnitudes() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Every int16 value in uint16 order, as (magnitude, is_negative).

    Negative samples use the one's complement (-x - 1), as G.711 does, so
    the decision thresholds are symmetric around -0.5 and -32768 needs no clip.
    """
    x = np.arange(65536, dtype=np.int64)
    x[x >= 32768] -= 65536
    negative = x < 0
    return np.where(negative, ~x, x), negative


def _segments(value: npt.NDArray[np.int64], first_bit: int) -> npt.NDArray[np.int64]:
    """The segment (exponent) number: how many doublings above the first segment."""
    segment = np.zeros_like(value)
    for bit in range(first_bit, first_bit + 7):
        segment += value >= (1 << bit)
    return segment


def _build_ulaw() -> tuple[npt.NDArray[np.uint8], Pcm]:
    magnitude, negative = _magnitudes()
    # G.711 µ-law on 14-bit magnitudes: add the bias 33 so that segment k
    # starts at 33 * 2^k, clip to the 13-bit range, then the segment is the
    # position of the leading one and the mantissa the 4 bits below it.
    biased = np.minimum((magnitude >> 2) + 33, 0x1FFF)
    segment = _segments(biased, 6)
    mantissa = (biased >> (segment + 1)) & 0x0F
    # Codes are transmitted inverted, with the sign bit set for positive values.
    code = 0xFF ^ ((segment << 4) | mantissa) ^ np.where(negative, 0x80, 0)
    encode = code.astype(np.uint8)

    codes = np.arange(256, dtype=np.int64)
    inverted = codes ^ 0xFF
    segment = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    # Decision value in the middle of the quantisation interval, bias removed,
    # back to the 16-bit scale.
    level = ((((mantissa << 1) + 33) << segment) - 33) << 2
    decode = np.where(inverted & 0x80, -level, level).astype(np.int16)
    return encode, decode


def _build_alaw() -> tuple[npt.NDArray[np.uint8], Pcm]:
    magnitude, negative = _magnitudes()
    # G.711 A-law on 12-bit magnitudes: segment 0 and 1 are linear (16 steps
    # of 1), segments 2..7 double the step each time.
    value = magnitude >> 4
    segment = _segments(value, 5)
    segment = np.where(value >= 16, segment + 1, 0)
    mantissa = np.where(segment > 1, value >> np.maximum(segment - 1, 0), value) & 0x0F
    # Sign bit set for positive values, then even bits inverted (XOR 0x55).
    code = ((segment << 4) | mantissa | np.where(negative, 0, 0x80)) ^ 0x55
    encode = code.astype(np.uint8)

    codes = np.arange(256, dtype=np.int64) ^ 0x55
    segment = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    # Middle of the interval, on the 12-bit scale with one extra bit of
    # resolution, then back to 16 bits.
    step_units = np.where(segment > 0, mantissa + 16, mantissa)
    level = ((step_units << 1) + 1) << np.maximum(segment - 1, 0) << 3
    decode = np.where(codes & 0x80, level, -level).astype(np.int16)
    return encode, decode


_ULAW_ENCODE, _ULAW_DECODE = _build_ulaw()
_ALAW_ENCODE, _ALAW_DECODE = _build_alaw()

#: Law conversion as `bytes.translate` tables: decode with one law, encode with the other.
ALAW_TO_ULAW: bytes = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tobytes()
ULAW_TO_ALAW: bytes = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tobytes()


def _as_int16(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    array = np.asarray(pcm)
    if array.dtype != np.int16:
        if array.dtype.kind not in "iu":
            raise ValueError(f"G.711 encodes integer PCM samples, got dtype {array.dtype}")
        array = np.clip(array, -32768, 32767).astype(np.int16)
    return array.reshape(-1).view(np.uint16)


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit linear samples to µ-law bytes (other integer dtypes are clipped)."""
    return _ULAW_ENCODE[_as_int16(pcm)].tobytes()


def ulaw_decode(data: bytes) -> Pcm:
    """µ-law bytes to 16-bit linear samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit linear samples to A-law bytes (other integer dtypes are clipped)."""
    return _ALAW_ENCODE[_as_int16(pcm)].tobytes()


def alaw_decode(data: bytes) -> Pcm:
    """A-law bytes to 16-bit linear samples."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


_ENCODERS: dict[str, Callable[[npt.ArrayLike], bytes]] = {
    "PCMU": ulaw_encode,
    "PCMA": alaw_encode,
}
_DECODERS: dict[str, Callable[[bytes], Pcm]] = {"PCMU": ulaw_decode, "PCMA": alaw_decode}
_SILENCE = {"PCMU": ULAW_SILENCE, "PCMA": ALAW_SILENCE}


def _codec_key(codec: str) -> str:
    key = codec.upper()
    if key not in _ENCODERS:
        raise ValueError(f"unsupported codec {codec!r}: expected PCMU or PCMA")
    return key


def encoder_for(codec: str) -> Callable[[npt.ArrayLike], bytes]:
    """The encoder for an SDP encoding name (RFC 3551 §6: PCMU, PCMA)."""
    return _ENCODERS[_codec_key(codec)]


def decoder_for(codec: str) -> Callable[[bytes], Pcm]:
    """The decoder for an SDP encoding name (RFC 3551 §6: PCMU, PCMA)."""
    return _DECODERS[_codec_key(codec)]


def silence(codec: str, samples: int) -> bytes:
    """A payload of ``samples`` zero samples in the given law."""
    return bytes((_SILENCE[_codec_key(codec)],)) * samples


_SILENCE_DBOV = -120.0


def rms_dbov(pcm: npt.ArrayLike) -> float:
    """Loudness in dB relative to digital full scale: a full-scale square wave
    is 0 dBov and a full-scale sine -3.01 dBov (ITU-T G.100.1). Silence and
    empty input give -120.0 rather than -inf, so results compare and format."""
    samples = np.asarray(pcm, dtype=np.float64).reshape(-1)
    if samples.size == 0:
        return _SILENCE_DBOV
    mean_square = float(np.dot(samples, samples)) / samples.size
    if mean_square <= 0.0:
        return _SILENCE_DBOV
    return max(_SILENCE_DBOV, 10.0 * math.log10(mean_square / (32768.0 * 32768.0)))
