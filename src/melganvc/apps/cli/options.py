"""Options shared by several subcommands, and the ``Command`` record the parser is built
from."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from melganvc.config import (
    INVERSION_METHODS,
    PRESETS,
    Config,
    apply_overrides,
    load_config,
    preset_config,
)
from melganvc.errors import UserError

if TYPE_CHECKING:
    from melganvc.conversion.converter import Converter

Handler = Callable[[argparse.Namespace], int]
DEFAULT_PRESET = "speech-hifigan"  # `train`; the other commands start from the reference


class Command(NamedTuple):
    """One subcommand: its name, its help line, what it adds to its parser, what it runs."""

    name: str
    help: str
    setup: Callable[[argparse.ArgumentParser], None]
    run: Handler


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or TOML config file (overrides the preset)")
    parser.add_argument("--preset", default="reference",
                        help=f"starting point: {', '.join(PRESETS)} (train's default: "
                             f"{DEFAULT_PRESET}; every other command's: reference)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field, e.g. --set train.steps=5000 (repeatable)")


def resolve_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if args.config else preset_config(args.preset)
    return apply_overrides(cfg, args.overrides)


def add_inversion_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--inversion", choices=INVERSION_METHODS,
                   help=f"gl: fast Griffin-Lim, grad: gradient inversion, hifigan: the pretrained "
                        f"HiFi-GAN vocoder (models on the hifigan features) (default: {default}'s)")
    p.add_argument("--iters", type=int, help="Griffin-Lim iterations or GRAD steps")


def inversion_overrides(args: argparse.Namespace, cfg: Config) -> list[str]:
    """``--inversion`` / ``--iters`` as ``inversion.*`` overrides; ``--iters`` counts for the
    method in force (``--inversion``, else ``cfg``'s)."""
    sets = []
    if getattr(args, "inversion", None):
        sets.append(f"inversion.method={args.inversion}")
    if getattr(args, "iters", None):
        method = args.inversion or cfg.inversion.method
        if method == "hifigan":
            raise UserError("--iters counts Griffin-Lim iterations or GRAD steps; the hifigan "
                            "vocoder has none (leave --iters out)")
        sets.append(f"inversion.{'gl_iters' if method == 'gl' else 'grad_steps'}={args.iters}")
    return sets


def with_inversion_args(cfg: Config, args: argparse.Namespace) -> Config:
    return apply_overrides(cfg, inversion_overrides(args, cfg))


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--overlap", help="chunk overlap: frames, a fraction of a chunk up to 0.5, or "
                                     "0 for the reference (back-to-back chunks); default 0.5")
    add_inversion_args(p, "checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE",
                   help="override an inversion.* or conversion.* setting (repeatable)")


def converter_payload(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint ``--ckpt`` names and the ``Converter.from_payload`` options the model
    arguments ask for (a local converter, or Ray workers that build their own)."""
    from melganvc.io.checkpoint import checkpoint_config, load_checkpoint

    payload = load_checkpoint(args.ckpt, map_location="cpu")
    sets = list(args.overrides) + inversion_overrides(args, checkpoint_config(payload))
    return payload, {"device": args.device, "use_ema": not args.no_ema,
                     "inversion": sets or None, "source": str(args.ckpt),
                     "overlap": args.overlap}


def load_converter(args: argparse.Namespace) -> Converter:
    from melganvc.conversion.converter import Converter

    payload, options = converter_payload(args)
    return Converter.from_payload(payload, **options)
