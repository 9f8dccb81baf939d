"""In-band DTMF: key presses found in the audio itself, for trunks that send tones.

Sans-IO: feed 8 kHz int16 PCM (decoded G.711, any chunk size), get each key
press once. No clock and no I/O: time is the sample count.

The signal is ITU-T Q.23's: one tone from the low group (697, 770, 852,
941 Hz) plus one from the high group (1209, 1336, 1477, 1633 Hz). Reception
follows the practice of ITU-T Q.24:

Blocks of ~13 ms (105 samples at 8 kHz)
    The power at each DTMF frequency is one DFT term per block evaluated at
    the exact frequency, not the nearest bin: what a Goertzel filter yields.
    Goertzel computes that term with a recursion, sample by sample; here all
    terms of all blocks in a chunk are one matrix product in numpy, the same
    numbers for a fraction of the Python cost. 105 samples keep adjacent
    low-group tones (73 Hz apart) about one bin apart, and a 40 ms tone always
    covers two whole blocks while a 23 ms one never does.

Frequency tolerance
    Each tone's power is the largest of three terms, at f and f +/- 1 %. Q.24
    asks that tones up to 1.5 % + 2 Hz off be accepted: a single term at f
    loses up to 1.8 dB there (a third of a bin at 1633 Hz), enough to fail the
    power-fraction test below; with three probes the loss stays under 0.3 dB.
    Keys with both tones 3.5 % off (Q.24's non-operate limit) fail that test.

Per block, a key is present when
    * each group's strongest tone is at least ``min_level_dbm0``;
    * the twist is within limits: the high-group tone at most
      ``normal_twist_db`` below the low one (lines lose highs) and at most
      ``reverse_twist_db`` above it (Q.24's 8 dB and 4 dB). A weak tone next
      to a strong one is measured up to 2 dB off in 13 ms (the strong tone's
      sidelobes add or subtract, depending on phase), so the test allows
      2 dB beyond the limits: keys within them are always accepted;
    * each tone is ``group_margin_db`` above the other tones of its group;
    * the two tones hold ``min_tone_fraction`` of the block's power. This is
      what rejects speech and music: their energy is spread over many
      harmonics, a key's is in two lines. It also makes a block count only
      when a tone fills most of it, which sets the duration limits below;
    * the high tone's second harmonic is ``harmonic_margin_db`` below it (a
      key is two pure tones; a voice or an instrument has harmonics). The low
      tones' harmonics (1394-1882 Hz) lie within a bin of high-group tones,
      so they cannot be told from a key's own high tone and are not checked.

Across blocks
    A press is reported after ``hits_to_start`` blocks in a row agree (26 ms:
    Q.24's 40 ms keys are always caught, 20 ms bursts never), once, however
    long the key is held. It ends after ``misses_to_end`` blocks without it
    (39 ms), so a 10 ms drop-out inside one press is bridged and Q.24's
    40 ms inter-digit pause always separates two presses of the same key. A
    different key that takes over without a pause is a new press.

Not met: Q.24's non-operate limit when only the low-group tone is 3.5 % off
(24 Hz at 697 Hz); a 13 ms block cannot resolve that, and longer blocks
would miss 40 ms keys.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ccserver.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW, decoder_for

__all__ = [
    "HIGH_GROUP",
    "KEYS",
    "LOW_GROUP",
    "G711InbandDtmf",
    "InbandDtmfDetector",
]

LOW_GROUP = (697.0, 770.0, 852.0, 941.0)
"""Q.23 low-group (row) frequencies in Hz."""
HIGH_GROUP = (1209.0, 1336.0, 1477.0, 1633.0)
"""Q.23 high-group (column) frequencies in Hz."""
KEYS = ("123A", "456B", "789C", "*0#D")
"""KEYS[row][column]: the key for a low-group and a high-group tone."""

_BLOCK_SECONDS = 105 / 8000
_PROBES = (-0.01, 0.0, 0.01)
"""Relative offsets at which each tone is measured (see Frequency tolerance)."""
_TWIST_ALLOWANCE_DB = 2.0
"""How far a weak tone's per-block estimate strays (see the twist test)."""
_FULL_SCALE_SINE_DBM0 = 3.17
"""A full-scale sine in G.711 µ-law is +3.17 dBm0 (A-law: +3.14). One constant
for both: 0.03 dB is far inside any threshold here."""


