"""Measures for music and for chunk borders: does the melody survive, do the seams show?

``melody_similarity``: the notes a conversion plays should be the source's, whatever the
instrument. Per 32 ms frame the spectrum's magnitude between 110 Hz and 2 kHz is folded onto the
twelve pitch classes (a chromagram); each frame's chroma is centred (so a flat spectrum means
nothing) and compared with the source's frame at the same time by cosine. The mean over the
frames where the source sounds is 1 for the same notes in any timbre that keeps its harmonics'
pitch classes, about 0 for unrelated music. Timbre changes the upper harmonics' weights, so even
a perfect instrument transfer scores below 1: compare with the parallel target rendering
(``oracle_parallel``) and the identity baseline.

``seam_check``: ``evaluation.seams.seam_score`` on the output at the model's own features and
chunk length, at the worst offset (1.0 = no periodic seam; compare with the identity baseline,
which has no chunks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from melganvc.config import FeatureConfig
from melganvc.dsp.resample import resample
from melganvc.evaluation.seams import seam_score
from melganvc.evaluation.spectral import stft_power

N_FFT, HOP = 4096, 512  # at 16 kHz: 3.9 Hz bins (a semitone at 110 Hz is 6.5 Hz), 32 ms hop
F_LOW, F_HIGH = 110.0, 2000.0


def chromagram(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(frames, 12)``: magnitude per pitch class (C = 0) of the 110 Hz-2 kHz spectrum."""
    wave = np.asarray(wave, np.float32).reshape(-1)
    power = stft_power(resample(wave, sample_rate, 16000), N_FFT, N_FFT, HOP)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / 16000)
    keep = (freqs >= F_LOW) & (freqs <= F_HIGH)
    pitch_class = np.round(12 * np.log2(freqs[keep] / 440.0) + 69).astype(int) % 12
    member = np.arange(12)[None, :] == pitch_class[:, None]  # (bins, 12)
    return np.sqrt(power[:, keep]) @ member


def melody_similarity(source: np.ndarray, converted: np.ndarray, sample_rate: int,
                      silence_db: float = 40.0) -> float:
    """Mean centred-chroma cosine between ``converted`` and ``source`` over the source's
    sounding frames (NaN when the source is silent)."""
    a, b = chromagram(source, sample_rate), chromagram(converted, sample_rate)
    frames = min(len(a), len(b))
    a, b = a[:frames], b[:frames]
    level = a.sum(axis=1)
    sounding = level > level.max() * 10 ** (-silence_db / 20) if frames else level > 0
    a = a[sounding] - a[sounding].mean(axis=1, keepdims=True)
    b = b[sounding] - b[sounding].mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    valid = norms > 1e-12
    if not valid.any():
        return float("nan")
    return float(np.mean(np.sum(a * b, axis=1)[valid] / norms[valid]))


@dataclass(frozen=True)
class SeamCheck:
    """The model's analysis grid: its features and chunk length, for ``seam_score``."""

    features: FeatureConfig
    chunk_frames: int

    def score(self, wave: np.ndarray, sample_rate: int) -> float:
        """Worst-offset seam ratio of ``wave`` analysed like the model's input (NaN if short)."""
        at_model = resample(np.asarray(wave, np.float32), sample_rate, self.features.sample_rate)
        try:
            return seam_score(at_model, self.chunk_frames, features=self.features, phase="worst")
        except ValueError:  # fewer than two chunks: nothing to measure
            return float("nan")
