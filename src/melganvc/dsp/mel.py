"""Waveform <-> normalised log-mel, exactly the reference pipeline (method.md, "Features").

power mel = HTK mel filterbank (no area normalisation) @ |STFT|^2 / sum(window^2)
dB        = 10 log10(max(mel, 1e-10)) - ref_level_db
normalised = clip(((dB - min_level_db) / -min_level_db) * 2 - 1, -1, 1)

The filterbank and window are built per config and held by a ``MelSpectrogram`` object (no
global caches); everything is batched torch, so the same code runs on CPU and GPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from melganvc.config import FeatureConfig

AMIN = 1e-10
POWER_CAP = 1e30  # far above the +1 clip of the normalised range, far below float32's max


def hz_to_mel_htk(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz_htk(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular HTK-scale filters, peak 1 (no area normalisation): shape ``(n_mels, n_fft//2+1)``."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_points = np.linspace(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max), n_mels + 2)
    edges = mel_to_hz_htk(mel_points)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    return np.maximum(0.0, np.minimum(rising, falling))


class MelSpectrogram(nn.Module):
    """Batched feature extractor for one ``FeatureConfig``.

    ``forward(wave)``: ``(batch, samples)`` or ``(samples,)`` -> normalised mel
    ``(batch, n_mels, frames)`` in [-1, 1], ``frames = samples // hop + 1``.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        window = torch.hann_window(cfg.n_fft, periodic=True, dtype=torch.float64)
        # torchaudio-style "normalized": divide the magnitude by sqrt(sum(w^2)) -> power by sum(w^2)
        self.power_scale = float(window.pow(2).sum())
        self.register_buffer("window", window.float(), persistent=False)
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.register_buffer("filterbank", torch.from_numpy(fb).float(), persistent=False)

    def num_frames(self, samples: int) -> int:
        return samples // self.cfg.hop_length + 1

    def stft(self, wave: Tensor) -> Tensor:
        """Complex STFT ``(batch, n_fft//2+1, frames)``, centred with reflect padding.

        Inputs too short to reflect-pad are zero-extended first and the frames cropped back, so a
        single hop of audio still gives a spectrum.
        """
        samples = wave.shape[-1]
        frames = self.num_frames(samples)
        minimum = self.cfg.n_fft // 2 + 1
        if samples < minimum:
            wave = torch.nn.functional.pad(wave, (0, minimum - samples))
        spec = torch.stft(wave, self.cfg.n_fft, self.cfg.hop_length, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        return spec[..., :frames]

    def power_mel(self, wave: Tensor) -> Tensor:
        return self._power_mel(self.stft(wave))

    def power(self, spec: Tensor) -> Tensor:
        """Normalised power of a complex STFT, finite for any finite audio."""
        power = (spec.real.square() + spec.imag.square()) / self.power_scale
        # Samples beyond ~1e17 (a damaged float file) overflow to inf, and inf * 0 in the
        # filterbank product would be NaN: cap them, so finite audio always gives a finite mel.
        return torch.nan_to_num(power, nan=POWER_CAP, posinf=POWER_CAP)

    def _power_mel(self, spec: Tensor) -> Tensor:
        return torch.matmul(self.filterbank, self.power(spec))

    def forward(self, wave: Tensor) -> Tensor:
        squeeze = wave.dim() == 1
        mel = self.normalize(power_to_db(self.power_mel(wave.unsqueeze(0) if squeeze else wave),
                                         self.cfg.ref_level_db))
        return mel[0] if squeeze else mel

    def long(self, wave: Tensor, block_frames: int = 4096) -> Tensor:
        """``forward`` for one long ``(samples,)`` wave in bounded memory: the same frames,
        ``block_frames`` at a time from the reflect-padded signal (an hour of 16 kHz audio
        would otherwise hold a 1.4 GB complex spectrogram at once)."""
        frames, half = self.num_frames(wave.shape[-1]), self.cfg.n_fft // 2
        if frames <= block_frames or wave.shape[-1] <= half:
            return self(wave)
        hop = self.cfg.hop_length
        padded = torch.nn.functional.pad(wave[None, None], (half, half), mode="reflect")[0, 0]
        out = []
        for start in range(0, frames, block_frames):
            stop = min(frames, start + block_frames)
            piece = padded[start * hop : (stop - 1) * hop + self.cfg.n_fft]
            spec = torch.stft(piece, self.cfg.n_fft, hop, window=self.window, center=False,
                              return_complex=True)
            out.append(self.normalize(power_to_db(self._power_mel(spec), self.cfg.ref_level_db)))
        return torch.cat(out, dim=-1)

    def normalize(self, db: Tensor) -> Tensor:
        lo = self.cfg.min_level_db
        return torch.clamp((db - lo) / -lo * 2.0 - 1.0, -1.0, 1.0)

    def denormalize(self, mel: Tensor) -> Tensor:
        """Normalised mel -> dB (after the ``ref_level_db`` offset); inverse of ``normalize``."""
        lo = self.cfg.min_level_db
        return (mel + 1.0) / 2.0 * -lo + lo

    def to_power(self, mel: Tensor) -> Tensor:
        """Normalised mel -> mel power, what inversion must match."""
        return torch.pow(10.0, (self.denormalize(mel) + self.cfg.ref_level_db) / 10.0)


def power_to_db(power: Tensor, ref_level_db: float) -> Tensor:
    return 10.0 * torch.log10(torch.clamp(power, min=AMIN)) - ref_level_db


def frames_to_samples(frames: int, hop_length: int) -> int:
    """Samples a mel of ``frames`` frames stands for (inverse of ``num_frames`` up to one hop)."""
    return max(0, (frames - 1) * hop_length)


def seconds_per_chunk(cfg: FeatureConfig, chunk_frames: int) -> float:
    return chunk_frames * cfg.hop_length / cfg.sample_rate


def db_range(cfg: FeatureConfig) -> tuple[float, float]:
    """dB (absolute, before offset) that map to -1 and +1."""
    return cfg.min_level_db + cfg.ref_level_db, cfg.ref_level_db



