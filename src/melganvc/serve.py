"""The conversion service behind ``melganvc serve``: models, limits, conversion, run progress.

Nothing here knows about the web: ``webui.py`` draws the page and calls these methods, so the
rules are tested without a browser. Safety rules:

- models are chosen by *name* from a catalogue the server builds (bundled models, ``--ckpt``
  files, run folders under ``--runs``); nothing the browser sends is used as a path;
- uploads are limited in bytes and in duration (read from the header before decoding);
- results are written under a private work folder with sanitised names, atomically.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from melganvc.audio import audio_info, load
from melganvc.checkpoint import CHECKPOINT_NAME, resolve_checkpoint
from melganvc.errors import AudioError, UserError
from melganvc.pretrained import bundled_models, model_card

# Inversion settings per (method, quality); "standard" keeps the checkpoint's own settings.
QUALITY: dict[tuple[str, str], dict[str, int]] = {
    ("gl", "fast"): {"gl_iters": 8, "nnls_iters": 20},
    ("gl", "standard"): {},
    ("gl", "high"): {"gl_iters": 100, "nnls_iters": 150},
    ("grad", "fast"): {"grad_steps": 100},
    ("grad", "standard"): {"grad_steps": 300},
    ("grad", "high"): {"grad_steps": 1000},
}
METHODS = ("gl", "grad")
QUALITIES = ("fast", "standard", "high")
RESULT_TTL_S = 3600.0  # results older than this are deleted when the next one is made


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; the defaults suit a laptop."""

    max_mb: float = 50.0
    max_seconds: float = 300.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


@dataclass(frozen=True)
class Result:
    audio: Path
    source_mel: Path
    converted_mel: Path
    seconds: float
    elapsed: float

    @property
    def message(self) -> str:
        return (f"converted {self.seconds:.1f} s of audio in {self.elapsed:.1f} s "
                f"(real-time factor {self.elapsed / max(self.seconds, 1e-9):.2f})")


