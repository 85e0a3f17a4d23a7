"""Training: one state object, one batch step, one loop (nanoGPT-style readable, DAC-style keys).

Schedule (method.md): the critic steps on every batch; G and S step together on every
``gupt``-th batch with loss adv + travel·(TraVeL + margin) + identity·id. A crop of A
(``model.crop_chunks`` chunks of L frames, 3 by default) is split into its chunks, translated as
one batch, joined, and judged whole by the critic.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from melganvc.config import Config, to_dict
from melganvc.io.checkpoint import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from melganvc.io.run_dir import RunDir
from melganvc.models.networks import Critic, build_models
from melganvc.models.patch_critic import PatchCritic, build_patch_critic
from melganvc.models.spectral_norm import SN_VECTORS, settle_spectral_norm
from melganvc.training import distributed as dist_utils
from melganvc.training.augment import augment_crops
from melganvc.training.chunks import join_chunks, split_chunks
from melganvc.training.losses import (
    critic_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    identity_loss,
    margin_loss,
    travel_loss,
)
from melganvc.training.selection import Selection


@dataclass
class TrainState:
    cfg: Config
    generator: nn.Module
    critic: Critic
    siamese: nn.Module
    opt_critic: torch.optim.Optimizer
    opt_gs: torch.optim.Optimizer
    rng: np.random.Generator  # crop sampling; shared by all ranks (each takes its slice)
    device: torch.device
    ema: nn.Module | None = None
    step: int = 0
    patch_critic: PatchCritic | None = None  # model.patch_critic_channels > 0
    selection: Selection = field(default_factory=Selection)  # train.select_best
    # wall time trained so far, earlier processes of a resumed run included (train.max_minutes
    # and the learning-rate schedule count it)
    trained_seconds: float = 0.0

    def gs_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters()) + list(self.siamese.parameters())

    def critics(self) -> list[Critic | PatchCritic]:
        """The reference's full-band critic, then the patch critic when there is one."""
        return [self.critic] + ([self.patch_critic] if self.patch_critic is not None else [])

    def critic_parameters(self) -> list[nn.Parameter]:
        return [p for critic in self.critics() for p in critic.parameters()]

    def inference_generator(self) -> nn.Module:
        return self.ema if self.ema is not None else self.generator


def build_state(cfg: Config, device: torch.device) -> TrainState:
    """Fresh models and optimisers, seeded so every rank starts from the same weights."""
    torch.manual_seed(cfg.train.seed)
    generator, critic, siamese = build_models(cfg)
    generator, critic, siamese = generator.to(device), critic.to(device), siamese.to(device)
    patch = build_patch_critic(cfg)
    patch = patch.to(device) if patch is not None else None
    t = cfg.train
    betas = (t.beta1, t.beta2)
    critic_params = list(critic.parameters()) + (list(patch.parameters()) if patch else [])
    opt_critic = torch.optim.Adam(critic_params, lr=t.lr, betas=betas, fused=True)
    opt_gs = torch.optim.Adam(list(generator.parameters()) + list(siamese.parameters()),
                              lr=t.lr, betas=betas, fused=True)
    ema = copy.deepcopy(generator).eval().requires_grad_(False) if t.ema > 0 else None
    return TrainState(cfg, generator, critic, siamese, opt_critic, opt_gs,
                      np.random.default_rng(t.seed), device, ema, patch_critic=patch)


def _autocast(state: TrainState) -> torch.autocast:
    """bf16 autocast when ``train.precision`` is ``bf16``; ``auto`` not yet resolved (by
    ``training.precision``) trains in float32."""
    return torch.autocast(state.device.type, dtype=torch.bfloat16,
                          enabled=state.cfg.train.precision == "bf16")


# Per critic: its hidden maps, then its scores (``Critic.features`` / ``PatchCritic.features``).
Judged = list[list[Tensor]]


