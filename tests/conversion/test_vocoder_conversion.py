"""Conversion through the HiFi-GAN vocoder: models on its features convert with it by default,
offline and streaming agree, any other model is refused in one line; Griffin-Lim still works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_checkpoint, speech_like

from melganvc.apps.cli import main
from melganvc.config import apply_overrides, preset_config, to_dict
from melganvc.conversion.converter import Converter
from melganvc.io.checkpoint import save_checkpoint
from melganvc.models.networks import build_models
from melganvc.vocoders.hifigan import HifiganInverter

TINY = ["model.generator_channels=32", "model.critic_channels=32", "model.siamese_channels=32",
        "model.vec_len=32"]


@pytest.fixture(scope="module")
def vocoder_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small generator on the vocoder's features (checks plumbing, not quality)."""
    cfg = apply_overrides(preset_config("speech-hifigan"), TINY)
    torch.manual_seed(0)
    gen = build_models(cfg)[0]
    gen(torch.rand(4, cfg.features.n_mels, cfg.model.chunk_frames) * 2 - 1)
    path = tmp_path_factory.mktemp("vocoder") / "model.pt"
    save_checkpoint(path, {"config": to_dict(cfg), "step": 0,
                           "models": {"generator": gen.eval().state_dict()}})
    return path


@pytest.fixture(scope="module")
def conv(vocoder_ckpt: Path) -> Converter:
    return Converter.from_checkpoint(vocoder_ckpt, device="cpu")


def test_models_on_vocoder_features_use_it(conv: Converter) -> None:
    assert conv.inversion.method == "hifigan" and conv.sample_rate == 22050
    assert isinstance(conv.inverter(), HifiganInverter)
    for rate, seconds in ((16000, 1.3), (44100, 0.7)):
        x = speech_like(seconds, sr=rate)
        y = conv.convert(x, rate)
        assert y.shape == x.shape and np.isfinite(y).all() and 0.01 < np.abs(y).max() <= 0.99


def test_streaming_equals_offline_blocks(conv: Converter) -> None:
    x = speech_like(2.5)
    whole = conv.stream(16000, block_frames=None, overlap_frames=None)  # offline's blocks
    offline = np.concatenate([whole.push(x), whole.flush()])
    live = conv.stream(16000)  # real-time blocks
    pieces = [live.push(x[i:i + 777]) for i in range(0, x.size, 777)]
    streamed = np.concatenate([*pieces, live.flush()])
    assert streamed.shape == offline.shape == x.shape
    assert float(np.abs(streamed - offline).max()) < 1e-3  # float32 rounding (see test_hifigan)
    assert 0 < live.latency_ms < 2000


def test_griffin_lim_on_vocoder_features(conv: Converter) -> None:
    gl = conv.with_options(inversion=["method=gl", "gl_iters=4", "nnls_iters=10"])
    x = speech_like(1.0)
    y = gl.convert(x, 16000)
    assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() > 0.01


def test_cli_hifigan_on_other_features_is_one_line(tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "reference.pt")
    src = tmp_path / "x.wav"
    sf.write(src, speech_like(0.5), 16000)
    code = main(["convert", "--ckpt", str(ckpt), str(src), "--out", str(tmp_path / "out"),
                 "--inversion", "hifigan", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "inversion.method=hifigan needs the vocoder's own features" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_convert_and_resynth_with_hifigan(vocoder_ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "x.wav"
    sf.write(src, speech_like(0.8), 16000)
    assert main(["convert", "--ckpt", str(vocoder_ckpt), str(src), "--out", str(tmp_path / "o"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert sf.info(tmp_path / "o" / "x.wav").frames == 12800
    assert main(["resynth", str(src), str(tmp_path / "r.wav"), "--preset", "hifigan"]) == 0
    out, rate = sf.read(tmp_path / "r.wav")
    assert rate == 22050 and abs(out.size - 0.8 * 22050) < 256


def test_cli_iters_with_hifigan_is_refused(vocoder_ckpt: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "x.wav"
    sf.write(src, speech_like(0.3), 16000)
    code = main(["convert", "--ckpt", str(vocoder_ckpt), str(src), "--out", str(tmp_path / "o"),
                 "--iters", "8", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "the hifigan vocoder has none" in err and err.count("\n") == 1
