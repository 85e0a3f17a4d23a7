"""Run by torchrun in test_distributed.py: train a few steps, dump this rank's weights."""

import os
import sys
from pathlib import Path

import torch

import melganvc.training.loop as fit_module
from melganvc.config import apply_overrides, preset_config
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
cfg = apply_overrides(preset_config("tiny"), ["train.steps=4", "train.eval_every=0", "train.batch_size=2"])
state = fit(cfg, a, b, run, progress=False)
rank = int(os.environ["RANK"])
torch.save({"generator": state.generator.state_dict(), "critic": state.critic.state_dict(),
            "siamese": state.siamese.state_dict(),
            "first_a": first_batch[0]}, dump / f"rank{rank}.pt")