def generator_losses(state: TrainState, chunks_a: Tensor, fake_chunks: Tensor, judged: Judges,
                     real_b: Tensor) -> dict[str, Tensor]:
    """Adversarial (every critic), feature matching, TraVeL (chunks 1 and 3 of each crop),
    margin and identity losses."""
    cfg, batch = state.cfg, real_b.shape[0]
    k = cfg.model.crop_chunks
    first, last = slice(0, batch), slice((k - 1) * batch, k * batch)
    s_a1, s_a2 = state.siamese(chunks_a[first]), state.siamese(chunks_a[last])
    s_g1, s_g2 = state.siamese(fake_chunks[first]), state.siamese(fake_chunks[last])
    losses = {
        "loss/adv": sum_of(generator_adversarial_loss(fake[-1]) for fake in judged.fake),
        "loss/travel": travel_loss(s_a1, s_a2, s_g1, s_g2),
        "loss/margin": margin_loss(s_a1, s_a2, cfg.loss.margin),
    }
    total = losses["loss/adv"] + cfg.loss.travel * (losses["loss/travel"] + losses["loss/margin"])
    if cfg.loss.feature_match > 0:
        losses["loss/feature_match"] = feature_matching_loss(judged.real, judged.fake)
        total = total + cfg.loss.feature_match * losses["loss/feature_match"]
    if cfg.loss.identity > 0:
        chunks_b = split_chunks(real_b, cfg.model.chunk_frames)
        losses["loss/identity"] = identity_loss(state.generator(chunks_b), chunks_b)
        total = total + cfg.loss.identity * losses["loss/identity"]
    losses["loss/gs_total"] = total
    return losses


def sum_of(terms: Iterable[Tensor]) -> Tensor:
    """The sum of one or more loss terms (``sum()`` would start from an int 0)."""
    first, *rest = terms
    for term in rest:
        first = first + term
    return first


@dataclass
class Judges:
    """What the critics made of one batch: ``real`` / ``fake`` hold, per critic, its hidden
    maps then its scores."""

    real: Judged
    fake: Judged

    def hinge(self) -> Tensor:
        """The critics' summed hinge loss (a patch critic's scores: one per patch)."""
        return sum_of(critic_hinge_loss(r[-1], f[-1]) for r, f in zip(self.real, self.fake,
                                                                      strict=True))


def _judge(state: TrainState, crops: Tensor) -> Judged:
    return [[h.float() for h in critic.features(crops)] for critic in state.critics()]


def critic_scores(state: TrainState, real_a: Tensor, real_b: Tensor, update_gs: bool
                  ) -> tuple[Tensor, Tensor, Judges]:
    """Translate A's crop chunk-wise and let every critic judge real B and the translation.

    On a G+S batch the translation keeps its graph and the critics run on each half separately
    (the generator's gradient then flows back through the fake half only); on a critic-only
    batch one call per critic judges both halves. With ``train.critic_augment`` the critics see
    both through ``augment_crops`` (the generator's gradient passes through it).
    """
    L, batch = state.cfg.model.chunk_frames, real_a.shape[0]
    chunks_a = split_chunks(real_a, L)
    seen = augment_crops if state.cfg.train.critic_augment else (lambda crops: crops)
    if update_gs:
        fake_chunks = state.generator(chunks_a)
        fake = join_chunks(fake_chunks, state.cfg.model.crop_chunks)
        return chunks_a, fake_chunks, Judges(_judge(state, seen(real_b)), _judge(state, seen(fake)))
    with torch.no_grad():
        fake_chunks = state.generator(chunks_a)
    crops = torch.cat([real_b, join_chunks(fake_chunks, state.cfg.model.crop_chunks)])
    both = _judge(state, seen(crops))
    return (chunks_a, fake_chunks, Judges([[h[:batch] for h in c] for c in both],
                                          [[h[batch:] for h in c] for c in both]))


