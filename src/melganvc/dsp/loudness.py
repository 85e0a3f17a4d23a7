"""Loudness: the running output-level match of the pipeline, and the input level
meter and gain that put offline input at the level the features expect."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

# ----------------------------------------------------------------------------------------------
# loudness

PEAK = 0.99  # output peak cap (a gain, never clipping)


class _Loudness:
    """Output level follows the input: running match of the active parts' RMS, peak <= 0.99.

    Works on gain frames of ``frame`` samples (a global grid). A frame is *active* when its RMS
    is above -60 dBFS and within 40 dB of the loudest frame so far, judged separately for the
    input and the (un-scaled) output, as loudness gates do. The gain is the ratio of the two
    active parts' RMS over all frames up to the current one (so it converges to the whole-file
    match), clamped to +-40 dB. It is linear between frame ends; each end is also capped at
    ``PEAK / peak`` of both frames it joins, so no sample exceeds ``PEAK``: a gain, never
    clipping. That needs one frame of look-ahead.
    """

    ABS_GATE, REL_GATE, MAX_GAIN = 1e-3, 1e-2, 100.0

    def __init__(self, frame: int, match: bool = True, scale: float = 1.0) -> None:
        self.frame, self.match = frame, match
        # ``scale`` multiplies the result (1 / the input gain: the input was measured after
        # it); the peak cap is divided by it so the returned samples stay within ``PEAK``
        self._scale, self._peak = scale, PEAK / scale
        self._in_partial = np.zeros(0, np.float32)
        self._in_frames: deque[np.ndarray] = deque()  # input frames not yet matched
        self._in_gate, self._out_gate = _Gate(), _Gate()
        self._out = np.zeros(0, np.float32)  # output not yet released
        self._gain = 1.0
        self._anchor: float | None = None  # gain at the end of the last released frame

    def add_input(self, x: np.ndarray, last: bool = False) -> None:
        data = np.concatenate([self._in_partial, x])
        whole = data.size // self.frame * self.frame
        self._in_frames.extend(data[i:i + self.frame] for i in range(0, whole, self.frame))
        self._in_partial = data[whole:]
        if last and self._in_partial.size:
            self._in_frames.append(self._in_partial)
            self._in_partial = np.zeros(0, np.float32)

    def push(self, y: np.ndarray, last: bool = False) -> np.ndarray:
        self._out = np.concatenate([self._out, y])
        q, out = self.frame, []
        while self._out.size >= 2 * q or (last and self._out.size):
            out.append(self._apply(self._out[:q], self._out[q:2 * q]))
            self._out = self._out[q:]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _apply(self, cur: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self._in_frames:
            self._in_gate.add(self._in_frames.popleft())
        self._out_gate.add(cur)
        if self.match and self._in_gate.power > 0 and self._out_gate.power > 0:
            ratio = math.sqrt(self._in_gate.power / self._out_gate.power)
            self._gain = min(max(ratio, 1 / self.MAX_GAIN), self.MAX_GAIN)
        peak_cur = float(np.abs(cur).max())
        peak = max(peak_cur, float(np.abs(nxt).max()) if nxt.size else 0.0)
        anchor = min(self._gain, self._peak / peak) if peak > 0 else self._gain
        start = self._anchor if self._anchor is not None else min(
            self._gain, self._peak / peak_cur if peak_cur > 0 else self._gain)
        self._anchor = anchor
        ramp = start + (anchor - start) * (np.arange(1, cur.size + 1, dtype=np.float32) / cur.size)
        ramp *= np.float32(self._scale)
        return (cur * ramp).astype(np.float32)


class _Gate:
    """Mean power of the active frames seen so far (absolute and relative gate)."""

    def __init__(self) -> None:
        self.energy, self.samples, self.loudest = 0.0, 0, 0.0

    def add(self, frame: np.ndarray) -> None:
        frame = frame.astype(np.float64)  # float32 energy overflows for samples above ~1e19
        energy = float(np.dot(frame, frame))
        rms = math.sqrt(energy / frame.size)
        self.loudest = max(self.loudest, rms)
        if rms > max(_Loudness.ABS_GATE, _Loudness.REL_GATE * self.loudest):
            self.energy += energy
            self.samples += frame.size

    @property
    def power(self) -> float:
        return self.energy / self.samples if self.samples else 0.0


INPUT_LEVEL_DBFS = -20.0  # active RMS the features see: the level of typical speech corpora
LEVEL_GATE = 1e-6  # -120 dBFS: digital silence; otherwise only the relative gate decides, so
# the estimate scales with the input (an absolute gate near a recording's noise floor does not)
MAX_INPUT_GAIN = 1000.0  # +-60 dB


class LevelMeter:
    """Active RMS of audio fed block by block (frames of ``frame`` samples on a global grid).

    A frame is active when its RMS is above -120 dBFS and within 40 dB of the loudest frame,
    judged at the end, so the estimate does not depend on how the audio was cut into blocks.
    """

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self._partial = np.zeros(0, np.float32)
        self._power: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        data = np.concatenate([self._partial, np.asarray(x, np.float32)])
        whole = data.size // self.frame * self.frame
        if whole:
            frames = data[:whole].astype(np.float64).reshape(-1, self.frame)
            self._power.append(np.einsum("ij,ij->i", frames, frames) / self.frame)
        self._partial = data[whole:]

    def active_rms(self) -> float:
        power = np.concatenate(self._power) if self._power else np.zeros(0)
        if self._partial.size:
            tail = self._partial.astype(np.float64)
            power = np.append(power, float(np.dot(tail, tail)) / tail.size)
        if not power.size:
            return 0.0
        keep = power > max(LEVEL_GATE**2, 1e-4 * float(power.max()))
        return math.sqrt(float(power[keep].mean())) if keep.any() else 0.0


def level_meter(sample_rate: int) -> LevelMeter:
    """The meter ``convert`` measures its input's level with: 24 ms frames."""
    return LevelMeter(max(1, round(0.024 * sample_rate)))


def at_input_level(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wave`` brought to ``INPUT_LEVEL_DBFS`` as ``convert`` brings its input before the
    features (benchmarks and recipes that feed features directly)."""
    meter = level_meter(sample_rate)
    meter.add(wave)
    return (wave * np.float32(input_gain(meter.active_rms()))).astype(np.float32)


def input_gain(active_rms: float, level_dbfs: float = INPUT_LEVEL_DBFS) -> float:
    """The gain that brings audio of ``active_rms`` to ``level_dbfs`` (within +-60 dB; 1 for
    silence). The features have a fixed level range, so a quiet input converted badly: the
    level-aligned result's mel correlation with the same input converted at its normal level
    was 0.63-0.78 at -30 dB and 0.31-0.66 at -40 dB; with this gain 0.993-0.996 at both
    (bundled demo-voice model, espeak and VCC2016 speech)."""
    if active_rms <= 0:
        return 1.0
    gain = 10 ** (level_dbfs / 20) / active_rms
    return min(max(gain, 1 / MAX_INPUT_GAIN), MAX_INPUT_GAIN)
