"""Mel -> waveform: NNLS quality, fast Griffin-Lim against librosa, block-wise inversion, GRAD."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import shared_path, speech_like

from melganvc.config import Config
from melganvc.dsp.inversion import Inverter
from melganvc.evaluation.inversion_quality import (
    inversion_quality,
    linear_magnitude,
    mel_l1,
    spectral_convergence,
)
from melganvc.io.audio import load

SR = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(**inversion) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, inversion=dataclasses.replace(cfg.inversion, **inversion))


def _inverter(block_frames: int = 1024, **inversion) -> Inverter:
    cfg = _config(**inversion)
    return Inverter(cfg.features, cfg.inversion, block_frames=block_frames)


def _tones_and_bursts(seconds: float, seed: int = 0) -> np.ndarray:
    """Two vibrato tones with harmonics plus gated noise bursts: transients and partials."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = np.zeros_like(t)
    for f0, rate in ((220.0, 5.0), (347.0, 3.3)):
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * rate * t))) / SR
        wave += sum(np.sin(k * phase) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 2.0 * t) > 0.6).astype(float)
    wave += 0.8 * gate * rng.standard_normal(t.size)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def _real_speech(seconds: float) -> np.ndarray:
    folder = shared_path("vcc2016", "SF1")
    waves, total = [], 0
    for path in sorted(folder.glob("*.wav")):
        waves.append(load(path, SR))
        total += waves[-1].size
        if total >= seconds * SR:
            break
    return np.concatenate(waves)[: int(seconds * SR)]


def test_nnls_is_nonnegative_and_beats_clamped_pseudo_inverse() -> None:
    inv = _inverter()
    wave = torch.from_numpy(np.stack([_tones_and_bursts(1.0), speech_like(1.0)]))
    true = linear_magnitude(inv.mel, wave)
    power = inv.mel.to_linear(inv.mel(wave))  # what inversion sees: clipped at the dB floor
    estimate = inv.nnls(power)
    assert estimate.shape == true.shape
    assert (estimate >= 0).all()
    fb = inv.mel.filterbank
    # Pseudo-inverses as float32 (small singular values cut) and float64 (numpy/librosa style)
    pinv32 = (torch.linalg.pinv(fb) @ power).clamp(min=0)
    pinv64 = (torch.linalg.pinv(fb.double()) @ power.double()).clamp(min=0).float()

    def rel(x: torch.Tensor) -> torch.Tensor:
        return (x.sqrt() - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1)

    best_pinv = torch.minimum(rel(pinv32), rel(pinv64))
    assert (rel(estimate) < 0.8 * best_pinv).all(), (rel(estimate), rel(pinv32), rel(pinv64))
    assert (rel(estimate) < 0.15).all()
    residual = (fb @ estimate - power).flatten(1).norm(dim=1) / power.flatten(1).norm(dim=1)
    assert (residual < 0.01).all(), residual


