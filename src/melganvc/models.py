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
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

if TYPE_CHECKING:
    from melganvc.config import Config

LEAKY_SLOPE = 0.2
# Keras BatchNormalization defaults: running-stat momentum 0.99 (PyTorch: 1 - 0.99), eps 1e-3
BN_MOMENTUM = 0.01
BN_EPS = 1e-3

__all__ = [
    "Critic",
    "Generator",
    "Siamese",
    "build_models",
    "count_parameters",
    "inference_copy",
    "keras_same_padding",
    "remove_spectral_norm",
    "settle_spectral_norm",
]


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


def remove_spectral_norm(module: nn.Module) -> nn.Module:
    """Bake every spectral-norm parametrisation into a plain weight, in place; returns ``module``.

    For inference/export: the weight becomes ``original / sigma`` with the current estimate of
    sigma (call ``module.eval()`` first so no further power iteration runs). Safe on a
    ``copy.deepcopy`` of a parametrised network (e.g. an EMA copy): a deep copy shares the
    original's parametrised class, and torch's removal edits that class, so each layer gets
    a private copy of its class first.
    """
    from torch.nn.utils import parametrize

    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            cls = type(sub)
            attrs = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            sub.__class__ = type(cls.__name__, cls.__bases__, attrs)
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
    return module


SN_VECTORS = ("._u", "._v")  # state-dict suffixes of the power-iteration vectors


@torch.no_grad()
def settle_spectral_norm(module: nn.Module, iterations: int = 1) -> nn.Module:
    """Run power iterations on every spectral-norm layer's own weight, in place.

    The stored vectors ``u, v`` define the sigma that eval mode divides by. They must belong to
    the weights beside them: an EMA copy's averaged weights need their own vectors (averaging
    the vectors shrinks them and inflates the weights; measured sigma 38 instead of 1 after
    20k GPU steps), and an old checkpoint's vectors are repaired by a few dozen iterations.
    """
    for sub in module.modules():
        for p in getattr(getattr(sub, "parametrizations", None), "weight", ()):
            if hasattr(p, "_power_method"):  # torch's own iteration, as a training forward runs it
                original = sub.parametrizations.weight.original
                p._power_method(p._reshape_weight_to_matrix(original), iterations)
    return module


def inference_copy(module: Generator | Critic | Siamese) -> nn.Module:
    """A new network of the same size in eval mode, without spectral norm, whose weights are
    ``module``'s current normalised weights (``original / sigma``). For conversion and ONNX
    export (the exporter has no ``vdot``, which the spectral-norm parametrisation uses).
    ``module`` is left unchanged.
    """
    from torch.nn.utils import parametrize

    was_training = module.training
    module.eval()  # no power iteration while reading the weights
    try:
        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in module.state_dict().items()
                     if ".parametrizations." not in k}
            for name, sub in module.named_modules():
                if parametrize.is_parametrized(sub, "weight"):
                    state[f"{name}.weight"] = sub.weight.detach().clone()
    finally:
        module.train(was_training)
    hparams = dict(module.hparams)
    if "spectral_norm" in hparams:
        hparams["spectral_norm"] = False
    plain = type(module)(**hparams)
    plain.load_state_dict(state, strict=True)
    plain.eval()
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain


# ----------------------------------------------------------------------------------------------
# time-major 1-D convolution as one GEMM (im2col)
#
# Activations inside the networks are time-major, ``(B, T, C)``: a convolution is then one
# matrix product ``cols (B*T', k*C) @ W (k*C, C')`` whose result already is the next layer's
# ``(B, T', C')`` input, BatchNorm sees a plain ``(B*T', C')`` matrix, channel concatenation is
# along the last dim, and flattening gives Keras' (time, channel) order. On a 2-core CPU this
# is 15-40 % faster than oneDNN's conv1d (forward + backward) for these shapes. Under ONNX
# export/tracing the layers use ``conv1d`` instead (exportable, same function).


def _im2col(xp: Tensor, kernel: int, stride: int) -> Tensor:
    """``(B, Tp, C)`` -> ``(B * T', C * kernel)``: column ``c * kernel + j`` holds channel ``c``
    of frame ``t * stride + j`` (the order of a ``(Cout, Cin, k)`` weight flattened)."""
    b, tp, c = xp.shape
    t_out = (tp - kernel) // stride + 1
    return xp.unfold(1, kernel, stride).reshape(b * t_out, c * kernel)


