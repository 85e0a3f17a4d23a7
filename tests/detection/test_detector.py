"""Judging files: windows, errors, provenance tag, config, checkpoint kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from melganvc.config import ConfigError, DetectorConfig, detector_config
from melganvc.detection import Detector
from melganvc.detection.network import DetectorNet
from melganvc.errors import AudioError
from melganvc.io.audio_writer import save
from tests.conftest import speech_like

SR = 16000


def test_config_round_trip_and_errors():
    cfg = detector_config({"channels": [8, 8], "epochs": 2})
    assert cfg.channels == (8, 8) and cfg.epochs == 2
    with pytest.raises(ConfigError, match="unknown config field"):
        detector_config({"epoch": 2})
    with pytest.raises(ConfigError, match="threshold"):
        detector_config({"threshold": 1.5})


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained detector checkpoint: enough to test loading, windows and errors."""
    cfg = DetectorConfig(channels=(4, 4, 4, 4, 4), hidden=8, threshold=0.5)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "d.pt"
    Detector(DetectorNet(cfg), cfg).save(path, {"held_out_eer": 0.5})
    return path


def test_long_file_is_judged_by_windows_with_flat_memory(random_detector: Path, tmp_path: Path):
    det = Detector.load(random_detector)
    wave = np.tile(speech_like(2.0), 5)  # 10 s: windows 0-4, 4-8 and the last 2 s
    seen: list[int] = []
    real_logits = det.logits
    det.logits = lambda windows: (seen.extend(w.size for w in windows), real_logits(windows))[1]
    path = tmp_path / "long.flac"
    sf.write(path, wave, SR)
    found = det.detect_file(path)
    assert seen == [4 * SR, 4 * SR, 2 * SR]
    assert 0.0 <= found.probability <= 1.0 and found.seconds == pytest.approx(10.0)
    assert found.converted == (found.probability >= 0.5)
    assert det.score(wave, SR) == pytest.approx(found.probability, abs=1e-3)  # flac rounding


def test_silent_short_and_bad_files_are_one_line_errors(random_detector: Path, tmp_path: Path):
    det = Detector.load(random_detector)
    cases = {"silent.wav": np.zeros(SR * 2, np.float32),
             "short.wav": speech_like(0.1)}
    for name, wave in cases.items():
        sf.write(tmp_path / name, wave, SR)
        with pytest.raises(AudioError, match="silent or too short"):
            det.detect_file(tmp_path / name)
    sf.write(tmp_path / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    reasons = {"nan.wav": "NaN", "text.wav": "not a readable audio file",
               "empty.wav": "not a readable audio file"}
    for name, reason in reasons.items():
        with pytest.raises(AudioError, match=reason) as caught:
            det.detect_file(tmp_path / name)
        assert str(caught.value).startswith(str(tmp_path / name)) and "\n" not in str(caught.value)


def test_provenance_tag_is_reported_and_lost_on_reencoding(random_detector: Path, tmp_path: Path):
    det = Detector.load(random_detector)
    save(tmp_path / "ours.flac", speech_like(1.0), SR)
    wave, _ = sf.read(tmp_path / "ours.flac", dtype="float32")
    sf.write(tmp_path / "copy.ogg", wave, SR)
    assert det.detect_file(tmp_path / "ours.flac").tagged
    assert not det.detect_file(tmp_path / "copy.ogg").tagged


def test_conversion_checkpoint_is_not_a_detector(ckpt: Path):
    from melganvc.io.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not a detector checkpoint"):
        Detector.load(ckpt)
