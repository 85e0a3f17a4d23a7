"""``melganvc evaluate`` from the command line (the speech metrics are tested in test_metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_checkpoint, speech_like

from melganvc.apps.cli import main
from melganvc.dsp.resample import resample


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


def test_evaluate_with_refs_adds_parallel_oracles_and_takes_inversion_options(
        tmp_path: Path) -> None:
    """--refs adds the target reading the same sentence, raw and through our vocoder; --iters
    reaches both the conversion and the resynthesised baselines (the report's config)."""
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        (tmp_path / name).mkdir()
        for i in range(2):
            sf.write(tmp_path / name / f"{i}.wav",
                     speech_like(1.5, f0=f0, formants=formants, seed=i), 16000)
    out = tmp_path / "report"
    code = main(["evaluate", "--ckpt", str(make_checkpoint(tmp_path / "g.pt")), "--source",
                 str(tmp_path / "a"), "--target", str(tmp_path / "b"), "--refs",
                 str(tmp_path / "b"), "--out", str(out), "--music", "--device", "cpu",
                 "--iters", "3"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["inversion"]["gl_iters"] == 3
    systems = report["systems"]
    assert [r["name"] for r in systems["oracle_parallel"]["per_utterance"]] == ["0", "1"]
    # the raw recording is its own reference (no MCD); the resynthesised one is measured
    # against it: a small distortion, smaller than the other speaker's
    assert systems["oracle_parallel"]["mean"]["mcd"] is None
    resynth_mcd = systems["oracle_resynth"]["mean"]["mcd"]
    assert 0 < resynth_mcd < systems["identity"]["mean"]["mcd"]
    assert systems["oracle_resynth"]["mean"]["timbre_accept"] == 1.0


def test_evaluate_set_changes_the_conversion(tmp_path: Path, capsys) -> None:
    """--set conversion.postfilter reaches the conversion (other output) and the report's
    config; other sections are refused in one line."""
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "0.wav", speech_like(1.5, f0=f0, formants=formants), 16000)
    ckpt = make_checkpoint(tmp_path / "g.pt")
    args = ["evaluate", "--ckpt", str(ckpt), "--source", str(tmp_path / "a"), "--target",
            str(tmp_path / "b"), "--refs", str(tmp_path / "b"), "--music", "--device", "cpu",
            "--iters", "3"]
    mcd = {}
    for strength in ("1", "2"):
        out = tmp_path / f"report{strength}"
        assert main([*args, "--out", str(out), "--set", f"conversion.postfilter={strength}"]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["config"]["conversion"]["postfilter"] == float(strength)
        mcd[strength] = report["systems"]["converted"]["mean"]["mcd"]
    assert mcd["1"] != pytest.approx(mcd["2"], rel=1e-3)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "r"), "--set", "train.steps=3"]) != 0
    assert "only conversion.* settings" in capsys.readouterr().err


