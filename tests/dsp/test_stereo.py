"""StereoPanner: a mono conversion spread over two channels like the source, block-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from melganvc.dsp.stereo import StereoPanner, band_index, frame_size, pan_gains

SR = 22050


def run(panner: StereoPanner, mono: np.ndarray, stereo: np.ndarray, step: int | None = None,
        lag: int = 0) -> np.ndarray:
    """Push ``mono`` in ``step``-sample blocks, the source ``lag`` samples ahead of it."""
    step = step or len(mono)
    out = []
    for start in range(0, len(mono), step):
        out.append(panner.push(mono[start:start + step], stereo[start + lag * (start > 0):
                                                                  start + step + lag]))
    out.append(panner.flush())
    return np.concatenate(out)


@pytest.fixture
def mono() -> np.ndarray:
    return (0.2 * np.random.default_rng(0).standard_normal(SR * 2 + 77)).astype(np.float32)


def test_centred_source_gives_the_mono_signal_in_both_channels(mono):
    out = run(StereoPanner(SR), mono, np.stack([mono, mono], 1), step=3001)
    assert out.shape == (mono.size, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], mono, atol=1e-5)
    np.testing.assert_allclose(out[:, 1], mono, atol=1e-5)


def test_hard_panned_source_stays_on_its_side(mono):
    silent = np.zeros_like(mono)
    out = run(StereoPanner(SR), mono, np.stack([silent, mono], 1))
    np.testing.assert_allclose(out[:, 1], mono, atol=1e-5)
    assert np.abs(out[:, 0]).max() < 1e-6


def test_partial_panning_is_kept_per_band():
    t = np.arange(SR * 2) / SR
    low, high = np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 3000 * t)
    source = np.stack([low + 0.25 * high, 0.5 * low + high], 1)  # low left, high right
    converted = (np.sin(2 * np.pi * 233 * t) + np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
    out = run(StereoPanner(SR), converted, source)

    def level(x: np.ndarray, f: float) -> float:
        spectrum = np.abs(np.fft.rfft(x[SR // 2: -SR // 2]))
        freqs = np.fft.rfftfreq(SR, 1 / SR)
        return float(spectrum[np.abs(freqs - f) < 20].max())

    assert level(out[:, 1], 233) / level(out[:, 0], 233) == pytest.approx(0.5, rel=0.05)
    assert level(out[:, 0], 3100) / level(out[:, 1], 3100) == pytest.approx(0.25, rel=0.05)
    assert np.abs(out).max() <= np.abs(converted).max() * 1.01  # gains never exceed 1


def test_result_does_not_depend_on_blocks_or_lag(mono):
    source = np.stack([mono, 0.3 * np.roll(mono, 50)], 1)
    whole = run(StereoPanner(SR), mono, source)
    for step, lag in ((517, 0), (4096, 900), (9999, 0)):
        np.testing.assert_allclose(run(StereoPanner(SR), mono, source, step, lag), whole,
                                   atol=1e-6)


def test_geometry_and_silence():
    assert frame_size(44100) == 2048 and frame_size(22050) == 1024 and frame_size(16000) == 1024
    bands = band_index(1024, SR)
    assert bands[0] == 0 and bands[-1] == 23 and (np.diff(bands) >= 0).all()
    gains = pan_gains(torch.zeros(3, 2, 513, dtype=torch.complex64), bands)
    assert gains.shape == (3, 2, 513) and (gains == 1).all()  # silent source: centred, not muted
    assert len(StereoPanner(SR).flush()) == 0
