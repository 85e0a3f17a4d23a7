"""The one device helper for training and conversion.

Selection has no side effects; the speed settings training wants on a GPU are a separate,
explicit call (``tune_for_training``), so converting in a notebook never changes torch's global
matmul precision behind the user's back. torch is imported where it is used, so the CLI can
apply ``--threads`` before a command that never needs torch (``models``) without paying for it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from melganvc.config import ConfigError

if TYPE_CHECKING:
    import torch


def select_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; otherwise the named device, checked. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) a CUDA device without an index is this process's GPU
    (``LOCAL_RANK``). An unknown name, or CUDA without a GPU, is a one-line ``ConfigError``."""
    import torch

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
    import torch

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


def set_cpu_threads(requested: int | None = None) -> int | None:
    """torch's CPU threads: ``requested`` (``--threads``); else, under a cgroup CPU quota, the
    usable CPUs when torch's own count (which follows the affinity mask only) is higher,
    unless ``OMP_NUM_THREADS`` already says. Returns the count it set, or ``None`` when torch's
    default stands (then torch is not even imported)."""
    if requested is not None and requested < 1:
        raise ConfigError(f"--threads must be at least 1, got {requested}")
    if requested is None and ("OMP_NUM_THREADS" in os.environ or cgroup_cpu_limit() is None):
        return None  # torch already counts the affinity mask
    import torch

    if requested is None:
        requested = usable_cpus()
        if torch.get_num_threads() <= requested:
            return None
    torch.set_num_threads(requested)
    return requested