def test_evaluate_speech_reports_naturalness_and_whisper_columns(tmp_path: Path, capsys) -> None:
    """The default speech judges, loaded for real: every system has a naturalness mean and
    the recogniser is Whisper; --refs adds CER against the target's own reading; the columns
    reach report.json, report.html and the printed summary."""
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "0.wav", speech_like(1.2, f0=f0, formants=formants), 16000)
    out = tmp_path / "report"
    code = main(["evaluate", "--ckpt", str(make_checkpoint(tmp_path / "g.pt")), "--source",
                 str(tmp_path / "a"), "--target", str(tmp_path / "b"), "--refs",
                 str(tmp_path / "b"), "--out", str(out), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "naturalness" in printed.splitlines()[0] and "cer_ref_corpus" in printed
    assert "whisper tiny.en" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["analysis"]["asr"] == "whisper tiny.en"
    assert report["analysis"]["naturalness"].startswith("DistillMOS")
    systems = report["systems"]
    assert set(systems) == {"converted", "identity", "oracle", "oracle_parallel",
                            "oracle_resynth"}
    for name, system in systems.items():
        assert 1.0 <= system["mean"]["naturalness"] <= 5.0, name
        assert "naturalness" in system["per_utterance"][0]
    assert systems["converted"]["per_utterance"][0]["ref_transcript"] is not None
    assert "cer_ref" in systems["converted"]["mean"]
    assert {"load_judges", "total", "naturalness"} <= set(report["timing_s"])
    page = (out / "report.html").read_text()
    assert "naturalness" in page and "whisper tiny.en" in page


def test_cli_asr_and_naturalness_flags_reach_the_evaluation(tmp_path, monkeypatch, capsys) -> None:
    import melganvc.evaluation.runner as evaluate_module
    from melganvc.apps.cli import main

    seen = {}

    def fake_run(cfg, **kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(evaluate_module, "run_evaluation", fake_run)
    monkeypatch.setattr(evaluate_module, "summary_lines", lambda results: [])
    common = ["evaluate", "--converted", str(tmp_path), "--source", str(tmp_path), "--target",
              str(tmp_path), "--out", str(tmp_path / "report")]
    assert main(common) == 0
    assert seen["asr"] == "whisper" and seen["naturalness"] is True
    assert main([*common, "--asr", "pocketsphinx", "--no-naturalness"]) == 0
    assert seen["asr"] == "pocketsphinx" and seen["naturalness"] is False


def _two_speakers(root: Path) -> None:
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        (root / name).mkdir()
        for i in range(2):
            sf.write(root / name / f"{i}.wav",
                     speech_like(1.5, f0=f0, formants=formants, seed=i), 16000)


def test_evaluate_several_checkpoints_shares_the_baselines(tmp_path: Path, monkeypatch) -> None:
    """``--ckpt A --ckpt B``: one converted system per run, named by run folder, beside
    baselines computed once; each run's hash and real-time factor are recorded."""
    import melganvc.evaluation.runner as evaluate_module

    _two_speakers(tmp_path)
    runs = [make_checkpoint(tmp_path / name / "checkpoint.pt", seed=seed)
            for name, seed in (("runA", 0), ("runB", 1))]
    calls = []
    real = evaluate_module.resynthesize
    monkeypatch.setattr(evaluate_module, "resynthesize",
                        lambda cfg, waves: calls.append(len(waves)) or real(cfg, waves))
    out = tmp_path / "report"
    code = main(["evaluate", "--ckpt", str(runs[0]), "--ckpt", str(runs[1].parent), "--source",
                 str(tmp_path / "a"), "--target", str(tmp_path / "b"), "--out", str(out),
                 "--music", "--device", "cpu", "--iters", "3"])
    assert code == 0
    assert calls == [2]  # identity once, for both runs (no --refs: no oracle_resynth)
    report = json.loads((out / "report.json").read_text())
    assert list(report["systems"]) == ["converted:runA", "converted:runB", "identity", "oracle"]
    assert report["checkpoint_sha256"] is None
    hashes = {k: v["sha256"] for k, v in report["checkpoints"].items()}
    assert set(hashes) == {"converted:runA", "converted:runB"} and len(set(hashes.values())) == 2
    assert set(report["rtf"]) == set(hashes)
    a, b = (report["systems"][k]["mean"]["timbre_target"] for k in hashes)
    assert a != b  # two different generators were really run
    assert "the output of the model in runB" in (out / "report.html").read_text()


def test_evaluate_refuses_checkpoints_with_different_features(tmp_path: Path, capsys) -> None:
    from dataclasses import replace

    import torch

    from melganvc.config import preset_config, to_dict
    from melganvc.io.checkpoint import save_checkpoint
    from melganvc.models.networks import build_models

    _two_speakers(tmp_path)
    first = make_checkpoint(tmp_path / "runA" / "checkpoint.pt")
    cfg = preset_config("tiny")
    cfg = replace(cfg, features=replace(cfg.features, sample_rate=22050))
    other = tmp_path / "runB" / "checkpoint.pt"
    other.parent.mkdir()
    save_checkpoint(other, {"config": to_dict(cfg), "step": 0,
                            "models": {"generator": build_models(cfg)[0].state_dict()}})
    torch.manual_seed(0)
    code = main(["evaluate", "--ckpt", str(first), "--ckpt", str(other), "--source",
                 str(tmp_path / "a"), "--target", str(tmp_path / "b"), "--out",
                 str(tmp_path / "report"), "--music", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "features.sample_rate" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report" / "report.json").exists()


def test_resample_is_float32_and_leaves_equal_rates_and_empty_waves_alone() -> None:
    """The one soxr wrapper the judges and the identity baseline resample through."""
    t = np.arange(16000) / 16000
    wave = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    assert resample(wave, 16000, 16000) is wave
    empty = np.zeros(0, np.float32)
    assert resample(empty, 16000, 8000) is empty
    down = resample(wave.astype(np.float64), 16000, 8000)
    assert down.dtype == np.float32 and down.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(down))
    assert np.argmax(spectrum) == 440  # 1 Hz bins at 8 kHz over 1 s
    up = resample(down, 8000, 22050, quality="VHQ")
    assert up.dtype == np.float32 and up.size == 22050
    stereo = resample(np.stack([wave, -wave], axis=1), 16000, 24000)
    assert stereo.shape == (24000, 2)
    np.testing.assert_allclose(stereo[:, 0], -stereo[:, 1], atol=1e-6)
    assert resample(np.zeros(3, np.float64), 8000, 8000).dtype == np.float32


def test_judges_resample_through_the_same_wrapper() -> None:
    from melganvc.judges.waves import _resample

    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    np.testing.assert_array_equal(_resample(wave, 8000), resample(wave, 8000, 16000))
    with pytest.raises(ValueError, match="NaN"):
        _resample(np.array([0.0, np.nan]), 8000)