def safe_name(text: str, limit: int = 60) -> str:
    """A file-name fragment made of ``[A-Za-z0-9._-]`` only (never ``..`` or a separator)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return cleaned[:limit] or "audio"


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
            found[f"file: {ckpt}"] = resolve_checkpoint(ckpt)
        if self.bundled:
            found |= {f"bundled: {name}": path for name, path in bundled_models().items()}
        found |= {f"run: {name}": path / CHECKPOINT_NAME for name, path in self.run_folders().items()}
        return found

    def run_folders(self) -> dict[str, Path]:
        """Run folders (holding a checkpoint) up to two levels under ``runs``, by relative name."""
        if self.runs is None or not self.runs.is_dir():
            return {}
        ckpts = [*self.runs.glob(f"*/{CHECKPOINT_NAME}"), *self.runs.glob(f"*/*/{CHECKPOINT_NAME}")]
        return {p.parent.relative_to(self.runs).as_posix(): p.parent for p in sorted(ckpts)}


@dataclass
class ConversionService:
    """Loads converters on demand (cached per model) and converts uploaded files."""

    catalog: Catalog
    limits: Limits = field(default_factory=Limits)
    device: str = "auto"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="melganvc-serve-")))

    def __post_init__(self) -> None:
        self._converters: dict[tuple[str, float], Any] = {}
        self._lock = threading.Lock()

    def model_names(self) -> list[str]:
        return list(self.catalog.models())

    def _checkpoint(self, name: str) -> Path:
        models = self.catalog.models()
        if name not in models:
            raise UserError(f"unknown model {name!r}; choose one of the list")
        return models[name]

    def converter(self, name: str, method: str = "gl", quality: str = "standard"):
        """The converter for a listed model with the chosen inversion (reloaded when its
        checkpoint file changes, so a run still training serves its newest weights)."""
        from melganvc.convert import Converter

        if (method, quality) not in QUALITY:
            raise UserError(f"inversion must be one of {METHODS} and quality one of {QUALITIES}")
        path = self._checkpoint(name)
        key = (name, path.stat().st_mtime)
        with self._lock:
            if key not in self._converters:
                self._converters = {k: v for k, v in self._converters.items() if k[0] != name}
                self._converters[key] = Converter.from_checkpoint(path, device=self.device)
            base = self._converters[key]
        settings = {"method": method, **QUALITY[(method, quality)]}
        return base.with_options(inversion=[f"{k}={v}" for k, v in settings.items()])

    def describe(self, name: str) -> str:
        """Markdown about a model: where it comes from, its rate and step, its card."""
        if not name:
            return "No model: train one (`melganvc train`) or start with `--ckpt`."
        from melganvc.checkpoint import checkpoint_config, load_checkpoint

        payload = load_checkpoint(self._checkpoint(name))
        cfg = checkpoint_config(payload)
        step = payload.get("step")
        text = (f"**{name}** — {cfg.features.sample_rate} Hz, {cfg.features.n_mels} mel bands, "
                f"{cfg.model.generator_channels}-channel generator"
                + (f", trained {step} steps" if step is not None else ""))
        if name.startswith("bundled: "):
            card = model_card(name.removeprefix("bundled: "))
            summary = next((p for p in card.split("\n\n") if p and not p.startswith("#")), "")
            text += "\n\n" + summary
        return text

    def check_upload(self, path: str | Path, display: str) -> float:
        """Duration in seconds of an acceptable upload; ``UserError`` (naming ``display``) if not."""
        path = Path(path)
        size = path.stat().st_size
        if size > self.limits.max_bytes:
            raise UserError(f"{display}: {size / 2**20:.1f} MB is over the "
                            f"{self.limits.max_mb:g} MB upload limit")
        try:
            rate, frames = audio_info(path)
        except AudioError as exc:
            raise UserError(f"{display}: {exc.reason}") from None
        seconds = frames / rate
        if seconds > self.limits.max_seconds:
            raise UserError(f"{display}: {seconds:.0f} s is longer than the "
                            f"{self.limits.max_seconds:g} s limit")
        return seconds

    def convert(self, name: str, upload: str | Path, method: str = "gl",
                quality: str = "standard") -> Result:
        """Convert an uploaded file with a listed model; writes the result and two mel images."""
        from melganvc.report import spectrogram_pngs

        started = time.monotonic()
        upload = Path(upload)
        display = upload.name
        seconds = self.check_upload(upload, display)
        conv = self.converter(name, method, quality)
        self._expire()
        folder = self.workdir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        kind, _, label = name.partition(": ")
        model = safe_name(Path(label).stem if kind == "file" else label)
        out = folder / f"{safe_name(upload.stem)}_{model}.wav"
        try:
            conv.convert_file(upload, out)
            rate = conv.sample_rate
            source_png, converted_png = spectrogram_pngs([load(upload, rate), load(out, rate)], rate)
        except AudioError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise UserError(f"{display}: {exc.reason}") from None
        (folder / "source_mel.png").write_bytes(source_png)
        (folder / "converted_mel.png").write_bytes(converted_png)
        return Result(out, folder / "source_mel.png", folder / "converted_mel.png", seconds,
                      time.monotonic() - started)

    def _expire(self) -> None:
        cutoff = time.time() - RESULT_TTL_S
        for folder in self.workdir.glob("*"):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- training progress --------------------------------------------------------------------

    def run_names(self) -> list[str]:
        return list(self.catalog.run_folders())

    def run_progress(self, name: str) -> tuple[str, list[dict[str, Any]]]:
        """A run's status line and its logged losses as rows ``{step, value, series}``."""
        runs = self.catalog.run_folders()
        if name not in runs:
            raise UserError(f"unknown run {name!r}")
        return run_progress(runs[name])


def run_progress(run: Path) -> tuple[str, list[dict[str, Any]]]:
    """Read a run's TensorBoard scalars (losses) and its config: ``(markdown, rows)``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from melganvc.config import load_config
    from melganvc.fit import CONFIG_NAME

    total = load_config(run / CONFIG_NAME).train.steps if (run / CONFIG_NAME).is_file() else None
    rows = []
    if (run / "logs").is_dir():
        events = EventAccumulator(str(run / "logs"), size_guidance={"scalars": 0})
        events.Reload()
        rows = [{"step": e.step, "value": float(e.value), "series": tag}
                for tag in events.Tags().get("scalars", []) for e in events.Scalars(tag)
                if np.isfinite(e.value)]
    step = max((r["step"] for r in rows), default=0)
    age = time.time() - (run / CHECKPOINT_NAME).stat().st_mtime
    text = (f"**{run.name}**: step {step}" + (f" of {total}" if total else "")
            + f"; last checkpoint {age / 60:.1f} min ago")
    return text, rows
