"""The ``conversion`` config section: how a model is applied, typed, saved with the model and
changeable at conversion time."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint

from melganvc.apps.cli import main
from melganvc.config import ConfigError, ConversionConfig, apply_overrides, preset_config, to_dict
from melganvc.conversion.converter import Converter
from melganvc.io.checkpoint import load_checkpoint, save_checkpoint


def test_the_checkpoint_config_decides_how_the_model_is_applied(tmp_path: Path) -> None:
    """A checkpoint saved with ``conversion.overlap=0`` converts back-to-back; the keyword
    options override it and land in ``converter.config``."""
    path = make_checkpoint(tmp_path / "g.pt")
    payload = load_checkpoint(path)
    cfg = apply_overrides(preset_config("tiny"), ["conversion.overlap=0", "conversion.fade=linear"])
    payload["config"] = to_dict(cfg)
    save_checkpoint(tmp_path / "ref.pt", payload)
    conv = Converter.from_checkpoint(tmp_path / "ref.pt", device="cpu")
    assert (conv.overlap, conv.fade) == (0, "linear")
    half = conv.with_options(overlap=0.5, batch_size=3)
    assert half.overlap == conv.chunk_frames // 2 and half.config.conversion.batch_size == 3
    assert half.config.conversion.fade == "linear"  # unset options keep the converter's
    assert conv.with_options(overlap="reference").config.conversion.overlap == 0
    mel = torch.rand(cfg.features.n_mels, 50) * 2 - 1
    assert not torch.equal(conv.convert_mel(mel), half.convert_mel(mel))


@pytest.mark.parametrize("field, value", [("fade", "cubic"), ("overlap", 0.7), ("overlap", -2.0),
                                          ("overlap", 13.0), ("batch_size", 0),
                                          ("block_overlap", 1024)])
def test_bad_conversion_settings_are_config_errors(field: str, value: object) -> None:
    cfg = preset_config("tiny")
    with pytest.raises(ConfigError, match="conversion"):
        replace(cfg, conversion=replace(cfg.conversion, **{field: value})).validate()


def test_cli_set_conversion_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import soundfile as sf

    ckpt = make_checkpoint(tmp_path / "g.pt")
    sf.write(tmp_path / "in.wav", np.zeros(8000, np.float32), 16000)
    common = ["convert", str(tmp_path / "in.wav"), "--ckpt", str(ckpt), "--device", "cpu",
              "--out", str(tmp_path / "out"), "--no-progress", "--iters", "2"]
    assert main([*common, "--set", "conversion.fade=cubic"]) == 2
    err = capsys.readouterr().err
    assert "conversion.fade" in err and len(err.strip().splitlines()) == 1
    assert main([*common, "--set", "model.chunk_frames=8"]) == 2
    assert "only inversion.* and conversion.*" in capsys.readouterr().err
    assert main([*common, "--set", "conversion.overlap=0"]) == 0
    assert ConversionConfig().overlap == 0.5
