"""``melganvc detect`` and ``train-detector`` from the command line: output, exit status, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from melganvc.apps.cli import main
from melganvc.config import DetectorConfig, preset_config
from melganvc.conversion.converter import Converter
from melganvc.detection import Detector
from melganvc.detection.network import DetectorNet
from tests.conftest import speech_like

SR = 16000


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real-ish audio (sung vowels) and its Griffin-Lim resynthesis, four files each."""
    root = tmp_path_factory.mktemp("detect")
    resynth = Converter(torch.nn.Identity(), preset_config("tiny"), device="cpu")
    for i in range(4):
        wave = speech_like(1.5, f0=100.0 + 30 * i, seed=i)
        for label, audio in (("real", wave), ("converted", resynth.convert(wave))):
            (root / label / "speaker").mkdir(parents=True, exist_ok=True)
            sf.write(root / label / "speaker" / f"{i}.wav", audio, SR)
    return root / "real", root / "converted"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = DetectorConfig(channels=(4, 4, 4, 4, 4), hidden=8, threshold=0.5)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "detector.pt"
    Detector(DetectorNet(cfg), cfg).save(path)
    return path


def test_json_output_and_exit_status(model: Path, folders: tuple[Path, Path], capsys):
    real, converted = folders
    bad = real.parent / "bad.wav"
    bad.write_text("not audio")
    code = main(["detect", str(real), str(converted), str(bad), "--model", str(model), "--json",
                 "--threshold", "0.000001"])
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"detector", "results", "errors", "summary"}
    assert len(report["results"]) == 8 and report["errors"] == [
        {"path": str(bad), "error": report["errors"][0]["error"]}]
    assert "not a readable audio file" in report["errors"][0]["error"]
    for row in report["results"]:
        assert set(row) == {"path", "probability", "converted", "tagged", "seconds", "threshold"}
        assert 0.0 <= row["probability"] <= 1.0 and row["converted"] is True
        assert row["seconds"] == pytest.approx(1.5) and row["tagged"] is False
    assert report["summary"] == {"files": 9, "converted": 8, "real": 0, "errors": 1,
                                 "threshold": 0.000001}
    assert code == 1  # something judged converted
    assert main(["detect", str(real), "--model", str(model), "--threshold", "0.999999"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("4 file(s): 0 converted, 4 real, 0 error(s)")
    assert main(["detect", str(bad), "--model", str(model), "--threshold", "0.999999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"melganvc: error: {bad}: not a readable audio file") and len(err) == 1


def test_usage_errors_are_one_line(model: Path, tmp_path: Path, capsys, ckpt: Path):
    cases = [
        (["detect", str(tmp_path), "--model", str(model)], "no audio files"),
        (["detect", str(tmp_path / "x.wav"), "--model", str(tmp_path / "none.pt")],
         "no such detector checkpoint"),
        (["detect", str(tmp_path), "--model", str(ckpt)], "not a detector checkpoint"),
        (["detect", str(tmp_path), "--model", str(model), "--threshold", "2"], "between 0 and 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_train_detector_writes_a_usable_detector(folders: tuple[Path, Path], tmp_path: Path,
                                                 capsys):
    real, converted = folders
    out = tmp_path / "det.pt"
    argv = ["train-detector", "--real", str(real), "--converted", str(converted), "--out",
            str(out), "--epochs", "1", "--no-progress", "--set", "batch_size=4",
            "--set", "channels=[4, 4, 4, 4, 4]", "--set", "hidden=8", "--set", "crop_seconds=1.0"]
    assert main(argv) == 0
    assert "held-out EER" in capsys.readouterr().out
    det = Detector.load(out)
    assert det.config.channels == (4, 4, 4, 4, 4) and 0.0 < det.config.threshold < 1.0
    assert main(["detect", str(real), "--model", str(out)]) in (0, 1)
    assert main(argv) == 2 and "exists" in capsys.readouterr().err  # no silent overwrite
    assert main([*argv[:-8], "--set", "epoch=1", "--overwrite"]) == 2
    assert "unknown config field 'detector.epoch'" in capsys.readouterr().err


def test_too_few_files_to_train(tmp_path: Path, folders: tuple[Path, Path], capsys):
    (tmp_path / "few").mkdir()
    sf.write(tmp_path / "few" / "a.wav", speech_like(1.0), SR)
    assert main(["train-detector", "--real", str(tmp_path / "few"), "--converted",
                 str(folders[1]), "--out", str(tmp_path / "d.pt")]) == 2
    assert "need at least 4 audio files of real audio, found 1" in capsys.readouterr().err
    assert not (tmp_path / "d.pt").exists()


def test_top_level_api(model: Path, folders: tuple[Path, Path]):
    import melganvc

    found = melganvc.detect(next(folders[0].rglob("*.wav")), model=model)
    assert isinstance(found.probability, float) and found.threshold == 0.5
    np.testing.assert_allclose(found.probability, Detector.load(model).detect_file(found.path).probability)


def test_a_detector_is_not_a_conversion_model(model: Path, folders: tuple[Path, Path], tmp_path,
                                              capsys):
    wav = next(folders[0].rglob("*.wav"))
    assert main(["convert", "--ckpt", str(model), str(wav), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "converted-audio detector" in err and len(err.splitlines()) == 1


def test_unjudgeable_held_out_files_are_a_one_line_error(tmp_path: Path, folders, capsys):
    (tmp_path / "silent").mkdir()
    for i in range(4):
        sf.write(tmp_path / "silent" / f"{i}.wav", np.zeros(SR, np.float32), SR)
    argv = ["train-detector", "--real", str(tmp_path / "silent"), "--converted", str(folders[1]),
            "--out", str(tmp_path / "d.pt"), "--epochs", "1", "--no-progress",
            "--set", "batch_size=4", "--set", "channels=[4, 4]"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no held-out file of one class could be judged" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d.pt").exists()
