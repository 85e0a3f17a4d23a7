"""Judge audio: the probability that it came out of a mel-spectrogram converter or vocoder.

A file is read block by block at the detector's rate, cut into windows of
``window_seconds``; near-silent windows are skipped (silence says nothing about who made it),
the rest go through the network in small batches, and the file's logit is the duration-weighted
mean of its windows' -- memory stays flat for any length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from melganvc.config import DetectorConfig, detector_config
from melganvc.detection.network import DetectorNet, batch_features
from melganvc.dsp.resample import resample
from melganvc.errors import AudioError, UserError
from melganvc.io.audio import as_mono_float32, check_sample_rate, iter_blocks
from melganvc.io.audio_writer import PROVENANCE_PREFIX, read_comment
from melganvc.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

KIND = "detector"  # checkpoints' "kind": a detector is not a conversion model
BUNDLED = Path(__file__).with_name("detector.pt")  # the shipped detector (model card beside)
SILENT_PEAK = 1e-4  # windows quieter than this (-80 dBFS) are not judged
WINDOWS_PER_BATCH = 8


@dataclass(frozen=True)
class Detection:
    """One file's verdict: ``probability`` that it was converted/resynthesised, ``converted``
    (probability >= the detector's threshold), ``tagged`` (it carries our provenance tag)."""

    path: str
    probability: float
    converted: bool
    tagged: bool
    seconds: float
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Detector:
    """A trained detector network and its config (front end, threshold)."""

    def __init__(self, net: DetectorNet, cfg: DetectorConfig, source: str = "in memory") -> None:
        self.net = net.eval()
        self.config = cfg
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> Detector:
        """The bundled detector (``path`` None) or a ``train-detector`` checkpoint."""
        path = Path(path) if path is not None else BUNDLED
        if not path.is_file():
            raise UserError(f"{path}: the bundled detector is missing from this installation"
                            if path == BUNDLED else f"{path}: no such detector checkpoint")
        payload = load_checkpoint(path)
        if payload.get("kind") != KIND:
            raise CheckpointError(f"{path}: not a detector checkpoint (a conversion model? "
                                  "use one written by melganvc train-detector)")
        cfg = detector_config(payload["config"])
        net = DetectorNet(cfg)
        try:
            net.load_state_dict(payload["models"]["detector"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{path}: detector weights do not fit its config ({exc})") from None
        return cls(net, cfg, str(path))

    def save(self, path: Path, metrics: dict[str, Any] | None = None) -> None:
        save_checkpoint(path, {"kind": KIND, "config": dataclasses.asdict(self.config),
                               "models": {"detector": self.net.state_dict()},
                               "metrics": metrics or {}})

    # --- scoring ------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, windows: list[np.ndarray]) -> np.ndarray:
        """The network's logit for each window (16 kHz mono float32 arrays), in one batch
        (``probability`` hands over ``WINDOWS_PER_BATCH`` at a time)."""
        spec, frames = batch_features([torch.from_numpy(w) for w in windows], self.config)
        return self.net(spec, frames).double().numpy()

    def probability(self, windows: Iterator[np.ndarray], what: str) -> float:
        """Duration-weighted mean logit of the judged windows, as a probability."""
        total = weight = 0.0
        pending: list[np.ndarray] = []

        def flush() -> None:
            nonlocal total, weight
            sizes = np.array([w.size for w in pending], dtype=np.float64)
            total += float((self.logits(pending) * sizes).sum())
            weight += float(sizes.sum())
            pending.clear()

        for window in windows:
            pending.append(window)
            if len(pending) == WINDOWS_PER_BATCH:
                flush()
        if pending:
            flush()
        if weight == 0:
            raise AudioError(what, "silent or too short to judge (need "
                                   f"{self.config.min_seconds:g} s of sound)")
        return float(1.0 / (1.0 + np.exp(-total / weight)))

    def _windows(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Windows of ``window_seconds`` from a block stream; the last, shorter one too when it
        is at least ``min_seconds`` (or when it is all there is); silent ones dropped."""
        size = int(self.config.window_seconds * self.config.sample_rate)
        least = int(self.config.min_seconds * self.config.sample_rate)
        buffer, emitted = np.zeros(0, np.float32), False
        for block in blocks:
            buffer = np.concatenate([buffer, block])
            while buffer.size >= size:
                window, buffer = buffer[:size], buffer[size:]
                if np.abs(window).max() >= SILENT_PEAK:
                    emitted = True
                    yield window
        if buffer.size >= least and np.abs(buffer).max() >= SILENT_PEAK \
                and (not emitted or buffer.size >= size // 4):
            yield buffer

    def score(self, waveform: np.ndarray, sample_rate: int) -> float:
        """Probability that ``waveform`` (any shape ``Converter.convert`` takes) was converted."""
        wave = resample(as_mono_float32(waveform), check_sample_rate(sample_rate),
                        self.config.sample_rate)
        return self.probability(self._windows(iter([wave])), "audio")

    def detect_file(self, path: str | Path) -> Detection:
        """Judge one audio file (``AudioError`` naming it when it cannot be read or judged)."""
        path = Path(path)
        samples = 0

        def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal samples  # the duration, from the one pass that reads the file
            for block in blocks:
                samples += block.size
                yield block

        blocks = iter_blocks(path, self.config.sample_rate,
                             block_seconds=4 * self.config.window_seconds)
        p = self.probability(self._windows(counted(blocks)), str(path))
        return Detection(str(path), p, p >= self.config.threshold, has_provenance_tag(path),
                         samples / self.config.sample_rate, self.config.threshold)


def has_provenance_tag(path: Path) -> bool:
    """Whether the file's comment carries the tag our writers add (re-encoding strips it)."""
    try:
        return read_comment(path).startswith(PROVENANCE_PREFIX)
    except (RuntimeError, OSError, ValueError):
        return False
