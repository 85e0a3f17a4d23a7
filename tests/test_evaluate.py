"""``melganvc evaluate`` from the command line (the speech metrics are tested in test_metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
from conftest import make_checkpoint, speech_like

from melganvc.cli import main


def test_evaluate_music_mode_skips_speech_models(tmp_path: Path, capsys) -> None:
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        (tmp_path / name).mkdir()
        for i in range(2):
            sf.write(tmp_path / name / f"{i}.wav",
                     speech_like(1.5, f0=f0, formants=formants, seed=i), 16000)
    ckpt = make_checkpoint(tmp_path / "g.pt")
    out = tmp_path / "report"
    code = main(["evaluate", "--ckpt", str(ckpt), "--source", str(tmp_path / "a"), "--target",
                 str(tmp_path / "b"), "--out", str(out), "--music", "--device", "cpu"])
    assert code == 0
    assert "timbre_accept" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["analysis"]["speaker_encoder"] is None and report["analysis"]["asr"] is None
    identity = report["systems"]["identity"]["mean"]
    assert identity["timbre_accept"] == 0.0 and identity["sim_target"] is None
    assert report["systems"]["oracle"]["mean"]["timbre_accept"] == 1.0
    assert len(report["checkpoint_sha256"]) == 64
