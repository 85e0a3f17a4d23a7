"""What ``melganvc serve`` may offer: the catalogue of models (bundled, ``--ckpt`` files, run
folders under ``--runs``) and a run's training progress for the Training tab. Models are
chosen by catalogue name; nothing the browser sends is used as a path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from melganvc.errors import UserError
from melganvc.io.checkpoint import CHECKPOINT_NAME, resolve_checkpoint
from melganvc.io.pretrained import bundled_models
from melganvc.io.run_dir import RunDir


@dataclass
class Catalog:
    """Models the page may offer: bundled ones, explicit checkpoints, runs under a folder."""

    checkpoints: tuple[Path, ...] = ()
    runs: Path | None = None
    bundled: bool = True

    def models(self) -> dict[str, Path]:
        """Display name -> checkpoint (rescanned on every call: new runs appear). The models
        named with ``--ckpt`` come first: the page selects the first one."""
        found: dict[str, Path] = {}
        for ckpt in self.checkpoints:
            try:
                found[f"file: {ckpt}"] = resolve_checkpoint(ckpt)
            except UserError:  # deleted since the start: listed, and refused when chosen
                found[f"file: {ckpt}"] = Path(ckpt)
        if self.bundled:
            found |= {f"bundled: {name}": path for name, path in bundled_models().items()}
        found |= {f"run: {name}": RunDir(path).checkpoint for name, path in self.run_folders().items()}
        return found

    def run_folders(self) -> dict[str, Path]:
        """Run folders (holding a checkpoint) up to two levels under ``runs``, by relative name."""
        if self.runs is None or not self.runs.is_dir():
            return {}
        ckpts = [*self.runs.glob(f"*/{CHECKPOINT_NAME}"), *self.runs.glob(f"*/*/{CHECKPOINT_NAME}")]
        return {p.parent.relative_to(self.runs).as_posix(): p.parent for p in sorted(ckpts)}


def run_progress(run: Path) -> tuple[str, list[dict[str, Any]]]:
    """Read a run's TensorBoard scalars (losses) and its config: ``(markdown, rows)``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from melganvc.config import load_config

    layout = RunDir(run)
    total = load_config(layout.config).train.steps if layout.config.is_file() else None
    rows = []
    if layout.logs.is_dir():
        events = EventAccumulator(str(layout.logs), size_guidance={"scalars": 0})
        events.Reload()
        rows = [{"step": e.step, "value": float(e.value), "series": tag}
                for tag in events.Tags().get("scalars", []) for e in events.Scalars(tag)
                if np.isfinite(e.value)]
    step = max((r["step"] for r in rows), default=0)
    age = time.time() - layout.checkpoint.stat().st_mtime
    text = (f"**{run.name}**: step {step}" + (f" of {total}" if total else "")
            + f"; last checkpoint {age / 60:.1f} min ago")
    return text, rows
