"""Run by torchrun in test_distributed.py: train a few steps, dump this rank's weights.

A fifth argument ``skew`` makes only rank 0's clock say the time limit has come (at step 3),
as when the ranks read their clocks either side of the limit."""

import os
import sys
from pathlib import Path

import torch

import melganvc.training.loop as fit_module
from melganvc.config import apply_overrides, preset_config
from melganvc.training import distributed as dist_utils
from melganvc.training.loop import fit

first_batch = []
original_sample = fit_module.sample_batch


def recording_sample(*args):
    batch = original_sample(*args)
    if not first_batch:
        first_batch.append(batch[0].clone())
    return batch


fit_module.sample_batch = recording_sample

a, b, run, dump = (Path(p) for p in sys.argv[1:5])
rank = int(os.environ["RANK"])
steps = 4
if sys.argv[5:] == ["skew"]:
    steps = 6
    fit_module.should_stop = lambda state: rank == 0 and state.step >= 3
cfg = apply_overrides(preset_config("tiny"), [f"train.steps={steps}", "train.eval_every=0",
                                              "train.batch_size=2"])
state = fit(cfg, a, b, run, progress=False)
torch.save({"generator": state.generator.state_dict(), "critic": state.critic.state_dict(),
            "siamese": state.siamese.state_dict(), "step": state.step,
            "first_a": first_batch[0]}, dump / f"rank{rank}.pt")
dist_utils.shutdown()
dist_utils.exit_worker(0)  # as the CLI ends a torchrun worker
