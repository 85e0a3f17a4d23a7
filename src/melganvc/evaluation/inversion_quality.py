"""How well an inversion reproduces a waveform: mel L1 and spectral convergence
(tests and benchmarks)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from melganvc.config import FeatureConfig
from melganvc.dsp.inversion import Inverter
from melganvc.dsp.mel import MelSpectrogram

# --- metrics ----------------------------------------------------------------------------------

def linear_magnitude(mel: MelSpectrogram, wave: Tensor) -> Tensor:
    """``|STFT| / sqrt(sum(window^2))`` of ``wave (batch, samples)``: ``(batch, bins, frames)``."""
    return mel.stft(wave).abs() / math.sqrt(mel.power_scale)


def mel_l1(mel: MelSpectrogram, wave: Tensor, target_power: Tensor) -> Tensor:
    """Mean |mel power(wave) - target|, the reference GRAD loss."""
    power = mel.linear_mel(wave)
    frames = min(power.shape[-1], target_power.shape[-1])
    return (power[..., :frames] - target_power[..., :frames]).abs().mean()


def spectral_convergence(wave: Tensor, target_magnitude: Tensor,
                         features: FeatureConfig | MelSpectrogram | None = None) -> Tensor:
    """``||S_target - |STFT(wave)|||_F / ||S_target||_F`` per batch item (scalar if unbatched).

    ``target_magnitude`` is in ``MelSpectrogram`` units, ``(batch, bins, frames)``; frames are
    cropped to the shorter of the two.
    """
    mel = features if isinstance(features, MelSpectrogram) else MelSpectrogram(
        features or FeatureConfig()).to(wave.device)
    squeeze = wave.dim() == 1
    wave = wave.unsqueeze(0) if squeeze else wave
    target = target_magnitude.unsqueeze(0) if target_magnitude.dim() == 2 else target_magnitude
    estimate = linear_magnitude(mel, wave.float())
    frames = min(estimate.shape[-1], target.shape[-1])
    target = target[..., :frames].float()
    sc = (target - estimate[..., :frames]).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)
    return sc[0] if squeeze else sc


@torch.no_grad()
def inversion_quality(inverter: Inverter, wave: Tensor) -> dict[str, float]:
    """Audio -> mel -> ``inverter`` -> audio: SC of linear magnitude (vs the original) and mel.

    ``sc_linear`` compares with the *original* audio's magnitude, so it includes what the mel
    threw away; ``sc_mel`` checks how well the result reproduces the mel it was given.
    """
    mel = inverter.mel
    wave = wave.reshape(1, -1).float()
    feats = mel(wave)
    out = inverter(feats)
    sc_linear = spectral_convergence(out, linear_magnitude(mel, wave), mel)
    target = mel.to_linear(feats)
    power = mel.linear_mel(out)[..., :target.shape[-1]]
    sc_mel = (target - power).norm() / target.norm()
    return {"sc_linear": float(sc_linear[0]), "sc_mel": float(sc_mel)}
