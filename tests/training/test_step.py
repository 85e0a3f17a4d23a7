"""Training smoke tests: a tiny config trains, checkpoints, and resumes bit-compatibly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import conv_sigmas

from melganvc.config import apply_overrides, preset_config
from melganvc.errors import UserError
from melganvc.io.checkpoint import load_checkpoint
from melganvc.models.spectral_norm import inference_copy
from melganvc.training.loop import fit, open_corpora
from melganvc.training.step import build_state, sample_batch, train_batch, update_ema


def tiny(steps: int, **extra: str):
    sets = [f"train.steps={steps}", "train.checkpoint_every=3", "train.eval_every=0"]
    return apply_overrides(preset_config("tiny"), sets + [f"{k}={v}" for k, v in extra.items()])


def test_train_batch_updates_on_schedule(tiny_corpora: tuple[Path, Path]) -> None:
    cfg = tiny(3)
    data_a, data_b = open_corpora(cfg, *tiny_corpora)
    state = build_state(cfg, torch.device("cpu"))
    g_before = [p.detach().clone() for p in state.generator.parameters()]
    losses = train_batch(state, *sample_batch(state, data_a, data_b))  # step 0: D and G+S
    assert set(losses) >= {"loss/critic", "loss/adv", "loss/travel", "loss/margin", "loss/identity"}
    assert all(np.isfinite(v) for v in losses.values())
    g_after = [p.detach().clone() for p in state.generator.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(g_before, g_after))
    losses = train_batch(state, *sample_batch(state, data_a, data_b))  # step 1: critic only
    assert set(losses) == {"loss/critic"}
    assert all(torch.equal(a, p) for a, p in zip(g_after, state.generator.parameters()))


def test_critic_augment_changes_what_the_critic_sees(tiny_corpora: tuple[Path, Path]) -> None:
    losses = {}
    for augment in (False, True):
        cfg = tiny(1, **{"train.critic_augment": str(augment).lower()})
        data_a, data_b = open_corpora(cfg, *tiny_corpora)
        torch.manual_seed(0)
        state = build_state(cfg, torch.device("cpu"))
        losses[augment] = train_batch(state, *sample_batch(state, data_a, data_b))
        assert all(np.isfinite(v) for v in losses[augment].values())
    assert losses[True]["loss/critic"] != losses[False]["loss/critic"]
    assert losses[True]["loss/identity"] == pytest.approx(losses[False]["loss/identity"])


def test_patch_critic_and_feature_matching_train(tiny_corpora: tuple[Path, Path]) -> None:
    """Both critics learn from the critic loss; G learns from the feature-matching term."""
    cfg = tiny(1, **PATCH_FM)
    data_a, data_b = open_corpora(cfg, *tiny_corpora)
    state = build_state(cfg, torch.device("cpu"))
    assert state.patch_critic is not None and len(state.critics()) == 2
    # weights only: a bias takes equal and opposite hinge gradients while scores are near 0
    weights = [p for n, p in state.patch_critic.named_parameters() if n.endswith("original")]
    before = [p.detach().clone() for p in weights]
    losses = train_batch(state, *sample_batch(state, data_a, data_b))
    assert losses["loss/feature_match"] > 0 and np.isfinite(losses["loss/gs_total"])
    assert len(weights) == 4 and all(not torch.equal(a, p) for a, p in zip(before, weights))
    adv_fm = losses["loss/adv"] + 10 * losses["loss/feature_match"]
    rest = 10 * (losses["loss/travel"] + losses["loss/margin"]) + 0.5 * losses["loss/identity"]
    assert losses["loss/gs_total"] == pytest.approx(adv_fm + rest, rel=1e-5)
    assert build_state(tiny(1), torch.device("cpu")).patch_critic is None  # the reference: off


def collect_losses(cfg, corpora, run: Path, resume: bool = False) -> dict[int, dict]:
    """Run ``fit`` and record each step's losses through a patched ``train_batch``."""
    import melganvc.training.loop as fit_module

    seen: dict[int, dict] = {}
    original = fit_module.train_batch

    def spy(state, a, b):
        step = state.step
        seen[step] = original(state, a, b)
        return seen[step]

    fit_module.train_batch = spy
    try:
        fit(cfg, *corpora, run, resume=resume, progress=False)
    finally:
        fit_module.train_batch = original
    return seen


PATCH_FM = {"model.patch_critic_channels": "4", "loss.feature_match": "10"}


@pytest.mark.parametrize("extra", [{}, {"train.critic_augment": "true"}, PATCH_FM],
                         ids=["plain", "augment", "patch_fm"])
