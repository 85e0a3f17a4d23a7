"""The three MelGAN-VC networks (method.md, "Networks"): generator G (U-Net),
critic D and siamese S, built from ``models.layers``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from melganvc.models.conv import _exporting
from melganvc.models.layers import (
    FreqConv,
    FreqTransposedConv,
    TimeConv,
    UpTimeConv,
    _act,
    _bn,
    _bn_act,
    _check_mels,
    _maybe_sn,
    encoder_geometry,
    glorot_uniform_,
    he_uniform_,
    keras_same_padding,
)

if TYPE_CHECKING:
    from melganvc.config import Config



# ----------------------------------------------------------------------------------------------
# networks


class Generator(nn.Module):
    """U-Net G: ``(B, n_mels, T) -> (B, n_mels, T)`` in [-1, 1], for any ``T`` divisible by 4.

    Reference (per chunk of ``T`` frames, ``C = channels``)::

        pad time 1|1 -> conv C (n_mels x 3) valid, BN, LReLU                 g1  (C, T)
        conv C (1 x 9) stride (1, 2) same, BN, LReLU                         g2  (C, T/2)
        conv C (1 x 7) stride (1, 2) same, BN, LReLU                         g3  (C, T/4)
        up x2, conv C (1 x 7) same, BN, LReLU, concat g2                     g4  (2C, T/2)
        up x2, conv C (1 x 9) same, LReLU (no BN), concat g1                 g5  (2C, T)
        transposed conv 1 (n_mels x 1) valid with bias, tanh                 out (n_mels, T)

    For even input lengths Keras' "same" pads of the stride-2 convs are constant (k - 2 in
    total, the extra frame on the right), so one set of pads serves every ``T % 4 == 0``.
    Spectral norm on every conv (``spectral_norm=True``), He-uniform init, no conv bias except
    the last.
    """

    def __init__(self, n_mels: int, channels: int = 256, spectral_norm: bool = True):
        super().__init__()
        self.hparams = {"n_mels": n_mels, "channels": channels, "spectral_norm": spectral_norm}
        self.n_mels, self.channels = n_mels, channels
        c = channels
        sn = spectral_norm
        self.conv1 = _maybe_sn(FreqConv(n_mels, c, kernel=3, time_pad=1), sn)
        self.bn1 = _bn(c)
        self.conv2 = _maybe_sn(TimeConv(c, c, 9, 2, keras_same_padding(4, 9, 2)), sn)  # (3, 4)
        self.bn2 = _bn(c)
        self.conv3 = _maybe_sn(TimeConv(c, c, 7, 2, keras_same_padding(4, 7, 2)), sn)  # (2, 3)
        self.bn3 = _bn(c)
        self.up4 = _maybe_sn(UpTimeConv(c, c, 7), sn)
        self.bn4 = _bn(c)
        self.up5 = _maybe_sn(UpTimeConv(2 * c, c, 9), sn)
        self.out = _maybe_sn(FreqTransposedConv(2 * c, n_mels), sn)

    def forward(self, x: Tensor) -> Tensor:
        if not _exporting():
            _check_mels(x, self.n_mels, "Generator")
            if x.shape[-1] % 4:
                raise ValueError(f"Generator: frames must be a multiple of 4, got {x.shape[-1]}")
        h = x.transpose(1, 2)  # time-major (B, T, n_mels)
        g1 = _bn_act(self.bn1, self.conv1(h))
        g2 = _bn_act(self.bn2, self.conv2(g1))
        g3 = _bn_act(self.bn3, self.conv3(g2))
        g4 = torch.cat([_bn_act(self.bn4, self.up4(g3)), g2], dim=-1)
        g5 = torch.cat([_act(self.up5(g4)), g1], dim=-1)
        return torch.tanh(self.out(g5)).transpose(1, 2).contiguous()


class Critic(nn.Module):
    """Critic D on a whole crop: ``(B, n_mels, frames) -> (B,)`` (one unbounded score each).

    Reference: conv C (n_mels x 3) valid; conv C (1 x 9) stride (1, 2) same; conv C (1 x 7)
    stride (1, 2) same; LReLU after each, no BN; flatten; dense(SN) -> 1 (Keras ``DenseSN``:
    he_uniform kernel, bias). Spectral norm on every conv and the dense. ``frames`` is fixed
    (the dense layer sees ``C * frames'`` features): the reference uses ``3 * L``.
    """

    def __init__(self, n_mels: int, frames: int, channels: int = 512, spectral_norm: bool = True):
        super().__init__()
        if frames < 3:
            raise ValueError(f"Critic: need frames >= 3, got {frames}")
        self.hparams = {"n_mels": n_mels, "frames": frames, "channels": channels,
                        "spectral_norm": spectral_norm}
        self.n_mels, self.frames, self.channels = n_mels, frames, channels
        c, sn = channels, spectral_norm
        pad2, pad3, self.out_frames = encoder_geometry(frames)
        self.conv1 = _maybe_sn(FreqConv(n_mels, c, kernel=3), sn)
        self.conv2 = _maybe_sn(TimeConv(c, c, 9, 2, pad2), sn)
        self.conv3 = _maybe_sn(TimeConv(c, c, 7, 2, pad3), sn)
        self.dense = nn.Linear(c * self.out_frames, 1, bias=True)
        he_uniform_(self.dense.weight, fan_in=c * self.out_frames)
        nn.init.zeros_(self.dense.bias)
        _maybe_sn(self.dense, sn)

    def features(self, x: Tensor) -> list[Tensor]:
        """The three hidden maps (time-major), then the scores: what feature matching reads."""
        if not _exporting():
            _check_mels(x, self.n_mels, "Critic")
            if x.shape[-1] != self.frames:
                raise ValueError(f"Critic: built for {self.frames} frames, got {x.shape[-1]}")
        h1 = _act(self.conv1(x.transpose(1, 2)))
        h2 = _act(self.conv2(h1))
        h3 = _act(self.conv3(h2))
        return [h1, h2, h3, self.dense(h3.flatten(1)).squeeze(1)]  # Keras flatten: (time, channel)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[-1]


class Siamese(nn.Module):
    """Siamese S: ``(B, n_mels, frames) -> (B, vec_len)``.

    Reference: conv C (n_mels x 3) valid; conv C (1 x 9) stride (1, 2) same; conv C (1 x 7)
    stride (1, 2) same; BN + LReLU after each; no spectral norm; flatten; Keras ``Dense(vec_len)``
    (glorot-uniform kernel, zero bias — the Keras defaults the reference keeps).
    """

    def __init__(self, n_mels: int, frames: int, channels: int = 256, vec_len: int = 128):
        super().__init__()
        if frames < 3:
            raise ValueError(f"Siamese: need frames >= 3, got {frames}")
        self.hparams = {"n_mels": n_mels, "frames": frames, "channels": channels,
                        "vec_len": vec_len}
        self.n_mels, self.frames, self.channels, self.vec_len = n_mels, frames, channels, vec_len
        c = channels
        pad2, pad3, self.out_frames = encoder_geometry(frames)
        self.conv1 = FreqConv(n_mels, c, kernel=3)
        self.bn1 = _bn(c)
        self.conv2 = TimeConv(c, c, 9, 2, pad2)
        self.bn2 = _bn(c)
        self.conv3 = TimeConv(c, c, 7, 2, pad3)
        self.bn3 = _bn(c)
        self.dense = nn.Linear(c * self.out_frames, vec_len, bias=True)
        glorot_uniform_(self.dense.weight, fan_in=c * self.out_frames, fan_out=vec_len)
        nn.init.zeros_(self.dense.bias)

    def forward(self, x: Tensor) -> Tensor:
        if not _exporting():
            _check_mels(x, self.n_mels, "Siamese")
            if x.shape[-1] != self.frames:
                raise ValueError(f"Siamese: built for {self.frames} frames, got {x.shape[-1]}")
        h = _bn_act(self.bn1, self.conv1(x.transpose(1, 2)))
        h = _bn_act(self.bn2, self.conv2(h))
        h = _bn_act(self.bn3, self.conv3(h))
        return self.dense(h.flatten(1))  # Keras flatten order: (time, channel)


def build_models(cfg: Config) -> tuple[Generator, Critic, Siamese]:
    """G, D and S for ``cfg`` (``features.n_mels``, ``model.*``); D sees whole training crops."""
    n_mels, m = cfg.features.n_mels, cfg.model
    gen = Generator(n_mels, m.generator_channels, spectral_norm=m.spectral_norm)
    critic = Critic(n_mels, m.crop_chunks * m.chunk_frames, m.critic_channels, spectral_norm=m.spectral_norm)
    siam = Siamese(n_mels, m.chunk_frames, m.siamese_channels, m.vec_len)
    return gen, critic, siam
