"""Spectral metrics on waveforms: timbre profiles (any audio) and, against a
parallel reference, MCD and LSD along a DTW path (silent frames dropped first)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from melganvc.dsp.mel import mel_filterbank
from melganvc.judges.waves import DB_PER_NEPER, SAMPLE_RATE, _as_wave

# ---------------------------------------------------------------------------------------------
# Spectral distance: mel-cepstra, DTW, MCD, LSD
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectralConfig:
    """Analysis settings for MCD / LSD (25 ms Hann window, 10 ms hop, 80 mel bands, c1..c24)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    n_mcep: int = 25  # c0..c24; c0 (level) is excluded from the distance
    dynamic_range_db: float = 80.0  # spectra are floored this far below their own peak
    silence_db: float | None = 40.0  # drop frames this far below the loudest frame (None: keep all)
    min_frames: int = 10  # never drop down to fewer frames than this


@dataclass(frozen=True)
class SpectralFeatures:
    """Per-frame features of one utterance after silence removal."""

    mcep: np.ndarray  # (frames, n_mcep - 1): c1..c24 of the natural-log mel amplitude spectrum
    log_power_db: np.ndarray  # (frames, n_fft//2+1): 10 log10 power, level-normalised


def stft_power(wave: np.ndarray, n_fft: int = 1024, win_length: int = 400,
               hop_length: int = 160) -> np.ndarray:
    """Centred (zero-padded) Hann STFT power ``(frames, n_fft//2+1)``, frames = len // hop + 1."""
    wave = _as_wave(wave).astype(np.float64)
    frames = wave.size // hop_length + 1
    pad = n_fft // 2
    padded = np.pad(wave, (pad, pad + n_fft))
    window = np.zeros(n_fft)
    offset = (n_fft - win_length) // 2
    window[offset:offset + win_length] = np.hanning(win_length + 1)[:-1]  # periodic Hann
    index = np.arange(n_fft)[None, :] + hop_length * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2) / np.sum(window ** 2)


def _cepstrum(log_spectrum: np.ndarray, n_coefficients: int) -> np.ndarray:
    """c_0..c_{n_coefficients-1} of log spectra ``(..., n_bands)`` sampled at the band centres
    w_n = pi (n + 1/2) / n_bands, in the convention L(w) = c0 + 2 sum_k c_k cos(k w) (so MCD's
    10/ln10 * sqrt(2 sum dc^2) applies): c_k = (1/n_bands) sum_n L_n cos(k w_n), which is
    scipy's unnormalised DCT-II (2 sum_n ...) over 2 n_bands. Not ``norm="ortho"``: that would
    scale c_0 by sqrt(n_bands) and c_1.. by sqrt(2 n_bands) and so the MCD by sqrt(160)."""
    from scipy.fft import dct  # scipy comes with librosa (the eval extra)

    n_bands = log_spectrum.shape[-1]
    return dct(log_spectrum, type=2, axis=-1)[..., :n_coefficients] / (2 * n_bands)


def _power_and_mel(wave: np.ndarray, cfg: SpectralConfig) -> tuple[np.ndarray, np.ndarray]:
    """STFT power and mel power of the unit-RMS wave, each floored ``dynamic_range_db`` below
    its own peak: ``(frames, n_fft//2+1)``, ``(frames, n_mels)``."""
    wave = _as_wave(wave).astype(np.float64)
    rms = float(np.sqrt(np.mean(wave ** 2))) if wave.size else 0.0
    if rms > 0:
        wave = wave / rms
    power = stft_power(wave, cfg.n_fft, cfg.win_length, cfg.hop_length)
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min,
                        cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2)
    mel = power @ fb.T
    span = 10.0 ** (-cfg.dynamic_range_db / 10.0)
    mel = np.maximum(mel, max(float(mel.max()) * span, 1e-10))
    power = np.maximum(power, max(float(power.max()) * span, 1e-10))
    return power, mel


def mel_spectrogram_db(wave: np.ndarray, cfg: SpectralConfig = SpectralConfig()) -> np.ndarray:
    """Level-normalised log-mel spectrogram in dB, ``(n_mels, frames)`` (for display)."""
    return 10.0 * np.log10(_power_and_mel(wave, cfg)[1]).T


def timbre_profile(wave: np.ndarray, cfg: SpectralConfig = SpectralConfig()) -> np.ndarray:
    """A clip's average spectral envelope, for any audio (speech or music): the mean log-mel
    spectrum (dB) of its non-silent frames, centred and unit-norm, so that level and length drop
    out. For a voice it reflects formants and pitch region, for an instrument its timbre;
    compare two with ``cosine``. NaN for a flat spectrum."""
    db = mel_spectrogram_db(wave, cfg)  # (n_mels, frames)
    level = db.max(axis=0)
    keep = level >= level.max() - (cfg.silence_db if cfg.silence_db is not None else np.inf)
    profile = db[:, keep].mean(axis=1)
    profile = profile - profile.mean()
    norm = float(np.linalg.norm(profile))
    return profile / norm if norm > 1e-9 else np.full_like(profile, np.nan)


