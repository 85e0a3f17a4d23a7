"""Multi-node training through the user's entry point: ``torchrun --nnodes 1 --nproc_per_node 2
-m melganvc train`` with a c10d rendezvous on localhost, then a resume of the same run folder
(what a job does after losing a node: restart every node with ``--resume``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_train(a: Path, b: Path, run: Path, steps: int, resume: bool) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc_per_node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "melganvc", "train",
           "--a", str(a), "--b", str(b), "--out", str(run), "--preset", "tiny",
           "--set", f"train.steps={steps}", "--no-progress", *(["--resume"] if resume else [])]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_torchrun_entry_point_trains_and_resumes(tiny_corpora: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = torchrun_train(*tiny_corpora, run, steps=4, resume=False)
    assert out.count("trained to step 4 on 2 processes") == 1  # rank 0 reports, once
    first = torch.load(run / "checkpoint.pt", weights_only=True)
    assert first["step"] == 4
    out = torchrun_train(*tiny_corpora, run, steps=8, resume=True)
    assert "trained to step 8 on 2 processes" in out
    resumed = torch.load(run / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == 8
    g_before, g_after = first["models"]["generator"], resumed["models"]["generator"]
    assert any(not torch.equal(g_before[k], g_after[k]) for k in g_before)  # it trained on
