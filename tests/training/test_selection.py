"""train.select_best: the best-scoring eval's generator is kept and used; held-out inputs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from melganvc.config import apply_overrides, preset_config
from melganvc.conversion.converter import Converter
from melganvc.errors import UserError
from melganvc.io.checkpoint import load_checkpoint, resolve_checkpoint
from melganvc.training import loop
from melganvc.training.data import MelCorpus
from melganvc.training.selection import Selection, sample_quality


def test_selection_keeps_the_best_and_counts_evals_since() -> None:
    sel = Selection()
    assert sel.update(100, 0.5) and (sel.best, sel.best_step, sel.stale) == (0.5, 100, 0)
    assert not sel.update(200, 0.4) and sel.stale == 1
    assert not sel.update(300, math.nan) and sel.stale == 2  # a silent translation
    assert sel.update(400, 0.6) and sel.stale == 0
    assert Selection.from_dict(sel.to_dict()) == sel and Selection.from_dict(None) == Selection()
    assert sample_quality(5.0, 1.0) == 2.0 and sample_quality(1.0, 0.0) == 0.0


def scripted_run(tiny_corpora, run: Path, monkeypatch, qualities: list[float],
                 **extra: str):
    """A tiny run whose evals (every 2 batches) get the scripted (naturalness, similarity)."""
    scores = iter([(1 + 4 * q, 0.0) for q in qualities])
    monkeypatch.setattr(loop.SampleJudges, "log", lambda self, *a: next(scores))
    sets = {"train.steps": str(2 * len(qualities)), "train.eval_every": "2",
            "train.checkpoint_every": "2", "train.select_best": "true", "train.ema": "0.9",
            "train.num_eval_examples": "1", **extra}
    cfg = apply_overrides(preset_config("tiny"), [f"{k}={v}" for k, v in sets.items()])
    return loop.fit(cfg, *tiny_corpora, run, progress=False)


def test_best_generator_is_kept_and_converts(tiny_corpora, tmp_path: Path, monkeypatch,
                                            capsys) -> None:
    state = scripted_run(tiny_corpora, tmp_path / "r", monkeypatch, [0.2, 0.7, 0.5, 0.4, 0.3, 0.1])
    assert state.step == 12
    assert resolve_checkpoint(tmp_path / "r") == tmp_path / "r" / "best.pt"
    best = load_checkpoint(tmp_path / "r")
    assert best["kind"] == "generator" and best["step"] == 4
    assert best["selection"]["best"] == pytest.approx(0.7)
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["step"] == 12  # resume reads this
    assert "no better samples for 3 evals (best 0.700 at step 4" in capsys.readouterr().err
    wave = Converter.from_checkpoint(tmp_path / "r").convert(np.zeros(16000, np.float32), 16000)
    assert wave.shape == (16000,)


def test_patience_stops_early_and_resume_keeps_the_best(tiny_corpora, tmp_path: Path,
                                                       monkeypatch) -> None:
    state = scripted_run(tiny_corpora, tmp_path / "p", monkeypatch, [0.5, 0.4, 0.3, 0.9],
                         **{"train.patience": "2"})
    assert state.step == 6  # evals at 2 (best), 4, 6: two without a better one
    assert load_checkpoint(tmp_path / "p" / "checkpoint.pt")["selection"]["best_step"] == 2
    scores = iter([(1 + 4 * 0.45, 0.0)])
    monkeypatch.setattr(loop.SampleJudges, "log", lambda self, *a: next(scores))
    cfg = apply_overrides(state.cfg, ["train.steps=8", "train.patience=0"])
    resumed = loop.fit(cfg, *tiny_corpora, tmp_path / "p", resume=True, progress=False)
    assert resumed.selection.best_step == 2 and resumed.selection.stale == 3  # 0.45 < 0.5


def test_holdout_keeps_the_sample_inputs_out_of_training(tiny_corpora) -> None:
    cfg = preset_config("tiny")
    held = MelCorpus(tiny_corpora[0], cfg.features, 72)
    held.hold_out(1)
    crops = held.sample(np.random.default_rng(0), 200)
    first = held.utterance(0)
    windows = first.unfold(1, 72, 1).permute(1, 0, 2)  # every crop of utterance 0
    assert not any(torch.equal(c, w) for c in crops[:50] for w in windows)
    with pytest.raises(UserError, match="holding out 3"):
        MelCorpus(tiny_corpora[0], cfg.features, 72).hold_out(3)


def test_few_utterances_keep_the_sample_inputs_in_training(tiny_corpora, capsys) -> None:
    """A user with a few long files must not lose most of them to the judges' sample inputs."""
    cfg = apply_overrides(preset_config("tiny"), ["train.select_best=true",
                                                  "train.num_eval_examples=1"])
    assert loop.sample_holdout(cfg, 4) == 1 and loop.sample_holdout(cfg, 3) == 0
    assert loop.sample_holdout(apply_overrides(cfg, ["train.select_best=false"]), 100) == 0
    corpus_a, _ = loop.open_corpora(cfg, *tiny_corpora)  # 3 utterances: none held out
    windows = corpus_a.utterance(0).unfold(1, 72, 1).permute(1, 0, 2)
    crops = corpus_a.sample(np.random.default_rng(0), 400)
    assert any(torch.equal(c, w) for c in crops for w in windows)
    assert "only 3 utterances, so the 1 sample inputs that choose best.pt" in capsys.readouterr().err
