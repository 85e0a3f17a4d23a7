"""Time MelGAN-VC training batches on the CPU: critic step every batch, G+S step every ``gupt``.

Self-contained micro-implementation of the reference schedule (method.md, "Losses and
schedule"); ``--impl train`` times ``melganvc.train.train_batch`` instead:

* a batch is ``bs`` source crops ``a`` and ``bs`` target crops ``b`` of ``3 * L`` frames;
* every crop is split into 3 chunks of ``L`` frames, G translates all ``3 * bs`` chunks of a
  domain as one batch, the chunks are concatenated back and D judges the whole crop;
* critic batch: G(a) without gradient, D on ``[b, G(a)]``, hinge loss, Adam step on D;
* G+S batch (every ``gupt``-th, the first of each cycle): G(a) and G(b) (identity) with
  gradient, D(b) and D(G(a)) as two calls (as the reference; G's gradient then goes back
  through the fake half only) inside ``parametrize.cached()`` (spectral-norm weights once per
  step); D's hinge loss updates D (``backward(inputs=D)``), and
  ``adv + travel * (TraVeL + margin) + identity * id`` updates G and S (one shared Adam,
  ``backward(inputs=G+S)``); TraVeL and the margin use chunks 1 and 3; S is called per group
  of ``bs`` as the reference. Adam is ``fused=True``.

Prints one JSON object: mean ms per batch averaged over whole cycles, each step kind's mean,
process CPU time per batch, FLOPs per batch (``torch.utils.flop_counter``) and the rate
achieved, torch threads and version, and the load average (other processes on the machine
skew timings: a CPU time far above ``threads * wall`` or a load above the thread count means
the numbers are not clean).

    python benchmarks/train_step.py [--cycles 3] [--threads 2] [--preset speech16k]
                                    [--impl micro|train] [--no-flops]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace

import torch
from torch.nn.utils import parametrize

from melganvc.config import preset_config
from melganvc.losses import (
    critic_hinge_loss,
    generator_adversarial_loss,
    identity_loss,
    margin_loss,
    travel_loss,
)
from melganvc.models import build_models, count_parameters


def split_chunks(crops: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, M, 3L) -> (3B, M, L), chunk-major: rows [0:B] are chunk 1 of every crop."""
    return torch.cat(crops.split(chunk, dim=-1), dim=0)


def join_chunks(chunks: torch.Tensor, batch: int) -> torch.Tensor:
    """(3B, M, L) -> (B, M, 3L), the inverse of :func:`split_chunks`."""
    return torch.cat(chunks.split(batch, dim=0), dim=-1)


def critic_step(gen, critic, opt_d, a, b, chunk):
    bs = a.shape[0]
    with torch.no_grad():
        fake = join_chunks(gen(split_chunks(a, chunk)), bs)
    d = critic(torch.cat([b, fake]))
    loss_d = critic_hinge_loss(d[:bs], d[bs:])
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return {"loss_d": loss_d.item()}


def full_step(gen, critic, siam, opt_gs, opt_d, a, b, chunk, loss_cfg):
    # spectral-norm weights computed once per step (one power iteration), shared by both G
    # calls and both D calls and their backward passes
    with parametrize.cached():
        return _full_step(gen, critic, siam, opt_gs, opt_d, a, b, chunk, loss_cfg)


