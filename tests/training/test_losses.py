"""Losses: tiny cases computed by hand, and the reference notebook's formulas in NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from melganvc.training.losses import (
    critic_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    identity_loss,
    l2_normalize,
    margin_loss,
    travel_loss,
)


def t(x):
    return torch.tensor(x, dtype=torch.float64)


# ------------------------------------------------------------------------------ adversarial


def test_critic_hinge_by_hand():
    # real: relu(1 - [2, 0.5, -1]) = [0, 0.5, 2] -> mean 2.5/3
    # fake: relu(1 + [-2, 0, 0.5]) = [0, 1, 1.5] -> mean 2.5/3
    loss = critic_hinge_loss(t([2.0, 0.5, -1.0]), t([-2.0, 0.0, 0.5]))
    assert float(loss) == pytest.approx(0.5 * (2.5 / 3 + 2.5 / 3))


def test_critic_hinge_zero_when_confident_and_column_shape():
    assert float(critic_hinge_loss(t([1.0, 3.0]), t([-1.0, -5.0]))) == 0.0
    # (batch, 1) scores give the same value as (batch,)
    a, b = t([0.2, -0.3]), t([0.1, 0.7])
    column = critic_hinge_loss(a[:, None], b[:, None])
    assert float(column) == pytest.approx(float(critic_hinge_loss(a, b)))


def test_critic_hinge_gradient():
    d_real = t([0.5, 2.0]).requires_grad_()
    d_fake = t([0.0, -3.0]).requires_grad_()
    critic_hinge_loss(d_real, d_fake).backward()
    # d/dr of 0.5 * mean relu(1 - r): -0.5/2 where active; fake: +0.5/2 where active
    assert d_real.grad.tolist() == [-0.25, 0.0]
    assert d_fake.grad.tolist() == [0.25, 0.0]


def test_generator_adversarial_by_hand():
    assert float(generator_adversarial_loss(t([1.0, -3.0, 5.0]))) == pytest.approx(-1.0)
    assert float(generator_adversarial_loss(t([[2.0], [4.0]]))) == pytest.approx(-3.0)


# ------------------------------------------------------------------------------ identity


def test_identity_by_hand():
    g_b = t([[[1.0, -1.0], [0.5, 0.0]]])
    b = t([[[0.0, -1.0], [1.0, 0.25]]])
    # |diffs| = 1, 0, 0.5, 0.25 -> mean 1.75 / 4
    assert float(identity_loss(g_b, b)) == pytest.approx(0.4375)


def test_identity_mean_over_chunks_equals_reference_average():
    """Reference: (mae(b1, G(b1)) + mae(b2, G(b2)) + mae(b3, G(b3))) / 3 on equal chunks."""
    g = torch.Generator().manual_seed(0)
    b = torch.rand(2, 4, 9, generator=g)
    gb = torch.rand(2, 4, 9, generator=g)
    per_chunk = [identity_loss(x, y) for x, y in zip(gb.split(3, -1), b.split(3, -1), strict=True)]
    assert float(identity_loss(gb, b)) == pytest.approx(float(sum(per_chunk) / 3))


# ------------------------------------------------------------------------------ TraVeL


def test_travel_by_hand():
    # sample 1: ds = [1, 0], dg = [0, 1]  -> sq err (1 + 1), cosine 0
    # sample 2: ds = [2, 0], dg = [3, 0]  -> sq err (1 + 0), cosine 1
    s_a1 = t([[1.0, 0.0], [2.0, 0.0]])
    s_a2 = t([[0.0, 0.0], [0.0, 0.0]])
    s_g1 = t([[0.0, 2.0], [4.0, 1.0]])
    s_g2 = t([[0.0, 1.0], [1.0, 1.0]])
    l1 = (1 + 1 + 1 + 0) / 4  # mean over all 4 elements
    l2 = (-0.0 + -1.0) / 2  # mean over the batch of -cosine
    assert float(travel_loss(s_a1, s_a2, s_g1, s_g2)) == pytest.approx(l1 + l2)


def test_travel_opposite_directions():
    ds = t([[1.0, 1.0]])
    # dg = -ds: cosine -1, sq err = (2^2 + 2^2)/2 = 4
    assert float(travel_loss(ds, t([[0.0, 0.0]]), -ds, t([[0.0, 0.0]]))) == pytest.approx(4.0 + 1.0)


def _reference_travel_np(sa, sab, sa1, sab1):
    """The notebook's loss_travel(sa, sab, sa1, sab1) with tf ops spelled in NumPy."""

    def l2n(x):
        return x / np.sqrt(np.maximum(np.sum(x * x, axis=-1, keepdims=True), 1e-12))

    l1 = np.mean(((sa - sa1) - (sab - sab1)) ** 2)
    l2 = np.mean(np.sum(-(l2n(sa - sa1) * l2n(sab - sab1)), axis=-1))
    return l1 + l2


