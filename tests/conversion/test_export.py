"""ONNX export of the generator: parity with torch, dynamic shapes, provenance, atomic write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from melganvc.apps.cli import main
from melganvc.config import preset_config, to_dict
from melganvc.conversion.converter import Converter
from melganvc.io.checkpoint import save_checkpoint
from melganvc.models.networks import build_models


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_onnx_matches_torch(tmp_path: Path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    cfg = preset_config("tiny")
    torch.manual_seed(3)
    gen = build_models(cfg)[0]
    gen(torch.rand(4, cfg.features.n_mels, 24) * 2 - 1)  # BN stats and SN estimate off init
    save_checkpoint(tmp_path / "g.pt", {"config": to_dict(cfg), "models": {"generator": gen.state_dict()}})
    out = tmp_path / "g.onnx"
    assert main(["export-onnx", "--ckpt", str(tmp_path / "g.pt"), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx", "g.pt"]  # no temp files
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "converted by melganvc" in meta["provenance"] and meta["chunk_frames"] == "24"
    torch_gen = Converter.from_checkpoint(tmp_path / "g.pt", device="cpu").generator
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, frames in [(1, 24), (3, 48), (2, 8)]:
        mel = rng.uniform(-1, 1, (batch, cfg.features.n_mels, frames)).astype(np.float32)
        with torch.no_grad():
            want = torch_gen(torch.from_numpy(mel)).numpy()
        got = session.run(None, {"mel": mel})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
