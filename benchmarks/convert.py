"""Conversion benchmark: end-to-end RTF, where the time goes, peak memory vs input length,
chunk seams with and without overlap, and streaming latency.

* ``rtf``: ``Converter.convert_file`` (load -> features -> G -> inversion -> write) on 60 s of
  speech (VCC2016 utterances concatenated, or a synthetic stand-in if absent) with a
  reference-size generator (untrained weights: same cost) and the default inversion, per
  thread count, for the default overlap (0.5) and the reference mode (0); plus each stage
  timed alone on the same audio.
* ``memory``: peak RSS (VmHWM) of a fresh process converting 1, 10 and 60-minute files
  (the speech clip tiled, written block by block).
* ``seams``: ``seam_score`` of converted mels (and re-analysed audio) for several overlaps,
  with a tiny model trained for ``--seam-steps`` steps on synthetic voices (or ``--seam-ckpt``).
* ``streaming``: latency of ``StreamingConverter`` and its RTF / slowest 100 ms block.

Prints one JSON object. Takes several minutes (the 60-minute memory run dominates).

    python benchmarks/convert.py [--threads 1,2] [--minutes 1,10,60] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from melganvc.config import Config, apply_overrides, preset_config, to_dict
from melganvc.conversion.converter import Converter
from melganvc.evaluation.seams import seam_score
from melganvc.io.audio import load
from melganvc.io.checkpoint import save_checkpoint
from melganvc.models.networks import build_models

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcc2016"
RATE = 16000

CHILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
from melganvc.conversion.converter import Converter
start = time.perf_counter()
conv = Converter.from_checkpoint(sys.argv[1], device="cpu")
conv.convert_file(sys.argv[2], sys.argv[3])
status = open("/proc/self/status").read().split("\\n")
hwm = next(line for line in status if line.startswith("VmHWM")).split()[1]
print(json.dumps({"peak_rss_mb": round(int(hwm) / 1024, 1),
                  "wall_s": round(time.perf_counter() - start, 1)}))
"""


def speech(seconds: float) -> tuple[np.ndarray, str]:
    """VCC2016 utterances (all speakers, sorted) concatenated to ``seconds`` at 16 kHz."""
    files = sorted(DATA.glob("*/*.wav")) if DATA.is_dir() else []
    parts, total = [], 0
    for path in files:
        parts.append(load(path, RATE))
        total += parts[-1].size
        if total >= seconds * RATE:
            return np.concatenate(parts)[:int(seconds * RATE)], f"vcc2016 ({len(parts)} utterances)"
    t = np.arange(int(seconds * RATE)) / RATE  # synthetic: vibrato harmonics with pauses
    f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 30)) * (np.sin(2 * np.pi * 1.7 * t) > -0.3)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32), "synthetic"


def reference_checkpoint(folder: Path) -> Path:
    cfg = Config()
    torch.manual_seed(0)
    gen = build_models(cfg)[0]
    path = folder / "reference.pt"
    save_checkpoint(path, {"config": to_dict(cfg), "models": {"generator": gen.state_dict()}})
    return path


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def rtf_section(ckpt: Path, wav: Path, x: np.ndarray, threads: int) -> dict:
    torch.set_num_threads(threads)
    seconds = x.size / RATE
    conv = Converter.from_checkpoint(ckpt, device="cpu")
    conv.convert(x[:5 * RATE])  # warm-up: inverters, caches
    out = wav.with_name("out.wav")
    result = {}
    for overlap in (0.5, 0):
        c = conv.with_options(overlap=overlap)
        result[f"overlap_{overlap}"] = round(timed(lambda c=c: c.convert_file(wav, out)) / seconds, 4)
    wave = torch.from_numpy(x)
    mel = conv.mel(wave)
    converted = conv.convert_mel(mel)
    inverter = conv.inverter()
    stages = {
        "load": timed(lambda: load(wav, RATE)),
        "features": timed(lambda: conv.mel(wave)),
        "generator_overlap_0.5": timed(lambda: conv.convert_mel(mel)),
        "generator_overlap_0": timed(lambda: conv.with_options(overlap=0).convert_mel(mel)),
        "inversion": timed(lambda: inverter(converted)),
    }
    stages["nnls_only"] = timed(lambda: inverter.magnitude(converted[None]))
    total = result["overlap_0.5"] * seconds
    known = stages["load"] + stages["features"] + stages["generator_overlap_0.5"] + stages["inversion"]
    stages["rest (write, loudness, glue)"] = max(0.0, total - known)
    return {"rtf_end_to_end": result,
            "stage_rtf": {k: round(v / seconds, 4) for k, v in stages.items()}}


def write_long(path: Path, clip: np.ndarray, minutes: float) -> None:
    total, done = int(minutes * 60 * RATE), 0
    with sf.SoundFile(str(path), "w", RATE, 1, "PCM_16") as handle:
        while done < total:
            piece = clip[:total - done]
            handle.write(piece)
            done += piece.size


