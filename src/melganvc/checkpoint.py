"""Checkpoints: atomic writes, ``weights_only`` loads, the full config stored inside.

A checkpoint is a plain dict of tensors and primitives, so ``torch.load(weights_only=True)``
can read it and a hostile pickle cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from melganvc import __version__
from melganvc.config import Config, ConfigError, diff_configs, from_dict, to_dict
from melganvc.errors import UserError
from melganvc.io_utils import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (+ format/version tags) atomically: a kill mid-write leaves the old file."""
    payload = {"format": FORMAT, "melganvc_version": __version__, **payload}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its latest checkpoint; a file is itself."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint found")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely; corrupt, truncated or code-carrying files raise ``CheckpointError``."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the file holds more than weights (a pickled object or code); "
            f"only load checkpoints you trust ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({exc})") from None
    if not isinstance(payload, dict) or "config" not in payload or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a melganvc checkpoint")
    return payload


def checkpoint_config(payload: dict[str, Any]) -> Config:
    try:
        return from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint config is invalid: {exc}") from None


def check_compatible(cfg: Config, payload: dict[str, Any], sections: tuple[str, ...]) -> None:
    """Refuse to resume/fine-tune when the shape-defining config sections differ."""
    expected, found = to_dict(cfg), payload["config"]
    diffs = [d for s in sections for d in diff_configs(expected.get(s, {}), found.get(s, {}), s + ".")]
    if diffs:
        raise CheckpointError("checkpoint was made with an incompatible config: " + "; ".join(diffs))
