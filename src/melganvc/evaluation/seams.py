"""How visible are chunk borders? Spectral flux at the borders relative to elsewhere.

G translates L-frame chunks independently; where two chunks meet, the converted mel can jump.
``seam_score`` measures that: the mean spectral flux (mean absolute mel difference between
consecutive frames) across chunk borders divided by the mean flux across all other frame
pairs. 1.0 means the borders look like any other frame pair (no seam); 2.0 means the borders
change twice as much as the signal does elsewhere.

``phase="border"`` looks at the borders of the given grid (frames ``k * chunk_frames +
offset``). ``phase="worst"`` tries every offset and reports the highest ratio, so it finds
periodic seams wherever the grid (or a cross-faded grid) puts them; use it to compare
conversion modes fairly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from melganvc.config import FeatureConfig
from melganvc.dsp.mel import MelSpectrogram

__all__ = ["seam_profile", "seam_score", "spectral_flux"]


def _as_mel(x: Tensor | np.ndarray, features: FeatureConfig | None) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).float().cpu()
    if t.dim() == 1:  # a waveform: analyse it
        with torch.no_grad():
            return MelSpectrogram(features or FeatureConfig())(t)
    if t.dim() != 2:
        raise ValueError(f"expected a mel (n_mels, frames) or a waveform, got {tuple(t.shape)}")
    return t


def spectral_flux(x: Tensor | np.ndarray, features: FeatureConfig | None = None) -> Tensor:
    """Mean |mel[:, t] - mel[:, t-1]| for t = 1..T-1 (entry ``t-1``) of a mel or a waveform."""
    mel = _as_mel(x, features)
    return (mel[:, 1:] - mel[:, :-1]).abs().mean(0)


def seam_profile(x: Tensor | np.ndarray, chunk_frames: int,
                 features: FeatureConfig | None = None) -> Tensor:
    """Mean flux of the transitions into frames ``t`` with ``t % chunk_frames == p``, per p."""
    flux = spectral_flux(x, features)
    t = torch.arange(1, flux.numel() + 1)
    return torch.stack([flux[t % chunk_frames == p].mean() for p in range(chunk_frames)])


def seam_score(x: Tensor | np.ndarray, chunk_frames: int, *, features: FeatureConfig | None = None,
               phase: str = "border", offset: int = 0) -> float:
    """Flux across chunk borders / flux elsewhere (1.0 = no visible seam).

    ``x``: a normalised mel ``(n_mels, T)`` or a waveform (analysed with ``features``, default
    the reference features). Borders are the transitions into frames ``k * chunk_frames +
    offset`` (``k >= 1``); ``phase="worst"`` takes the worst offset instead.
    """
    flux = spectral_flux(x, features)
    if flux.numel() < 2 * chunk_frames:
        raise ValueError(f"need at least {2 * chunk_frames + 1} frames to measure seams")
    t = torch.arange(1, flux.numel() + 1)

    def ratio(p: int) -> float:
        border = (t % chunk_frames) == (p % chunk_frames)
        rest = flux[~border].mean()
        return float(flux[border].mean() / rest) if rest > 0 else float("nan")

    if phase == "border":
        return ratio(offset)
    if phase == "worst":
        return max(ratio(p) for p in range(chunk_frames))
    raise ValueError(f"phase must be 'border' or 'worst', got {phase!r}")
