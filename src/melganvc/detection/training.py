"""Train a detector from folders of real and of converted audio (``melganvc train-detector``).

Every batch holds as many real as converted crops; most crops pass through random transforms
(``transforms.random_transform``) so the network learns traces that survive codecs, the
telephone band and noise. A tenth of the files of each folder is held out; the epoch with the
lowest held-out equal error rate is kept, and its EER threshold becomes the detector's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from melganvc.config import DetectorConfig
from melganvc.detection.detector import Detector
from melganvc.detection.metrics import equal_error_rate
from melganvc.detection.network import DetectorNet, batch_features
from melganvc.detection.transforms import TRANSFORMS, random_transform
from melganvc.errors import AudioError, UserError
from melganvc.io.audio import find_audio, load

MAX_SECONDS = 8.0  # of each file kept in memory (int16): crops are shorter anyway
HELD_OUT = 10  # every HELD_OUT-th file of each folder is held out for selection
MIN_FILES = 4


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # int16 at the detector's rate, at most MAX_SECONDS
    label: int  # 1 = converted

    def wave(self) -> np.ndarray:
        return self.audio.astype(np.float32) / 32768.0


def load_clips(folders: list[Path], label: int, cfg: DetectorConfig,
               progress: bool = False) -> tuple[list[Clip], list[Clip]]:
    """The audio under ``folders`` as (training, held-out) clips: every ``HELD_OUT``-th file of
    each sub-folder (a speaker or a system) is held out, so both halves cover all of them
    (at least one file in all)."""
    train: list[Clip] = []
    held: list[Clip] = []
    files = [f for folder in folders for f in find_audio(folder)[0]]
    if len(files) < MIN_FILES:
        raise UserError(f"{', '.join(map(str, folders))}: need at least {MIN_FILES} audio files "
                        f"of {'converted' if label else 'real'} audio, found {len(files)}")
    seen: dict[Path, int] = {}
    keep = int(MAX_SECONDS * cfg.sample_rate)
    from tqdm import tqdm

    for path in tqdm(files, desc="converted" if label else "real", disable=not progress,
                     leave=False):
        wave = load(path, cfg.sample_rate)
        start = max(0, (wave.size - keep) // 2)
        pcm = np.clip(np.round(wave[start:start + keep] * 32767), -32768, 32767).astype(np.int16)
        index = seen[path.parent] = seen.get(path.parent, -1) + 1
        (held if index % HELD_OUT == HELD_OUT - 1 else train).append(Clip(pcm, label))
    if not held:  # small folders: hold out one file anyway, selection needs a score
        held.append(train.pop())
    return train, held


def _crop(wave: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if wave.size <= size:
        return wave
    start = int(rng.integers(0, wave.size - size + 1))
    return wave[start:start + size]


def _batch(clips: list[Clip], cfg: DetectorConfig, rng: np.random.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size = int(cfg.crop_seconds * cfg.sample_rate)
    waves = []
    for clip in clips:
        wave = _crop(clip.wave(), size, rng)
        if rng.random() < cfg.augment:
            wave = random_transform(wave, cfg.sample_rate, rng)
        waves.append(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
    spec, frames = batch_features(waves, cfg)
    return spec, frames, torch.tensor([float(c.label) for c in clips])


def held_out_scores(detector: Detector, clips: list[Clip], rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the held-out clips, each clean and once through a random transform (the
    threshold must hold for both), split into (real, converted)."""
    names = [n for n in TRANSFORMS if n != "clean"]
    real: list[float] = []
    fake: list[float] = []
    detector.net.eval()
    for clip in clips:
        wave = clip.wave()
        other = TRANSFORMS[names[int(rng.integers(len(names)))]](wave, detector.config.sample_rate, rng)
        for w in (wave, other):
            try:
                score = detector.score(w, detector.config.sample_rate)
            except AudioError:  # silent or too short: nothing to judge, nothing to select by
                continue
            (fake if clip.label else real).append(score)
    if not real or not fake:
        raise UserError("no held-out file of one class could be judged (all silent or shorter "
                        "than min_seconds): give more, longer files")
    return np.array(real), np.array(fake)


def _train_epoch(net: DetectorNet, opt: torch.optim.Optimizer, sched: Any, clips: tuple[list[Clip], list[Clip]],
                 cfg: DetectorConfig, rng: np.random.Generator, steps: int, bar: Any) -> float:
    """One pass of ``steps`` balanced batches; the mean loss."""
    real_train, fake_train = clips
    loss_fn = nn.BCEWithLogitsLoss()
    half = cfg.batch_size // 2
    net.train()
    total = 0.0
    for _ in range(steps):
        picks = [real_train[i] for i in rng.integers(len(real_train), size=half)] + \
                [fake_train[i] for i in rng.integers(len(fake_train), size=cfg.batch_size - half)]
        spec, frames, labels = _batch(picks, cfg, rng)
        loss = loss_fn(net(spec, frames), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item()
        bar.update(1)
    return total / steps


def train_detector(real: list[Path], converted: list[Path], out: Path, cfg: DetectorConfig,
                   max_minutes: float = 0.0, progress: bool = True) -> dict[str, Any]:
    """Train, select and save a detector to ``out``; returns its held-out metrics."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    real_train, real_held = load_clips(real, 0, cfg, progress)
    fake_train, fake_held = load_clips(converted, 1, cfg, progress)
    net = DetectorNet(cfg)
    steps = max(1, (len(real_train) + len(fake_train)) // cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps * cfg.epochs)
    best: dict[str, Any] = {"eer": math.inf}
    deadline = time.monotonic() + max_minutes * 60 if max_minutes > 0 else math.inf
    from tqdm import tqdm

    bar = tqdm(total=steps * cfg.epochs, unit="batch", disable=not progress, leave=False)
    for epoch in range(1, cfg.epochs + 1):
        loss = _train_epoch(net, opt, sched, (real_train, fake_train), cfg, rng, steps, bar)
        scores_real, scores_fake = held_out_scores(Detector(net, cfg), real_held + fake_held,
                                                   np.random.default_rng(cfg.seed + 1))
        eer, threshold = equal_error_rate(scores_real, scores_fake)
        bar.write(f"epoch {epoch}/{cfg.epochs}: loss {loss:.4f}, held-out EER "
                  f"{100 * eer:.2f}% (threshold {threshold:.3f})")
        if eer <= best["eer"]:  # ties: the later epoch (further annealed)
            best = {"eer": eer, "threshold": threshold, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
        if time.monotonic() > deadline:
            bar.write(f"time limit: stopping after epoch {epoch}")
            break
    bar.close()
    net.load_state_dict(best.pop("state"))
    threshold = float(min(max(best["threshold"], 1e-3), 1 - 1e-3))
    metrics = {"held_out_eer": float(best["eer"]), "epoch": best["epoch"], "threshold": threshold,
               "files": {"real": len(real_train) + len(real_held),
                         "converted": len(fake_train) + len(fake_held)}}
    Detector(net, dataclasses.replace(cfg, threshold=threshold)).save(out, metrics)
    return metrics
