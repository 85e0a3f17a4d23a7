"""Subcommands around training: ``prepare``, ``train`` and ``resynth`` (the feature and
inversion pipeline alone)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from melganvc.apps.cli.options import (
    DEFAULT_PRESET,
    Command,
    add_config_args,
    add_inversion_args,
    resolve_config,
    with_inversion_args,
)
from melganvc.config import Config, apply_overrides
from melganvc.errors import UserError

# --- resynth ---------------------------------------------------------------------------------

def _setup_resynth(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="audio file to read")
    p.add_argument("output", type=Path, help="output .wav or .flac")
    add_inversion_args(p, "config")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(p)


def _resynth(args: argparse.Namespace) -> int:
    import torch

    from melganvc.conversion.batch import same_file
    from melganvc.dsp.mel import MelSpectrogram
    from melganvc.errors import AudioError
    from melganvc.io.audio import load
    from melganvc.io.audio_writer import save
    from melganvc.vocoders import build_inverter

    cfg = with_inversion_args(resolve_config(args), args)
    if same_file(args.input, args.output):
        raise UserError(f"{args.output}: is the input itself; choose another output")
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output} exists (use --overwrite)")
    wave = load(args.input, cfg.features.sample_rate)
    hop = cfg.features.hop_length
    if wave.size < hop:  # one mel frame inverts to zero samples
        raise AudioError(args.input, f"too short to resynthesise ({wave.size} samples at "
                                     f"{cfg.features.sample_rate} Hz; need at least {hop})")
    mel = MelSpectrogram(cfg.features)(torch.from_numpy(wave))
    out = build_inverter(cfg.features, cfg.inversion)(mel)
    save(args.output, out.reshape(-1).numpy(), cfg.features.sample_rate)
    print(f"wrote {args.output} ({out.numel() / cfg.features.sample_rate:.2f} s)")
    return 0


# --- prepare / train -------------------------------------------------------------------------

def _setup_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="folder of audio for one domain (searched at any depth)")
    p.add_argument("output", type=Path, help="folder to write the cached mels to")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)


def _prepare(args: argparse.Namespace) -> int:
    from melganvc.training.loop import prepare_domain

    cfg = resolve_config(args)
    report = prepare_domain(cfg, args.source, args.output, progress=not args.no_progress)
    print(f"prepared {report.kept} files ({report.frames} frames) into {args.output}")
    return 0


def _setup_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, type=Path, help="domain A: audio folder or prepared cache")
    p.add_argument("--b", required=True, type=Path, help="domain B: audio folder or prepared cache")
    p.add_argument("--out", required=True, type=Path, help="run folder (config, checkpoints, logs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--max-minutes", type=float,
                   help="stop cleanly with a checkpoint once the run has trained this long, a "
                        "resumed run's earlier time counted (default: the preset's; 20 for "
                        "speech, 0 = no limit)")
    p.add_argument("--steps", type=int, help="total batches to train (train.steps)")
    p.add_argument("--init", metavar="BASE",
                   help="start from a base model's networks (run folder, checkpoint or bundled "
                        "name; same features and model sizes) to fine-tune (train.init)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(preset=None)  # _train tells "--preset given" (refused on --resume) from not


def _train(args: argparse.Namespace) -> int:
    from melganvc.io.checkpoint import CHECKPOINT_NAME, checkpoint_config, load_checkpoint
    from melganvc.training.loop import fit, training_corpora

    extra = [f"train.steps={args.steps}"] if args.steps else []
    extra += [f"train.init={args.init}"] if args.init else []
    # --max-minutes 0 lifts the default recipe's 20-minute limit
    extra += [f"train.max_minutes={args.max_minutes}"] if args.max_minutes is not None else []
    if args.resume and (args.out / CHECKPOINT_NAME).is_file():
        cfg = checkpoint_config(load_checkpoint(args.out))  # resume with the run's own config
        cfg = apply_overrides(cfg, args.overrides + extra)
        _refuse_other_config(args, cfg, extra)
    else:
        args.preset = args.preset or DEFAULT_PRESET
        cfg = apply_overrides(resolve_config(args), extra)
    corpora = training_corpora(cfg, (args.a, args.b), args.out, progress=not args.no_progress)
    from melganvc.training import distributed as dist_utils

    try:
        state = fit(cfg, corpora[0], corpora[1], args.out, resume=args.resume,
                    progress=not args.no_progress, adapt_threads=adapt_threads(args))
    except BaseException:
        dist_utils.shutdown(wait=False)  # the other ranks may never reach a barrier
        raise
    rank, world = dist_utils.rank_and_world()
    if rank == 0:  # under torchrun every rank gets here; one line is enough
        ranks = f" on {world} processes" if world > 1 else ""
        print(f"trained to step {state.step}{ranks}; checkpoint: {args.out / CHECKPOINT_NAME}")
    dist_utils.shutdown()
    if world > 1:
        dist_utils.exit_worker(0)
    return 0


def adapt_threads(args: argparse.Namespace) -> bool:
    """Whether training may follow the free cores: not when the user fixed the count
    (``--threads``, or ``OMP_NUM_THREADS`` as ``torchrun`` sets it for its workers)."""
    return args.threads is None and "OMP_NUM_THREADS" not in os.environ


def _refuse_other_config(args: argparse.Namespace, run_cfg: Config, extra: list[str]) -> None:
    """A resumed run keeps the config it was started with: ``--preset``/``--config`` may only
    restate it (same ``--set``/``--steps`` applied to both), never silently replace or be
    dropped; ``--set`` is the way to change a field of a resumed run."""
    from melganvc.training.loop import config_differences

    if not (args.config or args.preset):
        return
    flag = f"--config {args.config}" if args.config else f"--preset {args.preset}"
    requested = apply_overrides(resolve_config(args), extra)
    diffs = config_differences(run_cfg, requested)
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; ... (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")
        raise UserError(f"{flag}: a resumed run keeps its own config, and this one differs from "
                        f"it ({shown}); drop {flag.split()[0]} (--set SECTION.FIELD=VALUE still "
                        "changes a field) or train into a new --out")


COMMANDS = (
    Command("resynth", "audio -> mel -> audio (checks the feature/inversion pipeline)", _setup_resynth, _resynth),
    Command("prepare", "cache one domain's audio as normalised mels for training", _setup_prepare, _prepare),
    Command("train", "train a model from two folders of unpaired audio", _setup_train, _train),
)
