"""The Griffin-Lim building blocks behind ``Inverter``: a hand-rolled frames-major STFT/ISTFT
pair (one ``irfft`` and one ``rfft`` per iteration, matching ``MelSpectrogram.stft``), the
phase-gradient initial phase and the magnitude projection."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from melganvc.dsp.mel import MelSpectrogram, frames_to_samples


class FrameSTFT:
    """Centred reflect-padded STFT/ISTFT for a fixed frame count, on frames-major spectra.

    Matches ``MelSpectrogram.stft`` (``torch.stft``) but keeps the padded signal between calls so
    a Griffin-Lim iteration costs one ``irfft``, one ``rfft`` and a few cheap passes.
    """

    def __init__(self, mel: MelSpectrogram, frames: int, device: torch.device) -> None:
        cfg = mel.cfg
        self.n_fft, self.hop, self.frames = cfg.n_fft, cfg.hop_length, frames
        self.pad = cfg.n_fft // 2
        self.samples = frames_to_samples(frames, cfg.hop_length)
        self.shifts = -(-cfg.n_fft // cfg.hop_length)  # frames overlapping one hop
        self.window = mel.window.to(device=device, dtype=torch.float32)
        envelope = self._overlap_add(self.window.square().expand(1, frames, -1))
        tiny = torch.finfo(envelope.dtype).tiny ** 0.5
        self.inv_envelope = torch.where(envelope > tiny, 1.0 / envelope, torch.zeros_like(envelope))

    def inverse(self, spec: Tensor) -> Tensor:
        """Frames-major complex spectrum -> padded signal ``(batch, (frames+shifts-1)*hop)``."""
        frames = torch.fft.irfft(spec, n=self.n_fft).mul_(self.window)
        signal = self._overlap_add(frames).mul_(self.inv_envelope)
        return self._reflect(signal)

    def forward(self, signal: Tensor) -> Tensor:
        """Padded signal -> frames-major complex spectrum ``(batch, frames, bins)``."""
        frames = signal.unfold(-1, self.n_fft, self.hop)[:, :self.frames]
        return torch.fft.rfft(frames * self.window)

    def crop(self, signal: Tensor) -> Tensor:
        return signal[:, self.pad:self.pad + self.samples]

    def _overlap_add(self, frames: Tensor) -> Tensor:
        batch, count, n_fft = frames.shape
        hop, shifts = self.hop, self.shifts
        if shifts * hop != n_fft:
            frames = torch.nn.functional.pad(frames, (0, shifts * hop - n_fft))
        parts = frames.reshape(batch, count, shifts, hop)
        out = frames.new_empty(batch, count + shifts - 1, hop)
        out[:, :count] = parts[:, :, 0]
        out[:, count:].zero_()
        for k in range(1, shifts):
            out[:, k:k + count] += parts[:, :, k]
        return out.reshape(batch, -1)

    def _reflect(self, signal: Tensor) -> Tensor:
        """Re-impose the reflect padding ``torch.stft(center=True)`` would add to the crop."""
        pad, n = self.pad, self.samples
        if n > pad:
            signal[:, :pad] = signal[:, pad + 1:2 * pad + 1].flip(-1)
            signal[:, pad + n:2 * pad + n] = signal[:, n - 1:pad + n - 1].flip(-1)
        else:  # too short to reflect: MelSpectrogram zero-extends such inputs
            signal[:, :pad] = 0
            signal[:, pad + n:] = 0
        return signal


def unit_phase(spec: Tensor) -> Tensor:
    """Complex values scaled to modulus 1 (0 becomes 1)."""
    mag = spec.abs()
    return torch.where(mag > 0, spec / mag.clamp(min=1e-30), torch.ones_like(spec))


def peak_phase(magnitude: Tensor, n_fft: int, hop: int) -> Tensor:
    """Phase-vocoder initial phase for frames-major ``magnitude (batch, frames, bins)``.

    A stationary partial at ``f`` cycles/sample gives bin ``k`` of centred frame ``m`` the phase
    ``2 pi (f m hop - k / 2)``. Each bin takes ``f`` from its nearest local spectral peak
    (parabolic interpolation on log-magnitude) and integrates it over frames, so GL starts near
    a coherent solution instead of noise (lower final error than random phases, same cost as a
    few iterations). Returns unit complex numbers of the same shape.
    """
    bins = magnitude.shape[-1]
    if bins < 3:
        return torch.ones_like(magnitude, dtype=torch.complex64)
    floor = 1e-6 * magnitude.amax(dim=(-2, -1), keepdim=True) + 1e-30
    logm = torch.log(magnitude + floor)
    left, mid, right = logm[..., :-2], logm[..., 1:-1], logm[..., 2:]
    peak = (mid >= left) & (mid > right)
    curve = (left + right - 2 * mid).clamp_(max=-1e-6)
    k = torch.arange(1, bins - 1, device=logm.device, dtype=logm.dtype).expand_as(mid)
    position = torch.div(left - right, curve).mul_(0.5).clamp_(-0.5, 0.5).add_(k)
    far = float(4 * bins)
    below = torch.cummax(k.masked_fill(~peak, -far), dim=-1).values
    above = torch.cummin(k.masked_fill(~peak, far).flip(-1), dim=-1).values.flip(-1)
    nearest = torch.where(k - below <= above - k, below, above).clamp_(1, bins - 2).long() - 1
    cycles = torch.gather(position, -1, nearest).mul_(hop / n_fft).frac_()
    cycles = torch.cat([cycles[..., :1], cycles, cycles[..., -1:]], dim=-1)  # edge bins
    half = torch.arange(bins, device=logm.device).remainder(2).to(logm.dtype) * 0.5
    angle = cycles.cumsum_(dim=-2).sub_(half).mul_(2 * math.pi)
    return torch.complex(torch.cos(angle), torch.sin(angle))


def project_magnitude(spec: Tensor, target: Tensor, scale: Tensor, eps: Tensor) -> Tensor:
    """Keep the phase, impose the target magnitude (GL's magnitude projection), in place.

    ``scale`` is a zero-filled real ``(..., bins, 2)`` buffer: writing the real factor into its
    first channel and doing one complex multiply beats broadcasting over re/im pairs. ``eps``
    (a 0-d tensor) keeps silent bins finite.
    """
    re, im = torch.view_as_real(spec).unbind(-1)
    power = torch.addcmul(eps, re, re).addcmul_(im, im)
    torch.mul(power.rsqrt_(), target, out=scale[..., 0])
    return spec.mul_(torch.view_as_complex(scale))
