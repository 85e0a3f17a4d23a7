"""Which generator a run keeps: the one whose held-out sample translations sounded best.

With ``train.select_best`` every eval scores the fixed sample translations (inputs held out of
A's training crops) for naturalness (DistillMOS, 1-5) and similarity to B (resemblyzer cosine).
A GAN's last step is not its best one: the critic and generator keep trading, and the
quality of the samples rises, then wanders. ``Selection`` keeps the best score seen, and the
loop writes that eval's generator to ``RUN/best.pt`` (which conversion of the run folder uses)
and says when the score has stopped improving.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

STALE_NOTE = 3  # evals without a better score before the log says the run stopped improving


def sample_quality(naturalness: float, similarity: float) -> float:
    """One number per eval: naturalness mapped from 1-5 onto 0-1, plus the cosine to B (each
    counts about equally; a silent or broken translation scores low on both)."""
    return (naturalness - 1.0) / 4.0 + similarity


@dataclass
class Selection:
    """The best sample quality so far, its step, and how many evals have passed since."""

    best: float = -math.inf
    best_step: int = -1
    stale: int = 0

    def update(self, step: int, quality: float) -> bool:
        """Record one eval's score; ``True`` when it is a new best (write ``best.pt``)."""
        if math.isfinite(quality) and quality > self.best:
            self.best, self.best_step, self.stale = quality, step, 0
            return True
        self.stale += 1
        return False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Selection:
        """From a checkpoint (older ones have no selection: a fresh one)."""
        return cls(**data) if data else cls()
