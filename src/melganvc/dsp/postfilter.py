"""A contrast postfilter for generated mels: each band's deviation from its local mean is
scaled by ``strength``.

Why: a GAN generator trained for minutes gives over-smoothed mels (docs/results.md, "What the
converted mels lack"); the formant and global-variance postfilters of statistical speech
synthesis answer the same blur by widening the spectrum's contrast. Here the local mean is a
centred moving average over ``frames`` frames of each band (edges repeat the first and last
frame), so the filter needs no statistics of the speaker and works on a stream:
``y = m + strength * (x - m)``, clipped to the normalised range [-1, 1]. Measured effect, and
what it does to real speech too: docs/results.md, "A contrast postfilter".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Postfilter:
    """``strength`` 1.0 is off; ``frames`` (odd, >= 1) is the moving average's length."""

    strength: float = 1.0
    frames: int = 63

    @property
    def active(self) -> bool:
        return self.strength != 1.0

    @property
    def delay(self) -> int:
        """Frames a stream holds back: the moving average's look-ahead."""
        return self.frames // 2 if self.active else 0

    def apply(self, mel: Tensor) -> Tensor:
        """A whole ``(n_mels, T)`` mel (what ``stream`` gives for it, in one call)."""
        return self._filter(mel, self.delay, self.delay)

    def stream(self, n_mels: int, device: torch.device | str = "cpu") -> PostfilterStream:
        return PostfilterStream(self, n_mels, device)

    def _filter(self, mel: Tensor, left: int, right: int) -> Tensor:
        """Filtered frames of ``mel`` after repeating its first frame ``left`` and its last
        ``right`` times: ``T + left + right - 2 * delay`` frames. Summed in float64, so a frame
        gets the same value (to float32) however a stream was cut."""
        if not self.active:
            return mel
        x = mel.double()
        if left or right:
            x = F.pad(x[None], (left, right), mode="replicate")[0]
        h = self.delay
        sums = torch.cumsum(F.pad(x, (1, 0)), dim=-1)
        mean = (sums[..., 2 * h + 1:] - sums[..., :-2 * h - 1]) / (2 * h + 1)
        centre = x[..., h:x.shape[-1] - h]
        return (mean + self.strength * (centre - mean)).clamp_(-1.0, 1.0).to(mel.dtype)


class PostfilterStream:
    """Push/flush filtering of one stream of mel frames, ``delay`` frames behind the input;
    the frames equal ``Postfilter.apply`` on the whole stream (to float32 rounding)."""

    def __init__(self, postfilter: Postfilter, n_mels: int,
                 device: torch.device | str = "cpu") -> None:
        self.postfilter = postfilter
        # the frames still needed: unreleased ones and the 2 * delay before them at most
        self._buf = torch.zeros(n_mels, 0, device=device)
        self._started = False  # whether a first frame has come (and been repeated)

    def push(self, mel: Tensor) -> Tensor:
        pf, h = self.postfilter, self.postfilter.delay
        if not pf.active:
            return mel
        mel = mel.to(self._buf.device)
        if not self._started and mel.shape[-1]:  # the stream's start repeats its first frame
            mel = torch.cat([mel[..., :1].expand(-1, h), mel], dim=-1)
            self._started = True
        buf = torch.cat([self._buf, mel], dim=-1)
        if buf.shape[-1] < 2 * h + 1:  # not one whole window yet
            self._buf = buf
            return buf[..., :0]
        self._buf = buf[..., buf.shape[-1] - 2 * h:]
        return pf._filter(buf, 0, 0)

    def flush(self) -> Tensor:
        pf, h = self.postfilter, self.postfilter.delay
        if not pf.active or not self._started:
            return self._buf[..., :0]
        out = pf._filter(self._buf, 0, h)
        self._buf, self._started = self._buf[..., :0], False
        return out
