"""Naturalness: DistillMOS (MIT; weights inside the wheel), imported with a
torchaudio stub because the package declares torchaudio but never uses it."""

from __future__ import annotations

import contextlib
import io
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from melganvc.judges.integrity import (
    _STUB_MARK,
    DISTILLMOS_INSTALL,
    DISTILLMOS_WEIGHTS_SHA256,
    _cpu_threads,
    _import_or_explain,
    read_verified,
)
from melganvc.judges.waves import SAMPLE_RATE, _resample, _torch_threads, wave_key

# ---------------------------------------------------------------------------------------------
# Naturalness: DistillMOS
# ---------------------------------------------------------------------------------------------


def _torchaudio_stub() -> types.ModuleType:
    """A stand-in for ``torchaudio``: distillmos imports it at the top of ``sqa.py`` but its
    model never calls it (only the file-reading command line does). Any use fails loudly."""
    stub = types.ModuleType("torchaudio")
    stub.__doc__ = "melganvc's stand-in: torchaudio is not installed (DistillMOS does not use it)"
    setattr(stub, _STUB_MARK, True)

    def missing(name: str) -> object:
        raise AttributeError(f"torchaudio.{name}: torchaudio is not installed; melganvc gave "
                             "distillmos a stand-in that only satisfies its import")

    stub.__getattr__ = missing  # type: ignore[method-assign]
    return stub


@contextlib.contextmanager
def torchaudio_stubbed() -> Iterator[None]:
    """``import torchaudio`` succeeds inside the block (with the stub) unless a real one is
    already imported; the stub is removed afterwards, so nothing else ever sees it. torchaudio
    itself is never imported: its releases lag torch, and a mismatched build fails to load."""
    if "torchaudio" in sys.modules:
        yield
        return
    sys.modules["torchaudio"] = _torchaudio_stub()
    try:
        yield
    finally:
        if getattr(sys.modules.get("torchaudio"), _STUB_MARK, False):
            del sys.modules["torchaudio"]


def load_distillmos() -> types.ModuleType:
    """The ``distillmos`` package, imported with torchaudio stubbed out, or a one-line
    ``UserError`` naming the install command."""
    with torchaudio_stubbed():
        return _import_or_explain("distillmos", "naturalness judge DistillMOS",
                                  DISTILLMOS_INSTALL)


class NaturalnessJudge:
    """DistillMOS naturalness, 1 (bad) to 5 (excellent), of 16 kHz speech, loaded once.

    The model scores 7.68 s windows (shorter input is zero-padded, longer input averaged over
    overlapping windows), so an utterance costs at least about 0.4 s on one core. Scores are
    cached per waveform; NaN for empty or (near-)silent input, which the model would rate
    arbitrarily. ``num_threads``: torch threads while scoring (default: half the cores, at
    most 4)."""

    name = "DistillMOS v7 (distillmos 0.9.1)"

    def __init__(self, num_threads: int | None = None) -> None:
        import torch

        distillmos = load_distillmos()
        data = read_verified(Path(distillmos.sqa.DEFAULT_WEIGHTS_CHKPT),
                              DISTILLMOS_WEIGHTS_SHA256, "reinstall it: pip install "
                              "--force-reinstall --no-deps 'distillmos==0.9.1'")
        self.num_threads = _cpu_threads(num_threads)
        with _torch_threads(self.num_threads):
            model = distillmos.ConvTransformerSQAModel(load_weights=False)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])  # the verified bytes, not a second read
        self.model = model.eval()
        self._torch = torch
        self._cache: dict[str, float] = {}

    def describe(self) -> dict[str, object]:
        """What the report records about this judge."""
        return {"name": self.name, "weights_sha256": DISTILLMOS_WEIGHTS_SHA256,
                "threads": self.num_threads, "scale": "1-5, higher is more natural"}

    def score(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """Predicted MOS of one utterance (NaN when there is nothing to hear)."""
        key = wave_key(wave, sample_rate)
        if key in self._cache:
            return self._cache[key]
        wave = _resample(wave, sample_rate)
        if wave.size < SAMPLE_RATE // 20 or float(np.sqrt(np.mean(np.square(
                wave, dtype=np.float64)))) < 1e-5:
            value = float("nan")
        else:
            batch = self._torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]
            with _torch_threads(self.num_threads), self._torch.inference_mode():
                value = float(self.model(batch).reshape(-1)[0])
        self._cache[key] = value
        return value