def train_batch(state: TrainState, real_a: Tensor, real_b: Tensor) -> dict[str, float]:
    """One batch: critic update, plus G+S update every ``gupt`` batches. Returns loss values."""
    update_gs = state.step % state.cfg.train.gupt == 0
    # cached(): each spectral-normalised weight is computed once per step, not once per call.
    with _autocast(state), parametrize.cached():
        chunks_a, fake_chunks, judged = critic_scores(state, real_a, real_b, update_gs)
        losses = {"loss/critic": judged.hinge()}
        if update_gs:
            losses |= generator_losses(state, chunks_a, fake_chunks.float(), judged, real_b)
        state.opt_critic.zero_grad(set_to_none=True)
        # The G+S loss reuses this critic forward (the pre-update critic, as the reference
        # does); ``inputs=`` keeps each loss's gradients on its own networks.
        critic_params = state.critic_parameters()
        losses["loss/critic"].backward(inputs=critic_params, retain_graph=update_gs)
        if update_gs:
            state.opt_gs.zero_grad(set_to_none=True)
            gs_params = state.gs_parameters()
            losses["loss/gs_total"].backward(inputs=gs_params)
    dist_utils.average_gradients(critic_params)
    state.opt_critic.step()
    if update_gs:
        dist_utils.average_gradients(gs_params)
        state.opt_gs.step()
        update_ema(state)
    dist_utils.sync_buffers(state.generator, state.siamese)
    state.step += 1
    return {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def update_ema(state: TrainState) -> None:
    if state.ema is None:
        return
    decay = state.cfg.train.ema
    live = state.generator.state_dict()
    for key, ema_p in state.ema.state_dict().items():
        if key.endswith(SN_VECTORS):
            continue  # the EMA keeps its own vectors, iterated on its own weights below
        if ema_p.dtype.is_floating_point:
            ema_p.mul_(decay).add_(live[key].detach(), alpha=1 - decay)
        else:
            ema_p.copy_(live[key])
    settle_spectral_norm(state.ema)  # one power iteration per update, as training does


def sample_batch(state: TrainState, corpus_a: Any, corpus_b: Any) -> tuple[Tensor, Tensor]:
    """Unpaired crops: A and B sampled independently. With several ranks, every rank draws the
    same global batch from the shared RNG and keeps its own slice (so one RNG state resumes all)."""
    rank, world = dist_utils.rank_and_world()
    bs = state.cfg.train.batch_size
    a = corpus_a.sample(state.rng, bs * world)[rank * bs : (rank + 1) * bs]
    b = corpus_b.sample(state.rng, bs * world)[rank * bs : (rank + 1) * bs]
    return a.to(state.device, non_blocking=True), b.to(state.device, non_blocking=True)


# --- checkpoints ---------------------------------------------------------------------------

def state_payload(state: TrainState) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "config": to_dict(state.cfg),
        "step": state.step,
        "models": {"generator": state.generator.state_dict(), "critic": state.critic.state_dict(),
                   "siamese": state.siamese.state_dict()},
        "optimizers": {"critic": state.opt_critic.state_dict(), "gs": state.opt_gs.state_dict()},
        "rng": {"numpy": state.rng.bit_generator.state, "torch": torch.get_rng_state()},
        "selection": state.selection.to_dict(),
        "trained_seconds": state.trained_seconds,
    }
    if state.ema is not None:
        payload["models"]["generator_ema"] = state.ema.state_dict()
    if state.patch_critic is not None:
        payload["models"]["patch_critic"] = state.patch_critic.state_dict()
    return payload


def restore_state(state: TrainState, payload: dict[str, Any]) -> None:
    check_compatible(state.cfg, payload, ("features", "model"))
    if payload.get("kind") == "generator":
        raise CheckpointError("a generator-only export holds no training state; resume from "
                              "the run folder's checkpoint.pt")
    try:
        _restore(state, payload)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError("checkpoint holds incomplete or damaged training state "
                              f"({_load_failure(exc)})") from None


def _load_failure(exc: Exception) -> str:
    """The first line of why a checkpoint's tensors did not load (a missing key is named)."""
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc).strip().splitlines()[0]


def _restore(state: TrainState, payload: dict[str, Any]) -> None:
    models = payload["models"]
    state.generator.load_state_dict(models["generator"])
    state.critic.load_state_dict(models["critic"])
    state.siamese.load_state_dict(models["siamese"])
    if state.patch_critic is not None:
        state.patch_critic.load_state_dict(models["patch_critic"])
    if state.ema is not None:
        state.ema.load_state_dict(models.get("generator_ema", models["generator"]))
    state.opt_critic.load_state_dict(payload["optimizers"]["critic"])
    state.opt_gs.load_state_dict(payload["optimizers"]["gs"])
    state.rng.bit_generator.state = payload["rng"]["numpy"]
    torch.set_rng_state(payload["rng"]["torch"].cpu())  # map_location may have moved it
    state.step = int(payload["step"])
    state.selection = Selection.from_dict(payload.get("selection"))
    state.trained_seconds = float(payload.get("trained_seconds", 0.0))  # older checkpoints: 0


