"""The bundled detector on real recordings it never saw vs a bundled model's conversions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from melganvc.apps.cli import main
from melganvc.conversion.converter import Converter
from melganvc.detection.detector import BUNDLED, Detector
from melganvc.io.audio import load
from tests.conftest import shared_path

FILES = ("200001", "200002", "200003", "200004")  # VCC2016 SM1 evaluation sentences


@pytest.fixture(scope="module")
def real_and_converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real SM1 recordings (a speaker the detector was not trained on) and their conversions
    by the bundled demo-voice model, written as plain 16-bit FLAC without our tag."""
    source = shared_path("vcc2016_full", "SM1", "eval")
    root = tmp_path_factory.mktemp("bundled")
    conv = Converter.from_checkpoint("demo-voice", device="cpu")
    for label in ("real", "converted"):
        (root / label).mkdir()
    for name in FILES:
        wave = load(source / f"{name}.flac", conv.sample_rate)
        sf.write(root / "real" / f"{name}.flac", wave, conv.sample_rate)
        sf.write(root / "converted" / f"{name}.flac", np.clip(conv.convert(wave), -1, 1),
                 conv.sample_rate)
    return root / "real", root / "converted"


def test_bundled_detector_ships_with_a_model_card():
    assert BUNDLED.is_file() and BUNDLED.with_suffix(".md").is_file()
    det = Detector.load()
    assert 0.0 < det.config.threshold < 1.0
    assert "EER" in BUNDLED.with_suffix(".md").read_text(encoding="utf-8")


def test_bundled_detector_separates_real_from_converted(real_and_converted, capsys):
    real, converted = real_and_converted
    det = Detector.load()
    p_real = [det.detect_file(f).probability for f in sorted(real.iterdir())]
    p_fake = [det.detect_file(f).probability for f in sorted(converted.iterdir())]
    assert max(p_real) < det.config.threshold <= min(p_fake), (p_real, p_fake)
    assert main(["detect", str(real), str(converted), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    verdicts = {Path(r["path"]).parent.name + "/" + Path(r["path"]).stem: r["converted"]
                for r in report["results"]}
    assert verdicts == {f"{label}/{name}": label == "converted"
                        for label in ("real", "converted") for name in FILES}
    assert main(["detect", str(real)]) == 0
