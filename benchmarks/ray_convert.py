"""Batch conversion throughput: local ``convert`` vs ``convert --ray`` with 1 and 2 workers on
the same files, in one JSON object (files/s and audio seconds per wall second). The Ray
instance is started before timing (a cluster is up before a batch is sent), the actors are
not: their start-up (loading torch and the model) is part of each Ray figure.

    python benchmarks/ray_convert.py [--files 24] [--seconds 4] [--model demo-voice]
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

from melganvc.conversion.batch import BatchReport, run_batch
from melganvc.conversion.cluster import ClusterOptions, run_ray_batch
from melganvc.conversion.converter import Converter
from melganvc.io.checkpoint import load_checkpoint


def _files(folder: Path, count: int, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    paths = []
    for i in range(count):
        f0 = 100 + 10 * (i % 5)
        wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 20))
        wave = 0.1 * wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.001 * rng.standard_normal(t.size)
        paths.append(folder / f"f{i:03d}.wav")
        sf.write(paths[-1], wave.astype(np.float32), 16000)
    return paths


def main() -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--model", default="demo-voice")
    args = p.parse_args()
    results: dict = {"benchmark": "ray_convert", "machine": platform.processor() or "x86_64",
                     "files": args.files, "seconds_each": args.seconds, "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp), args.files, args.seconds)
        audio = args.files * args.seconds
        torch.set_num_threads(2)
        conv = Converter.from_checkpoint(args.model, device="cpu")
        jobs = [(f, Path(tmp) / "local" / f.name) for f in files]
        start = time.perf_counter()
        run_batch(conv, jobs, BatchReport(), progress=False, log=lambda _m: None)
        wall = time.perf_counter() - start
        results["local_2_threads"] = {"wall_s": round(wall, 2),
                                      "files_per_s": round(args.files / wall, 2),
                                      "audio_s_per_s": round(audio / wall, 1)}
        payload = load_checkpoint(args.model, map_location="cpu")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            for workers in (1, 2):
                out = Path(tmp) / f"ray{workers}"
                jobs = [(f, out / f.name) for f in files]
                cluster = ClusterOptions(None, workers, 2.0 / workers)
                start = time.perf_counter()
                report = run_ray_batch(payload, {"device": "cpu"}, jobs, BatchReport(), cluster,
                                       progress=False, log=lambda _m: None)
                wall = time.perf_counter() - start
                assert report.converted == args.files, report
                results[f"ray_{workers}_workers"] = {
                    "wall_s": round(wall, 2), "files_per_s": round(args.files / wall, 2),
                    "audio_s_per_s": round(audio / wall, 1),
                    "cpus_per_worker": 2.0 / workers}
        finally:
            ray.shutdown()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
