"""Shared fixtures: synthetic audio, the tiny config, and ../shared/data when it is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from melganvc.config import Config, preset_config, to_dict
from melganvc.io.checkpoint import save_checkpoint
from melganvc.models.networks import build_models
from melganvc.training.data import prepare

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test (with the reason) when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not present: {path}")
    return path


def speech_like(seconds: float, sr: int = 16000, f0: float = 120.0, formants=(500, 1500, 2500),
                seed: int = 0) -> np.ndarray:
    """Voiced, formant-shaped harmonic signal with vibrato and pauses: cheap stand-in for speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t) + 0.03 * rng.standard_normal() )
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    wave = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        freq = k * f0
        gain = sum(np.exp(-0.5 * ((freq - f) / 120.0) ** 2) for f in formants) + 0.02
        wave += gain / k**0.5 * np.sin(k * phase)
    envelope = (np.sin(2 * np.pi * 1.7 * t) > -0.3).astype(float)
    envelope = np.convolve(envelope, np.hanning(800) / np.hanning(800).sum(), mode="same")
    wave = wave * envelope + 0.003 * rng.standard_normal(t.size)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture
def tiny_config() -> Config:
    return preset_config("tiny")


@pytest.fixture(scope="session")
def tiny_corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpora")
    cfg = preset_config("tiny")
    out = []
    for name, f0, formants in (("a", 110.0, (500, 1500, 2500)), ("b", 220.0, (800, 2000, 3200))):
        src = root / f"{name}_audio"
        src.mkdir()
        for i in range(3):
            sf.write(src / f"{i}.wav", speech_like(1.2, f0=f0, formants=formants, seed=i), 16000)
        prepare(src, root / name, cfg.features, 72, progress=False)
        out.append(root / name)
    return out[0], out[1]


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """An untrained tiny generator saved as a training-style checkpoint (SN parametrised)."""
    cfg = preset_config("tiny")
    torch.manual_seed(seed)
    gen = build_models(cfg)[0]
    gen(torch.rand(4, cfg.features.n_mels, 24) * 2 - 1)  # move BN stats / SN estimate off init
    save_checkpoint(path, {"config": to_dict(cfg), "step": 0,
                           "models": {"generator": gen.eval().state_dict()}})
    return path


def conv_sigmas(state: dict[str, torch.Tensor]) -> list[float]:
    """Spectral norms (over dim 0, as spectral norm normalises) of a plain state dict's
    conv and dense weights: all 1.0 for correctly normalised weights."""
    return [float(torch.linalg.matrix_norm(w.float().reshape(w.shape[0], -1), ord=2))
            for k, w in state.items() if k.endswith("weight") and w.dim() > 1]


FAST_INVERSION = ["gl_iters=4", "nnls_iters=10"]  # conversion tests check plumbing, not quality


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): on a
    shared 2-core box a second OpenMP thread only adds contention to tiny models and STFTs,
    and makes some LAPACK calls (the inverter's ``eigvalsh``) 100x slower. Behaviour, not
    speed, is what these tests check."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny generator checkpoint (see ``make_checkpoint``)."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "g.pt")


@pytest.fixture(scope="module")
def conv(ckpt: Path):
    """A CPU ``Converter`` for ``ckpt`` with a fast inversion."""
    from melganvc.conversion.converter import Converter

    return Converter.from_checkpoint(ckpt, device="cpu", inversion=FAST_INVERSION)
