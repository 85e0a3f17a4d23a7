"""Equal error rate and rates at a threshold."""

from __future__ import annotations

import numpy as np
import pytest

from melganvc.detection.metrics import equal_error_rate, rate_at


def test_eer_separable_and_overlapping():
    assert equal_error_rate(np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8, 0.9])) == (0.0, 0.7)
    eer, t = equal_error_rate(np.array([0.1, 0.2, 0.3, 0.75]), np.array([0.25, 0.8, 0.85, 0.9]))
    assert (eer, t) == (pytest.approx(0.25), 0.75)  # one real flagged, one converted missed
    assert rate_at(np.array([0.1, 0.5, 0.9]), 0.5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        equal_error_rate(np.array([]), np.array([0.5]))
