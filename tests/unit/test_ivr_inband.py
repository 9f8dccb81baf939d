"""In-band DTMF: Q.23 key tones made with numpy at the levels, twists, timings and
impairments Q.24 names, and audio that must yield no key at all (speech rendered by
espeak-ng, a real recorded call, music on hold, call-progress tones)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ccserver.media.g711 import decoder_for, encoder_for
from ivr.audio import tone
from ivr.inband import HIGH_GROUP, KEYS, LOW_GROUP, InbandDtmfDetector
from ivr.tts import PromptRenderer

RATE = 8000
ALL_KEYS = "123A456B789C*0#D"
FULL_SCALE_SINE_DBM0 = 3.17  # G.711 µ-law
G711_CAPTURE = Path("/usr/share/sip-tester/g711a.pcap")

Signal = npt.NDArray[np.float64]


def amplitude(dbm0: float) -> float:
    return float(32768.0 * 10.0 ** ((dbm0 - FULL_SCALE_SINE_DBM0) / 20.0))


def key_tone(
    key: str,
    ms: float,
    *,
    level_dbm0: float = -10.0,
    twist_db: float = 0.0,
    shift: Callable[[float], float] = lambda f: f,
    rate: int = RATE,
) -> Signal:
    """One key: the low tone at ``level_dbm0``, the high one ``twist_db`` above it."""
    row = next(i for i, keys in enumerate(KEYS) if key in keys)
    col = KEYS[row].index(key)
    t = np.arange(round(ms * rate / 1000)) / rate
    low = amplitude(level_dbm0) * np.sin(2 * np.pi * shift(LOW_GROUP[row]) * t)
    high = amplitude(level_dbm0 + twist_db) * np.sin(2 * np.pi * shift(HIGH_GROUP[col]) * t + 1.0)
    return low + high


def silence(ms: float, rate: int = RATE) -> Signal:
    return np.zeros(round(ms * rate / 1000))


def keys_signal(keys: str, on_ms: float = 50, off_ms: float = 50, **kw: object) -> Signal:
    parts = [silence(off_ms)]
    for key in keys:
        parts += [key_tone(key, on_ms, **kw), silence(off_ms)]  # type: ignore[arg-type]
    return np.concatenate(parts)


def pcm16(signal: npt.ArrayLike) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(np.asarray(signal, dtype=np.float64)), -32768, 32767).astype(np.int16)


def g711(signal: npt.ArrayLike, codec: str) -> npt.NDArray[np.int16]:
    """Through the wire: encode and decode as the RTP path does."""
    return decoder_for(codec)(encoder_for(codec)(pcm16(signal)))


def detect(signal: npt.ArrayLike, chunk: int = 160, **kw: object) -> str:
    """Feed ``signal`` as 20 ms packets (or ``chunk`` samples); the keys found."""
    detector = InbandDtmfDetector(**kw)  # type: ignore[arg-type]
    pcm = pcm16(signal)
    found: list[str] = []
    for start in range(0, len(pcm), chunk):
        found += detector.feed(pcm[start : start + chunk])
    return "".join(found)


def white_noise(count: int, power: float, seed: int) -> Signal:
    return np.random.default_rng(seed).normal(0.0, np.sqrt(power), count)


# -- keys that must be found -------------------------------------------------------


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("level", [-3.0, -10.0, -20.0, -28.0])
def test_every_key_at_every_level_through_g711(codec: str, level: float) -> None:
    assert detect(g711(keys_signal(ALL_KEYS, level_dbm0=level), codec)) == ALL_KEYS


def test_keys_below_the_minimum_level_are_ignored() -> None:
    assert detect(keys_signal(ALL_KEYS, level_dbm0=-40.0)) == ""
    assert detect(keys_signal(ALL_KEYS, level_dbm0=-20.0), min_level_dbm0=-15.0) == ""


@pytest.mark.parametrize("twist", [-8.0, -4.0, 2.0, 4.0])
def test_twist_within_q24_limits_is_accepted(twist: float) -> None:
    """Q.24: the high tone up to 8 dB below the low one (normal), 4 dB above (reverse)."""
    signal = keys_signal(ALL_KEYS * 2, level_dbm0=-12.0, twist_db=twist)
    assert detect(g711(signal, "PCMU")) == ALL_KEYS * 2


@pytest.mark.parametrize("twist", [-14.0, 10.0])
def test_twist_far_beyond_the_limits_is_rejected(twist: float) -> None:
    assert detect(keys_signal(ALL_KEYS, level_dbm0=-10.0, twist_db=twist)) == ""


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_frequency_tolerance(sign: float) -> None:
    """Q.24: operate within 1.5 % + 2 Hz; do not operate 3.5 % off."""
    accepted = keys_signal(ALL_KEYS, shift=lambda f: f * (1 + sign * 0.015) + sign * 2.0)
    rejected = keys_signal(ALL_KEYS, shift=lambda f: f * (1 + sign * 0.035))
    assert detect(accepted) == ALL_KEYS
    assert detect(rejected) == ""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_keys_in_white_noise(seed: int) -> None:
    """Noise 12 dB below the key's power, spread over the whole 4 kHz band."""
    level = -15.0
    signal = keys_signal(ALL_KEYS * 2, level_dbm0=level)
    key_power = 2 * amplitude(level) ** 2 / 2
    noisy = signal + white_noise(len(signal), key_power / 10 ** (12 / 10), seed)
    assert detect(g711(noisy, "PCMA")) == ALL_KEYS * 2


