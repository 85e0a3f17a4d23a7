"""What scoring needs from a judge: typed protocols, so the training log and the
report can take any recogniser or naturalness model."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from melganvc.judges.waves import SAMPLE_RATE

# ---------------------------------------------------------------------------------------------
# Content: ASR + CER / WER
# ---------------------------------------------------------------------------------------------


class QualityJudge(Protocol):
    """What the report needs from a naturalness judge: a score per waveform, and a name."""

    name: str

    def score(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float: ...


class Recogniser(Protocol):
    """What the report needs from an ASR: a normalised transcript per waveform, and a name."""

    name: str

    def transcribe(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str: ...