def _grad_wanted(ctx, i: int) -> bool:
    """Whether input ``i``'s gradient is used by *this* backward pass.

    ``ctx.needs_input_grad`` only says it requires grad; a ``backward(inputs=...)`` that asks
    for other tensors (e.g. D's weights only, or G's only through D) need not compute it.
    The engine knows (``_will_engine_execute_node``); where it cannot tell, assume it is.
    """
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None:
        return True
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError):  # private API missing, or autograd.grad on a leaf
        return True


class _Im2colConv(torch.autograd.Function):
    """``y = im2col(xp) @ w2.T``; backward reuses the saved columns (no unfold_backward) and
    skips the products whose gradient this pass does not use."""

    @staticmethod
    def forward(ctx, xp: Tensor, w2: Tensor, kernel: int, stride: int) -> Tensor:
        cols = _im2col(xp, kernel, stride)
        out = cols @ w2.t()  # under autocast: in the autocast dtype
        # keep what backward multiplies in the dtype the product ran in (autocast or not)
        ctx.save_for_backward(cols.to(out.dtype), w2.to(out.dtype))
        ctx.meta = (xp.shape, kernel, stride)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        cols, w2 = ctx.saved_tensors
        (b, tp, c), kernel, stride = ctx.meta
        grad_out = grad_out.to(cols.dtype)  # the engine casts our grads back to xp's / w2's
        grad_x = grad_w = None
        if _grad_wanted(ctx, 1):
            grad_w = grad_out.t() @ cols
        if _grad_wanted(ctx, 0):
            t_out = cols.shape[0] // b
            grad_cols = (grad_out @ w2).view(b, t_out, c, kernel)
            grad_x = grad_out.new_zeros(b, tp, c)
            span = stride * (t_out - 1) + 1
            for j in range(kernel):  # col2im: scatter-add each tap back onto its frames
                grad_x[:, j : j + span : stride].add_(grad_cols[..., j])
        return grad_x, grad_w, None, None


def _conv_time_major(x: Tensor, w_ock: Tensor, stride: int, pad: tuple[int, int]) -> Tensor:
    """Conv over time of ``x (B, T, Cin)`` with weight ``(Cout, Cin, k)`` -> ``(B, T', Cout)``."""
    c_out, c_in, kernel = w_ock.shape
    b = x.shape[0]
    if _exporting():  # plain conv1d: what ONNX/TorchScript know
        xc = x.transpose(1, 2)
        xc = F.pad(xc, pad) if any(pad) else xc
        return F.conv1d(xc, w_ock, stride=stride).transpose(1, 2)
    xp = F.pad(x, (0, 0, pad[0], pad[1])) if any(pad) else x
    w2 = w_ock.reshape(c_out, c_in * kernel)  # a view: column c * kernel + j
    if torch.is_grad_enabled() and (xp.requires_grad or w2.requires_grad):
        y = _Im2colConv.apply(xp, w2, kernel, stride)
    else:
        y = _im2col(xp, kernel, stride) @ w2.t()
    return y.view(b, -1, c_out)


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


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export() \
        or torch.compiler.is_compiling()


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

    def forward(self, x: Tensor) -> Tensor:
        if not _exporting():
            _check_mels(x, self.n_mels, "Critic")
            if x.shape[-1] != self.frames:
                raise ValueError(f"Critic: built for {self.frames} frames, got {x.shape[-1]}")
        h = _act(self.conv1(x.transpose(1, 2)))
        h = _act(self.conv2(h))
        h = _act(self.conv3(h))
        return self.dense(h.flatten(1)).squeeze(1)  # Keras flatten order: (time, channel)


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
    """G, D and S for ``cfg`` (``features.n_mels``, ``model.*``); D sees crops of 3 * L frames."""
    n_mels, m = cfg.features.n_mels, cfg.model
    gen = Generator(n_mels, m.generator_channels, spectral_norm=m.spectral_norm)
    critic = Critic(n_mels, 3 * m.chunk_frames, m.critic_channels, spectral_norm=m.spectral_norm)
    siam = Siamese(n_mels, m.chunk_frames, m.siamese_channels, m.vec_len)
    return gen, critic, siam