def memory_section(ckpt: Path, folder: Path, clip: np.ndarray, minutes: list[float],
                   threads: int) -> dict:
    out = {}
    for m in minutes:
        wav = folder / f"long_{m:g}min.wav"
        write_long(wav, clip, m)
        proc = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(wav),
                               str(folder / "long_out.wav"), str(threads)],
                              capture_output=True, text=True, check=True)
        out[f"{m:g}_min"] = json.loads(proc.stdout.strip().splitlines()[-1])
        wav.unlink()
    return out


def seams_section(folder: Path, x: np.ndarray, steps: int, ckpt: Path | None) -> dict:
    if ckpt is None:
        ckpt = train_tiny(folder, steps)
    base = Converter.from_checkpoint(ckpt, device="cpu")
    mel = base.mel(torch.from_numpy(x))
    out = {"model": f"tiny, {steps} steps" if steps else str(ckpt),
           "input_mel": {"border": round(seam_score(mel, 24), 3),
                         "worst_phase": round(seam_score(mel, 24, phase="worst"), 3)}}
    for overlap, fade in ((0, "cosine"), (4, "cosine"), (6, "cosine"), (8, "cosine"),
                          (8, "linear"), (12, "cosine"), (12, "linear")):
        conv = base.with_options(overlap=overlap, fade=fade)
        converted = conv.convert_mel(mel)
        key = f"overlap_{overlap}" + ("" if fade == "cosine" else "_linear")
        out[key] = {"border": round(seam_score(converted, 24), 3),
                    "worst_phase": round(seam_score(converted, 24, phase="worst"), 3)}
        if fade == "cosine" and overlap in (0, 12):
            audio = conv.convert(x[:20 * RATE])
            out[key]["audio_worst_phase"] = round(seam_score(audio, 24, phase="worst"), 3)
    return out


def train_tiny(folder: Path, steps: int) -> Path:
    from melganvc.training.data import prepare
    from melganvc.training.loop import fit

    cfg = apply_overrides(preset_config("tiny"), [f"train.steps={steps}", "train.eval_every=0",
                                                  f"train.checkpoint_every={steps}"])
    rng = np.random.default_rng(0)
    corpora = []
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        src = folder / f"{name}_audio"
        src.mkdir()
        for i in range(6):
            t = np.arange(int(1.5 * RATE)) / RATE
            pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t) + 0.03 * rng.standard_normal())
            phase = 2 * np.pi * np.cumsum(pitch) / RATE
            wave = sum((sum(np.exp(-0.5 * ((k * f0 - f) / 120) ** 2) for f in formants) + 0.02)
                       / k**0.5 * np.sin(k * phase) for k in range(1, int(4000 / f0)))
            sf.write(src / f"{i}.wav", 0.5 * wave / np.abs(wave).max(), RATE)
        prepare(src, folder / name, cfg.features, 72, progress=False)
        corpora.append(folder / name)
    fit(cfg, *corpora, folder / "run", progress=False)
    return folder / "run"


def streaming_section(ckpt: Path, x: np.ndarray, threads: int) -> dict:
    torch.set_num_threads(threads)
    conv = Converter.from_checkpoint(ckpt, device="cpu")
    out = {}
    for rate in (16000, 48000):
        out[f"latency_ms_{rate}"] = round(conv.stream(rate).latency_ms, 1)
    stream, block = conv.stream(RATE), RATE // 10
    stream.push(x[:RATE])  # warm-up
    stream = conv.stream(RATE)
    clip = x[:20 * RATE]
    slowest, start = 0.0, time.perf_counter()
    for i in range(0, clip.size, block):
        tick = time.perf_counter()
        stream.push(clip[i:i + block])
        slowest = max(slowest, time.perf_counter() - tick)
    stream.flush()
    out["rtf_100ms_blocks"] = round((time.perf_counter() - start) / 20, 4)
    out["slowest_block_ms"] = round(1000 * slowest, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="thread counts for the RTF runs")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--minutes", default="1,10,60", help="input lengths for peak memory")
    ap.add_argument("--memory-threads", type=int, default=1)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--seam-steps", type=int, default=150)
    ap.add_argument("--seam-ckpt", type=Path, help="use this model for the seam scores")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    x, source = speech(args.seconds)
    result: dict = {"audio": source, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = reference_checkpoint(folder)
        wav = folder / "speech.wav"
        sf.write(wav, x, RATE, subtype="FLOAT")
        result["rtf"] = {f"threads_{t}": rtf_section(ckpt, wav, x, t) for t in threads}
        result["streaming"] = streaming_section(ckpt, x, threads[0])
        (folder / "seams").mkdir()
        result["seams"] = seams_section(folder / "seams", x, 0 if args.seam_ckpt else args.seam_steps,
                                        args.seam_ckpt)
        if not args.skip_memory:
            minutes = [float(m) for m in args.minutes.split(",")]
            result["memory"] = memory_section(ckpt, folder, x, minutes, args.memory_threads)
    result["env"] = {"torch": torch.__version__, "python": platform.python_version(),
                     "cpus": os.cpu_count(), "loadavg_end": os.getloadavg()}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