# -- timing: Q.24's durations and pauses ----------------------------------------------

ALIGNMENTS = range(0, 105, 3)  # where the key starts within the detector's 105-sample blocks


@pytest.mark.parametrize("offset", ALIGNMENTS)
def test_a_40ms_key_is_always_found_and_a_20ms_burst_never(offset: int) -> None:
    lead = np.zeros(offset)
    assert detect(np.concatenate([lead, key_tone("5", 40), silence(100)])) == "5"
    assert detect(np.concatenate([lead, key_tone("5", 20), silence(100)])) == ""


@pytest.mark.parametrize("offset", ALIGNMENTS)
def test_a_40ms_pause_separates_presses_and_a_10ms_dropout_does_not(offset: int) -> None:
    lead = np.zeros(offset)
    press = key_tone("5", 60)
    two = np.concatenate([lead, press, silence(40), press, silence(60)])
    one = np.concatenate([lead, press, silence(10), press, silence(60)])
    assert detect(two) == "55"
    assert detect(one) == "5"


def test_a_held_key_counts_once() -> None:
    assert detect(np.concatenate([key_tone("#", 3000), silence(100)])) == "#"


def test_a_fast_sequence_with_short_gaps() -> None:
    keys = "1111" + ALL_KEYS + "0000"
    assert detect(g711(keys_signal(keys, on_ms=40, off_ms=40), "PCMU")) == keys


def test_a_different_key_without_a_pause_is_a_new_press() -> None:
    signal = np.concatenate([key_tone("1", 80), key_tone("2", 80), silence(60)])
    assert detect(signal) == "12"


@pytest.mark.parametrize("chunk", [1, 7, 104, 105, 160, 240, 1000, 100_000])
def test_chunk_size_does_not_matter(chunk: int) -> None:
    """20 ms, 30 ms or odd packetisation: the same keys (blocks span chunks)."""
    keys = "159#0*D"
    assert detect(keys_signal(keys, on_ms=45, off_ms=45), chunk=chunk) == keys


def test_reset_forgets_a_press_in_progress() -> None:
    detector = InbandDtmfDetector()
    press = pcm16(key_tone("7", 100))
    assert detector.feed(press) == ["7"]
    assert detector.feed(press) == []  # still the same press
    detector.reset()
    assert detector.feed(press) == ["7"]


def test_other_sample_rates() -> None:
    signal = np.concatenate(
        [np.concatenate([key_tone(k, 50, rate=16000), silence(50, 16000)]) for k in ALL_KEYS]
    )
    assert detect(signal, chunk=320, rate=16000) == ALL_KEYS


def test_bad_input_is_refused() -> None:
    detector = InbandDtmfDetector()
    with pytest.raises(ValueError, match="1-D"):
        detector.feed(np.zeros((2, 160), dtype=np.int16))
    with pytest.raises(ValueError, match="integer"):
        detector.feed(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="7000"):
        InbandDtmfDetector(rate=4000)
    with pytest.raises(ValueError, match="min_tone_fraction"):
        InbandDtmfDetector(min_tone_fraction=0.0)


# -- audio that must yield nothing ------------------------------------------------------


def test_single_tones_are_not_keys() -> None:
    singles = [tone([f], 0.5, level_dbfs=-6.0) for f in (*LOW_GROUP, *HIGH_GROUP, 1000.0)]
    assert detect(g711(np.concatenate(singles), "PCMU"), hits_to_start=1) == ""


def test_call_progress_tones_and_music_on_hold_are_not_keys() -> None:
    progress = [
        tone([350, 440], 2.0),  # dial tone
        tone([440, 480], 2.0),  # ringback
        tone([480, 620], 2.0),  # busy
    ]
    # The platform's built-in hold tune (ccserver.app.hold_music): dyads up to 784 Hz.
    chords = [(523.25, 659.25), (587.33, 739.99), (659.25, 783.99), (587.33, 739.99)]
    hold = [tone(chord, 0.45, level_dbfs=-18.0) for chord in chords] * 10
    signal = np.concatenate(progress + hold)
    for codec in ("PCMU", "PCMA"):
        assert detect(g711(signal, codec), hits_to_start=1) == ""


