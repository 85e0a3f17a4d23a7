"""The one device helper for training and conversion.

Selection has no side effects; the speed settings training wants on a GPU are a separate,
explicit call (``tune_for_training``), so converting in a notebook never changes torch's global
matmul precision behind the user's back.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from melganvc.config import ConfigError


def select_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; otherwise the named device, checked. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) a CUDA device without an index is this process's GPU
    (``LOCAL_RANK``). An unknown name, or CUDA without a GPU, is a one-line ``ConfigError``."""
    text = str(name)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {text!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def tune_for_training(device: torch.device) -> None:
    """GPU speed settings for training: crops have one fixed shape, so cuDNN's autotuned kernels
    pay off from the first batches; TF32 matmuls (the GPU runs of docs/results.md used them).
    Nothing to do on a CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``cpu.max`` of cgroup v2, or
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of v1), or ``None`` when there is none.
    torch sizes its thread pool from the CPUs it may be scheduled on, not from a container's
    quota: 16 threads on a 2-CPU quota spin and wait on each other."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may really use: its affinity mask, capped by its cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    return max(1, min(cpus, math.ceil(limit))) if limit is not None else max(1, cpus)


def set_cpu_threads(requested: int | None = None) -> int:
    """torch's CPU threads: ``requested`` (``--threads``), else the usable CPUs unless
    ``OMP_NUM_THREADS`` already says; returns the count in force."""
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--threads must be at least 1, got {requested}")
        torch.set_num_threads(requested)
    elif "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > usable_cpus():
        torch.set_num_threads(usable_cpus())
    return torch.get_num_threads()
