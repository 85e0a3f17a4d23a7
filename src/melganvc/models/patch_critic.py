"""A second critic that looks at the mel as an image: local 2-D patches of frequency x time.

Not in the reference. Its critic's first convolution spans all ``n_mels`` bins, so it judges
each frame through ``critic_channels`` projections of the whole spectrum and rewards the
generator for getting the broad envelope right; docs/results.md measures that the converted
mels come out over-smoothed (harmonic and frame-to-frame detail 15-34 % below real speech).
A PatchGAN-style critic of small 2-D kernels scores local texture at every place of the image
(one hinge score per patch), the detail the full-band critic averages away. Enabled by
``model.patch_critic_channels > 0``; its hinge loss is added to the critic's and its
adversarial loss to the generator's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from melganvc.models.layers import LEAKY_SLOPE, _check_mels, _maybe_sn, he_uniform_

if TYPE_CHECKING:
    from melganvc.config import Config

KERNEL = 5
STRIDES = (2, 2, 2)  # three stride-2 stages: patches of ~36 bins x ~36 frames


class PatchCritic(nn.Module):
    """``(B, n_mels, frames) -> (B, n_mels / 8, frames / 8)`` unbounded patch scores.

    Three 5x5 convolutions with stride 2 (channels C, 2C, 4C), LeakyReLU, then a 3x3 conv to
    one score per patch; spectral norm on every conv. ``features`` also returns the hidden
    maps (for the feature-matching loss).
    """

    def __init__(self, n_mels: int, channels: int, spectral_norm: bool = True):
        super().__init__()
        self.hparams = {"n_mels": n_mels, "channels": channels, "spectral_norm": spectral_norm}
        self.n_mels = n_mels
        widths = [1] + [channels * 2**i for i in range(len(STRIDES))]
        self.convs = nn.ModuleList(
            _maybe_sn(self._conv(cin, cout, KERNEL, stride), spectral_norm)
            for cin, cout, stride in zip(widths[:-1], widths[1:], STRIDES, strict=True))
        self.score = _maybe_sn(self._conv(widths[-1], 1, 3, 1), spectral_norm)

    @staticmethod
    def _conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Conv2d:
        conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        he_uniform_(conv.weight, fan_in=cin * kernel * kernel)
        assert conv.bias is not None
        nn.init.zeros_(conv.bias)
        return conv

    def features(self, x: Tensor) -> list[Tensor]:
        """The hidden maps, then the score map last."""
        _check_mels(x, self.n_mels, "PatchCritic")
        h, out = x.unsqueeze(1), []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), LEAKY_SLOPE)
            out.append(h)
        out.append(self.score(h).squeeze(1))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[-1]


def build_patch_critic(cfg: Config) -> PatchCritic | None:
    """The patch critic ``cfg.model.patch_critic_channels`` asks for, or ``None`` (the reference)."""
    m = cfg.model
    if m.patch_critic_channels <= 0:
        return None
    return PatchCritic(cfg.features.n_mels, m.patch_critic_channels, m.spectral_norm)
