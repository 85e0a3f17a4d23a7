"""Waveform helpers every judge shares: checks, 16 kHz resampling, content keys,
thread limits."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator

import numpy as np

from melganvc.dsp.resample import resample

SAMPLE_RATE = 16000
DB_PER_NEPER = 10.0 / math.log(10.0)  # the 10/ln10 of the MCD formula
_PKG_RESOURCES_WARNING = r".*pkg_resources.*"


def _as_wave(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if not np.isfinite(wave).all():
        raise ValueError("waveform contains NaN or infinite samples")
    return wave


def _resample(wave: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``wave`` checked (``_as_wave``) and resampled to ``target_rate`` (``dsp.resample``)."""
    return resample(_as_wave(wave), sample_rate, target_rate)


def wave_key(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """Content hash of a waveform (used to cache per-utterance model outputs and to spot a
    reference utterance that is also being scored)."""
    data = np.ascontiguousarray(np.asarray(wave, dtype=np.float32).reshape(-1))
    return hashlib.sha1(data.tobytes() + str(sample_rate).encode()).hexdigest()


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` torch threads, then restore. The encoder's small LSTM gains
    nothing from threads and slows down badly when the cores are shared."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
