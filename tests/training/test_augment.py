"""DiffAugment for the critic: shape, randomness, silence fill, and the gradient reaching G."""

from __future__ import annotations

import torch

from melganvc.training.augment import CUTOUT_FRACTION, LEVEL, SILENCE, augment_crops


def crops(batch: int = 8, n_mels: int = 16, frames: int = 48) -> torch.Tensor:
    return torch.rand(batch, n_mels, frames, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8


def test_shape_kept_and_each_crop_transformed_differently() -> None:
    x = crops()
    y = augment_crops(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert not torch.equal(y, x)
    # at least a quarter of every crop's frames is silence (cutout), the same across mels
    silent = (y == SILENCE).all(dim=1)
    assert (silent.sum(dim=1) >= int(x.shape[-1] * CUTOUT_FRACTION)).all()
    patterns = {tuple(row.tolist()) for row in silent}
    assert len(patterns) > 1


def test_seeded_draws_repeat() -> None:
    x = crops()
    a = augment_crops(x, torch.Generator().manual_seed(3))
    b = augment_crops(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_kept_frames_are_shifted_copies_with_one_level_offset() -> None:
    x = crops(batch=4)
    y = augment_crops(x, torch.Generator().manual_seed(5))
    frames = x.shape[-1]
    for original, out in zip(x, y):
        kept = ~(out == SILENCE).all(dim=0)
        matched = False
        for shift in range(-frames // 8, frames // 8 + 1):
            moved = torch.roll(original, shift, dims=-1)
            offset = (out[:, kept] - moved[:, kept]).mean()
            if abs(offset) <= LEVEL + 1e-6 and torch.allclose(out[:, kept], moved[:, kept] + offset,
                                                             atol=1e-5):
                matched = True
                break
        assert matched


def test_gradient_flows_through_kept_frames_only() -> None:
    x = crops(batch=2).requires_grad_(True)
    y = augment_crops(x, torch.Generator().manual_seed(0))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # every input frame contributes at most once; cut or shifted-out frames get no gradient
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}
    assert (x.grad == 0).any()