def test_fast_gl_beats_librosa_griffinlim_on_real_speech() -> None:
    librosa = pytest.importorskip("librosa")
    wave = torch.from_numpy(_real_speech(4.0))[None]
    inv = _inverter()
    cfg = inv.features
    mel = inv.mel(wave)
    magnitude = inv.magnitude(mel)
    target = linear_magnitude(inv.mel, wave)
    iters = inv.inversion.gl_iters
    ours = float(spectral_convergence(inv.griffin_lim(magnitude, iters)[0], target, inv.mel)[0])
    theirs = []
    for seed in range(3):  # librosa's result depends on its random initial phase
        out = librosa.griffinlim(
            (magnitude[0] * inv.mel.power_scale ** 0.5).numpy(), n_iter=iters,
            hop_length=cfg.hop_length, n_fft=cfg.n_fft, window="hann", center=True,
            pad_mode="reflect", momentum=inv.inversion.gl_momentum,
            length=wave.shape[-1] // cfg.hop_length * cfg.hop_length, random_state=seed)
        theirs.append(float(spectral_convergence(torch.from_numpy(out)[None], target, inv.mel)[0]))
    assert ours < np.mean(theirs), (ours, theirs)
    assert ours < 0.1


@pytest.mark.slow
def test_default_inversion_beats_librosa_mel_to_audio_on_real_speech() -> None:
    """The issue's criterion, with librosa's own (slow) NNLS: about a minute."""
    librosa = pytest.importorskip("librosa")
    wave = torch.from_numpy(_real_speech(10.0))
    inv = _inverter()
    cfg = inv.features
    ours = inversion_quality(inv, wave)["sc_linear"]
    mel_power = inv.mel.to_linear(inv.mel(wave[None]))[0].numpy() * inv.mel.power_scale
    out = librosa.feature.inverse.mel_to_audio(
        mel_power, sr=SR, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window="hann", center=True,
        pad_mode="reflect", power=2.0, n_iter=32, htk=True, norm=None, fmin=cfg.f_min,
        fmax=cfg.f_max)
    theirs = float(spectral_convergence(torch.from_numpy(out)[None],
                                        linear_magnitude(inv.mel, wave[None]), inv.mel)[0])
    assert ours < theirs, (ours, theirs)


@pytest.mark.parametrize("frames", [1, 2, 3, 8, 61])
def test_output_length_and_batched_equals_unbatched(frames: int) -> None:
    """Batching must not change what an item sounds like; it may change its float32 rounding.

    A batched call runs other kernel shapes than one-at-a-time calls (BLAS blocking, vector
    tails; AVX-512 and AVX2 builds differ here), so results agree only to float32 re-ordering
    error. The magnitude stage (NNLS) is well conditioned: it must agree to 1e-4 of its scale
    over the whole output. Griffin-Lim's initial phase makes discrete choices (spectral peaks),
    so rounding-level changes can move waveform samples by several percent while the spectrum
    stays the same (measured on this code: kernels forced to another ISA change samples by up
    to 9 % but the spectral convergence by 2 %, the level by 3e-5). So the waveforms are
    compared by level and spectrum: a swapped or garbled item scores SC 0.9-2, a 1 % level
    error fails the level check.
    """
    inv = _inverter(gl_iters=8)
    samples = (frames - 1) * inv.features.hop_length
    waves = torch.from_numpy(np.stack([speech_like(2.0, seed=1), _tones_and_bursts(2.0)]))
    mel = inv.mel(waves)[..., :frames]
    batched = inv(mel)
    assert batched.shape == (2, samples)
    assert torch.isfinite(batched).all()
    magnitudes = inv.magnitude(mel)
    for i in range(2):
        single = inv(mel[i])
        assert single.shape == (samples,)
        scale = float(magnitudes[i].abs().max())
        torch.testing.assert_close(inv.magnitude(mel[i : i + 1])[0], magnitudes[i],
                                   atol=1e-4 * scale, rtol=0)
        if samples == 0:
            continue
        level = float(single.norm() / batched[i].norm())
        assert abs(level - 1) < 1e-3, level
        reference = linear_magnitude(inv.mel, batched[i : i + 1])
        sc = float(spectral_convergence(single[None], reference, inv.mel)[0])
        assert sc < 0.05, sc


def test_silence_and_double_input() -> None:
    inv = _inverter(gl_iters=4)
    silent = -torch.ones(1, inv.features.n_mels, 20, dtype=torch.float64)
    out = inv(silent)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().max() < 1e-3


def _local_sc(wave: torch.Tensor, target: torch.Tensor, inv: Inverter,
              width: int = 11) -> torch.Tensor:
    """Spectral convergence over a sliding window of frames (where does the error sit?)."""
    estimate = linear_magnitude(inv.mel, wave)[0]
    kernel = torch.ones(1, 1, width)
    err = torch.nn.functional.conv1d((estimate - target[0]).square().sum(0)[None, None], kernel,
                                     padding=width // 2)
    ref = torch.nn.functional.conv1d(target[0].square().sum(0)[None, None], kernel,
                                     padding=width // 2)
    return (err / ref.clamp(min=1e-12)).sqrt()[0, 0]


def test_blockwise_long_inversion_matches_single_shot() -> None:
    wave = torch.from_numpy(speech_like(40.0, f0=140.0, seed=3))[None]
    blocked = _inverter(block_frames=256, gl_iters=8, nnls_iters=20)
    single = _inverter(block_frames=8192, gl_iters=8, nnls_iters=20)
    mel = blocked.mel(wave)
    target = linear_magnitude(blocked.mel, wave)
    out_blocked, out_single = blocked(mel), single(mel)
    assert out_blocked.shape == out_single.shape == (1, (mel.shape[-1] - 1) * 192)
    sc_blocked = float(spectral_convergence(out_blocked, target, blocked.mel)[0])
    sc_single = float(spectral_convergence(out_single, target, single.mel)[0])
    assert sc_blocked < 1.15 * sc_single + 0.01, (sc_blocked, sc_single)
    # Joins: the error around each block boundary is no worse than single-shot's at those frames.
    keep = blocked.block_frames - blocked.overlap_frames
    joins = [keep * i + blocked.overlap_frames // 2 for i in range(1, mel.shape[-1] // keep)]
    joins = [j for j in joins if j < mel.shape[-1] - 10]
    assert len(joins) >= 10
    local_blocked = _local_sc(out_blocked, target, blocked)[joins]
    local_single = _local_sc(out_single, target, single)[joins]
    assert local_blocked.mean() < 1.5 * local_single.mean() + 0.02, (local_blocked, local_single)
    # No clicks: the largest sample step near a join stays within the signal's usual range.
    steps = out_blocked[0].diff().abs()
    hop = blocked.features.hop_length
    near = torch.cat([steps[(j - 24) * hop:(j + 24) * hop] for j in joins])
    assert near.max() <= 1.5 * steps.max().clamp(min=1e-6)
    assert near.max() <= 1.5 * out_single[0].diff().abs().max()


def test_stream_of_ragged_pieces_equals_one_call() -> None:
    inv = _inverter(block_frames=128, gl_iters=4)
    mel = inv.mel(torch.from_numpy(_tones_and_bursts(4.0))[None])[0]
    whole = inv(mel)
    sizes = [1, 50, 7, 200, 3, 90]
    pieces, start = [], 0
    while start < mel.shape[-1]:
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(mel[:, start:start + size])
        start += size
    stream = inv.stream()
    streamed = torch.cat([stream.push(piece) for piece in pieces] + [stream.flush()])
    assert streamed.shape == whole.shape == ((mel.shape[-1] - 1) * 192,)
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-4)


def test_stream_push_returns_final_samples_only() -> None:
    inv = _inverter(block_frames=100, gl_iters=2, nnls_iters=5)
    mel = inv.mel(torch.from_numpy(speech_like(2.5, seed=3))[None])  # batched: (1, n_mels, t)
    whole = inv(mel)
    stream, hop, done = inv.stream(), 192, []
    keep, over = inv.block_frames - inv.overlap_frames, inv.overlap_frames
    for end in range(0, mel.shape[-1], 10):
        done.append(stream.push(mel[..., end:end + 10]))
        frames = min(end + 10, mel.shape[-1])  # blocks of keep frames, once over more wait
        blocks = max(0, (frames - 2 * over) // keep)
        assert sum(d.shape[-1] for d in done) == blocks * keep * hop
    assert blocks >= 2
    done.append(stream.flush())
    assert torch.equal(torch.cat(done, dim=-1), whole)  # same blocks, same samples
    with pytest.raises(RuntimeError, match="flushed"):
        stream.push(mel)
    empty = inv.stream()
    assert empty.push(mel[..., :0]).shape == (1, 0) and empty.flush().shape == (1, 0)
    assert inv.stream().flush().numel() == 0
    assert inv(mel[0, :, :0]).shape == (0,)


@pytest.mark.parametrize("init", ["gl", "noise"])
def test_grad_reduces_mel_loss(init: str) -> None:
    inv = _inverter(grad_steps=15)
    mel = inv.mel(torch.from_numpy(speech_like(0.5, seed=2))[None])
    target = inv.mel.to_linear(mel)
    if init == "gl":
        start = inv.griffin_lim(inv.magnitude(mel))[0]
    else:
        noise = torch.Generator().manual_seed(0)
        start = torch.randn(1, (mel.shape[-1] - 1) * 192, generator=noise) * 1e-6
    out = inv.grad(mel, init=start)
    assert out.shape == start.shape
    before, after = float(mel_l1(inv.mel, start, target)), float(mel_l1(inv.mel, out, target))
    assert after < (0.9 if init == "gl" else 0.99) * before, (before, after)


def test_grad_method_from_config() -> None:
    inv = _inverter(method="grad", grad_steps=3, gl_iters=4)
    mel = inv.mel(torch.from_numpy(speech_like(0.4))[None])
    with torch.no_grad():  # the way training samples are logged: GRAD must still get gradients
        out = inv(mel[0])
    assert out.shape == ((mel.shape[-1] - 1) * 192,) and torch.isfinite(out).all()


def test_spectral_convergence_basics() -> None:
    inv = _inverter()
    wave = torch.from_numpy(np.stack([speech_like(0.5), _tones_and_bursts(0.5)]))
    target = linear_magnitude(inv.mel, wave)
    sc = spectral_convergence(wave, target, inv.mel)
    assert sc.shape == (2,) and float(sc.max()) < 1e-5
    assert torch.allclose(spectral_convergence(torch.zeros_like(wave), target, inv.mel),
                          torch.ones(2))
    single = spectral_convergence(wave[0] * 0.5, target[0], inv.features)
    assert single.dim() == 0 and abs(float(single) - 0.5) < 1e-4


def test_inversion_quality_on_speech_like_signal() -> None:
    inv = _inverter()
    quality = inversion_quality(inv, torch.from_numpy(speech_like(1.5, seed=4)))
    assert quality["sc_linear"] < 0.2 and quality["sc_mel"] < 0.1, quality
