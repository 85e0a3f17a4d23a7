"""The `make demo` pipeline at tiny scale: demo voices -> train -> convert -> report."""

import json
from pathlib import Path

import pytest

from melganvc.apps.cli import main

pytest.importorskip("espeakng_loader", reason="demo extra (espeakng-loader) not installed")


def test_demo_pipeline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--steps", "4", "--sentences", "6", "--test", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "listen" in printed
    converted = sorted((out / "converted").glob("*.wav"))
    assert len(converted) == 2
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["systems"]) == {"converted", "identity", "oracle"}
    for system in report["systems"].values():
        assert system["mean"]["sim_target"] is not None
    assert (out / "report" / "report.html").stat().st_size > 10_000
    # a second run resumes the same model instead of starting over
    assert main(["demo", "--out", str(out), "--steps", "6", "--sentences", "6", "--test", "2"]) == 0
    assert "resuming" in capsys.readouterr().err


def test_demo_uses_the_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    from conftest import make_checkpoint

    from melganvc.io import pretrained

    bundle = tmp_path / "pretrained"
    bundle.mkdir()
    assert main(["export-generator", "--ckpt", str(make_checkpoint(tmp_path / "g.pt")),
                 str(bundle / "demo-voice.pt")]) == 0
    monkeypatch.setattr(pretrained, "_folder", lambda: bundle)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sentences", "2", "--test", "2"]) == 0
    assert "using the bundled pretrained model 'demo-voice'" in capsys.readouterr().out
    assert not (out / "run").exists()  # nothing trained
    assert len(list((out / "converted").glob("*.wav"))) == 2
    assert (out / "report" / "report.json").is_file()
