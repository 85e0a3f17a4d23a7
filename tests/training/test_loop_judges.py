"""Training logs the judges' naturalness and B-similarity of its sample translations."""

import importlib.util
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_step import tiny

from melganvc.config import preset_config
from melganvc.io.checkpoint import load_checkpoint
from melganvc.training.loop import SampleJudges, fit, judged

JUDGE_TAGS = ("judge/naturalness", "judge/similarity_b")


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("distillmos", "resemblyzer")),
                    reason="eval extra (distillmos, resemblyzer) not installed")
def test_eval_logs_judge_scalars(tiny_corpora: tuple[Path, Path], tmp_path: Path) -> None:
    from melganvc.apps.service import run_progress

    run = tmp_path / "j"
    fit(tiny(2, **{"train.eval_every": "1"}), *tiny_corpora, run, progress=False)
    logged = scalars(run)
    for tag, (low, high) in zip(JUDGE_TAGS, ((1.0, 5.0), (-1.0, 1.0)), strict=True):
        assert [step for step, _ in logged[tag]] == [1, 2], tag
        assert all(math.isfinite(v) and low <= v <= high for _, v in logged[tag]), logged[tag]
    _, rows = run_progress(run)  # the web UI's Training tab reads every scalar
    assert {r["series"] for r in rows} >= set(JUDGE_TAGS)


def test_training_without_judges_warns_once(tiny_corpora: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "distillmos", None)  # import distillmos -> ImportError
    run = tmp_path / "n"
    fit(tiny(3, **{"train.eval_every": "1"}), *tiny_corpora, run, progress=False)
    assert load_checkpoint(run)["step"] == 3
    warnings = [line for line in capsys.readouterr().err.splitlines() if "judge/" in line]
    assert len(warnings) == 1 and "melganvc[eval]" in warnings[0], warnings
    logged = scalars(run)
    assert not set(JUDGE_TAGS) & set(logged) and "loss/critic" in logged


def test_music_is_not_judged() -> None:
    judges = SampleJudges([])
    state = SimpleNamespace(cfg=preset_config("music22k"))
    judges.log(state, writer=None, waves=[[0.0]], inverter=None)  # would fail if it loaded
    assert judges.naturalness is None and not judges.disabled


def test_speech_on_the_vocoder_features_is_judged() -> None:
    """22.05 kHz, like music22k, but speech: the sample judges (and select_best) work."""
    assert judged(preset_config("speech-hifigan").features)
    assert judged(preset_config("speech").features) and judged(preset_config("speech8k").features)
    assert not judged(preset_config("music22k").features)
    assert not judged(preset_config("music44k").features)
