"""The method learns a known mapping: A = speech-like signal with low formants, B = the same kind
of signal with formants and pitch shifted up. Within a short tiny-model run, converted A moves
toward B's spectral statistics and keeps its own time envelope (content).

The run stops by batches, never by time: it is checked every 100 batches and stops at the first
check that passes (at most 600). One fixed stopping step made the test a lottery across CPUs:
float32 rounding on another machine changes a GAN's trajectory as a new seed does, and with the
seed varied (0-5, this code, AMD AVX2) the envelope criterion held at 600 batches for only 4 of 6
seeds -- the other two kept the envelope until 400-500 batches, then inverted it (correlation
-0.6) -- while every seed met all three criteria by 400 batches.
"""
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from conftest import speech_like

from melganvc.config import apply_overrides, preset_config
from melganvc.models.chunk_stream import ChunkStream
from melganvc.training.data import MelCorpus, prepare
from melganvc.training.loop import fit


def mean_profile(mels: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(mels, dim=1).mean(dim=1)


def correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()))


CHECK_EVERY, MAX_STEPS = 100, 600


def scores(generator: torch.nn.Module, sources: list[torch.Tensor], prof_a: torch.Tensor,
           prof_b: torch.Tensor, chunk_frames: int) -> tuple[float, float, float]:
    """(correlation of the converted mean spectrum with B's, with A's, mean envelope kept)."""
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        converted = [ChunkStream(generator, mel.shape[0], chunk_frames).run(mel) for mel in sources]
    generator.train(was_training)
    prof_c = mean_profile(converted)
    envelope = np.mean([correlation(s.mean(0), c.mean(0)) for s, c in zip(sources, converted)])
    return correlation(prof_c, prof_b), correlation(prof_c, prof_a), float(envelope)


def test_conversion_moves_spectra_toward_b(tmp_path: Path) -> None:
    settings = ["train.eval_every=0", "train.checkpoint_every=1000", "train.batch_size=8",
                "train.lr=0.0006", "model.generator_channels=64", "model.critic_channels=64"]
    cfg = apply_overrides(preset_config("tiny"), settings)
    corpora = {}
    for name, f0, formants in (("a", 110, (400, 1200, 2200)), ("b", 165, (700, 2000, 3400))):
        src = tmp_path / f"{name}_audio"
        src.mkdir()
        for i in range(12):
            wave = speech_like(2.0, f0=f0 * (1 + 0.05 * np.sin(i)), formants=formants, seed=i)
            sf.write(src / f"{i}.wav", wave, 16000)
        prepare(src, tmp_path / name, cfg.features, 72, progress=False)
        corpora[name] = MelCorpus(tmp_path / name, cfg.features, 72)
    sources = [corpora["a"].utterance(i) for i in range(len(corpora["a"]))]
    prof_a = mean_profile(sources)
    prof_b = mean_profile([corpora["b"].utterance(i) for i in range(len(corpora["b"]))])
    history = []
    for steps in range(CHECK_EVERY, MAX_STEPS + 1, CHECK_EVERY):  # resumes are bit-exact
        cfg = apply_overrides(cfg, [f"train.steps={steps}"])
        state = fit(cfg, tmp_path / "a", tmp_path / "b", tmp_path / "run",
                    resume=steps > CHECK_EVERY, progress=False)
        to_b, to_a, envelope = scores(state.generator, sources, prof_a, prof_b,
                                      cfg.model.chunk_frames)
        history.append(f"{steps}: to B {to_b:.2f}, to A {to_a:.2f}, envelope {envelope:.2f}")
        # Mean spectral envelope (shape over mel bands): an untrained G gives ~0.04 correlation
        # with B's; at 400 batches (seeds 0-5) we measured 0.68-0.84 with B, 0.15-0.33 with A.
        if to_b > 0.6 and to_b - to_a > 0.3 and envelope > 0.5:
            return
    raise AssertionError("never closer to B's spectra while keeping A's time envelope: "
                         + "; ".join(history))
