from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like

from melganvc.config import preset_config
from melganvc.errors import UserError
from melganvc.training.data import MelCorpus, is_prepared, prepare, trim_silence


def make_domain(root: Path, n: int = 4, seconds: float = 1.5) -> Path:
    (root / "deep" / "er").mkdir(parents=True)
    for i in range(n):
        sub = root / "deep" / "er" if i % 2 else root
        wave = np.concatenate([np.zeros(8000, np.float32), speech_like(seconds, seed=i)])
        sf.write(sub / f"u{i}.{'flac' if i % 2 else 'wav'}", wave, 16000)
    return root


def test_prepare_walks_trims_and_counts(tmp_path: Path) -> None:
    cfg = preset_config("tiny")
    src = make_domain(tmp_path / "a")
    sf.write(src / "short.wav", speech_like(0.2), 16000)
    (src / "broken.wav").write_text("not audio")
    (src / "notes.txt").write_text("hi")
    report = prepare(src, tmp_path / "cache", cfg.features, min_frames=72, progress=False)
    assert report.kept == 4 and report.non_audio == 1
    assert len(report.too_short) == 1 and "short.wav" in report.too_short[0]
    assert len(report.unreadable) == 1 and "broken.wav" in report.unreadable[0]
    assert is_prepared(tmp_path / "cache")
    # leading half second of silence was trimmed: ~1.5 s of signal = ~125 frames, not ~167
    corpus = MelCorpus(tmp_path / "cache", cfg.features, 72)
    assert all(110 < n < 140 for n in corpus.lengths)


def test_crops_are_random_valid_and_seeded(tmp_path: Path) -> None:
    cfg = preset_config("tiny")
    prepare(make_domain(tmp_path / "a"), tmp_path / "c", cfg.features, 72, progress=False)
    corpus = MelCorpus(tmp_path / "c", cfg.features, 72)
    first = corpus.sample(np.random.default_rng(1), 8)
    again = corpus.sample(np.random.default_rng(1), 8)
    assert first.shape == (8, 192, 72) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])
    # every crop is a contiguous window of one utterance
    full = [corpus.utterance(i) for i in range(len(corpus))]
    for crop in first:
        assert any(
            any(torch.allclose(crop, u[:, s : s + 72]) for s in range(u.shape[1] - 71)) for u in full
        )


def test_prepare_errors(tmp_path: Path) -> None:
    cfg = preset_config("tiny")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no audio files"):
        prepare(tmp_path / "empty", tmp_path / "o", cfg.features, 72, progress=False)
    with pytest.raises(UserError, match="not a folder"):
        prepare(tmp_path / "nope", tmp_path / "o", cfg.features, 72, progress=False)
    with pytest.raises(UserError, match="not a prepared corpus"):
        MelCorpus(tmp_path / "empty", cfg.features, 72)
    prepare(make_domain(tmp_path / "a", n=1), tmp_path / "c", cfg.features, 72, progress=False)
    with pytest.raises(UserError, match="different feature settings"):
        MelCorpus(tmp_path / "c", preset_config("music22k").features, 72)


def test_trim_silence_keeps_loud_middle() -> None:
    mel = torch.full((4, 10), -1.0)
    mel[:, 3:7] = 0.5
    assert trim_silence(mel).shape[1] == 4