def _db(ratio_db: float) -> float:
    return float(10.0 ** (ratio_db / 10.0))


class InbandDtmfDetector:
    """Goertzel-style DTMF receiver for one call's audio; see the module docstring.

    ``feed`` takes 1-D integer PCM at ``rate`` in any chunk size and returns
    the keys whose press started in it. Defaults follow Q.24; the keyword
    arguments exist for trunks that need them loosened or tightened.
    """

    __slots__ = (
        "_basis",
        "_candidate",
        "_carry",
        "_current",
        "_hits",
        "_misses",
        "block",
        "group_margin",
        "harmonic_margin",
        "hits_to_start",
        "max_high_to_low",
        "min_fraction",
        "min_high_to_low",
        "min_power",
        "misses_to_end",
        "rate",
    )

    def __init__(
        self,
        rate: int = 8000,
        *,
        min_level_dbm0: float = -30.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 4.0,
        group_margin_db: float = 8.0,
        min_tone_fraction: float = 0.8,
        harmonic_margin_db: float = 10.0,
        hits_to_start: int = 2,
        misses_to_end: int = 3,
    ) -> None:
        # The highest term we evaluate, 1 % above 2 x 1633 Hz, must stay below Nyquist.
        if rate < 7000:
            raise ValueError(f"rate must be at least 7000 Hz for DTMF, got {rate}")
        if min(normal_twist_db, reverse_twist_db, group_margin_db, harmonic_margin_db) < 0:
            raise ValueError("twist limits and margins are dB magnitudes: must be >= 0")
        if not 0.0 < min_tone_fraction <= 1.0:
            raise ValueError(f"min_tone_fraction must be in (0, 1], got {min_tone_fraction}")
        if hits_to_start < 1 or misses_to_end < 1:
            raise ValueError("hits_to_start and misses_to_end must be at least 1")
        self.rate = rate
        self.block = round(rate * _BLOCK_SECONDS)
        # A sine of amplitude a has mean power a^2 / 2; the estimates below use that scale.
        amplitude = 32768.0 * 10.0 ** ((min_level_dbm0 - _FULL_SCALE_SINE_DBM0) / 20.0)
        self.min_power = amplitude * amplitude / 2.0
        self.min_high_to_low = 1.0 / _db(normal_twist_db + _TWIST_ALLOWANCE_DB)
        self.max_high_to_low = _db(reverse_twist_db + _TWIST_ALLOWANCE_DB)
        self.group_margin = _db(group_margin_db)
        self.harmonic_margin = _db(harmonic_margin_db)
        self.min_fraction = min_tone_fraction
        self.hits_to_start = hits_to_start
        self.misses_to_end = misses_to_end
        tones = np.array([*LOW_GROUP, *HIGH_GROUP, *(2.0 * f for f in HIGH_GROUP)])
        freqs = np.concatenate([tones * (1.0 + offset) for offset in _PROBES])
        phase = 2.0 * np.pi * np.outer(np.arange(self.block), freqs) / rate
        # Cosine terms then sine terms, scaled so that cos^2 + sin^2 is the
        # tone's mean power (2 |X|^2 / N^2), comparable with the block's.
        scale = math.sqrt(2.0) / self.block
        basis = np.hstack([np.cos(phase), np.sin(phase)]) * scale
        # Centred columns: x @ basis then equals (x - mean(x)) @ basis, so a
        # DC offset is removed without touching the samples. A last column
        # gives the block's mean in the same product.
        mean_column = np.full((self.block, 1), 1.0 / self.block)
        self._basis = np.hstack([basis - basis.mean(axis=0), mean_column])
        self.reset()

    def reset(self) -> None:
        """Forget buffered samples and any press in progress (new stream, re-INVITE)."""
        self._carry: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self._current = -1  # the key being held, as an index 0..15 (row * 4 + column)
        self._candidate = -1
        self._hits = 0
        self._misses = 0

    def feed(self, pcm: npt.ArrayLike) -> list[str]:
        """Keys whose press was recognised in this chunk, in order (usually none)."""
        samples = np.asarray(pcm)
        if samples.ndim != 1:
            raise ValueError(f"expected 1-D PCM, got shape {samples.shape}")
        if samples.dtype.kind not in "iu":
            raise ValueError(f"expected integer PCM samples, got dtype {samples.dtype}")
        if self._carry.size:
            buffer = np.concatenate([self._carry, samples])
        else:
            buffer = samples.astype(np.float64)
        count = buffer.size // self.block
        used = count * self.block
        self._carry = buffer[used:]
        if not count:
            return []
        return self._track(self._classify(buffer[:used].reshape(count, self.block)))

    def feed_blocks(self, blocks: npt.NDArray[np.float64]) -> list[str]:
        """``feed`` for whole blocks (shape ``(n, block)``) when no sample is carried.

        What `G711InbandDtmf` uses: it keeps its own remainder, as G.711 bytes.
        """
        if self._carry.size:
            raise ValueError("feed_blocks needs whole blocks: samples from feed() are carried")
        if blocks.ndim != 2 or blocks.shape[1] != self.block:
            raise ValueError(f"expected blocks of {self.block} samples, got shape {blocks.shape}")
        if not blocks.shape[0]:
            return []
        return self._track(self._classify(blocks))

    def skip_quiet_blocks(self, count: int) -> list[str]:
        """Count ``count`` whole blocks whose every sample is below ``min_power``.

        The mean power of such a block is below ``min_power``, so `_classify`
        finds no key in it: the same as feeding it, without the analysis.
        """
        if self._carry.size:
            raise ValueError("skip_quiet_blocks needs whole blocks: samples are carried")
        if self._current < 0 and self._candidate < 0:
            return []  # nothing in progress: blocks without a key change nothing
        return self._track([-1] * count)

    # -- per block ------------------------------------------------------------

    def _classify(self, blocks: npt.NDArray[np.float64]) -> list[int]:
        """The key index seen in each block, or -1.

        numpy computes the powers of all blocks of the chunk at once; the
        tests then run on a dozen numbers per block, where plain Python costs
        less than a dozen more numpy calls (a packet holds one or two blocks).
        """
        size = self.block
        # One product for all terms and the means (numpy's cost here is per call).
        terms = blocks @ self._basis  # the basis is centred: DC drops out here too
        means = terms[:, -1]
        # Mean power with the DC offset (a trunk's, no tone) removed.
        totals = (np.einsum("ij,ij->i", blocks, blocks) / size - means * means).tolist()
        # Two tones of min_power each cannot hide in a quieter block (the
        # estimates exceed the block's power by 10 % at most): silence stops here.
        if max(totals) < self.min_power:
            return [-1] * len(totals)
        squares = terms * terms
        half = (terms.shape[1] - 1) // 2
        probes = squares[:, :half] + squares[:, half:-1]
        by_probe = probes.reshape(-1, len(_PROBES), 12)
        powers = by_probe.max(axis=1).tolist()
        centres = by_probe[:, _PROBES.index(0.0)].tolist()
        return [
            self._key(power, centre, total)
            for power, centre, total in zip(powers, centres, totals, strict=True)
        ]

    def _key(self, power: list[float], centre: list[float], total: float) -> int:
        """The tests of the module docstring on one block's powers.

        ``power`` is each frequency's best probe, ``centre`` its term at the
        nominal frequency; 0-3 low group, 4-7 high group, 8-11 the high
        group's second harmonics.
        """
        low, high = power[0:4], power[4:8]
        row_power = max(low)
        col_power = max(high)
        if (
            row_power < self.min_power
            or col_power < self.min_power
            or row_power + col_power < total * self.min_fraction
            or col_power < row_power * self.min_high_to_low
            or col_power > row_power * self.max_high_to_low
        ):
            return -1
        row = low.index(row_power)
        col = high.index(col_power)
        if col_power < power[8 + col] * self.harmonic_margin:
            return -1
        # Every other tone of each group must sit the margin below the best.
        # Measured at its own frequency only: a probe 1 % towards a
        # neighbour that is itself 1.5 % off would be within a bin of it.
        row_floor = row_power / self.group_margin
        col_floor = col_power / self.group_margin
        for i in range(4):
            if (i != row and centre[i] > row_floor) or (i != col and centre[4 + i] > col_floor):
                return -1
        return row * 4 + col

    # -- across blocks --------------------------------------------------------

    def _track(self, keys: list[int]) -> list[str]:
        """Turn per-block keys into presses: debounce the start, bridge drop-outs."""
        found: list[str] = []
        for key in keys:
            if key >= 0 and key == self._current:
                self._misses = 0
                self._candidate, self._hits = -1, 0
                continue
            if self._current >= 0:
                self._misses += 1
                if self._misses >= self.misses_to_end:
                    self._current = -1
            if key < 0:
                self._candidate, self._hits = -1, 0
                continue
            if key == self._candidate:
                self._hits += 1
            else:
                self._candidate, self._hits = key, 1
            if self._hits >= self.hits_to_start:
                # A new press: after a pause, or a different key taking over.
                self._current, self._misses = key, 0
                self._candidate, self._hits = -1, 0
                found.append(KEYS[key // 4][key % 4])
        return found


class G711InbandDtmf:
    """`InbandDtmfDetector` on a leg's G.711 payloads, cheap enough for every packet.

    Fed 20 ms at a time the detector costs ~18 µs a packet, almost all of it
    numpy's fixed cost per call, not arithmetic; it runs on every packet of a
    caller without telephone-event, also while bridged. So payloads are kept
    as bytes and analysed ``batch_ms`` at a time, in whole detector blocks,
    and a batch whose every sample decodes below the detector's minimum
    power (silence, line noise, the far end talking) is counted as blocks
    without a key and never decoded: such a block's mean power is below the
    minimum too, which `InbandDtmfDetector._classify` rejects. The blocks, and
    so the keys, are exactly those of feeding the detector packet by packet;
    a key is reported up to ``batch_ms`` later (a press lasts 40 ms or more).
    """

    __slots__ = ("_batch", "_codec", "_decode", "_pending", "_quiet", "detector")

    def __init__(
        self, detector: InbandDtmfDetector | None = None, *, batch_ms: float = 80.0
    ) -> None:
        self.detector = detector if detector is not None else InbandDtmfDetector()
        if self.detector.rate != 8000:
            raise ValueError(f"G.711 is 8000 Hz, the detector runs at {self.detector.rate}")
        block = self.detector.block
        self._batch = max(1, round(batch_ms * 8 / block)) * block  # bytes: one per sample
        self._pending = bytearray()
        self._codec = ""
        self._decode: dict[str, npt.NDArray[np.float64]] = {}
        self._quiet: dict[str, bytes] = {}
        for codec in ("PCMU", "PCMA"):
            values = decoder_for(codec)(bytes(range(256))).astype(np.float64)
            self._decode[codec] = values
            # Codes whose square stays below the minimum power, to delete with translate.
            self._quiet[codec] = bytes(np.flatnonzero(values * values < self.detector.min_power))

    def feed(self, payload: bytes, codec: str) -> list[str]:
        """One packet's payload (``codec`` PCMU or PCMA); keys whose press was recognised."""
        if codec != self._codec:
            if self._pending:
                # A re-INVITE changed the law: the few buffered samples follow it.
                self._pending = bytearray(
                    self._pending.translate(ALAW_TO_ULAW if codec == "PCMU" else ULAW_TO_ALAW)
                )
            if codec not in self._decode:
                raise ValueError(f"unsupported codec {codec!r}: expected PCMU or PCMA")
            self._codec = codec
        pending = self._pending
        pending += payload
        if len(pending) < self._batch:
            return []
        return self.flush()

    def flush(self) -> list[str]:
        """Analyse the whole blocks buffered now (the remainder waits for more)."""
        pending = self._pending
        block = self.detector.block
        count = len(pending) // block
        if not count:
            return []
        used = count * block
        chunk = bytes(pending[:used])
        del pending[:used]
        if not chunk.translate(None, self._quiet[self._codec]):
            return self.detector.skip_quiet_blocks(count)
        samples = self._decode[self._codec][np.frombuffer(chunk, dtype=np.uint8)]
        return self.detector.feed_blocks(samples.reshape(count, block))

    def reset(self) -> None:
        """Forget buffered audio and any press in progress (new stream)."""
        self._pending.clear()
        self.detector.reset()
