"""Detect converted audio: a small CNN trained by the project on real speech versus its own
conversions and resyntheses (``melganvc detect``, ``melganvc train-detector``;
docs/detector.md). ``detect(path)`` judges a file with the bundled detector."""

from __future__ import annotations

from pathlib import Path

from melganvc.detection.detector import Detection, Detector

__all__ = ["Detection", "Detector", "detect"]


def detect(path: str | Path, model: str | Path | None = None) -> Detection:
    """Judge one audio file with the bundled detector (or the ``model`` checkpoint). Loads the
    detector each call (milliseconds); for many files keep one ``Detector.load()``."""
    return Detector.load(model).detect_file(path)
