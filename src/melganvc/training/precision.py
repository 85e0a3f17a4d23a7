"""``train.precision=auto``: time float32 and bfloat16-autocast batches, train with the faster.

Why measure rather than decide from the hardware: bf16 autocast halves the reference step on a
CPU with native bf16 dot products (AMD Zen 4: 236 -> 101 ms) but is *slower* on an Intel
AVX-512 CPU without AMX (201 -> 345 ms), and neither torch nor the CPU flags say which kind of
bf16 kernel a convolution will get. A few batches of each answer it for this machine, these
networks and this batch size, in about the time of twenty single-threaded batches.

The probe trains a deep copy of the state on real batches and throws it away: the run's
weights, optimiser moments, step and random streams are exactly those of a run without it.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from melganvc.training import distributed as dist_utils
from melganvc.training.step import TrainState, sample_batch, train_batch

# bf16 must be this much faster to be chosen: a tie keeps float32's arithmetic (and the timing
# of a few batches on a busy machine is noisy).
MIN_SPEEDUP = 1.15
ROUNDS = 2  # timed cycles per precision (after one warm-up cycle each), alternated


def choose_precision(seconds: dict[str, float]) -> str:
    """``bf16`` when its time per cycle beats float32's by ``MIN_SPEEDUP``, else ``fp32``."""
    return "bf16" if seconds["bf16"] * MIN_SPEEDUP < seconds["fp32"] else "fp32"


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast can run here at all (older GPUs cannot; every CPU can)."""
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())


def time_precisions(state: TrainState, corpus_a: Any, corpus_b: Any,
                    clock: Callable[[], float] | None = None) -> dict[str, float]:
    """Seconds per ``gupt``-batch cycle (critic steps and one G+S step) in each precision,
    the best of ``ROUNDS`` alternated cycles after a warm-up cycle, on a throw-away copy.

    On a CPU the cycles run on one thread and are timed in that thread's own CPU time: two
    trainings that start together probe at once, and wall time on shared, oversubscribed
    cores chose float32 for one of them at 1.6x bf16's cost (measured: 79.5 vs 129.0 ms)."""
    on_cpu = state.device.type == "cpu"
    clock = clock or (time.thread_time if on_cpu else time.perf_counter)
    threads = torch.get_num_threads()
    rng_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if state.device.type == "cuda" else None
    best = {"fp32": float("inf"), "bf16": float("inf")}
    try:
        if on_cpu:
            torch.set_num_threads(1)  # runs inline in this thread, which thread_time counts
        trial = copy.deepcopy(state)  # models, optimisers and crop RNG, references kept
        for round_ in range(ROUNDS + 1):
            for precision in ("fp32", "bf16"):
                trial.cfg = replace(trial.cfg, train=replace(trial.cfg.train,
                                                             precision=precision))
                trial.step = 0  # every cycle starts with the G+S batch
                began = _synced(trial.device, clock)
                for _ in range(trial.cfg.train.gupt):
                    train_batch(trial, *sample_batch(trial, corpus_a, corpus_b))
                took = _synced(trial.device, clock) - began
                if round_:  # the first cycle of each warms caches and allocators
                    best[precision] = min(best[precision], took)
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
    return best


def _synced(device: torch.device, clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock()


def resolve_precision(state: TrainState, corpus_a: Any, corpus_b: Any) -> str:
    """Turn ``auto`` into ``fp32`` or ``bf16`` (every rank takes rank 0's measurement) and
    write it into ``state.cfg``, so checkpoints and a resumed run keep the choice."""
    if state.cfg.train.precision != "auto":
        return state.cfg.train.precision
    seconds = None
    if bf16_supported(state.device):
        seconds = time_precisions(state, corpus_a, corpus_b)
        chosen = choose_precision(seconds)
    else:
        chosen = "fp32"
    chosen = dist_utils.broadcast_choice(chosen)
    state.cfg = replace(state.cfg, train=replace(state.cfg.train, precision=chosen))
    if dist_utils.is_main():
        print(f"melganvc: precision {chosen} ({_describe(seconds, state.cfg.train.gupt)}); "
              "--set train.precision=fp32|bf16 to fix it", file=sys.stderr)
    return chosen


def _describe(seconds: dict[str, float] | None, gupt: int) -> str:
    if seconds is None:
        return "this device has no bf16 autocast"
    per_batch = {k: 1000 * v / gupt for k, v in seconds.items()}
    return f"a batch measured {per_batch['fp32']:.1f} ms in fp32, {per_batch['bf16']:.1f} in bf16"
