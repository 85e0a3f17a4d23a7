"""Two CPU processes (gloo) train together and their replicas stay identical."""

import subprocess
import sys
from pathlib import Path

import torch


def run_workers(corpora: tuple[Path, Path], tmp_path: Path, *extra: str) -> list[dict]:
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), str(corpora[0]), str(corpora[1]), str(tmp_path / "run"), str(tmp_path),
           *extra]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_two_process_replicas_identical(tiny_corpora: tuple[Path, Path], tmp_path: Path) -> None:
    ranks = run_workers(tiny_corpora, tmp_path)
    for net in ("generator", "critic", "siamese"):
        for key, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][key]), f"{net}.{key} differs between ranks"
    # the ranks trained on different crops, so equality comes from gradient averaging
    assert not torch.equal(ranks[0]["first_a"], ranks[1]["first_a"])
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_ranks_stop_together(tiny_corpora: tuple[Path, Path], tmp_path: Path) -> None:
    """Only rank 0's clock reaches the time limit: every rank stops at its step (without the
    agreement rank 1 would wait forever in its next all-reduce)."""
    ranks = run_workers(tiny_corpora, tmp_path, "skew")
    assert ranks[0]["step"] == ranks[1]["step"] == 3
