"""G, D, S: shapes, parameter counts, init, spectral norm, and equality with the 2-D reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import conv_sigmas
from torch import nn

from melganvc.config import Config, preset_config
from melganvc.models.layers import (
    BN_EPS,
    BN_MOMENTUM,
    FreqConv,
    FreqTransposedConv,
    TimeConv,
    UpTimeConv,
    count_parameters,
    keras_same_padding,
)
from melganvc.models.networks import Critic, Generator, Siamese, build_models
from melganvc.models.spectral_norm import inference_copy, remove_spectral_norm, settle_spectral_norm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reference_models(one_torch_thread):
    torch.manual_seed(0)
    return build_models(Config())


def _rand_mels(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


# ---------------------------------------------------------------------------------------------
# parameter counts (reference config: n_mels 192, L 24, G 256, D 512, S 256 channels, vec 128)


def test_generator_parameter_count(reference_models):
    gen, _, _ = reference_models
    conv1 = 192 * 3 * 1 * 256  # (192 x 3) kernel, 1 in channel, 256 filters = 147456
    conv2 = 1 * 9 * 256 * 256  # 589824
    conv3 = 1 * 7 * 256 * 256  # 458752
    up4 = 1 * 7 * 256 * 256  # on g3 (256 ch): 458752
    up5 = 1 * 9 * 512 * 256  # on g4 = [up4, g2] (512 ch): 1179648
    out = 512 * 1 * 192 * 1 + 1  # transposed (192 x 1), 512 in, 1 filter, + scalar bias: 98305
    bn = 4 * 2 * 256  # gamma, beta of 4 BNs (g5 has none): 2048
    expected = conv1 + conv2 + conv3 + up4 + up5 + out + bn
    assert expected == 2_934_785
    assert count_parameters(gen) == expected
    assert sum(p.numel() for p in gen.parameters()) == expected


def test_critic_parameter_count(reference_models):
    _, critic, _ = reference_models
    # 72 frames -> valid (192x3): 70 -> stride 2: 35 -> stride 2: 18
    conv1 = 192 * 3 * 512  # 294912
    conv2 = 9 * 512 * 512  # 2359296
    conv3 = 7 * 512 * 512  # 1835008
    dense = 18 * 512 * 1 + 1  # 9216 features -> 1, with bias: 9217
    expected = conv1 + conv2 + conv3 + dense
    assert expected == 4_498_433
    assert critic.out_frames == 18
    assert count_parameters(critic) == expected


def test_siamese_parameter_count(reference_models):
    _, _, siam = reference_models
    # 24 frames -> 22 -> 11 -> 6
    conv1 = 192 * 3 * 256  # 147456
    conv2 = 9 * 256 * 256  # 589824
    conv3 = 7 * 256 * 256  # 458752
    bn = 3 * 2 * 256  # 1536
    dense = 6 * 256 * 128 + 128  # 1536 features -> 128, with bias: 196736
    expected = conv1 + conv2 + conv3 + bn + dense
    assert expected == 1_394_304
    assert siam.out_frames == 6
    assert count_parameters(siam) == expected


def test_parameter_shapes_are_the_2d_reference_shapes(reference_models):
    gen, critic, siam = reference_models
    assert gen.conv1.weight.shape == (256, 1, 192, 3)
    assert gen.conv2.weight.shape == (256, 256, 1, 9)
    assert gen.up5.weight.shape == (256, 512, 1, 9)
    assert gen.out.weight.shape == (512, 1, 192, 1)  # ConvTranspose2d layout (in, out, kh, kw)
    assert gen.out.bias.shape == (1,)
    assert critic.conv1.weight.shape == (512, 1, 192, 3)
    assert critic.dense.weight.shape == (1, 9216)
    assert siam.dense.weight.shape == (128, 1536)


# ---------------------------------------------------------------------------------------------
# shapes and ranges


def test_reference_shapes(reference_models):
    gen, critic, siam = reference_models
    gen.eval(), critic.eval(), siam.eval()
    with torch.no_grad():
        y = gen(_rand_mels(3, 192, 24))
        assert y.shape == (3, 192, 24)
        assert critic(_rand_mels(3, 192, 72)).shape == (3,)
        assert siam(_rand_mels(3, 192, 24)).shape == (3, 128)


@pytest.mark.parametrize("frames", [4, 8, 12, 24, 48, 100])
def test_generator_any_multiple_of_4(frames):
    torch.manual_seed(1)
    gen = Generator(16, 8)
    x = _rand_mels(2, 16, frames) * 3  # beyond [-1, 1] on purpose: tanh must still bound it
    y = gen(x)  # training mode
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    gen.eval()
    with torch.no_grad():
        assert gen(x).shape == x.shape


def test_generator_output_in_range_reference_size(reference_models):
    gen, _, _ = reference_models
    gen.train()
    y = gen(_rand_mels(4, 192, 24)).detach()
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    gen.eval()


def test_input_validation():
    gen, critic, siam = Generator(16, 8), Critic(16, 24, 8), Siamese(16, 8, 8, 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        gen(torch.zeros(1, 16, 10))
    with pytest.raises(ValueError, match="n_mels|16"):
        gen(torch.zeros(1, 15, 8))
    with pytest.raises(ValueError, match="24 frames"):
        critic(torch.zeros(1, 16, 12))
    with pytest.raises(ValueError, match="8 frames"):
        siam(torch.zeros(1, 16, 12))


def test_generator_chunks_batch_equals_single():
    """Conversion batches chunks: in eval mode each chunk's output is independent of the batch."""
    torch.manual_seed(9)
    gen = Generator(192, 32).eval()
    x = _rand_mels(5, 192, 24, seed=3)
    with torch.no_grad():
        whole = gen(x)
        single = torch.cat([gen(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(whole, single, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Keras "same" padding, polyphase upsampling


@pytest.mark.parametrize(
    ("length", "kernel", "stride", "pad"),
    [(24, 9, 2, (3, 4)), (12, 7, 2, (2, 3)), (70, 9, 2, (3, 4)), (35, 7, 2, (3, 3)),
     (22, 9, 2, (3, 4)), (11, 7, 2, (3, 3)), (12, 7, 1, (3, 3)), (8, 4, 1, (1, 2)),
     (5, 9, 2, (4, 4)), (2, 9, 2, (3, 4))],
)
def test_keras_same_padding_values(length, kernel, stride, pad):
    assert keras_same_padding(length, kernel, stride) == pad


def test_keras_same_padding_gives_ceil_length():
    for n in range(1, 40):
        for k in range(1, 10):
            for s in (1, 2, 3):
                left, right = keras_same_padding(n, k, s)
                assert 0 <= right - left <= 1
                out = (n + left + right - k) // s + 1
                assert out == math.ceil(n / s), (n, k, s)


@pytest.mark.parametrize("kernel", [3, 4, 7, 9])
def test_polyphase_upsample_conv_equals_upsample_then_conv(kernel):
    torch.manual_seed(kernel)
    layer = UpTimeConv(6, 5, kernel)
    x = torch.randn(3, 6, 7)
    up = x.repeat_interleave(2, dim=-1)  # Keras UpSampling2D((1, 2)), nearest
    left, right = keras_same_padding(up.shape[-1], kernel, 1)
    ref = F.conv1d(F.pad(up, (left, right)), layer.weight[:, :, 0, :])
    got = layer(x.transpose(1, 2)).transpose(1, 2)  # layers are time-major (B, T, C)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "stride", "pad"),
    [(9, 2, (3, 4)), (7, 2, (3, 3)), (3, 1, (1, 1)), (5, 1, (2, 2)), (4, 1, (1, 2)),
     (3, 1, (0, 0))],
)
def test_im2col_conv_forward_and_gradients_equal_conv1d(kernel, stride, pad):
    torch.manual_seed(kernel * 10 + stride)
    layer = TimeConv(5, 4, kernel, stride, pad).double()
    x = torch.randn(3, 5, 11, dtype=torch.float64)

    def ref(x_, w_):
        return F.conv1d(F.pad(x_, pad), w_[:, :, 0, :], stride=stride)

    want = ref(x, layer.weight)
    x_tm = x.transpose(1, 2).contiguous().requires_grad_()
    got = layer(x_tm)  # custom autograd GEMM path
    torch.testing.assert_close(got.transpose(1, 2), want)
    with torch.no_grad():  # inference GEMM path
        torch.testing.assert_close(layer(x_tm).transpose(1, 2), want)
    g = torch.randn_like(got)
    gx, gw = torch.autograd.grad(got, (x_tm, layer.weight), g)
    x_ref = x.clone().requires_grad_()
    rx, rw = torch.autograd.grad(ref(x_ref, layer.weight), (x_ref, layer.weight), g.transpose(1, 2))
    torch.testing.assert_close(gx.transpose(1, 2), rx)
    torch.testing.assert_close(gw, rw)
    # backward(inputs=...) asking for one of the two: the other product is skipped, the asked
    # one is still right (D's weights only / G's gradient through D only)
    y = layer(x_tm)
    y.backward(g, inputs=[layer.weight], retain_graph=True)
    torch.testing.assert_close(layer.weight.grad, rw)
    assert x_tm.grad is None
    y.backward(g, inputs=[x_tm])
    torch.testing.assert_close(x_tm.grad.transpose(1, 2), rx)
    torch.testing.assert_close(layer.weight.grad, rw)  # not accumulated a second time


# ---------------------------------------------------------------------------------------------
# equality with a literal 2-D implementation of the reference (Keras layers in NCHW PyTorch)


def _same_pad_2d(x, kernel_w, stride_w):
    left, right = keras_same_padding(x.shape[-1], kernel_w, stride_w)
    return F.pad(x, (left, right, 0, 0))


def _bn2d(x, bn):
    if bn.training:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _reference_generator(gen, x):
    """Keras build_generator on (B, 1, n_mels, T), with the module's (normalised) weights."""
    img = x.unsqueeze(1)
    g0 = F.pad(img, (1, 1, 0, 0))  # ZeroPadding2D((0, 1))
    g1 = _lrelu(_bn2d(F.conv2d(g0, gen.conv1.weight), gen.bn1))
    g2 = _lrelu(_bn2d(F.conv2d(_same_pad_2d(g1, 9, 2), gen.conv2.weight, stride=(1, 2)), gen.bn2))
    g3 = _lrelu(_bn2d(F.conv2d(_same_pad_2d(g2, 7, 2), gen.conv3.weight, stride=(1, 2)), gen.bn3))
    u = F.interpolate(g3, scale_factor=(1, 2), mode="nearest")
    g4 = torch.cat([_lrelu(_bn2d(F.conv2d(_same_pad_2d(u, 7, 1), gen.up4.weight), gen.bn4)), g2], 1)
    u = F.interpolate(g4, scale_factor=(1, 2), mode="nearest")
    g5 = torch.cat([_lrelu(F.conv2d(_same_pad_2d(u, 9, 1), gen.up5.weight)), g1], 1)
    g6 = F.conv_transpose2d(g5, gen.out.weight, gen.out.bias)  # (B, 1, n_mels, T), valid
    return torch.tanh(g6).squeeze(1)


def _reference_critic(critic, x):
    img = x.unsqueeze(1)
    h = _lrelu(F.conv2d(img, critic.conv1.weight))
    h = _lrelu(F.conv2d(_same_pad_2d(h, 9, 2), critic.conv2.weight, stride=(1, 2)))
    h = _lrelu(F.conv2d(_same_pad_2d(h, 7, 2), critic.conv3.weight, stride=(1, 2)))
    flat = h.permute(0, 2, 3, 1).flatten(1)  # Keras Flatten of NHWC: (1, time, channel) order
    return F.linear(flat, critic.dense.weight, critic.dense.bias).squeeze(1)


def _reference_siamese(siam, x):
    img = x.unsqueeze(1)
    h = _lrelu(_bn2d(F.conv2d(img, siam.conv1.weight), siam.bn1))
    h = _lrelu(_bn2d(F.conv2d(_same_pad_2d(h, 9, 2), siam.conv2.weight, stride=(1, 2)), siam.bn2))
    h = _lrelu(_bn2d(F.conv2d(_same_pad_2d(h, 7, 2), siam.conv3.weight, stride=(1, 2)), siam.bn3))
    return F.linear(h.permute(0, 2, 3, 1).flatten(1), siam.dense.weight, siam.dense.bias)


def _randomise_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("bn_training", [False, True])
@pytest.mark.parametrize(
    ("n_mels", "channels", "frames"), [(16, 8, 24), (192, 32, 24), (24, 8, 12)]
)
def test_generator_equals_2d_reference(n_mels, channels, frames, bn_training):
    torch.manual_seed(2)
    gen = Generator(n_mels, channels)
    _randomise_bn(gen, 4)
    with torch.no_grad():
        gen.out.bias.fill_(0.05)
    gen.eval()  # fixes the spectral-norm estimate (no power iteration on each .weight access)
    for m in gen.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.train(bn_training)
    x = _rand_mels(4, n_mels, frames, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(gen(x), _reference_generator(gen, x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("n_mels", "channels", "frames"), [(16, 8, 72), (192, 32, 72), (16, 8, 13)]
)
def test_critic_equals_2d_reference(n_mels, channels, frames):
    torch.manual_seed(3)
    critic = Critic(n_mels, frames, channels).eval()
    x = _rand_mels(4, n_mels, frames, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(critic(x), _reference_critic(critic, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("bn_training", [False, True])
def test_siamese_equals_2d_reference(bn_training):
    torch.manual_seed(4)
    siam = Siamese(192, 24, 32, 16)
    _randomise_bn(siam, 7)
    siam.train(bn_training)
    x = _rand_mels(4, 192, 24, seed=8)
    with torch.no_grad():
        torch.testing.assert_close(siam(x), _reference_siamese(siam, x), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# layers: bias, BN, init, spectral norm


def _conv_layers(model):
    return [m for m in model.modules() if isinstance(m, FreqConv | TimeConv | UpTimeConv)]


def test_no_conv_bias_except_generator_output(reference_models):
    for model in reference_models:
        for layer in _conv_layers(model):
            assert not hasattr(layer, "bias")
            assert [n for n, _ in layer.named_parameters() if "bias" in n] == []
    gen, critic, siam = reference_models
    assert isinstance(gen.out, FreqTransposedConv) and gen.out.bias.numel() == 1
    # the reference's dense layers keep Keras' default bias (DenseSN in D, Dense in S)
    assert critic.dense.bias.shape == (1,) and siam.dense.bias.shape == (128,)
    assert not critic.dense.bias.detach().any() and not siam.dense.bias.detach().any()


def test_batchnorm_is_keras_equivalent(reference_models):
    gen, critic, siam = reference_models
    bn_type = nn.modules.batchnorm._BatchNorm
    bns = [m for m in (*gen.modules(), *siam.modules()) if isinstance(m, bn_type)]
    assert len(bns) == 4 + 3
    for bn in bns:
        assert bn.momentum == pytest.approx(0.01) == BN_MOMENTUM
        assert bn.eps == pytest.approx(1e-3) == BN_EPS
        assert bn.affine and bn.track_running_stats
    assert not any(isinstance(m, bn_type) for m in critic.modules())
    assert gen.up5 is not None and not hasattr(gen, "bn5")  # g5 has no BN


def _raw_weight(layer):
    if hasattr(layer, "parametrizations"):
        return layer.parametrizations.weight.original
    return layer.weight


def test_he_uniform_init(reference_models):
    gen, critic, siam = reference_models
    fan_ins = {
        gen.conv1: 192 * 3, gen.conv2: 256 * 9, gen.conv3: 256 * 7, gen.up4: 256 * 7,
        gen.up5: 512 * 9, gen.out: 192,  # Keras transposed fan_in: kh * kw * filters(1)
        critic.conv1: 192 * 3, critic.conv2: 512 * 9, critic.conv3: 512 * 7, critic.dense: 9216,
        siam.conv1: 192 * 3, siam.conv2: 256 * 9, siam.conv3: 256 * 7,
    }
    for layer, fan_in in fan_ins.items():
        w = _raw_weight(layer).detach()
        bound = math.sqrt(6.0 / fan_in)
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.95 * bound
        assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    # S's dense is a plain Keras Dense: glorot-uniform
    w = siam.dense.weight.detach()
    bound = math.sqrt(6.0 / (1536 + 128))
    assert float(w.abs().max()) <= bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)


def _is_sn(layer):
    return hasattr(layer, "parametrizations") and hasattr(layer.parametrizations, "weight")


def test_spectral_norm_placement(reference_models):
    gen, critic, siam = reference_models
    for layer in (gen.conv1, gen.conv2, gen.conv3, gen.up4, gen.up5, gen.out,
                  critic.conv1, critic.conv2, critic.conv3, critic.dense):
        assert _is_sn(layer)
    assert not any(_is_sn(m) for m in siam.modules())
    gen_plain = Generator(16, 8, spectral_norm=False)
    critic_plain = Critic(16, 24, 8, spectral_norm=False)
    assert not any(_is_sn(m) for m in (*gen_plain.modules(), *critic_plain.modules()))
    cfg = preset_config("tiny")
    from dataclasses import replace

    g2, d2, _ = build_models(replace(cfg, model=replace(cfg.model, spectral_norm=False)))
    assert not any(_is_sn(m) for m in (*g2.modules(), *d2.modules()))


def test_spectral_norm_normalises_the_reference_matrix():
    """After power iterations the normalised weight has top singular value 1 in the layout TF's
    SpectralNormalization uses: kernel reshaped to (-1, last_dim)."""
    torch.manual_seed(5)
    gen = Generator(24, 8)
    critic = Critic(24, 24, 8)
    gen.train(), critic.train()
    layers = [gen.conv1, gen.conv2, gen.up4, gen.up5, gen.out, critic.conv2, critic.dense]
    for layer in layers:
        for _ in range(60):  # each training-mode access runs one power iteration
            w = layer.weight
        w = w.detach()
        if isinstance(layer, FreqTransposedConv):
            keras = w.permute(2, 3, 1, 0)  # Conv2DTranspose kernel (kh, kw, filters, in)
        elif isinstance(layer, nn.Linear):
            keras = w.t()  # Dense kernel (in, units)
        else:
            keras = w.permute(2, 3, 1, 0)  # Conv2D kernel (kh, kw, in, out)
        sigma = torch.linalg.matrix_norm(keras.reshape(-1, keras.shape[-1]), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=2e-3), layer
    gen.eval(), critic.eval()


@pytest.mark.parametrize("which", ["generator", "critic", "siamese"])
def test_inference_copy_keeps_function_and_leaves_original(which):
    torch.manual_seed(10)
    model = {"generator": Generator(16, 8), "critic": Critic(16, 24, 8),
             "siamese": Siamese(16, 24, 8, 4)}[which]
    model(_rand_mels(4, 16, 24))  # training-mode forward: BN stats, one power iteration
    model.eval()
    x = _rand_mels(3, 16, 24, seed=1)
    with torch.no_grad():
        before = model(x)
        plain = inference_copy(model)
        torch.testing.assert_close(plain(x), before)
        torch.testing.assert_close(model(x), before)  # original still works, unchanged
    assert not plain.training and not any(p.requires_grad for p in plain.parameters())
    assert not any(_is_sn(m) for m in plain.modules())
    assert count_parameters(model) == sum(p.numel() for p in plain.parameters())


def test_remove_spectral_norm_on_a_deepcopy_leaves_the_original():
    import copy

    torch.manual_seed(12)
    gen = Generator(16, 8).eval()
    x = _rand_mels(2, 16, 8)
    with torch.no_grad():
        before = gen(x)
        twin = remove_spectral_norm(copy.deepcopy(gen))
        torch.testing.assert_close(twin(x), before)
        torch.testing.assert_close(gen(x), before)  # still parametrised and working
    assert _is_sn(gen.conv1) and not _is_sn(twin.conv1)


def test_remove_spectral_norm_keeps_function():
    torch.manual_seed(6)
    gen = Generator(16, 8)
    gen(_rand_mels(4, 16, 8))  # one training step's power iteration
    gen.eval()
    x = _rand_mels(2, 16, 16)
    with torch.no_grad():
        before = gen(x)
        remove_spectral_norm(gen)
        after = gen(x)
    assert not any(_is_sn(m) for m in gen.modules())
    torch.testing.assert_close(before, after)


# ---------------------------------------------------------------------------------------------
# training smoke with the tiny preset (n_mels 192, 32 channels)


def test_tiny_config_forward_backward():
    torch.manual_seed(7)
    cfg = preset_config("tiny")
    gen, critic, siam = build_models(cfg)
    L = cfg.model.chunk_frames
    a = _rand_mels(2, 192, 3 * L, seed=9)
    b = _rand_mels(2, 192, 3 * L, seed=10)
    chunks = torch.cat(a.split(L, dim=-1), dim=0)  # (3B, M, L), chunk-major
    fake = gen(chunks)
    fake_crop = torch.cat(fake.split(2, dim=0), dim=-1)
    assert fake_crop.shape == a.shape
    torch.testing.assert_close(fake_crop[:, :, :L], fake[:2])
    d = critic(torch.cat([b, fake_crop]))
    assert d.shape == (4,)
    s = siam(torch.cat([chunks[:2], chunks[4:], fake[:2], fake[4:]]))
    assert s.shape == (8, cfg.model.vec_len)
    loss = d.mean() + s.pow(2).mean() + (fake - chunks).abs().mean()
    loss.backward()
    for model in (gen, critic, siam):
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_autocast_bf16_forward_backward():
    """bf16 autocast (train.precision=bf16): the custom GEMM backward copes with the mixed dtypes."""
    torch.manual_seed(11)
    gen, critic = Generator(16, 8), Critic(16, 72, 8)
    x = _rand_mels(6, 16, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = gen(x)
        score = critic(torch.cat(fake.split(2, dim=0), dim=-1))
    score.float().mean().backward()
    for model in (gen, critic):
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.dtype == p.dtype, name
            assert torch.isfinite(p.grad).all(), name


def test_build_models_reads_config():
    cfg = preset_config("tiny")
    gen, critic, siam = build_models(cfg)
    assert gen.channels == cfg.model.generator_channels and gen.n_mels == cfg.features.n_mels
    assert critic.frames == 3 * cfg.model.chunk_frames
    assert critic.channels == cfg.model.critic_channels
    assert siam.frames == cfg.model.chunk_frames and siam.vec_len == cfg.model.vec_len


# ---------------------------------------------------------------------------------------------
# ONNX


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Constant folding:UserWarning")
def test_generator_onnx_export_parity(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(8)
    gen = Generator(192, 32)
    gen(_rand_mels(8, 192, 24))  # move BN running stats / SN estimate away from init
    gen.eval()
    exported = inference_copy(gen)
    assert not any(_is_sn(m) for m in exported.modules()) and not exported.training
    path = tmp_path / "g.onnx"
    torch.onnx.export(
        exported, (_rand_mels(2, 192, 24),), str(path), dynamo=False, opset_version=17,
        input_names=["mel"], output_names=["out"],
        dynamic_axes={"mel": {0: "batch", 2: "frames"}, "out": {0: "batch", 2: "frames"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, frames in [(2, 24), (3, 48), (1, 8)]:
        x = _rand_mels(batch, 192, frames, seed=frames)
        with torch.no_grad():
            want = gen(x).numpy()
        got = sess.run(None, {"mel": x.numpy()})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_settle_spectral_norm_repairs_damaged_vectors():
    torch.manual_seed(13)
    gen = Generator(16, 8)
    for name, buf in gen.named_buffers():
        if name.endswith(("_u", "_v")):
            buf.mul_(0.05)  # what averaging unit vectors of different directions does
    assert max(conv_sigmas(inference_copy(gen).state_dict())) > 5  # the damage: weights far above unit spectral norm
    settle_spectral_norm(gen, 100)
    assert conv_sigmas(inference_copy(gen).state_dict()) == pytest.approx([1.0] * 6, abs=1e-3)
