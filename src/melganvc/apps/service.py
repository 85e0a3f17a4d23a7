"""The conversion service behind ``melganvc serve``: models, limits, conversion, run progress.

Nothing here knows about the web: ``webui.py`` draws the page and calls these methods, so the
rules are tested without a browser. Safety rules:

- models are chosen by *name* from a catalogue the server builds (bundled models, ``--ckpt``
  files, run folders under ``--runs``); nothing the browser sends is used as a path;
- uploads are limited in bytes and in duration (read from the header before decoding);
- results are written under a private work folder with sanitised names, atomically;
- messages name models by their catalogue name, never by server path (the full message goes
  to the server's stderr);
- conversions (and detections) run one at a time on one worker thread, whichever thread asks
  (see ``convert``).

(About 300 lines: ``ConversionService`` is one class on purpose, so that these rules can be
read, and checked, in one place.)
"""

from __future__ import annotations

import ctypes
import functools
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from melganvc.apps.catalog import Catalog, run_progress
from melganvc.errors import AudioError, UserError
from melganvc.io.audio import audio_info, load
from melganvc.io.pretrained import model_card

# Inversion settings per (method, quality); "standard" keeps the checkpoint's own settings.
QUALITY: dict[tuple[str, str], dict[str, int]] = {
    ("gl", "fast"): {"gl_iters": 8, "nnls_iters": 20},
    ("gl", "standard"): {},
    ("gl", "high"): {"gl_iters": 100, "nnls_iters": 150},
    ("grad", "fast"): {"grad_steps": 100},
    ("grad", "standard"): {"grad_steps": 300},
    ("grad", "high"): {"grad_steps": 1000},
    # the neural vocoder has no iterations to trade: one setting (models on its features only)
    ("hifigan", "fast"): {},
    ("hifigan", "standard"): {},
    ("hifigan", "high"): {},
}
# "auto": the model's own inversion (hifigan for models trained on its features, else gl)
METHODS = ("auto", "gl", "grad", "hifigan")
QUALITIES = ("fast", "standard", "high")
RESULT_TTL_S = 900.0  # results older than this are deleted when the next one is made
MAX_LOADED_MODELS = 4  # converters kept in memory; the least recently used one goes first
RESULT_FOLDER = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: the only folders _expire deletes
# An absolute path of two or more parts: what ``public_message`` hides if nothing else did.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"()]+/)+[^\s/'\"(),;]+")


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


def log(message: str) -> None:
    """The server's own log (stderr): full messages, server paths included."""
    print(f"melganvc serve: {message}", file=sys.stderr, flush=True)


def public_message(text: str, name: str, paths: tuple[Path, ...]) -> str:
    """``text`` fit for the browser: each of ``paths`` (resolved, and as given unless that is
    a bare file name) becomes ``name``, and any other absolute path left becomes
    ``<server path>``. Prefixed with ``name`` when it does not already start with it."""
    placeholder = "\x00name\x00"
    spellings = {str(p.resolve()) for p in paths} | {str(p) for p in paths if len(p.parts) > 1}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, placeholder)
    text = _ABSOLUTE_PATH.sub("<server path>", text).replace(placeholder, name)
    text = " ".join(text.split())  # one line
    return text if text.startswith(name) else f"{name}: {text}"


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> None:
    """Give freed heap back to the OS (glibc ``malloc_trim``; elsewhere nothing). Without it
    a long-running server keeps the peak of every arena it ever used."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def safe_name(text: str, limit: int = 60) -> str:
    """A file-name fragment made of ``[A-Za-z0-9._-]`` only (never ``..`` or a separator)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return cleaned[:limit] or "audio"


@dataclass
class _Loaded:
    """A model in memory: its checkpoint's mtime, its converter, and one converter per
    (method, quality) built from it once (they share the generator and its buffers)."""

    mtime: float
    base: Any
    variants: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass
class LiveSession:
    """One browser's live stream: its model, rate and engine (a Gradio session state)."""

    model: str
    rate: int
    engine: Any
    seconds: float = 0.0
    chunk_ms: float = 0.0

    def status(self) -> str:
        pipeline = 1000.0 * self.engine.latency_samples / self.rate
        return (f"live {self.seconds:.1f} s · latency {pipeline + 2 * self.chunk_ms:.0f} ms "
                f"(conversion {pipeline:.0f} ms + browser chunks 2 × {self.chunk_ms:.0f} ms) · "
                f"RTF {self.engine.rtf:.2f}")