def spectral_features(wave: np.ndarray, cfg: SpectralConfig = SpectralConfig()) -> SpectralFeatures:
    """Mel-cepstra and log power spectra of the non-silent frames of ``wave``.

    The wave is scaled to unit RMS and every spectrum is floored ``cfg.dynamic_range_db`` below
    its own peak, so neither level nor the depth of near-empty bands dominates the distances.
    """
    power, mel = _power_and_mel(wave, cfg)
    mcep = _cepstrum(0.5 * np.log(mel), cfg.n_mcep)  # of the natural-log amplitude
    log_power_db = 10.0 * np.log10(power)
    keep = np.ones(power.shape[0], dtype=bool)
    if cfg.silence_db is not None and power.shape[0] > cfg.min_frames:
        energy = 10.0 * np.log10(power.sum(axis=1))
        keep = energy > energy.max() - cfg.silence_db
        if keep.sum() < cfg.min_frames:
            keep = energy >= np.sort(energy)[-cfg.min_frames]
    return SpectralFeatures(mcep[keep, 1:], log_power_db[keep])


# librosa tries the steps in this order and keeps the first of equal accumulated costs: the
# diagonal, then (1, 0), then (0, 1), as the hand-written DTW this replaced did, so the paths
# (and MCD/LSD) are the same (tests/evaluation/test_metrics.py: recorded values, brute-force optimum).
# The accumulated costs are bit-identical too (min(a, b) + c == min(a + c, b + c) in floating
# point); only where two predecessors differ by less than one ulp of their sum with the local
# cost could librosa call a tie that the old code broke the other way: both paths then cost the
# same to rounding, and with real spectra this does not occur.
_DTW_STEPS = np.array([[1, 1], [1, 0], [0, 1]])


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotonic alignment of a ``(n, m)`` local-cost matrix (librosa's DTW).

    Steps (1,1), (1,0), (0,1) with unit weights; of equally cheap predecessors the diagonal
    wins, then the step along ``i``. Returns index arrays ``(i, j)`` of equal length from
    ``(0, 0)`` to ``(n-1, m-1)``.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.size == 0:
        raise ValueError("dtw_path needs a non-empty 2-D cost matrix")
    from librosa.sequence import dtw  # the eval extra; its import takes seconds, once

    _, path = dtw(C=cost, step_sizes_sigma=_DTW_STEPS, backtrack=True)
    path = path[::-1]  # librosa gives it end first
    return path[:, 0].copy(), path[:, 1].copy()


def _pairwise_sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a ** 2).sum(axis=1)[:, None] + (b ** 2).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(sq, 0.0)


@dataclass(frozen=True)
class SpectralDistance:
    """MCD and LSD (both dB) along the DTW path between two utterances."""

    mcd: float
    lsd: float
    path_length: int
    frames: tuple[int, int]


def spectral_distance(converted: np.ndarray, reference: np.ndarray,
                      sample_rate: int = SAMPLE_RATE,
                      cfg: SpectralConfig | None = None) -> SpectralDistance:
    """MCD-DTW and LSD of ``converted`` against a parallel ``reference`` (same sentence).

    MCD = 10/ln10 * sqrt(2 * sum_{k=1..24} (c_k - c'_k)^2), averaged over the aligned frame
    pairs of a DTW on the same Euclidean mel-cepstral distance; LSD = mean over the same pairs of
    the RMS difference (dB) of the log power spectra. Identical inputs give 0 for both.
    """
    cfg = cfg or SpectralConfig(sample_rate=sample_rate)
    if cfg.sample_rate != sample_rate:
        raise ValueError(f"cfg.sample_rate {cfg.sample_rate} != sample_rate {sample_rate}")
    a = spectral_features(converted, cfg)
    b = spectral_features(reference, cfg)
    sq = _pairwise_sq_dist(a.mcep, b.mcep)
    i, j = dtw_path(np.sqrt(sq))
    mcd = DB_PER_NEPER * np.sqrt(2.0 * sq[i, j])
    diff = a.log_power_db[i] - b.log_power_db[j]
    lsd = np.sqrt(np.mean(diff ** 2, axis=1))
    return SpectralDistance(float(mcd.mean()), float(lsd.mean()), int(i.size),
                            (a.mcep.shape[0], b.mcep.shape[0]))
