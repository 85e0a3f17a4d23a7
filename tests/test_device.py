"""The one device helper: validated names, no hidden global side effects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from melganvc import device
from melganvc.apps.cli import main
from melganvc.config import ConfigError
from melganvc.device import (
    ThreadGovernor,
    cgroup_cpu_limit,
    select_device,
    set_cpu_threads,
    tune_for_training,
    usable_cpus,
)


def test_auto_is_cpu_without_cuda_and_has_no_side_effects() -> None:
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark
    device = select_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark) == before
    tune_for_training(torch.device("cpu"))  # nothing to tune on a CPU
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark) == before


def test_unknown_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        select_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torchrun_rank_picks_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert select_device("cuda") == torch.device("cuda", 0)
    assert select_device("cuda:0") == torch.device("cuda", 0)


def test_cgroup_quota_is_read_from_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # v1: no quota
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_usable_cpus_is_capped_by_the_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one thread
    assert usable_cpus(tmp_path) == 1
    assert usable_cpus(tmp_path / "none") == len(os.sched_getaffinity(0))


def test_threads_option(capsys) -> None:
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(ConfigError, match="--threads must be at least 1"):
            set_cpu_threads(0)
        assert main(["resynth", "in.wav", "out.wav", "--threads", "0"]) == 2
        assert "melganvc: error: --threads must be at least 1, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


class FakeCpus:
    """CPU seconds as a governor reads them: ``others`` and ``own`` CPUs busy per second."""

    def __init__(self) -> None:
        self.now, self.busy, self.own_seconds, self.set = 0.0, 0.0, 0.0, []
        self.others, self.own = 0.0, 2.0

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.busy += (self.others + self.own) * seconds
        self.own_seconds += self.own * seconds

    def governor(self) -> ThreadGovernor:
        return ThreadGovernor(2, 2, busy=lambda: self.busy, interval=2.0,
                              own=lambda: self.own_seconds, clock=lambda: self.now,
                              set_threads=self.set.append)


def test_thread_governor_follows_the_free_cores() -> None:
    cpus = FakeCpus()
    gov = cpus.governor()
    cpus.advance(1.0)
    assert gov.poll() is None  # before the interval nothing is read
    cpus.advance(1.5)
    assert gov.poll() is None and gov.threads == 2  # alone (a little background: 0.0)
    cpus.others, cpus.own = 1.0, 1.0  # a second training arrives and takes a core
    cpus.advance(2.0)
    assert gov.poll() == 1 and cpus.set == [1]  # lowered at the first reading
    cpus.others = 0.2  # background noise only: raised once two readings agree
    cpus.advance(2.0)
    assert gov.poll() is None and gov.threads == 1
    cpus.advance(2.0)
    assert gov.poll() == 2 and cpus.set == [1, 2]
    cpus.others = 0.6  # more than half a core taken: one thread
    cpus.advance(2.0)
    assert gov.poll() == 1
    assert gov.wanted(0.0) == 2 and gov.wanted(5.0) == 1


def test_busy_cpu_seconds_reads_proc_stat(tmp_path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 0 0\n"
                    "cpu0 100 0 50 1000 20 0 0 0 0 0\ncpu1 300 0 0 5 5 0 0 0 0 0\n")
    tick = os.sysconf("SC_CLK_TCK")
    assert device.busy_cpu_seconds({0}, stat) == pytest.approx(150 / tick)
    assert device.busy_cpu_seconds({0, 1}, stat) == pytest.approx(450 / tick)
    assert device.busy_cpu_seconds({0}, tmp_path / "missing") is None
    if Path("/proc/stat").is_file():  # the real file: CPU time since boot, growing
        first = device.busy_cpu_seconds(os.sched_getaffinity(0))
        sum(i * i for i in range(200_000))
        assert first is not None and device.busy_cpu_seconds(os.sched_getaffinity(0)) >= first


def test_governor_under_a_quota_counts_its_cgroup(tmp_path, monkeypatch) -> None:
    """In a container with a 2-CPU quota on a many-CPU host, the host's other tenants are not
    competition: the governor reads the cgroup's own CPU use."""
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 4500000\nuser_usec 1\n")
    assert device.cgroup_cpu_seconds(tmp_path) == 4.5
    assert device.cgroup_cpu_seconds(tmp_path / "none") is None
    monkeypatch.setattr(device, "CGROUP", tmp_path)
    monkeypatch.setattr(device, "cgroup_cpu_limit", lambda root=tmp_path: 2.0)
    monkeypatch.setattr(device, "cgroup_cpu_seconds", lambda root=tmp_path: 4.5)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(device, "busy_cpu_seconds", lambda cpus, stat=None: pytest.fail("host"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    governor = ThreadGovernor.for_this_process()
    assert governor is not None and governor.usable == 2 and governor._busy() == 4.5
