"""Data-parallel training under ``torchrun``: gradients averaged across ranks after backward.

Gradients are all-reduced explicitly (one flat buffer per call) instead of wrapping the networks
in DistributedDataParallel, because a G step back-propagates twice through one critic forward
(critic loss into D, generator loss into G and S), which DDP's reducer does not model. The
arithmetic is the same as DDP's: the mean gradient over ranks, then identical optimiser steps.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_active() else (0, 1)


def is_main() -> bool:
    return rank_and_world()[0] == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns whether joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_active():
        return is_active()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    if not is_active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(*modules: nn.Module) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if not is_active():
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def sync_buffers(*modules: nn.Module) -> None:
    """BatchNorm running statistics follow rank 0 (DDP's broadcast_buffers behaviour)."""
    if not is_active():
        return
    for module in modules:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def broadcast_choice(choice: str) -> str:
    """Rank 0's ``choice`` on every rank (a setting measured per process must agree)."""
    if not is_active():
        return choice
    box = [choice]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def rank0_says(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: a decision from a clock (the time limit) must agree,
    or a rank that stopped would leave the others waiting in their next all-reduce."""
    if not is_active():
        return flag
    box = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(box, src=0)
    return bool(box.item())


def shutdown(wait: bool = True) -> None:
    """Leave the process group, all ranks together. A rank that left (or skipped this) while
    another was still saving aborted at exit about one time in three ("terminate called
    without an active exception", SIGABRT, from gloo's threads); the barrier ended it.
    ``wait=False`` after an error: the other ranks may never get here."""
    if is_active():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def exit_worker(code: int = 0) -> NoReturn:
    """End a torchrun worker now, after ``shutdown``: flush its output and skip the
    interpreter's finalisation, where c10d's store and gloo threads that outlive the process
    group can still abort the process ("terminate called without an active exception",
    SIGABRT: once in about twenty runs under load even with the barrier, failing the run for
    torchrun though every checkpoint was written)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
