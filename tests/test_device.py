"""The one device helper: validated names, no hidden global side effects."""

from __future__ import annotations

import pytest
import torch

from melganvc.config import ConfigError
from melganvc.device import select_device, tune_for_training


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