def _full_step(gen, critic, siam, opt_gs, opt_d, a, b, chunk, loss_cfg):
    bs = a.shape[0]
    a_chunks = split_chunks(a, chunk)
    b_chunks = split_chunks(b, chunk)
    fake_chunks = gen(a_chunks)
    id_chunks = gen(b_chunks)
    # two critic calls as the reference: G's gradient then flows back through the fake half only
    d_real = critic(b)
    d_fake = critic(join_chunks(fake_chunks, bs))
    loss_d = critic_hinge_loss(d_real, d_fake)
    loss_adv = generator_adversarial_loss(d_fake)

    a1, a3 = a_chunks[:bs], a_chunks[2 * bs :]
    g1, g3 = fake_chunks[:bs], fake_chunks[2 * bs :]
    s_a1, s_a3, s_g1, s_g3 = siam(a1), siam(a3), siam(g1), siam(g3)
    loss_travel = travel_loss(s_a1, s_a3, s_g1, s_g3)
    loss_margin = margin_loss(s_a1, s_a3, loss_cfg.margin)
    loss_id = identity_loss(id_chunks, b_chunks)
    loss_gs = loss_adv + loss_cfg.travel * (loss_travel + loss_margin) + loss_cfg.identity * loss_id

    d_params = [p for p in critic.parameters() if p.requires_grad]
    gs_params = [p for m in (gen, siam) for p in m.parameters() if p.requires_grad]
    opt_d.zero_grad(set_to_none=True)
    opt_gs.zero_grad(set_to_none=True)
    loss_d.backward(inputs=d_params, retain_graph=True)
    loss_gs.backward(inputs=gs_params)
    opt_gs.step()
    opt_d.step()
    return {"loss_d": loss_d.item(), "loss_gs": loss_gs.item()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="speech16k")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--cycles", type=int, default=3, help="timed cycles of gupt batches")
    ap.add_argument("--warmup", type=int, default=1, help="untimed cycles first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--impl", choices=("micro", "train"), default="micro",
                    help="micro: the step functions here; train: melganvc.train.train_batch")
    ap.add_argument("--no-flops", dest="count_flops", action="store_false",
                    help="skip counting FLOPs (one extra untimed cycle)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = preset_config(args.preset)
    bs = args.batch_size or cfg.train.batch_size
    chunk, gupt, n_mels = cfg.model.chunk_frames, cfg.train.gupt, cfg.features.n_mels
    gen, critic, siam = build_models(cfg)
    gen.train(), critic.train(), siam.train()
    betas = (cfg.train.beta1, cfg.train.beta2)
    # fused: one kernel per parameter, no temporaries (same update as the for-each Adam)
    opt_gs = torch.optim.Adam([*gen.parameters(), *siam.parameters()], lr=cfg.train.lr,
                              betas=betas, fused=True)
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.train.lr, betas=betas, fused=True)

    def batch():
        def crops():
            return torch.rand(bs, n_mels, 3 * chunk) * 2 - 1

        return crops(), crops()

    if args.impl == "train":  # the real loop: melganvc.train.train_batch
        from melganvc.train import build_state, train_batch

        state = build_state(replace(cfg, train=replace(cfg.train, batch_size=bs)),
                            torch.device("cpu"))
        gen, critic, siam = state.generator, state.critic, state.siamese

        def step(i, a, b):
            state.step = i  # G+S on the first batch of each cycle
            train_batch(state, a, b)
            return "full" if i == 0 else "critic"
    else:

        def step(i, a, b):
            if i == 0:
                full_step(gen, critic, siam, opt_gs, opt_d, a, b, chunk, cfg.loss)
                return "full"
            critic_step(gen, critic, opt_d, a, b, chunk)
            return "critic"

    times = {"critic": [], "full": []}
    cpu_ms = 0.0
    for cycle in range(args.warmup + args.cycles):
        for i in range(gupt):
            a, b = batch()
            t0, c0 = time.perf_counter(), time.process_time()
            kind = step(i, a, b)
            if cycle >= args.warmup:
                times[kind].append((time.perf_counter() - t0) * 1000)
                cpu_ms += (time.process_time() - c0) * 1000

    gflop = None
    if args.count_flops:  # one more (untimed) cycle under the FLOP counter
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            for i in range(gupt):
                step(i, *batch())
        gflop = counter.get_total_flops() / gupt / 1e9

    n = len(times["full"]) + len(times["critic"])
    ms_per_batch = (sum(times["full"]) + sum(times["critic"])) / n
    result = {
        "ms_per_batch": round(ms_per_batch, 1),
        "full_step_ms": round(sum(times["full"]) / len(times["full"]), 1),
        "critic_step_ms": round(sum(times["critic"]) / max(len(times["critic"]), 1), 1),
        "cpu_ms_per_batch": round(cpu_ms / n, 1),  # all threads; >> threads * wall: contention
        "gflop_per_batch": None if gflop is None else round(gflop, 2),
        "achieved_gflops": None if gflop is None else round(gflop / ms_per_batch * 1000, 1),
        "batches_timed": n,
        "impl": args.impl,
        "batch_size": bs,
        "chunk_frames": chunk,
        "gupt": gupt,
        "n_mels": n_mels,
        "params": {"G": count_parameters(gen), "D": count_parameters(critic),
                   "S": count_parameters(siam)},
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