def save_run_checkpoint(state: TrainState, run_dir: Path) -> None:
    if dist_utils.is_main():
        save_checkpoint(RunDir(run_dir).checkpoint, state_payload(state))


def save_best_generator(state: TrainState, run_dir: Path) -> None:
    """``RUN/best.pt``: the generator conversion uses (EMA when on), as a generator-only
    checkpoint with the config and the selection that chose it."""
    if dist_utils.is_main():
        save_checkpoint(RunDir(run_dir).best,
                        {"config": to_dict(state.cfg), "kind": "generator", "step": state.step,
                         "models": {"generator": state.inference_generator().state_dict()},
                         "selection": state.selection.to_dict()})


def try_resume(state: TrainState, run_dir: Path) -> bool:
    path = RunDir(run_dir).checkpoint
    if not path.is_file():
        return False
    payload = load_checkpoint(path, map_location=state.device)  # its errors name the file
    try:
        restore_state(state, payload)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return True


# export-generator drops spectral norm: its weights do not fit a trainable generator
EXPORTED_BASE = ("a generator exported for conversion (no spectral norm) cannot train on; give "
                 "the base's run folder or checkpoint.pt")


def warm_start(state: TrainState, source: str) -> Path:
    """``train.init``: begin from another run's networks (a base model), not from random ones.

    G starts from the base's EMA generator when it has one (the smoothed, better weights), and
    so does this run's EMA; the critic(s) and S start from the base's when it has them (a
    generator-only export leaves them fresh). Optimisers, step, RNG and selection start anew:
    this is a new run that fine-tunes, not a resume. Returns the file it read."""
    path = init_checkpoint(source)
    payload = load_checkpoint(path, map_location=state.device)  # its errors name the file
    try:
        check_compatible(state.cfg, payload, ("features", "model"))
        models = payload["models"]
        generator = models.get("generator_ema", models["generator"])
        for module in (state.generator, state.ema):
            if module is not None:
                module.load_state_dict(generator)
        if "critic" in models:
            state.critic.load_state_dict(models["critic"])
            state.siamese.load_state_dict(models["siamese"])
        if state.patch_critic is not None and "patch_critic" in models:
            state.patch_critic.load_state_dict(models["patch_critic"])
    except CheckpointError as exc:
        reason = str(exc)
    except RuntimeError as exc:
        reason = (EXPORTED_BASE if payload.get("kind") == "generator"
                  else f"damaged networks ({_load_failure(exc)})")
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"incomplete or damaged networks ({_load_failure(exc)})"
    else:
        return path
    raise CheckpointError(f"{path}: cannot start from it (train.init): {reason}")


def init_checkpoint(source: str) -> Path:
    """A run folder means its full training checkpoint (G, D and S); a file or a bundled
    model's name means itself."""
    folder = RunDir(Path(source))
    return folder.checkpoint if folder.checkpoint.is_file() else resolve_checkpoint(source)


def run_progress(state: TrainState) -> float:
    """How far the run is towards its end, 0..1: steps done of ``train.steps`` or minutes
    trained of ``train.max_minutes``, whichever is further."""
    t = state.cfg.train
    by_time = state.trained_seconds / (60 * t.max_minutes) if t.max_minutes > 0 else 0.0
    return min(1.0, max(state.step / t.steps, by_time))


def set_learning_rate(state: TrainState, progress: float) -> float:
    """``train.lr_schedule``: the reference's constant rate, or a cosine from ``lr`` down to
    ``lr * lr_floor`` at the run's end (applied to every optimiser); returns the rate."""
    t = state.cfg.train
    lr = t.lr
    if t.lr_schedule == "cosine":
        lr = t.lr * (t.lr_floor + (1 - t.lr_floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    for optimizer in (state.opt_critic, state.opt_gs):
        for group in optimizer.param_groups:
            group["lr"] = lr
    return lr


def should_stop(state: TrainState) -> bool:
    """At ``train.steps``, or once the run (all its processes) has trained ``max_minutes``."""
    minutes = state.cfg.train.max_minutes
    return state.step >= state.cfg.train.steps or (minutes > 0 and state.trained_seconds > 60 * minutes)