def test_a_key_with_a_strong_second_harmonic_is_not_a_key() -> None:
    """Two pure tones are a key; a tone with overtones is an instrument or a voice."""
    t = np.arange(RATE) / RATE
    key = key_tone("5", 1000, level_dbm0=-12.0)
    overtone = amplitude(-18.0) * np.sin(2 * np.pi * 2 * HIGH_GROUP[1] * t)
    faint = amplitude(-35.0) * np.sin(2 * np.pi * 2 * HIGH_GROUP[1] * t)
    assert detect(key + overtone) == ""
    assert detect(key + faint) == "5"


SENTENCES = {
    "en": [
        "Welcome to Demo Bank. For card services, press one.",
        "Your call is important to us, please stay on the line.",
        "I would like to check the balance of my savings account.",
        "My card was stolen yesterday evening near the station.",
        "Could you please repeat the opening hours of the branch?",
        "Thank you for calling, and have a wonderful day.",
        "The quick brown fox jumps over the lazy dog.",
        "Seven, eight, nine, zero, star and the pound key.",
        "Please hold while we transfer you to the next available agent.",
        "We have received your payment of one hundred and twenty dollars.",
    ],
    "ko": [
        "데모 은행에 오신 것을 환영합니다",
        "카드 분실 신고는 일번을 눌러 주세요",
        "잠시만 기다려 주시면 상담원을 연결해 드리겠습니다",
        "계좌 잔액을 확인하고 싶습니다",
        "영업 시간은 오전 아홉시부터 오후 네시까지입니다",
        "비밀번호를 다시 입력해 주세요",
        "고객님의 소중한 의견에 감사드립니다",
        "대출 상담을 원하시면 이번을 누르세요",
        "하나 둘 셋 넷 다섯 여섯 일곱 여덟 아홉 열",
    ],
    "cmn": [
        "欢迎致电演示银行",
        "挂失银行卡请按一",
        "请稍候，我们正在为您转接人工客服",
        "我想查询一下我的账户余额",
        "营业时间是上午九点到下午五点",
        "感谢您的来电，祝您生活愉快",
        "请重新输入您的密码",
        "一二三四五六七八九十",
    ],
}


@pytest.fixture(scope="session")
async def speech(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[np.ndarray]]:
    """Rendered sentences (English, American English, Korean, Mandarin) at two speaking rates."""
    pieces: list[np.ndarray] = []
    for rate in (140, 200):
        renderer = PromptRenderer(tmp_path_factory.mktemp(f"tts-{rate}"), rate=rate)
        try:
            for voice, texts in [("en", SENTENCES["en"]), ("en-us", SENTENCES["en"])] + [
                (v, SENTENCES[v]) for v in ("ko", "cmn")
            ]:
                for text in texts:
                    pieces.append((await renderer.render(text, voice)).pcm)
        finally:
            await renderer.close()
    yield pieces


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("gain_db", [0.0, 9.0])
def test_minutes_of_speech_yield_no_key(
    speech: list[np.ndarray], codec: str, gain_db: float
) -> None:
    """The false-positive check: not one key, not even one block taken for a key."""
    signal = np.concatenate(speech) * 10 ** (gain_db / 20)
    assert len(signal) / RATE > 120.0  # a couple of minutes
    wire = g711(signal, codec)
    assert detect(wire) == ""
    assert detect(wire, hits_to_start=1) == ""


def test_keys_between_sentences_are_found(speech: list[np.ndarray]) -> None:
    keys = "4#1*90"
    parts: list[np.ndarray] = []
    for i, key in enumerate(keys):
        parts += [speech[i * 5], silence(30), key_tone(key, 60, level_dbm0=-14.0), silence(30)]
    assert detect(g711(np.concatenate(parts), "PCMU")) == keys


def read_capture_pcma(path: Path) -> npt.NDArray[np.int16]:
    """The G.711 A-law payloads of an Ethernet/IPv4/UDP/RTP pcap, decoded."""
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    payloads: list[bytes] = []
    pos = 24
    while pos + 16 <= len(data):
        _, _, captured, _ = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + captured]
        pos += 16 + captured
        ip = frame[14:]
        rtp = ip[(ip[0] & 0x0F) * 4 + 8 :]
        if len(rtp) > 12 and rtp[1] & 0x7F == 8:
            payloads.append(rtp[12:])
    return decoder_for("PCMA")(b"".join(payloads))


def test_a_recorded_call_yields_no_key() -> None:
    """Real speech from a phone (SIPp's A-law capture), not synthesis."""
    if not G711_CAPTURE.exists():
        pytest.skip(f"{G711_CAPTURE} not installed (Debian package sip-tester)")
    pcm = read_capture_pcma(G711_CAPTURE)
    assert len(pcm) / RATE > 7.0
    assert detect(pcm, chunk=240, hits_to_start=1) == ""
