"""Time real training batches (``melganvc.training.step.train_batch``): critic every batch, G+S every
``gupt``-th, reference config, batch 16, averaged over whole cycles.

Prints one JSON object: mean ms per batch, each step kind's mean, process CPU time per batch,
FLOPs per batch (``torch.utils.flop_counter``) and the rate achieved, threads, versions and the
load average (a load above the thread count means other processes skewed the timing).

    python benchmarks/train_step.py [--cycles 3] [--threads 2] [--preset speech16k] [--device cpu]
        [--precision auto|fp32|bf16]

``auto`` (training's default) times both precisions first, as ``melganvc train`` does, and
reports the batches in the one it keeps, with the probe's own figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace

import torch

from melganvc.config import PRECISIONS, preset_config
from melganvc.device import select_device, tune_for_training
from melganvc.models.layers import count_parameters
from melganvc.training.precision import choose_precision, time_precisions
from melganvc.training.step import build_state, train_batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="speech16k")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--cycles", type=int, default=3, help="timed cycles of gupt batches")
    ap.add_argument("--warmup", type=int, default=1, help="untimed cycles first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="train.precision (auto: probe both, as training does)")
    ap.add_argument("--no-flops", dest="count_flops", action="store_false")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = preset_config(args.preset)
    bs = args.batch_size or cfg.train.batch_size
    cfg = replace(cfg, train=replace(cfg.train, batch_size=bs, precision=args.precision))
    device = select_device(args.device)
    tune_for_training(device)
    state = build_state(cfg, device)
    gupt, chunk, n_mels = cfg.train.gupt, cfg.model.chunk_frames, cfg.features.n_mels

    def crops() -> torch.Tensor:
        return torch.rand(bs, n_mels, 3 * chunk, device=device) * 2 - 1

    class RandomCrops:  # what the probe samples from (MelCorpus.sample's signature)
        def sample(self, rng, count: int) -> torch.Tensor:
            return torch.rand(count, n_mels, 3 * chunk) * 2 - 1

    probe = None
    if args.precision == "auto":
        probe = time_precisions(state, RandomCrops(), RandomCrops())
        state.cfg = replace(cfg, train=replace(cfg.train, precision=choose_precision(probe)))

    def step(i: int) -> str:
        state.step = i  # G+S on the first batch of each cycle
        train_batch(state, crops(), crops())
        return "full" if i == 0 else "critic"

    times: dict[str, list[float]] = {"critic": [], "full": []}
    cpu_ms = 0.0
    for cycle in range(args.warmup + args.cycles):
        for i in range(gupt):
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            kind = step(i)
            sync(device)
            if cycle >= args.warmup:
                times[kind].append((time.perf_counter() - t0) * 1000)
                cpu_ms += (time.process_time() - c0) * 1000

    gflop = None
    if args.count_flops:  # one more (untimed) cycle under the FLOP counter
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            for i in range(gupt):
                step(i)
        gflop = counter.get_total_flops() / gupt / 1e9

    n = len(times["full"]) + len(times["critic"])
    ms_per_batch = (sum(times["full"]) + sum(times["critic"])) / n
    result = {
        "ms_per_batch": round(ms_per_batch, 1),
        "full_step_ms": round(sum(times["full"]) / len(times["full"]), 1),
        "critic_step_ms": round(sum(times["critic"]) / max(len(times["critic"]), 1), 1),
        "cpu_ms_per_batch": round(cpu_ms / n, 1),
        "gflop_per_batch": None if gflop is None else round(gflop, 2),
        "achieved_gflops": None if gflop is None else round(gflop / ms_per_batch * 1000, 1),
        "batches_timed": n,
        "batch_size": bs,
        "device": str(device),
        "precision": state.cfg.train.precision,
        "probe_ms_per_batch": None if probe is None else
        {k: round(1000 * v / gupt, 1) for k, v in probe.items()},
        "params": {"G": count_parameters(state.generator), "D": count_parameters(state.critic),
                   "S": count_parameters(state.siamese)},
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
