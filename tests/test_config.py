import tomllib
from pathlib import Path

import pytest
from conftest import REPO

from melganvc.config import (
    Config,
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    preset_config,
    to_dict,
)
from melganvc.io.run_dir import RunDir


def test_defaults_are_the_reference() -> None:
    cfg = Config()
    f = cfg.features
    assert (f.sample_rate, f.n_fft, f.hop_length, f.n_mels, f.f_max) == (16000, 1152, 192, 192, 8000)
    assert (cfg.model.chunk_frames, cfg.train.batch_size, cfg.train.gupt) == (24, 16, 3)
    assert (cfg.loss.travel, cfg.loss.identity, cfg.loss.margin) == (10.0, 0.5, 2.0)


def test_overrides_are_typed() -> None:
    cfg = apply_overrides(Config(), ["train.steps=12", "train.precision=bf16", "loss.travel=3"])
    assert cfg.train.steps == 12 and cfg.train.precision == "bf16" and cfg.loss.travel == 3.0
    with pytest.raises(ConfigError, match="train.steps"):
        apply_overrides(Config(), ["train.steps=many"])
    with pytest.raises(ConfigError, match="unknown config field 'train.stepz'"):
        apply_overrides(Config(), ["train.stepz=1"])
    with pytest.raises(ConfigError, match="section.field=value"):
        apply_overrides(Config(), ["steps"])


@pytest.mark.parametrize("name", ["speech", "reference", "speech16k", "speech8k", "music22k", "music44k", "tiny"])
def test_presets_valid_and_chunk_time_similar(name: str) -> None:
    cfg = preset_config(name)
    f = cfg.features
    seconds = cfg.model.chunk_frames * f.hop_length / f.sample_rate
    assert 0.25 < seconds < 0.32
    assert f.f_max == f.sample_rate / 2
    assert f.n_fft == 6 * f.hop_length


def test_yaml_and_toml_round_trip(tmp_path: Path) -> None:
    cfg = apply_overrides(preset_config("tiny"), ["train.steps=7"])
    run = RunDir(tmp_path / "run")
    run.save_config(cfg)
    assert load_config(run.config) == cfg
    (tmp_path / "c.toml").write_text('preset = "music22k"\n[train]\nsteps = 9\n')
    loaded = load_config(tmp_path / "c.toml")
    assert loaded.features.sample_rate == 22050 and loaded.train.steps == 9
    assert from_dict(to_dict(loaded)) == loaded


def test_bad_config_files_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid toml"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "neg.yaml").write_text("model: {chunk_frames: 10}\n")
    with pytest.raises(ConfigError, match="multiple of 4"):
        load_config(tmp_path / "neg.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_load() -> None:
    root = REPO / "configs"
    assert load_config(root / "default.toml") == Config()
    listed = tomllib.loads((root / "default.toml").read_text())
    every = to_dict(Config())
    assert {s: sorted(listed[s]) for s in listed} == {s: sorted(every[s]) for s in every}
    for path in root.glob("*.toml"):
        load_config(path)
