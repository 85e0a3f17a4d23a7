"""The front end (gain-free features) and the masked network."""

from __future__ import annotations

import pytest
import torch

from melganvc.config import DetectorConfig
from melganvc.detection.network import DetectorNet, batch_features, log_spectrogram
from tests.conftest import speech_like

SR = 16000


def test_features_do_not_depend_on_gain():
    wave = torch.from_numpy(speech_like(1.0))
    a, b = log_spectrogram(wave, DetectorConfig()), log_spectrogram(wave * 0.01, DetectorConfig())
    assert a.shape == (257, 101) and float(a.max()) == pytest.approx(1.0)
    assert torch.allclose(a, b, atol=1e-3)


def test_padding_is_masked_out_of_pooling():
    cfg = DetectorConfig(channels=(4, 4, 4, 4, 4), hidden=8)
    torch.manual_seed(0)
    net = DetectorNet(cfg).eval()
    pooled: list[torch.Tensor] = []
    net.head.register_forward_hook(lambda module, args, out: pooled.append(args[0][0]))
    wave = torch.from_numpy(speech_like(1.0))
    length = log_spectrogram(wave, cfg).shape[1]
    for pad_seconds in (1.5, 3.0):  # both pads longer than the receptive field
        spec, frames = batch_features([wave, torch.zeros(int((1 + pad_seconds) * SR))], cfg)
        assert frames[0] == length
        with torch.no_grad():
            net(spec, frames)
            net(spec, torch.tensor([spec.shape[-1], spec.shape[-1]]))  # no mask: padding counts
    masked_1, unmasked_1, masked_2, unmasked_2 = pooled
    scale = float(masked_1.abs().max())
    assert float((masked_1 - masked_2).abs().max()) < 1e-4 * scale
    assert float((unmasked_1 - unmasked_2).abs().max()) > 1e-2 * scale  # the check can fail
