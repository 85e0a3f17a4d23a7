"""Generators shipped inside the package: ``--ckpt demo-voice`` works with no training.

Each bundled model is a small generator-only checkpoint (``conversion.export.save_generator``, fp16)
named ``<name>.pt`` beside a model card ``<name>.md`` (data, steps, config, measured numbers).
Only files in this folder are bundled models; a name never reaches the file system otherwise.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SUFFIX = ".pt"


def _folder() -> Path:
    return Path(str(files(__name__)))


def bundled_models() -> dict[str, Path]:
    """Bundled model names -> their checkpoint files, sorted by name."""
    return {p.stem: p for p in sorted(_folder().glob("*" + SUFFIX)) if p.is_file()}


def bundled_path(name: str) -> Path | None:
    """The checkpoint of bundled model ``name``, or ``None`` when there is no such model."""
    return bundled_models().get(name)


def model_card(name: str) -> str:
    """The model card (markdown) of a bundled model; empty when it has none."""
    path = bundled_path(name)
    card = path.with_suffix(".md") if path is not None else None
    return card.read_text(encoding="utf-8") if card is not None and card.is_file() else ""
