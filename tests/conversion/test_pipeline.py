"""Streaming: same audio as offline conversion, fixed latency, any block size, any rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speech_like

from melganvc.apps.cli import main
from melganvc.config import preset_config, to_dict
from melganvc.conversion.converter import Converter
from melganvc.dsp.mel import FeatureStream
from melganvc.io.checkpoint import save_checkpoint
from melganvc.models.chunk_stream import ChunkStream
from melganvc.models.networks import build_models


@pytest.fixture(scope="module")
def conv(tmp_path_factory: pytest.TempPathFactory) -> Converter:
    cfg = preset_config("tiny")
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "g.pt"
    save_checkpoint(path, {"config": to_dict(cfg), "models": {"generator": build_models(cfg)[0].state_dict()}})
    # offline with the streaming inversion blocks, so the two must give the same samples
    return Converter.from_checkpoint(path, device="cpu", inversion=["gl_iters=4", "nnls_iters=10"],
                                     block_frames=64, block_overlap=8)


def run_stream(stream, x: np.ndarray, sizes) -> tuple[np.ndarray, list[int]]:
    """Push ``x`` in blocks of the given sizes (cycled); returns output and totals after each push."""
    out, totals, pushed, i = [], [], 0, 0
    while pushed < x.size:
        n = sizes[i % len(sizes)]
        out.append(stream.push(x[pushed:pushed + n]))
        pushed, i = pushed + n, i + 1
        totals.append(sum(o.size for o in out))
        assert totals[-1] == max(0, min(pushed, x.size) - stream.latency_samples)
    out.append(stream.flush())
    return np.concatenate(out), totals


@pytest.mark.parametrize("overlap", [0, 0.5])
def test_streaming_equals_offline(conv: Converter, overlap: float) -> None:
    c = conv.with_options(overlap=overlap)
    x = speech_like(3.0, seed=2)
    offline = c.convert(x, 16000)
    # offline conversion measures the input's level first; a live stream is told the gain
    streamed, _ = run_stream(c.stream(16000, input_gain=c.input_gain(x, 16000)), x, [1600])
    assert streamed.shape == x.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-6)


def test_latency_is_fixed_for_any_block_size(conv: Converter) -> None:
    x = speech_like(2.5, seed=4)
    stream = conv.stream(input_gain=conv.input_gain(x, 16000))
    assert stream.latency_ms == pytest.approx(1000 * stream.latency_samples / 16000)
    assert 300 < stream.latency_ms < 2000
    out, totals = run_stream(stream, x, [1, 191, 7, 2000, 333, 64])
    assert out.size == x.size and totals[-1] > 0
    reference = conv.convert(x, 16000)
    np.testing.assert_allclose(out, reference, atol=1e-6)
    with pytest.raises(RuntimeError, match="flushed"):
        stream.push(x[:10])


def test_latency_with_the_postfilter(conv: Converter) -> None:
    """The postfilter's look-ahead is part of the fixed latency; streamed still equals offline."""
    c = conv.with_options(postfilter=1.25)
    x = speech_like(2.5, seed=6)
    stream = c.stream(input_gain=c.input_gain(x, 16000))
    held = c.chunk_stream().delay
    assert held > 0
    assert stream.latency_samples >= conv.stream().latency_samples + held * 192 - 2 * 192
    out, totals = run_stream(stream, x, [1, 191, 7, 2000, 333, 64])
    assert out.size == x.size and totals[-1] > 0
    np.testing.assert_allclose(out, c.convert(x, 16000), atol=1e-6)
    assert np.abs(out - conv.convert(x, 16000)).max() > 1e-3  # it did something


@pytest.mark.parametrize("rate", [44100, 8000])
def test_streaming_at_other_rates(conv: Converter, rate: int) -> None:
    x = speech_like(2.0, sr=rate, seed=5)
    stream = conv.stream(rate, input_gain=conv.input_gain(x, rate))
    out, _ = run_stream(stream, x, [rate // 10, 17])
    assert out.shape == x.shape and np.abs(out).max() > 0.01
    np.testing.assert_allclose(out, conv.convert(x, rate), atol=1e-6)


def test_short_streams_and_early_close(conv: Converter) -> None:
    for n in (1, 100, 700):
        with conv.stream() as stream:
            out = np.concatenate([stream.push(speech_like(1.0)[:n]), stream.flush()])
        assert out.shape == (n,)
    stream = conv.stream()
    stream.push(speech_like(1.0))
    stream.close()  # stops without flushing
    with pytest.raises(RuntimeError):
        stream.flush()


def test_stages_are_exact_for_any_blocking(conv: Converter) -> None:
    x = speech_like(2.0, seed=6)
    whole = conv.mel(torch.from_numpy(x))
    feats = FeatureStream(conv.mel)
    parts = [feats.push(x[i:i + 250]) for i in range(0, x.size, 250)] + [feats.flush()]
    torch.testing.assert_close(torch.cat(parts, -1), whole, atol=1e-6, rtol=0)
    chunks = conv.chunk_stream()
    assert isinstance(chunks, ChunkStream)
    parts = [chunks.push(whole[:, i:i + 5]) for i in range(0, whole.shape[-1], 5)] + [chunks.flush()]
    assert torch.equal(torch.cat(parts, -1), conv.convert_mel(whole))


def test_cli_stream_prints_latency_and_rtf(conv: Converter, tmp_path: Path, capsys) -> None:
    import soundfile as sf

    from melganvc.conversion.export import save_generator

    ckpt = save_generator(tmp_path / "g.pt", conv)
    sf.write(tmp_path / "in.wav", speech_like(1.0, sr=22050), 22050)
    code = main(["stream", "--ckpt", str(ckpt), str(tmp_path / "in.wav"), str(tmp_path / "o.wav"),
                 "--block-ms", "50", "--device", "cpu", "--iters", "4"])
    out = capsys.readouterr().out
    assert code == 0 and "latency" in out and "RTF" in out
    assert sf.info(tmp_path / "o.wav").frames == 22050
