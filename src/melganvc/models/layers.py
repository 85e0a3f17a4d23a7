"""MelGAN-VC networks: generator G (U-Net), critic D and siamese S (method.md, "Networks").

The reference builds every network from 2-D Keras convolutions on a ``(n_mels, frames, 1)``
image. Its first convolution's kernel spans all ``n_mels`` frequency bins with "valid" padding,
so from there on the frequency axis has size 1 and every ``(1, k)`` convolution is really a 1-D
convolution over time with the channels as features. We compute exactly that, which is the
same function as the 2-D reference (the tests check it against a literal 2-D implementation)
and much faster on a CPU:

* the ``(n_mels, 3)`` convolutions are 1-D convolutions with ``n_mels`` input channels,
* the ``(1, k)`` convolutions are 1-D with Keras "same" padding (extra pad on the right, as
  TensorFlow does),
* Keras ``UpSampling2D((1, 2))`` (nearest) followed by a "same" ``(1, k)`` convolution is
  computed in polyphase form: one convolution on the *un-upsampled* signal whose output
  channels hold the even and the odd output frames (the kernel taps that read the same
  repeated input frame are summed). Same result, about half the multiply-adds,
* G's final ``(n_mels, 1)`` transposed convolution (one output channel) is a pointwise map
  from the channels to the ``n_mels`` bins plus one scalar bias.

Inside the networks activations are time-major ``(B, T, C)`` and each convolution is a single
im2col matrix product (see ``_conv_time_major``); under ONNX export/tracing the same layers use
``conv1d`` instead.

Parameters keep the *2-D reference's shapes*: a conv weight is ``(out, in, kh, kw)``, the
transposed conv's is ``(in, out, kh, kw)`` as in ``nn.ConvTranspose2d``. So parameter counts,
He-uniform fan-ins and the matrices that spectral normalisation sees are those of the
reference. Spectral norm always normalises over dim 0 of the stored weight: for a conv that is
the output channels (Keras reshapes ``(kh, kw, in, out)`` to ``(-1, out)``: same singular
values), for the transposed conv the *input* channels (Keras' ``Conv2DTranspose`` kernel is
``(kh, kw, out, in)``, reshaped to ``(-1, in)``), and for a dense layer the outputs. The dense
layers of D and S read the flattened ``(time, channel)`` map in Keras' order.

Public inputs and outputs are mels shaped ``(batch, n_mels, frames)`` (no channel dimension).
Training-loop notes: spectral norm runs one power iteration per training-mode forward (as the
reference's layers do per call); ``torch.nn.utils.parametrize.cached()`` around a step computes
each normalised weight once for all calls in it. ``inference_copy`` gives an eval-mode copy
without the parametrisation (conversion, ONNX export).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

from melganvc.models.conv import _conv_time_major

LEAKY_SLOPE = 0.2
# Keras BatchNormalization defaults: running-stat momentum 0.99 (PyTorch: 1 - 0.99), eps 1e-3
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


# ----------------------------------------------------------------------------------------------
# helpers


def keras_same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding of TF/Keras ``padding="same"`` for one axis.

    Output length is ``ceil(length / stride)``; the total pad is split with the extra frame on
    the right (TensorFlow's convention).
    """
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def he_uniform_(weight: Tensor, fan_in: int) -> Tensor:
    """Keras ``he_uniform``: U(-b, b) with b = sqrt(6 / fan_in) (= kaiming_uniform, relu gain)."""
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def glorot_uniform_(weight: Tensor, fan_in: int, fan_out: int) -> Tensor:
    """Keras ``glorot_uniform`` (the default of a plain ``Dense``): b = sqrt(6 / (in + out))."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral norm (1 power iteration per training forward) over dim 0 of ``module.weight``."""
    if enabled:
        _torch_spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=0)
    return module


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


def _bn_act(bn: nn.BatchNorm1d, y: Tensor) -> Tensor:
    """BatchNorm over the channels of a time-major ``(B, T, C)`` map (a ``(B*T, C)`` matrix for
    BatchNorm1d: the same statistics as Keras' BN over (batch, 1, time)), then LeakyReLU."""
    return F.leaky_relu(bn(y.reshape(-1, y.shape[-1])), LEAKY_SLOPE, inplace=True).view(y.shape)


