"""Streaming resampling (soxr) and its delay."""

from __future__ import annotations

import functools
import math

import numpy as np
import soxr

# ----------------------------------------------------------------------------------------------
# resampling


@functools.lru_cache(maxsize=32)
def resampler_delay(in_rate: int, out_rate: int) -> int:
    """Worst-case delay (output samples) of a soxr HQ ``ResampleStream``, measured once.

    Fed with pieces worth ~4 output samples over 0.16 s (the delay settles within the filter
    span), so the cost follows the output rate, not a header's claimed input rate; the margin
    covers what finer pieces could add (one piece's worth of output, plus 4).
    """
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
    piece = np.zeros(4 * max(1, -(-in_rate // out_rate)), np.float32)
    fed = produced = 0
    worst = 0.0
    for _ in range(max(64, math.ceil(0.16 * in_rate / piece.size))):
        produced += stream.resample_chunk(piece, last=False).size
        fed += piece.size
        worst = max(worst, fed * out_rate / in_rate - produced)
    return math.ceil(worst) + math.ceil(piece.size * out_rate / in_rate) + 4


class _Resampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ") \
            if in_rate != out_rate else None

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return x
        return self._stream.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)


def resample(wave: np.ndarray, rate: int, target: int, quality: str = "HQ") -> np.ndarray:
    """``wave`` resampled in one go from ``rate`` to ``target`` Hz (soxr, ``quality`` one of
    soxr's "QQ", "LQ", "MQ", "HQ", "VHQ"), as float32; ``(samples,)`` or
    ``(samples, channels)``. When the rates match or ``wave`` is empty it comes back unchanged
    (only cast to float32, without a copy when it already is)."""
    wave = np.asarray(wave, dtype=np.float32)
    if rate == target or wave.size == 0:
        return wave
    return soxr.resample(wave, rate, target, quality=quality).astype(np.float32, copy=False)