def test_resume_matches_uninterrupted_run(tiny_corpora: tuple[Path, Path], tmp_path: Path,
                                          extra: dict[str, str]) -> None:
    """Also with the critic's augmentation, whose draws come from the checkpointed torch RNG,
    and with the patch critic (its weights and optimiser state are in the checkpoint)."""
    full = collect_losses(tiny(6, **extra), tiny_corpora, tmp_path / "full")
    collect_losses(tiny(3, **extra), tiny_corpora, tmp_path / "split")
    assert load_checkpoint(tmp_path / "split")["step"] == 3
    resumed = collect_losses(tiny(6, **extra), tiny_corpora, tmp_path / "split", resume=True)
    assert sorted(resumed) == [3, 4, 5]
    for step in (3, 4, 5):
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-7)
    final_full = load_checkpoint(tmp_path / "full")["models"]["generator"]
    final_split = load_checkpoint(tmp_path / "split")["models"]["generator"]
    for key in final_full:
        assert torch.allclose(final_full[key], final_split[key], atol=1e-6), key
    assert (tmp_path / "full" / "config.yaml").is_file()
    assert list((tmp_path / "full" / "logs").iterdir())
    assert not list((tmp_path / "full").glob("*.tmp"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda(tiny_corpora: tuple[Path, Path], tmp_path: Path) -> None:
    """Loading with map_location=cuda moved the CPU RNG state too, and resume refused it."""
    collect_losses(tiny(3, **{"train.device": "cuda"}), tiny_corpora, tmp_path / "r")
    resumed = collect_losses(tiny(5, **{"train.device": "cuda"}), tiny_corpora, tmp_path / "r",
                             resume=True)
    assert sorted(resumed) == [3, 4]


def test_existing_run_needs_resume(tiny_corpora: tuple[Path, Path], tmp_path: Path) -> None:
    fit(tiny(1), *tiny_corpora, tmp_path / "r", progress=False)
    with pytest.raises(UserError, match="--resume"):
        fit(tiny(1), *tiny_corpora, tmp_path / "r", progress=False)


def test_ema_and_eval_logging(tiny_corpora: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tiny(4, **{"train.ema": "0.9", "train.eval_every": "4"})
    state = fit(cfg, *tiny_corpora, tmp_path / "e", progress=False)
    assert state.ema is not None
    payload = load_checkpoint(tmp_path / "e")
    assert "generator_ema" in payload["models"]
    ema_w = payload["models"]["generator_ema"]
    gen_w = payload["models"]["generator"]
    assert any(not torch.equal(ema_w[k], gen_w[k]) for k in gen_w if gen_w[k].is_floating_point())


def test_ema_keeps_its_own_spectral_norm_vectors() -> None:
    """Averaging the live vectors (whose direction may flip between steps) shrank the EMA's
    sigma and blew up its weights; the EMA iterates its own vectors instead."""
    state = build_state(tiny(1, **{"train.ema": "0.9"}), torch.device("cpu"))
    for _ in range(20):
        for name, buf in state.generator.named_buffers():
            if name.endswith(("_u", "_v")):
                buf.neg_()  # same sigma for the live model, opposite direction
        update_ema(state)
    sigmas = conv_sigmas(inference_copy(state.ema).state_dict())
    assert sigmas == pytest.approx([1.0] * len(sigmas), abs=0.02)


def test_cosine_schedule_follows_the_run(tiny_corpora: tuple[Path, Path]) -> None:
    """train.lr_schedule=cosine: full rate at the start, lr * lr_floor at the end, the end
    being train.steps or train.max_minutes, whichever comes first; constant leaves lr alone."""
    from melganvc.training.step import run_progress, set_learning_rate

    cfg = tiny(100, **{"train.lr_schedule": "cosine", "train.lr_floor": "0.1",
                       "train.max_minutes": "10"})
    state = build_state(cfg, torch.device("cpu"))
    lr = cfg.train.lr
    assert run_progress(state) == 0.0
    assert set_learning_rate(state, run_progress(state)) == pytest.approx(lr)
    state.step, state.trained_seconds = 50, 60.0
    assert run_progress(state) == 0.5  # half the steps, a tenth of the time
    state.trained_seconds = 480.0
    assert run_progress(state) == pytest.approx(0.8)  # time is further
    assert set_learning_rate(state, 0.5) == pytest.approx(0.55 * lr)
    assert all(g["lr"] == pytest.approx(0.55 * lr)
               for opt in (state.opt_critic, state.opt_gs) for g in opt.param_groups)
    state.trained_seconds = 1e9
    assert set_learning_rate(state, run_progress(state)) == pytest.approx(0.1 * lr)
    constant = build_state(tiny(100), torch.device("cpu"))
    assert set_learning_rate(constant, 0.7) == constant.cfg.train.lr
    with pytest.raises(UserError, match="lr_schedule"):
        tiny(1, **{"train.lr_schedule": "linear"})


def test_time_limit_counts_a_resumed_runs_earlier_time(tiny_corpora: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    """train.max_minutes is the run's budget: the checkpoint keeps the time trained, and a
    resume past the budget trains no further (steps are a total too)."""
    run = tmp_path / "run"
    fit(tiny(4), *tiny_corpora, run, progress=False)
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["step"] == 4 and saved["trained_seconds"] > 0
    spent = saved["trained_seconds"] / 60
    state = fit(tiny(8, **{"train.max_minutes": str(spent / 2)}), *tiny_corpora, run,
                resume=True, progress=False)
    assert state.step == 4
    state = fit(tiny(8, **{"train.max_minutes": "0"}), *tiny_corpora, run, resume=True,
                progress=False)
    assert state.step == 8 and state.trained_seconds > saved["trained_seconds"]
