"""Mel inversion benchmark: speed (RTF) and spectral convergence on 10 s of real speech.

Compares, on the same normalised mel: the default fast Griffin-Lim (``Inverter``), GRAD (the
reference's gradient inversion; a few hundred steps measured, 2000 extrapolated) and
``librosa.feature.inverse.mel_to_audio`` (NNLS + 32 Griffin-Lim iterations). Prints one JSON
object. SC = spectral convergence of the output's linear magnitude against the *original*
audio's (so it includes what the mel threw away); ``sc_mel`` compares mel powers.

    python benchmarks/inversion.py [--seconds 10] [--threads N] [--grad-steps 200] [--no-librosa]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from melganvc.config import Config
from melganvc.dsp.inversion import Inverter
from melganvc.dsp.mel import MelSpectrogram
from melganvc.evaluation.inversion_quality import linear_magnitude, spectral_convergence
from melganvc.io.audio import load

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcc2016" / "SF1"


def speech_audio(seconds: float, sample_rate: int) -> tuple[np.ndarray, dict]:
    """VCC2016 SF1 utterances concatenated to ``seconds``, or a synthetic stand-in if absent."""
    files = sorted(DATA.glob("*.wav")) if DATA.is_dir() else []
    if files:
        waves, total = [], 0
        for path in files:
            waves.append(load(path, sample_rate))
            total += waves[-1].size
            if total >= seconds * sample_rate:
                break
        wave = np.concatenate(waves)[: int(seconds * sample_rate)]
        return wave, {"source": f"{DATA} ({len(waves)} utterances concatenated)",
                      "synthetic": False, "seconds": wave.size / sample_rate}
    wave = synthetic_speech(seconds, sample_rate)
    return wave, {"source": f"synthetic speech-like signal ({DATA} not found)",
                  "synthetic": True, "seconds": wave.size / sample_rate}


def synthetic_speech(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Gliding harmonic source through three formants, syllable gating and fricative noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 150 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t) + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    formants = np.array([600, 1400, 2600]) * (1 + 0.2 * np.sin(2 * np.pi * 1.3 * t)[:, None])
    wave = np.zeros_like(t)
    for k in range(1, 40):
        gain = np.exp(-0.5 * ((k * pitch[:, None] - formants) / 150) ** 2).sum(1) + 0.01
        wave += gain / k * np.sin(k * phase)
    syllables = (np.sin(2 * np.pi * 3 * t) > -0.2).astype(float)
    fricative = (np.sin(2 * np.pi * 0.9 * t + 1) > 0.8) * rng.standard_normal(t.size) * 0.3
    wave = wave * syllables + fricative
    return (0.4 * wave / np.abs(wave).max()).astype(np.float32)


class Scorer:
    """Spectral convergence of outputs against the original audio (linear) and its mel power."""

    def __init__(self, inverter: Inverter, wave: torch.Tensor) -> None:
        self.mel = inverter.mel
        self.magnitude = linear_magnitude(self.mel, wave)
        self.mel_power = self.mel.to_linear(self.mel(wave))

    def __call__(self, out: torch.Tensor) -> dict[str, float]:
        out = out.reshape(1, -1).float()
        power = self.mel.linear_mel(out)[..., : self.mel_power.shape[-1]]
        sc_mel = (self.mel_power - power).norm() / self.mel_power.norm()
        sc_linear = spectral_convergence(out, self.magnitude, self.mel)[0]
        return {"sc_linear": round(float(sc_linear), 5), "sc_mel": round(float(sc_mel), 5)}


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[list[float], torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def bench_fast_gl(cfg: Config, mel: torch.Tensor, seconds: float, score: Scorer,
                  repeats: int) -> dict:
    inverter = Inverter(cfg.features, cfg.inversion)
    with torch.no_grad():
        inverter(mel)  # warm-up (allocator, FFT plans)
        times, out = timed(lambda: inverter(mel), repeats)
    return {"gl_iters": cfg.inversion.gl_iters, "nnls_iters": cfg.inversion.nnls_iters,
            "momentum": cfg.inversion.gl_momentum, "runs": repeats,
            "rtf_median": round(float(np.median(times)) / seconds, 5),
            "rtf_min": round(min(times) / seconds, 5), **score(out)}


def bench_grad(cfg: Config, mel: torch.Tensor, seconds: float, score: Scorer, steps: int,
               init: str) -> dict:
    inverter = Inverter(cfg.features, cfg.inversion)
    start = time.perf_counter()
    if init == "gl":
        with torch.no_grad():
            begin = inverter.griffin_lim(inverter.magnitude(mel))[0]
    else:  # the reference: N(0, 1e-6) noise
        samples = (mel.shape[-1] - 1) * cfg.features.hop_length
        begin = torch.randn(1, samples, generator=torch.Generator().manual_seed(0)) * 1e-6
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    out = inverter.grad(mel, steps=steps, init=begin)
    grad_s = time.perf_counter() - start
    per_step = grad_s / max(steps, 1)
    full = cfg.inversion.grad_steps
    return {"init": "fast_gl" if init == "gl" else "noise (reference)", "lr": cfg.inversion.grad_lr,
            "steps_measured": steps, "seconds_per_step": round(per_step, 5),
            "rtf_measured": round((init_s + grad_s) / seconds, 4),
            f"rtf_extrapolated_{full}_steps": round((init_s + per_step * full) / seconds, 3),
            **{f"{k}_after_{steps}_steps": v for k, v in score(out).items()}}


def bench_librosa(cfg: Config, mel: torch.Tensor, seconds: float, score: Scorer) -> dict:
    import librosa

    f = cfg.features
    features = MelSpectrogram(f)  # librosa's STFT is not normalised: undo our sum(window^2)
    power = (features.to_linear(mel)[0].double().numpy() * features.power_scale).astype(np.float32)
    start = time.perf_counter()
    out = librosa.feature.inverse.mel_to_audio(
        power, sr=f.sample_rate, n_fft=f.n_fft, hop_length=f.hop_length, win_length=f.n_fft,
        window="hann", center=True, pad_mode="reflect", power=2.0, n_iter=32, htk=True,
        norm=None, fmin=f.f_min, fmax=f.f_max)
    elapsed = time.perf_counter() - start
    return {"version": librosa.__version__, "n_iter": 32, "nnls": "librosa.util.nnls (L-BFGS-B)",
            "note": "random initial phases (unseeded in mel_to_audio): SC varies ~+-0.005 per run",
            "rtf": round(elapsed / seconds, 4), **score(torch.from_numpy(out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--grad-steps", type=int, default=200, help="GRAD steps to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed fast-GL runs")
    parser.add_argument("--no-librosa", action="store_true", help="skip librosa (about a minute)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config()
    wave_np, audio = speech_audio(args.seconds, cfg.features.sample_rate)
    wave = torch.from_numpy(wave_np)[None]
    seconds = audio["seconds"]
    mel = Inverter(cfg.features, cfg.inversion).mel(wave)
    score = Scorer(Inverter(cfg.features, cfg.inversion), wave)
    result = {"audio": audio, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "device": "cpu", "machine": platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_at_start": round(os.getloadavg()[0], 2), "frames": mel.shape[-1],
              "fast_gl": bench_fast_gl(cfg, mel, seconds, score, args.repeats)}
    for iters in sorted({16, 24, 28, 32} - {cfg.inversion.gl_iters}):  # speed/quality trade-off
        inversion = dataclasses.replace(cfg.inversion, gl_iters=iters)
        variant = dataclasses.replace(cfg, inversion=inversion)
        result[f"fast_gl_{iters}_iters"] = bench_fast_gl(variant, mel, seconds, score, args.repeats)
    result["grad"] = bench_grad(cfg, mel, seconds, score, args.grad_steps, "gl")
    result["grad_from_noise"] = bench_grad(cfg, mel, seconds, score, args.grad_steps, "noise")
    if not args.no_librosa:
        try:
            result["librosa_mel_to_audio"] = bench_librosa(cfg, mel, seconds, score)
        except ImportError:
            result["librosa_mel_to_audio"] = {"skipped": "librosa not installed"}
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    result["rtf_note"] = ("RTF = wall-clock compute seconds per second of audio (lower is faster); "
                          "other work on the machine (load average) inflates it")
    if not math.isfinite(result["fast_gl"]["sc_linear"]):
        raise SystemExit("fast GL produced non-finite output")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
