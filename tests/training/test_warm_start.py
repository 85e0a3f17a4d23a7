"""train.init: a new run starts from a base model's networks, not from random ones."""

from pathlib import Path

import pytest
import torch

from melganvc.config import apply_overrides, preset_config
from melganvc.io.checkpoint import CheckpointError, load_checkpoint
from melganvc.training.loop import fit
from melganvc.training.step import build_state, warm_start


def tiny(steps: int, *sets: str):
    base = [f"train.steps={steps}", "train.checkpoint_every=2", "train.eval_every=0",
            "train.ema=0.9"]
    return apply_overrides(preset_config("tiny"), base + list(sets))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def base_run(tiny_corpora, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    fit(tiny(2), *tiny_corpora, run, progress=False)
    return run


def test_new_run_starts_from_the_base_networks(base_run: Path) -> None:
    state = build_state(tiny(4, "train.seed=5"), torch.device("cpu"))
    assert warm_start(state, str(base_run)) == base_run / "checkpoint.pt"
    models = load_checkpoint(base_run / "checkpoint.pt")["models"]
    assert same(state.generator.state_dict(), models["generator_ema"])
    assert same(state.ema.state_dict(), models["generator_ema"])
    assert same(state.critic.state_dict(), models["critic"])
    assert same(state.siamese.state_dict(), models["siamese"])
    assert state.step == 0 and not state.opt_gs.state  # fine-tuning, not resuming


def test_fit_fine_tunes_and_a_resume_keeps_its_own_progress(base_run, tiny_corpora, tmp_path,
                                                            capsys) -> None:
    cfg = tiny(2, f"train.init={base_run}")
    state = fit(cfg, *tiny_corpora, tmp_path / "ft", progress=False)
    assert state.step == 2 and "starting from the networks of" in capsys.readouterr().err
    saved = load_checkpoint(tmp_path / "ft" / "checkpoint.pt")
    assert saved["config"]["train"]["init"] == str(base_run)
    resumed = fit(apply_overrides(cfg, ["train.steps=4"]), *tiny_corpora, tmp_path / "ft",
                  resume=True, progress=False)
    err = capsys.readouterr().err
    assert resumed.step == 4 and "starting from" not in err and "resuming" in err


def test_generator_only_base_leaves_the_critic_fresh(base_run: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(base_run / "checkpoint.pt")
    export = tmp_path / "g.pt"
    torch.save({**payload, "kind": "generator",
                "models": {"generator": payload["models"]["generator"]}}, export)
    fresh = build_state(tiny(2), torch.device("cpu"))
    state = build_state(tiny(2), torch.device("cpu"))
    warm_start(state, str(export))
    assert same(state.generator.state_dict(), payload["models"]["generator"])
    assert same(state.critic.state_dict(), fresh.critic.state_dict())


def test_incompatible_or_missing_base_is_one_clear_error(base_run: Path, tmp_path: Path) -> None:
    state = build_state(tiny(2, "model.generator_channels=16"), torch.device("cpu"))
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: cannot start from it \(train.init\)"
                                              r": .*model.generator_channels is 32"):
        warm_start(state, str(base_run))
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        warm_start(state, str(tmp_path / "nowhere"))


def test_exported_generator_is_refused_with_the_reason(base_run: Path, tmp_path: Path) -> None:
    from melganvc.conversion.export import save_generator

    export = save_generator(tmp_path / "small.pt", base_run / "checkpoint.pt")
    state = build_state(tiny(2), torch.device("cpu"))
    with pytest.raises(CheckpointError, match="exported for conversion .* give the base's run"):
        warm_start(state, str(export))
