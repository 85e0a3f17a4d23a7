"""Every inversion on the same minute of real speech: speed (RTF) and naturalness of the
resynthesis (DistillMOS), in one JSON object.

Rows: fast Griffin-Lim and GRAD on the reference features (16 kHz, 192 HTK mels), fast
Griffin-Lim and the pretrained HiFi-GAN on the ``hifigan`` features (22.05 kHz, 80 Slaney mels),
each offline (one call on the whole mel, block-wise inside), and HiFi-GAN through the streaming
pipeline (``Converter.stream``'s real-time blocks, an identity "generator", so only the features
and the vocoder run) with its fixed latency; and whole conversions (``Converter.convert``) with
the default recipe's generator size on either features and its inversion. Audio: VCC2016 evaluation sentences (TM1 and SF1
alternating, each brought to -20 dBFS) concatenated to ``--seconds``; naturalness is scored on
the resynthesis resampled to 16 kHz, like ``melganvc evaluate``.

    python benchmarks/vocoder.py [--seconds 60] [--threads 2] [--grad-steps 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from melganvc.config import Config, preset_config
from melganvc.conversion.converter import Converter
from melganvc.dsp.loudness import at_input_level
from melganvc.dsp.mel import MelSpectrogram
from melganvc.dsp.resample import resample
from melganvc.io.audio import load
from melganvc.judges.naturalness import NaturalnessJudge
from melganvc.models.networks import build_models
from melganvc.vocoders import build_inverter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcc2016_full"


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of 16 kHz VCC2016 evaluation speech, utterances at -20 dBFS."""
    files = [f for pair in zip(sorted((DATA / "TM1" / "eval").glob("*.flac")),
                               sorted((DATA / "SF1" / "eval").glob("*.flac")), strict=False)
             for f in pair]
    if not files:
        raise SystemExit(f"{DATA} not found: this benchmark needs the VCC2016 data")
    waves, total = [], 0
    for path in files:
        waves.append(at_input_level(load(path, 16000), 16000))
        total += waves[-1].size
        if total >= seconds * 16000:
            break
    return np.concatenate(waves)[: int(seconds * 16000)]


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def offline_row(cfg: Config, wave16: np.ndarray, judge: NaturalnessJudge) -> dict:
    rate = cfg.features.sample_rate
    wave = torch.from_numpy(resample(wave16, 16000, rate))
    mel = MelSpectrogram(cfg.features)(wave)
    inverter, build_s = timed(lambda: build_inverter(cfg.features, cfg.inversion))
    with torch.no_grad():
        out, seconds = timed(lambda: inverter(mel))
    audio_s = wave.numel() / rate
    return {"features": cfg.features.recipe, "sample_rate": rate, "n_mels": cfg.features.n_mels,
            "method": cfg.inversion.method, "rtf": round(seconds / audio_s, 4),
            "seconds": round(seconds, 2), "setup_s": round(build_s, 2),
            "naturalness": round(judge.score(out.numpy(), rate), 3)}


def stream_row(wave16: np.ndarray, judge: NaturalnessJudge, block_ms: float = 100.0) -> dict:
    """HiFi-GAN through the real-time pipeline: blocks of ``block_ms`` of 16 kHz input."""
    cfg = preset_config("hifigan")
    conv = Converter(nn.Identity(), cfg)
    stream = conv.stream(16000)
    block = int(block_ms * 16)
    start = time.perf_counter()
    pieces = [stream.push(wave16[i:i + block]) for i in range(0, wave16.size, block)]
    pieces.append(stream.flush())
    seconds = time.perf_counter() - start
    out = np.concatenate(pieces)
    delay = stream.latency_samples
    return {"method": "hifigan (streaming, identity generator)", "block_ms": block_ms,
            "latency_ms": round(stream.latency_ms, 1), "rtf": round(seconds / (wave16.size / 16000), 4),
            "naturalness": round(judge.score(out[delay:], 16000), 3)}


def conversion_row(preset: str, wave16: np.ndarray) -> dict:
    """``Converter.convert`` of the whole minute (16 kHz in and out) with an untrained generator
    of the preset's size: the generator's cost does not depend on its weights."""
    cfg = preset_config(preset)
    torch.manual_seed(0)
    conv = Converter(build_models(cfg)[0].eval(), cfg)
    conv.convert(wave16[:16000], 16000)  # warm-up (first-call allocations)
    _, seconds = timed(lambda: conv.convert(wave16, 16000))
    return {"preset": preset, "inversion": cfg.inversion.method,
            "rtf": round(seconds / (wave16.size / 16000), 4), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grad-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wave16 = speech(args.seconds)
    judge = NaturalnessJudge(num_threads=args.threads)
    reference, vocoder = Config(), preset_config("hifigan")
    grad = dataclasses.replace(reference.inversion, method="grad", grad_steps=args.grad_steps)
    rows = {
        "gl_reference_features": offline_row(reference, wave16, judge),
        f"grad{args.grad_steps}_reference_features": offline_row(
            dataclasses.replace(reference, inversion=grad), wave16, judge),
        "gl_hifigan_features": offline_row(
            dataclasses.replace(vocoder, inversion=reference.inversion), wave16, judge),
        "hifigan": offline_row(vocoder, wave16, judge),
        "hifigan_streaming": stream_row(wave16, judge),
    }
    result = {"audio": {"source": "VCC2016 eval TM1/SF1 at -20 dBFS, concatenated",
                        "seconds": wave16.size / 16000,
                        "original_naturalness": round(judge.score(wave16, 16000), 3)},
              "rows": rows,
              "conversion": [conversion_row(p, wave16) for p in ("speech", "speech-hifigan")],
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor(),
              "cpu_count": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
              "note": "rtf = compute seconds per second of audio (lower is faster); setup_s = "
                      "building the inverter (HiFi-GAN: hashing and loading 55 MB)"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
