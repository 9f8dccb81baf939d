"""In-band DTMF on G.711 payloads in batches: the same keys as the detector fed packet by
packet, quiet audio never decoded, a law change mid-stream followed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ccserver.media.g711 import encoder_for
from ivr.inband import HIGH_GROUP, KEYS, LOW_GROUP, G711InbandDtmf, InbandDtmfDetector

RATE = 8000
ALL_KEYS = "123A456B789C*0#D"


def amplitude(dbm0: float) -> float:
    return float(32768.0 * 10.0 ** ((dbm0 - 3.17) / 20.0))


def key_tone(key: str, ms: float, level_dbm0: float) -> npt.NDArray[np.float64]:
    row = next(i for i, keys in enumerate(KEYS) if key in keys)
    col = KEYS[row].index(key)
    t = np.arange(round(ms * RATE / 1000)) / RATE
    a = amplitude(level_dbm0)
    return a * np.sin(2 * np.pi * LOW_GROUP[row] * t) + a * np.sin(
        2 * np.pi * HIGH_GROUP[col] * t + 1.0
    )


def wire(signal: npt.NDArray[np.float64], codec: str) -> bytes:
    pcm = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
    return encoder_for(codec)(pcm)


def mixed_signal(seed: int) -> npt.NDArray[np.float64]:
    """Keys at levels around the minimum, between silence, faint and loud noise."""
    rng = np.random.default_rng(seed)
    parts: list[npt.NDArray[np.float64]] = []
    for _ in range(40):
        kind = rng.integers(4)
        ms = float(rng.uniform(10, 300))
        n = round(ms * RATE / 1000)
        if kind == 0:
            parts.append(np.zeros(n))
        elif kind == 1:  # line noise, from far below to just around the quiet limit
            parts.append(rng.normal(0.0, float(rng.uniform(5, 600)), n))
        elif kind == 2:  # speech-like: loud, broadband
            parts.append(rng.normal(0.0, 4000.0, n) * np.sin(np.arange(n) / 300.0))
        else:
            key = ALL_KEYS[int(rng.integers(16))]
            level = float(rng.uniform(-36.0, -3.0))
            parts.append(key_tone(key, float(rng.uniform(25, 120)), level))
    return np.concatenate(parts)


def per_packet(data: bytes, codec: str, **kw: object) -> list[str]:
    """The reference: decode every 20 ms packet and feed the detector, as before."""
    from ccserver.media.g711 import decoder_for

    detector = InbandDtmfDetector(**kw)  # type: ignore[arg-type]
    found: list[str] = []
    for start in range(0, len(data), 160):
        found += detector.feed(decoder_for(codec)(data[start : start + 160]))
    return found


def batched(data: bytes, codec: str, batch_ms: float = 80.0, **kw: object) -> list[str]:
    tap = G711InbandDtmf(InbandDtmfDetector(**kw), batch_ms=batch_ms)  # type: ignore[arg-type]
    found: list[str] = []
    for start in range(0, len(data), 160):
        found += tap.feed(data[start : start + 160], codec)
    return found + tap.flush()


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("hits", [1, 2])
def test_batches_find_the_keys_packets_find(codec: str, seed: int, hits: int) -> None:
    data = wire(mixed_signal(seed), codec)
    expected = per_packet(data, codec, hits_to_start=hits)
    assert expected  # the signal does hold keys
    assert batched(data, codec, hits_to_start=hits) == expected
    assert batched(data, codec, batch_ms=20.0, hits_to_start=hits) == expected
    assert batched(data, codec, batch_ms=200.0, hits_to_start=hits) == expected


def test_every_key_at_the_lowest_accepted_level() -> None:
    signal = np.concatenate(
        [np.concatenate([key_tone(k, 50, -28.0), np.zeros(400)]) for k in ALL_KEYS]
    )
    assert "".join(batched(wire(signal, "PCMA"), "PCMA")) == ALL_KEYS


def test_a_key_is_reported_within_one_batch_of_its_packet() -> None:
    tap = G711InbandDtmf(batch_ms=80.0)
    data = wire(np.concatenate([np.zeros(800), key_tone("7", 100, -10.0)]), "PCMU")
    reference = InbandDtmfDetector()
    from ccserver.media.g711 import ulaw_decode

    for i, start in enumerate(range(0, len(data), 160)):
        packet = data[start : start + 160]
        if reference.feed(ulaw_decode(packet)):
            heard_at = i
        if tap.feed(packet, "PCMU"):
            reported_at = i
    assert 0 <= reported_at - heard_at <= 4


class CountingDetector(InbandDtmfDetector):
    """Notes how many blocks reach the analysis."""

    analysed: list[int]

    def feed_blocks(self, blocks: npt.NDArray[np.float64]) -> list[str]:
        self.analysed.append(len(blocks))
        return super().feed_blocks(blocks)


def test_quiet_audio_is_not_analysed() -> None:
    detector = CountingDetector()
    detector.analysed = []
    analysed = detector.analysed
    tap = G711InbandDtmf(detector)
    rng = np.random.default_rng(7)
    noise = wire(rng.normal(0.0, 60.0, RATE * 2), "PCMU")  # about -50 dBm0 line noise
    for start in range(0, len(noise), 160):
        assert tap.feed(noise[start : start + 160], "PCMU") == []
    assert analysed == []
    assert tap.feed(wire(key_tone("5", 120, -10.0), "PCMU"), "PCMU") == ["5"]
    assert analysed


def test_a_law_change_mid_stream_is_followed() -> None:
    signal = np.concatenate([np.zeros(300), key_tone("3", 60, -12.0), np.zeros(500)])
    first, second = wire(signal, "PCMU"), wire(signal, "PCMA")
    tap = G711InbandDtmf()
    found = tap.feed(first[:1010], "PCMU") + tap.feed(first[1010:], "PCMU")
    found += tap.feed(second[:130], "PCMA") + tap.feed(second[130:], "PCMA") + tap.flush()
    assert found == ["3", "3"]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="8000"):
        G711InbandDtmf(InbandDtmfDetector(rate=16000))
    with pytest.raises(ValueError, match="unsupported codec"):
        G711InbandDtmf().feed(b"\xff" * 160, "G722")
    detector = InbandDtmfDetector()
    detector.feed(np.zeros(50, dtype=np.int16))
    with pytest.raises(ValueError, match="carried"):
        detector.feed_blocks(np.zeros((1, detector.block)))
    with pytest.raises(ValueError, match="carried"):
        detector.skip_quiet_blocks(1)
