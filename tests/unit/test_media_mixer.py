"""The sans-IO mixer: who hears whom, laws, silence for late frames, bounded buffers."""

from __future__ import annotations

import numpy as np
import pytest

from ccserver.media.g711 import decoder_for, encoder_for
from ccserver.media.mixer import SAMPLES, Mixer

RATE = 8000


def tone(freq: float, frames: int, amplitude: float = 8000.0, start: int = 0) -> np.ndarray:
    n = np.arange(start, start + frames * SAMPLES)
    return (amplitude * np.sin(2 * np.pi * freq * n / RATE)).astype(np.int16)


def goertzel(pcm: np.ndarray, freq: float) -> float:
    """Amplitude of `freq` in `pcm` (Goertzel, RATE samples/s), same scale as the samples."""
    x = pcm.astype(np.float64)
    k = 2 * np.cos(2 * np.pi * freq / RATE)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    return float(2 * np.sqrt(max(power, 0.0)) / len(x))


def run(
    mixer: Mixer, sources: dict[str, tuple[np.ndarray, str]], frames: int
) -> dict[str, np.ndarray]:
    """Feed every source one frame per tick in its law; decode what each one is sent."""
    got: dict[str, list[np.ndarray]] = {name: [] for name in mixer.participants}
    for i in range(frames):
        for name, (pcm, codec) in sources.items():
            chunk = pcm[i * SAMPLES : (i + 1) * SAMPLES]
            mixer.feed(name, encoder_for(codec)(chunk))
        for name, payload in mixer.tick().items():
            assert len(payload) == SAMPLES
            got[name].append(decoder_for(mixer.participants[name].codec)(payload))
    return {name: np.concatenate(chunks) for name, chunks in got.items()}


FREQS = {"caller": 500.0, "agent": 900.0, "supervisor": 1300.0}
LAWS = {"caller": "PCMA", "agent": "PCMU", "supervisor": "PCMA"}


def three(hears: dict[str, set[str]]) -> dict[str, np.ndarray]:
    mixer = Mixer()
    for name in FREQS:
        mixer.add(name, LAWS[name], hears[name])
    sources = {name: (tone(f, 50), LAWS[name]) for name, f in FREQS.items()}
    return run(mixer, sources, 50)


def heard(out: dict[str, np.ndarray], who: str) -> set[str]:
    levels = {name: goertzel(out[who], f) for name, f in FREQS.items()}
    assert all(v < 300 or v > 5000 for v in levels.values()), levels  # clearly one or other
    return {name for name, v in levels.items() if v > 5000}


def test_everyone_hears_the_other_two_and_never_itself() -> None:
    everyone = set(FREQS)
    out = three({name: everyone for name in FREQS})
    for name in FREQS:
        assert heard(out, name) == everyone - {name}


def test_listen_whisper_barge_hearing() -> None:
    listen = {"caller": {"agent"}, "agent": {"caller"}, "supervisor": {"caller", "agent"}}
    out = three(listen)
    assert heard(out, "caller") == {"agent"}
    assert heard(out, "agent") == {"caller"}
    assert heard(out, "supervisor") == {"caller", "agent"}
    whisper = {**listen, "agent": {"caller", "supervisor"}}
    out = three(whisper)
    assert heard(out, "caller") == {"agent"}
    assert heard(out, "agent") == {"caller", "supervisor"}


def test_sum_is_clipped_not_wrapped() -> None:
    mixer = Mixer()
    for name in ("a", "b", "c"):
        mixer.add(name, "PCMU", {"a", "b", "c"})
    loud = np.full(SAMPLES, 30000, dtype=np.int16)
    for name in ("a", "b"):
        mixer.feed(name, encoder_for("PCMU")(loud))
    out = decoder_for("PCMU")(mixer.tick()["c"])
    assert out.min() > 30000  # 60,000 clipped to full scale, not wrapped negative


def test_missing_frames_are_silence_and_the_stream_keeps_going() -> None:
    mixer = Mixer()
    mixer.add("a", "PCMA", {"b"})
    mixer.add("b", "PCMA", {"a"})
    mixer.add("c", "PCMA", {"a", "b"})
    frames = mixer.tick()  # nobody sent anything yet
    assert set(frames) == {"a", "b", "c"}
    assert all(f == b"\xd5" * SAMPLES for f in frames.values())  # A-law silence
    # A 30 ms packet is spread over the ticks; a late one only delays.
    mixer.feed("a", encoder_for("PCMA")(np.full(240, 4000, np.int16)))
    first = decoder_for("PCMA")(mixer.tick()["b"])
    second = decoder_for("PCMA")(mixer.tick()["b"])
    assert np.all(first > 3000) and np.all(second[:80] > 3000) and np.all(np.abs(second[80:]) < 10)


def test_buffers_never_grow_past_their_bound() -> None:
    mixer = Mixer(max_buffered=4 * SAMPLES)
    mixer.add("fast", "PCMU", ())
    mixer.add("ear", "PCMU", {"fast"})
    for i in range(200):  # a peer sending 3 packets per tick
        for _ in range(3):
            mixer.feed("fast", encoder_for("PCMU")(tone(440, 1, start=i)))
        mixer.tick()
        assert mixer.participants["fast"].fill <= 4 * SAMPLES
    assert mixer.participants["fast"].dropped > 0
    big = np.ones(10 * SAMPLES, dtype=np.int16)
    mixer.feed_pcm("fast", big)
    assert mixer.participants["fast"].fill == 4 * SAMPLES


def test_removed_participant_is_heard_by_nobody() -> None:
    mixer = Mixer()
    for name in ("a", "b", "c"):
        mixer.add(name, "PCMU", {"a", "b", "c"})
    mixer.remove("c")
    assert mixer.hearing() == {"a": frozenset({"b"}), "b": frozenset({"a"})}
    mixer.feed("c", b"\x00" * SAMPLES)  # a late packet from a leg that left: ignored
    assert set(mixer.tick()) == {"a", "b"}


def test_unknown_law_and_tiny_buffer_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported codec"):
        Mixer().add("a", "G729")
    with pytest.raises(ValueError, match="smaller than one frame"):
        Mixer(max_buffered=10)


def test_four_parties_where_one_hears_only_some() -> None:
    """A conference with a listening supervisor: the third party hears caller and agent,
    the supervisor everyone, nobody hears the supervisor."""
    freqs = {"caller": 500.0, "agent": 900.0, "third": 1700.0, "supervisor": 1300.0}
    talkers = {"caller", "agent", "third"}
    mixer = Mixer()
    for name in freqs:
        mixer.add(name, "PCMU", talkers)  # itself left out by the mixer
    out = run(mixer, {n: (tone(f, 50), "PCMU") for n, f in freqs.items()}, 50)
    for name in freqs:
        levels = {other: goertzel(out[name], f) for other, f in freqs.items()}
        got = {other for other, v in levels.items() if v > 5000}
        assert all(v < 300 or v > 5000 for v in levels.values()), (name, levels)
        assert got == talkers - {name}, (name, levels)
