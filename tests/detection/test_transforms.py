"""The transformations used for augmentation and evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from melganvc.detection.transforms import TRANSFORMS, add_noise, gain, random_transform

SR = 16000


def _band_energy(wave: np.ndarray, low: float, high: float) -> float:
    spec = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / SR)
    return float(spec[(freqs >= low) & (freqs < high)].sum())


def test_transforms_do_what_they_say():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    phone = TRANSFORMS["8khz"](wave, SR, rng)
    assert phone.size == wave.size
    assert _band_energy(phone, 4200, 8000) < 1e-3 * _band_energy(wave, 4200, 8000)
    for codec in ("ogg", "mp3"):
        out = TRANSFORMS[codec](wave, SR, rng)
        assert abs(out.size - wave.size) < SR // 10 and out.dtype == np.float32
        assert 0.3 < np.std(out) / np.std(wave) < 2.0
    noisy = add_noise(wave, 20.0, rng)
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(20.0, abs=0.3)
    assert np.abs(gain(wave * 5, 20.0)).max() <= 1.0
    assert np.isfinite(random_transform(wave, SR, rng)).all()


def test_codecs_survive_long_audio():
    """libsndfile's Vorbis encoder segfaulted on one 2.1 M-sample write (a 133 s song)."""
    wave = (0.1 * np.random.default_rng(0).standard_normal(2_200_000)).astype(np.float32)
    assert TRANSFORMS["ogg"](wave, SR, np.random.default_rng(0)).size == wave.size
