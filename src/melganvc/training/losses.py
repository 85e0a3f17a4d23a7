"""MelGAN-VC losses (method.md, "Losses and schedule"), as pure functions of tensors.

Each matches the reference notebook's TensorFlow code:

* ``d_loss_r``/``d_loss_f`` (hinge) averaged: :func:`critic_hinge_loss`
* ``g_loss_f``: :func:`generator_adversarial_loss`
* ``loss_travel(sa, sab, sa1, sab1)``: :func:`travel_loss` with ``sa = S(a1)``, ``sa1 = S(a2)``,
  ``sab = S(G(a1))``, ``sab1 = S(G(a2))``
* ``loss_siamese(sa, sa1)`` (margin): :func:`margin_loss`
* ``mae(b, G(b))`` (identity): :func:`identity_loss`

Vectors from S are ``(batch, vec_len)``; critic scores are ``(batch,)`` or ``(batch, 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

# tf.nn.l2_normalize: x * rsqrt(max(sum(x**2), 1e-12))
_L2_EPS = 1e-12

__all__ = [
    "critic_hinge_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "identity_loss",
    "l2_normalize",
    "margin_loss",
    "travel_loss",
]


def critic_hinge_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """½·[mean relu(1 − D(b)) + mean relu(1 + D(G(a)))]."""
    return 0.5 * (torch.relu(1.0 - d_real).mean() + torch.relu(1.0 + d_fake).mean())


def generator_adversarial_loss(d_fake: Tensor) -> Tensor:
    """−mean D(G(a))."""
    return -d_fake.mean()


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """Unpaired feature matching: mean |E_batch f(b) - E_batch f(G(a))| over every hidden map
    ``f`` of every critic (each critic's list ends with its scores, which are skipped), averaged
    over the maps. Real features are constants here: only G learns from this loss.

    Paired feature matching (MelGAN vocoder) compares one real and one fake clip of the same
    audio; A and B are unpaired, so the batch means are matched instead (Salimans et al. 2016).
    """
    terms = [(r.detach().mean(0) - f.mean(0)).abs().mean()
             for real_maps, fake_maps in zip(real, fake, strict=True)
             for r, f in zip(real_maps[:-1], fake_maps[:-1], strict=True)]
    return torch.stack(terms).mean()


def l2_normalize(x: Tensor, dim: int = -1, eps: float = _L2_EPS) -> Tensor:
    """``tf.nn.l2_normalize``: ``x / sqrt(max(sum(x²), eps))`` along ``dim`` (zero stays zero)."""
    return x * torch.rsqrt(torch.clamp((x * x).sum(dim=dim, keepdim=True), min=eps))


def travel_loss(s_a1: Tensor, s_a2: Tensor, s_g1: Tensor, s_g2: Tensor) -> Tensor:
    """TraVeL: mean((Δs − Δg)²) + mean over samples of −cosine(Δs, Δg).

    Δs = S(a1) − S(a2), Δg = S(G(a1)) − S(G(a2)); the squared error is averaged over every
    element (batch and vector), the cosine is taken per sample along the last dim (eps-safe: a
    zero difference gives cosine 0, not NaN).
    """
    ds = s_a1 - s_a2
    dg = s_g1 - s_g2
    l1 = ((ds - dg) ** 2).mean()
    l2 = (-(l2_normalize(ds) * l2_normalize(dg)).sum(dim=-1)).mean()
    return l1 + l2


def margin_loss(s_a1: Tensor, s_a2: Tensor, delta: float) -> Tensor:
    """Siamese margin: mean over samples of max(0, δ − ‖S(a1) − S(a2)‖₂)².

    The norm's gradient at a zero difference is taken as 0 (``torch.linalg.vector_norm``), so
    identical vectors give the loss δ² without NaN gradients.
    """
    dist = torch.linalg.vector_norm(s_a1 - s_a2, ord=2, dim=-1)
    return torch.relu(delta - dist).pow(2).mean()


def identity_loss(g_b: Tensor, b: Tensor) -> Tensor:
    """mean |G(b) − b| (over every element; averaging equal-size chunks gives the same value)."""
    return (g_b - b).abs().mean()
