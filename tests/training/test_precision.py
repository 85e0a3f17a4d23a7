"""train.precision: the auto probe picks by measured time, leaves the run untouched, and a run
keeps its choice across resumes; configs written with the old ``train.bf16`` still load."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import melganvc.training.precision as precision_module
from melganvc.config import ConfigError, apply_overrides, from_dict, preset_config
from melganvc.io.checkpoint import load_checkpoint
from melganvc.training.loop import config_differences, fit, open_corpora
from melganvc.training.precision import choose_precision, resolve_precision, time_precisions
from melganvc.training.step import build_state, state_payload


def auto(steps: int = 2):
    sets = [f"train.steps={steps}", "train.checkpoint_every=2", "train.eval_every=0",
            "train.precision=auto"]
    return apply_overrides(preset_config("tiny"), sets)


def test_choose_precision_needs_a_clear_gain() -> None:
    assert choose_precision({"fp32": 0.236, "bf16": 0.101}) == "bf16"
    assert choose_precision({"fp32": 0.201, "bf16": 0.345}) == "fp32"
    assert choose_precision({"fp32": 0.100, "bf16": 0.095}) == "fp32"  # within the noise


def test_precision_config_and_legacy_bf16() -> None:
    assert preset_config("speech-hifigan").train.precision == "auto"
    assert from_dict({"train": {"bf16": True}}).train.precision == "bf16"
    assert from_dict({"train": {"bf16": False}}).train.precision == "fp32"
    with pytest.raises(ConfigError, match="train.precision must be one of auto, fp32, bf16"):
        apply_overrides(preset_config("tiny"), ["train.precision=fp16"])
    run = replace(auto().train, precision="bf16")
    run_cfg = replace(auto(), train=run)
    assert config_differences(run_cfg, auto()) == []  # auto restates any resolved choice
    fp32 = apply_overrides(auto(), ["train.precision=fp32"])
    assert config_differences(run_cfg, fp32)


def snapshot(state) -> dict:
    payload = state_payload(state)
    return {"models": payload["models"], "optimizers": payload["optimizers"],
            "rng": payload["rng"], "step": payload["step"]}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_probe_times_both_and_leaves_the_run_untouched(tiny_corpora: tuple[Path, Path]) -> None:
    cfg = auto()
    data_a, data_b = open_corpora(cfg, *tiny_corpora)
    state = build_state(cfg, torch.device("cpu"))
    before, threads = snapshot(state), torch.get_num_threads()
    ticks, seen = iter(range(1000)), set()

    def clock() -> float:
        seen.add(torch.get_num_threads())
        return float(next(ticks))

    seconds = time_precisions(state, data_a, data_b, clock=clock)
    assert seconds == {"fp32": 1.0, "bf16": 1.0}  # each timed cycle spans one tick of this clock
    assert same(before, snapshot(state)) and state.cfg.train.precision == "auto"
    assert seen == {1} and torch.get_num_threads() == threads  # one thread, then restored
    real = time_precisions(state, data_a, data_b)  # this thread's CPU time
    assert all(0 < value < 60 for value in real.values())


def test_resolve_writes_the_measured_choice(tiny_corpora: tuple[Path, Path], monkeypatch) -> None:
    cfg = auto()
    data_a, data_b = open_corpora(cfg, *tiny_corpora)
    for seconds, expected in (({"fp32": 2.0, "bf16": 1.0}, "bf16"),
                              ({"fp32": 1.0, "bf16": 2.0}, "fp32")):
        monkeypatch.setattr(precision_module, "time_precisions", lambda *a, s=seconds: s)
        state = build_state(cfg, torch.device("cpu"))
        assert resolve_precision(state, data_a, data_b) == expected
        assert state.cfg.train.precision == expected
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: False)
    state = build_state(cfg, torch.device("cpu"))
    assert resolve_precision(state, data_a, data_b) == "fp32"


def test_a_run_keeps_its_choice(tiny_corpora: tuple[Path, Path], tmp_path: Path,
                                monkeypatch) -> None:
    """The probe runs once, at the start; its choice is in config.yaml and every checkpoint,
    and resuming from the checkpoint's config does not probe again."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        return {"fp32": 2.0, "bf16": 1.0}

    monkeypatch.setattr(precision_module, "time_precisions", fake)
    run = tmp_path / "run"
    fit(auto(2), *tiny_corpora, run, progress=False)
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["config"]["train"]["precision"] == "bf16"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "bf16"
    resumed_cfg = from_dict(saved["config"])
    state = fit(replace(resumed_cfg, train=replace(resumed_cfg.train, steps=4)), *tiny_corpora,
                run, resume=True, progress=False)
    assert state.step == 4 and state.cfg.train.precision == "bf16" and len(calls) == 1
