"""Equal error rate: the operating point where real audio is flagged as often as converted
audio is missed (ASVspoof's headline measure)."""

from __future__ import annotations

import numpy as np


def equal_error_rate(real: np.ndarray, converted: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) for scores where higher means converted; a score >= threshold is
    flagged. The EER is the mean of the two error rates where they are closest."""
    real, converted = np.asarray(real, np.float64), np.asarray(converted, np.float64)
    if real.size == 0 or converted.size == 0:
        raise ValueError("need scores of both real and converted audio")
    candidates = np.unique(np.concatenate([real, converted, [np.inf]]))
    false_alarm = (real[None, :] >= candidates[:, None]).mean(1)
    miss = (converted[None, :] < candidates[:, None]).mean(1)
    best = int(np.argmin(np.abs(false_alarm - miss)))
    return float((false_alarm[best] + miss[best]) / 2), float(candidates[best])


def rate_at(scores: np.ndarray, threshold: float) -> float:
    """Fraction of ``scores`` flagged (>= threshold): false-positive rate on real audio."""
    scores = np.asarray(scores, np.float64)
    return float((scores >= threshold).mean()) if scores.size else float("nan")
