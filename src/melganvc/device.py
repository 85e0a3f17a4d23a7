"""The one device helper for training and conversion.

Selection has no side effects; the speed settings training wants on a GPU are a separate,
explicit call (``tune_for_training``), so converting in a notebook never changes torch's global
matmul precision behind the user's back.
"""

from __future__ import annotations

import os

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
