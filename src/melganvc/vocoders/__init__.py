"""Mel -> waveform by ``inversion.method``: Griffin-Lim or GRAD (``melganvc.dsp.inversion``) or
the pretrained HiFi-GAN (``hifigan``). ``build_inverter`` is the one place that chooses."""

from __future__ import annotations

from typing import TypeAlias

from melganvc.config import ConversionConfig, FeatureConfig, InversionConfig
from melganvc.dsp.inversion import Inverter
from melganvc.vocoders.hifigan import HifiganInverter

AnyInverter: TypeAlias = Inverter | HifiganInverter


def build_inverter(features: FeatureConfig, inversion: InversionConfig | None = None, *,
                   block_frames: int = ConversionConfig.block_frames,
                   overlap_frames: int = ConversionConfig.block_overlap) -> AnyInverter:
    """The inverter ``inversion.method`` names, for mels of ``features``; both kinds take
    normalised mels and give ``(frames - 1) * hop`` samples, whole or by ``stream()``."""
    inversion = inversion or InversionConfig()
    if inversion.method == "hifigan":
        return HifiganInverter(features, block_frames=block_frames, overlap_frames=overlap_frames)
    return Inverter(features, inversion, block_frames=block_frames, overlap_frames=overlap_frames)
