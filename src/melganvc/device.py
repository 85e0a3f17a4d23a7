"""The one device helper for training and conversion.

Selection has no side effects; the speed settings training wants on a GPU are a separate,
explicit call (``tune_for_training``), so converting in a notebook never changes torch's global
matmul precision behind the user's back. torch is imported where it is used, so the CLI can
apply ``--threads`` before a command that never needs torch (``models``) without paying for it.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
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


def busy_cpu_seconds(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds the CPUs in ``cpus`` have spent busy (not idle or waiting on I/O) since
    boot, from ``/proc/stat``; ``None`` where it cannot be read (not Linux)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            numbers = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            ticks += sum(numbers) - numbers[3] - numbers[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def cgroup_cpu_seconds(root: Path = CGROUP) -> float | None:
    """CPU seconds used by every process of this cgroup (v2 ``cpu.stat`` ``usage_usec``, v1
    ``cpuacct.usage``), or ``None``. Under a CPU quota these are the processes that compete
    with us; the host's other tenants on the same CPUs do not count against the quota."""
    try:
        for line in (root / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        pass
    try:
        return int((root / "cpuacct" / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return None


class ThreadGovernor:
    """Fewer torch threads while other processes keep this process's CPUs busy, more again
    when they stop (``melganvc train`` without ``--threads``).

    Why: torch's threads spin while they wait for each other, so two trainings that each
    take a thread per core of the same 2 cores ran at 0.19x their alone speed, while one
    thread each ran at 0.68x (``benchmarks/sharing.py``). Every ``interval`` seconds the CPU
    time that *other* processes took on this process's CPUs says how many are really free;
    the threads follow it, lowered at once and raised only when two readings agree (a
    short-lived neighbour should not cost the rest of the run its threads).
    """

    def __init__(self, max_threads: int, usable: int, busy: Callable[[], float | None],
                 interval: float = 2.0, own: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 set_threads: Callable[[int], None] | None = None) -> None:
        """``usable``: the CPUs this process may use; ``busy``: CPU seconds spent so far by
        everything that competes for them (``for_this_process`` picks the source)."""
        self.max_threads, self.threads, self.interval = max_threads, max_threads, interval
        self.usable, self._busy = usable, busy
        self._own, self._clock = own, clock
        self._set = set_threads or _set_torch_threads
        self._last = (clock(), self._busy(), own())
        self._raise_votes = 0

    @classmethod
    def for_this_process(cls) -> ThreadGovernor | None:
        """A governor over torch's current thread count and this process's CPUs (under a
        container's CPU quota: over its cgroup's use), or ``None`` where it has nothing to
        govern (one thread) or cannot read CPU use (not Linux)."""
        import torch

        try:
            cpus = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            return None
        threads = torch.get_num_threads()
        limit = cgroup_cpu_limit()
        if limit is not None and limit < len(cpus):  # a quota: count our cgroup, not the host
            busy: Callable[[], float | None] = cgroup_cpu_seconds
        else:
            busy = functools.partial(busy_cpu_seconds, cpus)
        if threads < 2 or busy() is None:
            return None
        return cls(threads, usable_cpus(), busy)

    def wanted(self, others: float) -> int:
        """Threads for the CPUs left when other processes use ``others`` CPUs."""
        return max(1, min(self.max_threads, int(self.usable - others + 0.5)))

    def poll(self) -> int | None:
        """Re-read the CPU use once ``interval`` has passed; the new thread count when it
        changed, else ``None``. Cheap to call every batch."""
        now = self._clock()
        if now - self._last[0] < self.interval:
            return None
        busy, own = self._busy(), self._own()
        (then, busy_then, own_then), self._last = self._last, (now, busy, own)
        if busy is None or busy_then is None:
            return None
        others = max(0.0, (busy - busy_then) - (own - own_then)) / (now - then)
        target = self.wanted(others)
        self._raise_votes = self._raise_votes + 1 if target > self.threads else 0
        if target < self.threads or self._raise_votes >= 2:
            self.threads, self._raise_votes = target, 0
            self._set(target)
            return target
        return None


def _set_torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)