@dataclass
class ConversionService:
    """Loads converters on demand (at most ``MAX_LOADED_MODELS``) and converts uploads."""

    catalog: Catalog
    limits: Limits = field(default_factory=Limits)
    device: str = "auto"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="melganvc-serve-")))

    def __post_init__(self) -> None:
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._lock = threading.Lock()
        # One thread does every conversion. A web server calls from whichever of its worker
        # threads is free; each one that converted kept its own malloc arena and OpenMP team
        # at a conversion's peak (benchmarks/serve_memory.py: 334 -> 662 MB over 200
        # conversions through the page's HTTP API; 416 MB with this thread).
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="melganvc-convert")
        self._detector: Any = None  # the bundled detector, loaded by the first detect()

    def model_names(self) -> list[str]:
        return list(self.catalog.models())

    def _checkpoint(self, name: str) -> Path:
        models = self.catalog.models()
        if name not in models:
            raise UserError(f"unknown model {name!r}; choose one of the list")
        return models[name]

    def converter(self, name: str, method: str = "auto", quality: str = "standard"):
        """The converter for a listed model with the chosen inversion (reloaded when its
        checkpoint file changes, so a run still training serves its newest weights). Built
        once per (model, method, quality) and kept: a new one per request re-made the
        inverter's buffers every time. ``auto``: the checkpoint's own method."""
        if method not in METHODS or quality not in QUALITIES:
            raise UserError(f"inversion must be one of {METHODS} and quality one of {QUALITIES}")
        path = self._checkpoint(name)
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            log(f"{name}: {path}: {exc}")
            raise UserError(f"{name}: the checkpoint is gone (deleted or moved since the "
                            f"server started?)") from None
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is None or loaded.mtime != mtime:
                self._loaded.pop(name, None)  # let the old weights go before loading the new
                loaded = self._loaded[name] = _Loaded(mtime, self._load(name, path))
            self._loaded.move_to_end(name)
            while len(self._loaded) > MAX_LOADED_MODELS:
                self._loaded.popitem(last=False)
            if method == "auto":
                method = loaded.base.inversion.method
            if (method, quality) not in loaded.variants:
                settings = {"method": method, **QUALITY[(method, quality)]}
                loaded.variants[(method, quality)] = loaded.base.with_options(
                    inversion=settings)
            return loaded.variants[(method, quality)]

    def live(self, name: str, chunk: tuple[int, Any] | None, session: LiveSession | None
             ) -> tuple[tuple[int, Any] | None, LiveSession | None, str]:
        """One chunk of the browser's microphone through a live engine (``apps.live``): the
        converted chunk (same length, int16), the session to pass back, a status line. A new
        session starts when the model or the rate changes; ``chunk=None`` ends it."""
        import numpy as np

        from melganvc.apps.live import LiveEngine

        if chunk is None:
            return None, None, ""
        rate, data = chunk
        samples = np.asarray(data)
        scale = float(np.iinfo(samples.dtype).max) + 1 if samples.dtype.kind in "iu" else 1.0
        x = samples.astype(np.float32) / scale
        x = x.mean(axis=1) if x.ndim == 2 else x
        if session is None or session.model != name or session.rate != rate:
            try:
                engine = LiveEngine(self.converter(name), int(rate))
            except (UserError, ValueError) as exc:
                raise self._public(exc, name) from None
            session = LiveSession(name, int(rate), engine)
        y = session.engine.process(x)
        session.seconds += x.size / rate
        session.chunk_ms = 1000.0 * x.size / rate
        out = (np.clip(y, -1, 1) * 32767).astype(np.int16)
        return (int(rate), out), session, session.status()

    def loaded_models(self) -> dict[str, int]:
        """Models in memory and how many converters each holds (at most one per quality)."""
        with self._lock:
            return {name: len(loaded.variants) for name, loaded in self._loaded.items()}

    def _load(self, name: str, path: Path):
        from melganvc.conversion.converter import Converter

        try:
            return Converter.from_checkpoint(path, device=self.device)
        except UserError as exc:
            raise self._public(exc, name, path) from None

    def _public(self, exc: Exception, name: str, *paths: Path) -> UserError:
        """``exc`` as a ``UserError`` for the page: naming ``name``, not server paths (the
        server's log gets the original)."""
        log(f"{name}: {exc}")
        return UserError(public_message(str(exc), name, paths))

    def describe(self, name: str) -> str:
        """Markdown about a model: where it comes from, its rate and step, its card."""
        if not name:
            return "No model: train one (`melganvc train`) or start with `--ckpt`."
        from melganvc.io.checkpoint import checkpoint_config, load_checkpoint

        path = self._checkpoint(name)
        try:
            payload = load_checkpoint(path)
            cfg = checkpoint_config(payload)
        except UserError as exc:
            raise self._public(exc, name, path) from None
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
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UserError(f"{display}: cannot read the upload ({exc.strerror})") from None
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

    def convert(self, name: str, upload: str | Path, method: str = "auto",
                quality: str = "standard") -> Result:
        """Convert an uploaded file with a listed model; writes the result and two mel images.

        Runs on the service's one worker thread (callers wait), then hands freed memory back
        to the OS, so a server's RSS stays near one conversion's peak."""
        return self._worker.submit(self._convert_then_trim, name, upload, method,
                                   quality).result()

    def _convert_then_trim(self, *args: Any) -> Result:
        try:
            return self._convert(*args)
        finally:  # on the worker: no conversion is running while the heap is trimmed
            release_free_memory()

    def _convert(self, name: str, upload: str | Path, method: str, quality: str) -> Result:
        from melganvc.evaluation.images import spectrogram_pngs

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
        except UserError as exc:  # e.g. the work folder cannot be written
            shutil.rmtree(folder, ignore_errors=True)
            raise self._public(exc, "result", out, folder, self.workdir) from None
        (folder / "source_mel.png").write_bytes(source_png)
        (folder / "converted_mel.png").write_bytes(converted_png)
        return Result(out, folder / "source_mel.png", folder / "converted_mel.png", seconds,
                      time.monotonic() - started)

    def detect(self, upload: str | Path) -> str:
        """Judge an upload with the bundled detector (loaded once, on the worker thread);
        the verdict as one line of markdown."""
        return self._worker.submit(self._detect, Path(upload)).result()

    def _detect(self, upload: Path) -> str:
        from melganvc.detection import Detector

        display = upload.name
        self.check_upload(upload, display)
        if self._detector is None:
            self._detector = Detector.load()
        try:
            found = self._detector.detect_file(upload)
        except AudioError as exc:
            raise UserError(f"{display}: {exc.reason}") from None
        verdict = "**Converted**" if found.converted else "**Real**"
        tag = ("carries melganvc's provenance tag" if found.tagged
               else "no provenance tag (re-encoding removes it; the verdict does not need it)")
        return (f"{verdict}: probability {found.probability:.3f} that {display} was made by "
                f"mel-spectrogram conversion or resynthesis (threshold "
                f"{found.threshold:.3f}); {tag}.")

    def _expire(self) -> None:
        """Delete old result folders (only those: the web page keeps its uploads here too)."""
        cutoff = time.time() - RESULT_TTL_S
        for folder in self.workdir.glob("*"):
            if RESULT_FOLDER.fullmatch(folder.name) and folder.is_dir() \
                    and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop converting and delete the work folder (results, and the page's uploads)."""
        self._worker.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._loaded.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- training progress --------------------------------------------------------------------

    def run_names(self) -> list[str]:
        return list(self.catalog.run_folders())

    def run_progress(self, name: str) -> tuple[str, list[dict[str, Any]]]:
        """A run's status line and its logged losses as rows ``{step, value, series}``."""
        runs = self.catalog.run_folders()
        if name not in runs:
            raise UserError(f"unknown run {name!r}")
        try:
            return run_progress(runs[name])
        except (UserError, OSError) as exc:  # a run deleted or damaged while listed
            raise self._public(exc, f"run {name}", runs[name]) from None
