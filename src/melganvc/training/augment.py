"""Differentiable augmentation of the critic's inputs (DiffAugment, Zhao et al. 2020).

With ~50 s of target speech the critic can memorise the target's training crops, and the
generator is then rewarded for reproducing fragments of them instead of the source's words.
DiffAugment shows the critic only randomly transformed crops, real and translated alike, and
passes the generator's gradient through the same transformation, so nothing leaks into G's
output. The transformations keep what identifies a speaker (no frequency shifts):
- ``shift``: a time translation by up to 1/8 of the crop, filled with silence;
- ``cutout``: a quarter of the crop's frames set to silence;
- ``level``: the whole crop louder or softer by up to 5 % of the dB range.
"""

from __future__ import annotations

import torch
from torch import Tensor

SILENCE = -1.0  # the floor of the normalised mel
SHIFT_FRACTION = 1 / 8
CUTOUT_FRACTION = 1 / 4
LEVEL = 0.1  # of the [-1, 1] range: 5 % of the dB range


def augment_crops(mel: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``(batch, n_mels, frames)`` -> the same shape, each crop transformed independently.

    Random numbers are drawn on the CPU (``generator``, else torch's global one, which
    checkpoints save), so a resumed run draws the same augmentations on any device."""
    batch, _, frames = mel.shape
    max_shift = max(1, int(frames * SHIFT_FRACTION))
    width = max(1, int(frames * CUTOUT_FRACTION))
    shift = torch.randint(-max_shift, max_shift + 1, (batch, 1), generator=generator)
    cut_start = torch.randint(0, frames - width + 1, (batch, 1), generator=generator)
    level = (torch.rand(batch, 1, 1, generator=generator) * 2 - 1) * LEVEL

    t = torch.arange(frames).unsqueeze(0)  # (1, frames)
    source = t - shift  # frame each output frame reads from
    keep = (source >= 0) & (source < frames) & ~((t >= cut_start) & (t < cut_start + width))
    index = source.clamp(0, frames - 1).to(mel.device)
    moved = torch.gather(mel, 2, index.unsqueeze(1).expand(-1, mel.shape[1], -1))
    out = moved + level.to(mel.device, mel.dtype)
    return torch.where(keep.to(mel.device).unsqueeze(1), out, torch.full_like(out, SILENCE))