def test_travel_matches_reference_argument_order():
    rng = np.random.default_rng(0)
    sa, sa1, sab, sab1 = (rng.normal(size=(5, 8)) for _ in range(4))
    # reference call: loss_travel(sa=S(a1), sab=S(G(a1)), sa1=S(a2), sab1=S(G(a2)))
    want = _reference_travel_np(sa, sab, sa1, sab1)
    got = travel_loss(t(sa), t(sa1), t(sab), t(sab1))
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_travel_zero_difference_is_finite():
    s = t([[1.0, 2.0, 3.0]]).requires_grad_()
    g = t([[0.5, 0.5, 0.5]]).requires_grad_()
    loss = travel_loss(s, s.detach().clone(), g, g.detach().clone())  # Δs = Δg = 0
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(g.grad).all()


def test_l2_normalize():
    x = t([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(l2_normalize(x), t([[0.6, 0.8], [0.0, 0.0]]))


# ------------------------------------------------------------------------------ margin


def test_margin_by_hand():
    s_a1 = t([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    s_a2 = t([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    # distances 1, 5, 1 ; delta 2 -> max(0, 2 - d)^2 = 1, 0, 1 -> mean 2/3
    assert float(margin_loss(s_a1, s_a2, 2.0)) == pytest.approx(2.0 / 3.0)


def test_margin_is_l2_not_l1():
    # L2 distance of (1, 1) is sqrt(2) (an L1 sum would give 2 and a zero loss)
    loss = margin_loss(t([[1.0, 1.0]]), t([[0.0, 0.0]]), 2.0)
    assert float(loss) == pytest.approx((2.0 - math.sqrt(2.0)) ** 2)


def test_margin_matches_reference():
    rng = np.random.default_rng(1)
    sa, sa1 = rng.normal(size=(6, 4)) * 0.5, rng.normal(size=(6, 4)) * 0.5
    logits = np.sqrt(np.sum((sa - sa1) ** 2, axis=-1, keepdims=True))
    want = np.mean(np.square(np.maximum(2.0 - logits, 0)))
    assert float(margin_loss(t(sa), t(sa1), 2.0)) == pytest.approx(want, rel=1e-12)


def test_margin_identical_vectors_finite_gradient():
    s = t([[1.0, 2.0]]).requires_grad_()
    loss = margin_loss(s, s.detach().clone(), 2.0)
    assert loss.item() == pytest.approx(4.0)
    loss.backward()
    assert torch.isfinite(s.grad).all()


def test_margin_gradient_pushes_apart():
    s1 = t([[0.5, 0.0]]).requires_grad_()
    margin_loss(s1, t([[0.0, 0.0]]), 2.0).backward()
    # d/ds1 of (2 - |s1|)^2 = -2 (2 - 0.5) * s1/|s1| = [-3, 0]
    torch.testing.assert_close(s1.grad, t([[-3.0, 0.0]]))


def test_losses_return_scalars_float32():
    x = torch.rand(4, 8)
    for value in (critic_hinge_loss(x[:, 0], x[:, 1]), generator_adversarial_loss(x[:, 0]),
                  travel_loss(x, x.flip(0), x * 2, x.flip(0) * 2), margin_loss(x, x.flip(0), 2.0),
                  identity_loss(x, x.flip(0))):
        assert value.shape == () and value.dtype == torch.float32


def test_feature_matching_compares_batch_means_and_trains_only_the_fake() -> None:
    torch.manual_seed(0)
    real = [[torch.randn(4, 6, 5), torch.randn(4, 3, 2, 2), torch.randn(4)]]
    fake = [[t.clone().requires_grad_(True) for t in real[0]]]
    assert float(feature_matching_loss(real, fake)) == pytest.approx(0.0, abs=1e-7)
    shuffled = [[t[torch.randperm(4)].clone().requires_grad_(True) for t in real[0]]]
    assert float(feature_matching_loss(real, shuffled)) == pytest.approx(0.0, abs=1e-6)  # unpaired
    moved = [[(t + 0.5).requires_grad_(True) for t in real[0]]]
    loss = feature_matching_loss(real, moved)
    assert float(loss) == pytest.approx(0.5, rel=1e-5)  # the scores (last) are not matched
    loss.backward()
    assert moved[0][0].grad is not None and moved[0][-1].grad is None
    real_leaf = [[t.clone().requires_grad_(True) for t in real[0]]]
    feature_matching_loss(real_leaf, moved).backward()
    assert real_leaf[0][0].grad is None  # real features are constants
