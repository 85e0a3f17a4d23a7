"""How long ``melganvc detect`` takes on a 10 s file: the detector's load, one file judged in
process (median of repeats), and the whole command including Python start-up, in one JSON
object.

    python benchmarks/detect.py [--seconds 10] [--threads 2] [--repeats 5]
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

from melganvc.detection import Detector


def _speech(seconds: float) -> np.ndarray:
    """VCC2016 sentences when ../shared is there, else a harmonic stand-in (same cost)."""
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcc2016_full" / "TM1" / "eval"
    pieces, total = [], 0
    for path in sorted(data.glob("*.flac")) if data.is_dir() else []:
        wave, _ = sf.read(path, dtype="float32")
        pieces.append(wave)
        total += wave.size
        if total >= seconds * 16000:
            break
    if not pieces:
        t = np.arange(int(seconds * 16000)) / 16000
        pieces = [0.3 * np.sin(2 * np.pi * 120 * t * (1 + 0.05 * np.sin(3 * t)))]
    return np.concatenate(pieces)[: int(seconds * 16000)].astype(np.float32)


def _cpu() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.flac"
        sf.write(path, _speech(args.seconds), 16000)
        start = time.perf_counter()
        detector = Detector.load()
        load_s = time.perf_counter() - start
        detector.detect_file(path)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            detector.detect_file(path)
            times.append(time.perf_counter() - start)
        env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "melganvc", "detect", str(path), "--threads",
                        str(args.threads)], env=env, check=False, capture_output=True)
        command_s = time.perf_counter() - start
    print(json.dumps({"benchmark": "detect", "seconds_of_audio": args.seconds,
                      "threads": args.threads, "cpu": _cpu(),
                      "load_s": round(load_s, 4), "judge_s": round(float(np.median(times)), 4),
                      "judge_rtf": round(float(np.median(times)) / args.seconds, 5),
                      "command_s": round(command_s, 3)}))


if __name__ == "__main__":
    main()
