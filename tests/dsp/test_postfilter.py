"""The contrast postfilter: what it computes, that it is off at 1.0, and that a stream cut
anywhere gives the frames of one whole call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from melganvc.config import ConfigError, ConversionConfig, apply_overrides, preset_config
from melganvc.dsp.postfilter import Postfilter
from melganvc.models.chunk_stream import ChunkStream


def reference(mel: np.ndarray, strength: float, frames: int) -> np.ndarray:
    """The definition, written out: band mean over a centred window of repeated edges."""
    h = frames // 2
    padded = np.pad(mel.astype(np.float64), ((0, 0), (h, h)), mode="edge")
    mean = np.stack([padded[:, t:t + frames].mean(1) for t in range(mel.shape[1])], axis=1)
    return np.clip(mean + strength * (mel - mean), -1, 1)


def smooth_mel(n_mels: int = 6, frames: int = 90, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_mels, frames, generator=g) * 0.8 - 0.6
    return torch.nn.functional.avg_pool1d(x[None], 3, 1, 1, count_include_pad=False)[0]


@pytest.mark.parametrize("frames", [3, 9, 63])
def test_apply_matches_the_definition(frames: int) -> None:
    mel = smooth_mel()
    out = Postfilter(1.25, frames).apply(mel)
    assert out.shape == mel.shape and out.dtype == mel.dtype
    np.testing.assert_allclose(out.numpy(), reference(mel.numpy(), 1.25, frames), atol=1e-6)


def test_strength_one_is_off_and_more_widens_contrast() -> None:
    mel = smooth_mel()
    off = Postfilter(1.0, 9)
    assert off.delay == 0 and torch.equal(off.apply(mel), mel)
    assert torch.equal(torch.cat([off.stream(6).push(mel), off.stream(6).flush()], -1), mel)
    on = Postfilter(1.25, 9).apply(mel)
    assert (on.std(dim=1) > mel.std(dim=1)).all()  # every band's variation grows
    assert on.min() >= -1 and on.max() <= 1
    flat = torch.full((4, 30), 0.3)
    assert torch.allclose(Postfilter(2.0, 9).apply(flat), flat)  # nothing to widen


@pytest.mark.parametrize("sizes", [[1], [5, 1, 17], [40], [200]])
def test_stream_equals_whole_call(sizes: list[int]) -> None:
    mel, pf = smooth_mel(frames=150, seed=1), Postfilter(1.3, 31)
    stream, out, pushed, i = pf.stream(6), [], 0, 0
    while pushed < mel.shape[1]:
        n = sizes[i % len(sizes)]
        piece = stream.push(mel[:, pushed:pushed + n])
        pushed, i = min(pushed + n, mel.shape[1]), i + 1
        out.append(piece)
        assert sum(o.shape[1] for o in out) == max(0, pushed - pf.delay)  # fixed look-ahead
    out.append(stream.flush())
    np.testing.assert_allclose(torch.cat(out, -1).numpy(), pf.apply(mel).numpy(), atol=1e-6)


@pytest.mark.parametrize("frames", [1, 10, 15, 16])
def test_stream_shorter_than_the_window(frames: int) -> None:
    mel, pf = smooth_mel(frames=frames, seed=2), Postfilter(1.3, 31)
    stream = pf.stream(6)
    got = torch.cat([stream.push(mel), stream.flush()], -1)
    np.testing.assert_allclose(got.numpy(), pf.apply(mel).numpy(), atol=1e-6)
    empty = pf.stream(6).flush()
    assert empty.shape == (6, 0)


def test_chunk_stream_applies_the_config_postfilter() -> None:
    cfg = apply_overrides(preset_config("tiny"), ["conversion.postfilter=1.25"])
    g = lambda x: 0.5 * x.tanh()  # any frame-wise map
    mel = smooth_mel(cfg.features.n_mels, 77, seed=3)
    chunks = ChunkStream.from_config(g, cfg)
    frames = cfg.conversion.postfilter_frames(cfg.features.hop_length / cfg.features.sample_rate)
    assert chunks.delay == frames // 2 > 0
    plain = ChunkStream.from_config(g, apply_overrides(cfg, ["conversion.postfilter=1"]))
    expected = Postfilter(1.25, frames).apply(plain.run(mel))
    np.testing.assert_allclose(chunks.run(mel).numpy(), expected.numpy(), atol=1e-6)


def test_window_in_frames_and_validation() -> None:
    c = ConversionConfig(postfilter=1.25, postfilter_ms=730.0)
    assert c.postfilter_frames(256 / 22050) == 63
    assert c.postfilter_frames(192 / 16000) == 61
    assert c.postfilter_frames(1.0) == 3  # never shorter than 3 frames
    for bad in ("conversion.postfilter=0", "conversion.postfilter=-1",
                "conversion.postfilter_ms=0"):
        with pytest.raises(ConfigError, match="postfilter"):
            apply_overrides(preset_config("tiny"), [bad])