def encoder_geometry(frames: int) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Keras "same" paddings of the critic/siamese stride-2 convs (kernels 9 and 7) after the
    valid (n_mels x 3) conv, and the frames left at the end."""
    t1 = frames - 2
    t2 = -(-t1 // 2)
    return keras_same_padding(t1, 9, 2), keras_same_padding(t2, 7, 2), -(-t2 // 2)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (spectral-norm ``original`` weights count once; u, v are buffers)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)




# ----------------------------------------------------------------------------------------------
# layers (2-D reference parameter shapes; time-major 1-D compute)


class FreqConv(nn.Module):
    """Keras ``Conv2D(out, (n_mels, k), padding="valid", use_bias=False)`` on a mel.

    Weight ``(out, 1, n_mels, k)``; fan_in ``n_mels * k``. ``time_pad`` zero-pads time on both
    sides first (G's ``ZeroPadding2D((0, 1))``). ``(B, T, n_mels) -> (B, T + 2*time_pad - k + 1,
    out)`` (time-major).
    """

    def __init__(self, n_mels: int, out_channels: int, kernel: int = 3, time_pad: int = 0):
        super().__init__()
        self.n_mels, self.out_channels, self.kernel, self.time_pad = (
            n_mels, out_channels, kernel, time_pad)
        self.weight = nn.Parameter(torch.empty(out_channels, 1, n_mels, kernel))
        he_uniform_(self.weight, fan_in=n_mels * kernel)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.reshape(self.out_channels, self.n_mels, self.kernel)
        return _conv_time_major(x, w, 1, (self.time_pad, self.time_pad))

    def extra_repr(self) -> str:
        return (f"{self.n_mels}, {self.out_channels}, kernel=({self.n_mels}, {self.kernel}), "
                f"time_pad={self.time_pad}, bias=False")


class TimeConv(nn.Module):
    """Keras ``Conv2D(out, (1, k), strides=(1, stride), padding="same", use_bias=False)``.

    Weight ``(out, in, 1, k)``; fan_in ``in * k``. ``pad`` is the fixed (left, right) "same"
    padding for the input lengths this layer sees (see :func:`keras_same_padding`).
    ``(B, T, in) -> (B, T', out)`` (time-major).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 pad: tuple[int, int]):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel, self.stride = (
            in_channels, out_channels, kernel, stride)
        self.pad = (int(pad[0]), int(pad[1]))
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, kernel))
        he_uniform_(self.weight, fan_in=in_channels * kernel)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.reshape(self.out_channels, self.in_channels, self.kernel)
        return _conv_time_major(x, w, self.stride, self.pad)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel=(1, {self.kernel}), "
                f"stride=(1, {self.stride}), pad={self.pad}, bias=False")


def _polyphase_taps(kernel: int, left: int) -> tuple[Tensor, int, int]:
    """0/1 map of a "same" conv after nearest x2 upsampling onto the original frames.

    Output frame ``2t + p`` reads upsampled frames ``2t + p - left + j`` (j < kernel), i.e.
    original frame ``t + (p - left + j) // 2``. Returns ``M`` with ``M[j, p, d] = 1`` where
    tap ``j`` of phase ``p`` reads offset ``d + dmin``, and ``dmin``, ``dmax``.
    """
    offsets = [[(p - left + j) // 2 for j in range(kernel)] for p in (0, 1)]
    dmin = min(min(o) for o in offsets)
    dmax = max(max(o) for o in offsets)
    taps = torch.zeros(kernel, 2, dmax - dmin + 1)
    for p in (0, 1):
        for j, d in enumerate(offsets[p]):
            taps[j, p, d - dmin] = 1.0
    return taps, dmin, dmax


class UpTimeConv(nn.Module):
    """Keras ``UpSampling2D((1, 2))`` then ``Conv2D(out, (1, k), padding="same", use_bias=False)``.

    Weight ``(out, in, 1, k)`` as in the reference; computed in polyphase form (module
    docstring): one convolution with ``2 * out`` channels and ``dmax - dmin + 1`` taps on the
    un-upsampled input; in time-major layout its output ``(B, T, 2, out)`` (phase-major
    channels) *is* ``(B, 2T, out)``, frame ``2t + p``. ``(B, T, in) -> (B, 2T, out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel = in_channels, out_channels, kernel
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, kernel))
        he_uniform_(self.weight, fan_in=in_channels * kernel)
        # stride 1 on an even length (2T): "same" pad is (k-1)//2 left, the rest right
        left = (kernel - 1) // 2
        taps, dmin, dmax = _polyphase_taps(kernel, left)
        self.register_buffer("taps", taps, persistent=False)
        self.phase_pad = (-dmin, dmax)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.reshape(self.out_channels, self.in_channels, self.kernel)
        # (out, in, k) x (k, 2, K) -> (2, out, in, K) -> (2 * out, in, K); channel p * out + o
        wp = torch.einsum("oik,kpd->poid", w, self.taps)
        wp = wp.reshape(2 * self.out_channels, self.in_channels, wp.shape[-1])
        y = _conv_time_major(x, wp, 1, self.phase_pad)  # (B, T, 2 * out)
        b, t, _ = y.shape
        return y.reshape(b, 2 * t, self.out_channels)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, upsample=(1, 2), "
                f"kernel=(1, {self.kernel}), bias=False")


class FreqTransposedConv(nn.Module):
    """Keras ``Conv2DTranspose(1, (n_mels, 1), padding="valid")`` with bias: ``(B, T, C)`` ->
    ``(B, T, n_mels)`` (time-major), a pointwise map from the channels to the mel bins.

    Weight ``(in, 1, n_mels, 1)`` (``nn.ConvTranspose2d`` layout), one scalar bias. Keras'
    fan_in for a transposed kernel is ``kh * kw * filters = n_mels`` (same as PyTorch's).
    """

    def __init__(self, in_channels: int, n_mels: int):
        super().__init__()
        self.in_channels, self.n_mels = in_channels, n_mels
        self.weight = nn.Parameter(torch.empty(in_channels, 1, n_mels, 1))
        self.bias = nn.Parameter(torch.zeros(1))
        he_uniform_(self.weight, fan_in=n_mels)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.reshape(self.in_channels, self.n_mels)
        return torch.matmul(x, w) + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_channels}, 1, kernel=({self.n_mels}, 1), transposed, bias=True"


def _check_mels(x: Tensor, n_mels: int, name: str) -> None:
    if x.dim() != 3 or x.shape[1] != n_mels:
        raise ValueError(f"{name}: expected mels shaped (batch, {n_mels}, frames), "
                         f"got {tuple(x.shape)}")


