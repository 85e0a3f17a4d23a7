"""Checkpoints: atomic writes, ``weights_only`` loads, the full config stored inside.

A checkpoint is a plain dict of tensors and primitives, so ``torch.load(weights_only=True)``
can read it and a hostile pickle cannot run code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from melganvc.config import Config, ConfigError, from_dict, to_dict
from melganvc.errors import UserError
from melganvc.io.files import atomic_path, disk_full, error_number, write_failure_reason
from melganvc.version import __version__

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"  # the generator a run selected by held-out sample quality (train.select_best)
FORMAT = 1


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (+ format/version tags) atomically: a kill mid-write leaves the old file.

    torch writes through a Python file object, not a path: its own file writer reports a full
    disk as an errno-less "[enforce fail at inline_container.cc]", Python's ``write`` as
    ``OSError(ENOSPC)``, which becomes "No space left on device".
    """
    payload = {"format": FORMAT, "melganvc_version": __version__, **payload}
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            try:
                with open(tmp, "wb") as handle:
                    torch.save(payload, handle)
            except (OSError, RuntimeError) as exc:  # disk full, quota, I/O error
                raise _write_failure(path, exc, tmp) from None  # while the temp still exists
    except OSError as exc:  # unwritable folder, no room for the temp file, failed rename
        raise _write_failure(path, exc, path) from None


def _write_failure(path: Path, exc: BaseException, written: Path) -> CheckpointError:
    """The one-line error for a failed checkpoint write: the OS's reason when there is one."""
    if error_number(exc) or disk_full(written.parent):
        reason = write_failure_reason(exc, written)
    else:
        reason = _first_sentence(exc)
    return CheckpointError(f"{path}: cannot write checkpoint ({reason})")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its selected generator (``best.pt``, ``train.select_best``) or else
    its latest checkpoint; a file is itself; a bundled model's name (``demo-voice``, see
    ``melganvc.io.pretrained``) its packaged file, unless a path of that name exists here."""
    from melganvc.io.pretrained import bundled_models

    path = Path(path)
    bundled = bundled_models()
    if not path.exists() and str(path) in bundled:
        return bundled[str(path)]
    if path.is_dir():
        path = path / BEST_NAME if (path / BEST_NAME).is_file() else path / CHECKPOINT_NAME
    if not path.is_file():
        names = ", ".join(bundled) or "none installed"
        raise CheckpointError(f"{path}: no checkpoint found (give a run folder, a checkpoint "
                              f"file or a bundled model: {names})")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely; corrupt, truncated or code-carrying files raise ``CheckpointError``."""
    path = resolve_checkpoint(path)
    _check_archive(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_refusal(path, str(exc))) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_first_sentence(exc)})") \
            from None
    if not isinstance(payload, dict) or "config" not in payload or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a melganvc checkpoint")
    _check_finite_weights(path, payload.get("models"))
    return payload


def _check_finite_weights(path: Path, models: Any) -> None:
    """Refuse NaN/inf weights at load, naming the tensor: such a model turns every input into
    "the output has NaN", which would look like a bad upload or an internal bug."""
    if not isinstance(models, dict):
        return
    for net, state in models.items():
        if not isinstance(state, dict):
            continue
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() \
                    and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{path}: weights {net}.{key} contain NaN or infinite "
                                      "values (a diverged or damaged run); use an earlier "
                                      "checkpoint or train again")


def _check_archive(path: Path) -> None:
    """``torch.save`` writes a zip with a CRC per entry, which ``torch.load`` never checks:
    verify them, so a truncated or bit-flipped file is reported instead of loading garbage."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse the archive means damage
        if path.stat().st_size == 0:
            reason = "empty file"
        elif isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc).lower():
            reason = "not a complete PyTorch zip archive"
        else:
            reason = _first_sentence(exc)
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({reason})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch in {bad})")


def _refusal(path: Path, message: str) -> str:
    """One line for a weights-only refusal, naming the offending global when torch does."""
    # torch's wordings: "Unsupported global: GLOBAL functools.partial" (not allow-listed) and
    # "unsupported GLOBAL posix.system whose module posix is blocked" (a blocked module)
    found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", message, re.IGNORECASE)
    if found:
        return (f"{path}: refused: it holds a pickled Python object ({found.group(1)}), not just "
                "weights, and loading it could run code; only use checkpoints you trust")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    reason = " ".join(detail.group(1).split()) if detail else _first_sentence(message)
    return (f"{path}: refused: it holds more than weights or is damaged ({reason}); "
            "only use checkpoints you trust")


def _first_sentence(message: object) -> str:
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(message)).strip().splitlines()
    first = lines[0].split(". ")[0].rstrip(".") if lines else ""
    return first or (type(message).__name__ if isinstance(message, BaseException) else "unknown")


def checkpoint_config(payload: dict[str, Any]) -> Config:
    if payload.get("kind") == "detector":  # melganvc.detection's checkpoints share the format
        raise CheckpointError("this checkpoint is a converted-audio detector (melganvc detect "
                              "--model), not a conversion model")
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError("checkpoint config is invalid: not a table of fields")
    try:
        return from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint config is invalid: {exc}") from None


def check_compatible(cfg: Config, payload: dict[str, Any], sections: tuple[str, ...]) -> None:
    """Refuse to resume/fine-tune when the shape-defining config sections differ."""
    expected, found = to_dict(cfg), payload.get("config")
    if not isinstance(found, dict):
        raise CheckpointError("checkpoint config is invalid: not a table of fields")
    diffs = field_differences({s: expected.get(s, {}) for s in sections},
                              {s: found.get(s, {}) for s in sections})
    if diffs:
        raise CheckpointError(
            "checkpoint was made with an incompatible config: " + "; ".join(diffs)
            + " (drop the --set/--config that changes it, or train into a new --out)")


def field_differences(here: dict[str, Any], there: dict[str, Any]) -> list[str]:
    """Each field of two config dicts that differs, as "SECTION.FIELD is X in the checkpoint
    but Y in this config" (``there`` is the checkpoint's)."""
    return [d for key in sorted(set(here) | set(there))
            for d in _differences(here.get(key), there.get(key), key)]


def _differences(here: Any, there: Any, name: str) -> list[str]:
    if isinstance(here, dict) and isinstance(there, dict):
        return [d for key in sorted(set(here) | set(there))
                for d in _differences(here.get(key), there.get(key), f"{name}.{key}")]
    if here == there:
        return []
    return [f"{name} is {there!r} in the checkpoint but {here!r} in this config"]
