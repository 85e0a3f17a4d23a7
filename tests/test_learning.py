"""The method learns a known mapping: A = speech-like signal with low formants, B = the same kind
of signal with formants and pitch shifted up. After a short tiny-model run, converted A moves
toward B's spectral statistics and keeps its own time envelope (content)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import speech_like
from melganvc.chunks import translate_chunks
from melganvc.config import apply_overrides, preset_config
from melganvc.data import MelCorpus, prepare
from melganvc.fit import fit

pytestmark = pytest.mark.slow


def mean_profile(mels: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(mels, dim=1).mean(dim=1)


def centroid(profile: torch.Tensor) -> float:
    weight = profile + 1  # normalised dB -> non-negative weights
    return float((weight * torch.arange(len(profile))).sum() / weight.sum())


def correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()))


def test_conversion_moves_spectra_toward_b(tmp_path: Path) -> None:
    cfg = apply_overrides(preset_config("tiny"), ["train.steps=300", "train.eval_every=0",
                                                  "train.checkpoint_every=1000", "train.batch_size=8"])
    corpora = {}
    for name, f0, formants in (("a", 110, (400, 1200, 2200)), ("b", 165, (700, 2000, 3400))):
        src = tmp_path / f"{name}_audio"
        src.mkdir()
        for i in range(12):
            wave = speech_like(2.0, f0=f0 * (1 + 0.05 * np.sin(i)), formants=formants, seed=i)
            sf.write(src / f"{i}.wav", wave, 16000)
        prepare(src, tmp_path / name, cfg.features, 72, progress=False)
        corpora[name] = MelCorpus(tmp_path / name, cfg.features, 72)
    state = fit(cfg, tmp_path / "a", tmp_path / "b", tmp_path / "run", progress=False)
    generator = state.generator.eval()
    sources = [corpora["a"].utterance(i) for i in range(len(corpora["a"]))]
    converted = [translate_chunks(generator, mel, cfg.model.chunk_frames) for mel in sources]
    prof_a, prof_c = mean_profile(sources), mean_profile(converted)
    prof_b = mean_profile([corpora["b"].utterance(i) for i in range(len(corpora["b"]))])
    shift = (centroid(prof_c) - centroid(prof_a)) / (centroid(prof_b) - centroid(prof_a))
    assert shift > 0.5, f"spectral centroid moved only {shift:.2f} of the way from A to B"
    assert correlation(prof_c, prof_b) > correlation(prof_c, prof_a)
    envelope = np.mean([correlation(s.mean(0), c.mean(0)) for s, c in zip(sources, converted)])
    assert envelope > 0.5, f"converted audio lost the source's time envelope ({envelope:.2f})"
