"""`melganvc convert --ray` on a real local Ray cluster (2 CPUs): same outputs as local
conversion, a worker killed mid-run loses nothing, bad files are reported once, reruns resume.

Needs the cluster extra (ray): skipped without it, except in CI (``MELGANVC_REQUIRE_RAY=1``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_checkpoint, speech_like

from melganvc.apps.cli import main
from melganvc.conversion.cluster import FAULT_ENV


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    try:
        import ray
    except ImportError:
        if os.environ.get("MELGANVC_REQUIRE_RAY") == "1":
            pytest.fail("MELGANVC_REQUIRE_RAY=1 but ray is not installed")
        pytest.skip("the cluster extra (ray) is not installed")
    markers = tmp_path_factory.mktemp("fault")
    fault = f"victim.wav:{markers}"  # the first worker to start victim.wav dies
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {FAULT_ENV: fault}})
    yield markers
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cluster")
    inputs = root / "in"
    (inputs / "sub").mkdir(parents=True)
    for i in range(4):
        sf.write(inputs / f"utt{i}.wav", speech_like(1.0 + 0.25 * i, seed=i), 16000)
    sf.write(inputs / "sub" / "victim.wav", speech_like(1.5, seed=9), 16000)
    (inputs / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return inputs, make_checkpoint(root / "g.pt")


def outputs(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): sf.read(str(p), dtype="float32")[0]
            for p in sorted(folder.rglob("*.wav"))}


def test_ray_matches_local_loses_nothing_and_resumes(ray_cluster, corpus, tmp_path, capsys):
    inputs, ckpt = corpus
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["convert", str(inputs), "--ckpt", str(ckpt), "--out", str(local),
                 "--no-progress", "--threads", "1"]) == 1  # bad.wav fails
    capsys.readouterr()
    assert main(["convert", str(inputs), "--ckpt", str(ckpt), "--out", str(remote),
                 "--no-progress", "--ray", "--workers", "2"]) == 1
    out, err = capsys.readouterr()
    assert "converted 5 file(s)" in out and "1 failed" in out
    assert err.count("bad.wav") == 1  # reported once
    assert "a worker died while converting" in err and "victim.wav" in err
    assert (ray_cluster / "killed-victim.wav").exists()  # the worker really died
    mine, theirs = outputs(local), outputs(remote)
    assert set(mine) == set(theirs) == {"utt0.wav", "utt1.wav", "utt2.wav", "utt3.wav",
                                        "sub/victim.wav"}
    for name in mine:
        np.testing.assert_allclose(theirs[name], mine[name], atol=1e-6, err_msg=name)
    assert not [p for p in remote.rglob("*") if p.name.startswith(".")]  # no temp files left

    # a rerun resumes: finished outputs are skipped, nothing is converted twice
    assert main(["convert", str(inputs), "--ckpt", str(ckpt), "--out", str(remote),
                 "--no-progress", "--ray"]) == 1
    out, _ = capsys.readouterr()
    assert "converted 0 file(s)" in out and "skipped 5 existing" in out


def test_cluster_options_need_ray(corpus, tmp_path, capsys):
    inputs, ckpt = corpus
    assert main(["convert", str(inputs), "--ckpt", str(ckpt), "--out", str(tmp_path),
                 "--workers", "3"]) == 2
    assert "go with --ray" in capsys.readouterr().err
