"""The `make demo` pipeline at tiny scale: demo voices -> train -> convert -> report."""

import json
from pathlib import Path

import pytest

from melganvc.cli import main

pytest.importorskip("espeakng_loader", reason="demo extra (espeakng-loader) not installed")


def test_demo_pipeline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--steps", "4", "--train", "6", "--test", "2"])
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
    assert main(["demo", "--out", str(out), "--steps", "6", "--train", "6", "--test", "2"]) == 0
    assert "resuming" in capsys.readouterr().err
