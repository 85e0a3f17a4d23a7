"""The detector's front end and network: a log spectrogram on a linear frequency axis and a
small CNN with statistics pooling over time (in the spirit of the ASVspoof spectrogram CNN
baselines), a few hundred MFLOP per 10 s."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from melganvc.config import DetectorConfig


def log_spectrogram(wave: Tensor, cfg: DetectorConfig) -> Tensor:
    """``(samples,)`` audio at ``cfg.sample_rate`` -> ``(freq, frames)`` in [-1, 1].

    Levels are relative to the loudest bin and floored ``cfg.floor_db`` below it, so the
    features do not depend on gain, and digital silence looks like a quiet noise floor.
    """
    window = torch.hann_window(cfg.n_fft, device=wave.device)
    spec = torch.stft(wave, cfg.n_fft, cfg.hop_length, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    peak = power.max().clamp_min(1e-20)
    db = 10.0 * torch.log10(torch.maximum(power, peak * 10 ** (cfg.floor_db / 10)) / peak)
    return db / (-cfg.floor_db / 2) + 1.0


def batch_features(waves: list[Tensor], cfg: DetectorConfig) -> tuple[Tensor, Tensor]:
    """Spectrograms of waves of any lengths, padded with the floor (-1): ``(batch, 1, freq,
    frames)`` and each one's frame count."""
    specs = [log_spectrogram(w, cfg) for w in waves]
    frames = max(s.shape[1] for s in specs)
    out = specs[0].new_full((len(specs), 1, specs[0].shape[0], frames), -1.0)
    for i, s in enumerate(specs):
        out[i, 0, :, : s.shape[1]] = s
    return out, torch.tensor([s.shape[1] for s in specs])


class DetectorNet(nn.Module):
    """Spectrogram -> one logit (converted vs real); padding frames are masked out of the
    mean/std pooling, so a batch may hold crops of different lengths."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, freq = 1, cfg.n_fft // 2 + 1
        for i, c_out in enumerate(cfg.channels):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d((2, 2 if i < 4 else 1))]
            c_in, freq = c_out, freq // 2
        self.body = nn.Sequential(*layers)
        self.time_stride = 2 ** min(4, len(cfg.channels))  # time pooled by 2 in blocks 1-4
        self.head = nn.Sequential(nn.Linear(2 * c_in * freq, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(cfg.hidden, 1))

    def forward(self, spec: Tensor, frames: Tensor) -> Tensor:
        h = self.body(spec)  # (batch, channels, freq, time)
        h = h.flatten(1, 2)
        steps = torch.clamp(frames.to(h.device) // self.time_stride, 1, h.shape[-1])
        mask = (torch.arange(h.shape[-1], device=h.device)[None, :] < steps[:, None]).to(h.dtype)
        count = mask.sum(1, keepdim=True)
        mean = (h * mask[:, None, :]).sum(-1) / count
        var = ((h - mean[..., None]).square() * mask[:, None, :]).sum(-1) / count
        return self.head(torch.cat([mean, var.clamp_min(1e-8).sqrt()], dim=1)).squeeze(1)
