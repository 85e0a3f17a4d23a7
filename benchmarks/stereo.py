"""What a stereo file costs over a mono one: ``Converter.convert_file`` of the same 44.1 kHz
music as a stereo and as a mono file (the bundled demo-music model), and the ``StereoPanner``
alone, in one JSON object.

    python benchmarks/stereo.py [--seconds 60] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from melganvc.conversion.converter import Converter
from melganvc.dsp.stereo import StereoPanner

RATE = 44100


def _music(seconds: float) -> np.ndarray:
    """A stereo chord progression with instruments panned apart (cost does not depend on it)."""
    t = np.arange(int(seconds * RATE)) / RATE
    left = sum(np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(t))) for f in (220, 277, 330))
    right = sum(np.sin(2 * np.pi * f * t) for f in (440, 554))
    return (0.1 * np.stack([left + 0.3 * right, 0.3 * left + right], 1)).astype(np.float32)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    music = _music(args.seconds)
    conv = Converter.from_checkpoint("demo-music", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        stereo, mono = Path(tmp) / "stereo.wav", Path(tmp) / "mono.wav"
        sf.write(stereo, music, RATE)
        sf.write(mono, music.mean(axis=1), RATE)
        t_stereo = _best(lambda: conv.convert_file(stereo, Path(tmp) / "o1.flac"), args.repeats)
        t_mono = _best(lambda: conv.convert_file(mono, Path(tmp) / "o2.flac"), args.repeats)

    def pan() -> None:
        panner = StereoPanner(RATE)
        panner.push(music.mean(axis=1), music)
        panner.flush()

    t_pan = _best(pan, args.repeats)
    print(json.dumps({
        "benchmark": "stereo", "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "seconds_of_audio": args.seconds, "model": "demo-music",
        "convert_file_stereo_s": round(t_stereo, 3), "convert_file_mono_s": round(t_mono, 3),
        "stereo_overhead": round(t_stereo / t_mono - 1, 3),
        "panner_alone_s": round(t_pan, 3), "panner_rtf": round(t_pan / args.seconds, 5),
    }, indent=2))


if __name__ == "__main__":
    main()
