"""``melganvc`` command line: thin wrappers over the package; user mistakes print one line.

Every subcommand registers itself in ``COMMANDS``; ``main`` turns ``UserError`` into
``melganvc: error: <message>`` with exit status 2 and never shows a traceback for it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from melganvc import __version__
from melganvc.config import Config, apply_overrides, load_config, preset_config
from melganvc.errors import UserError

Handler = Callable[[argparse.Namespace], int]
DEFAULT_PRESET = "speech16k"
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, setup: Callable[[argparse.ArgumentParser], None]):
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help_text, setup, handler)
        return handler

    return register


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or TOML config file (overrides the preset)")
    parser.add_argument("--preset", default="speech16k",
                        help="starting point: speech16k (reference), speech8k, music22k, music44k, demo, tiny")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field, e.g. --set train.steps=5000 (repeatable)")


def resolve_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if args.config else preset_config(args.preset)
    return apply_overrides(cfg, args.overrides)


# --- resynth ---------------------------------------------------------------------------------

def _setup_resynth(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="audio file to read")
    p.add_argument("output", type=Path, help="output .wav or .flac")
    add_inversion_args(p, "config")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(p)


@command("resynth", "audio -> mel -> audio (checks the feature/inversion pipeline)", _setup_resynth)
def _resynth(args: argparse.Namespace) -> int:
    import torch

    from melganvc.audio import load, save
    from melganvc.batch import same_file
    from melganvc.errors import AudioError
    from melganvc.features import MelSpectrogram
    from melganvc.invert import Inverter

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
    out = Inverter(cfg.features, cfg.inversion)(mel)
    save(args.output, out.reshape(-1).numpy(), cfg.features.sample_rate)
    print(f"wrote {args.output} ({out.numel() / cfg.features.sample_rate:.2f} s)")
    return 0


def add_inversion_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--inversion", choices=["gl", "grad"], help=f"inversion (default: {default}'s)")
    p.add_argument("--iters", type=int, help="Griffin-Lim iterations or GRAD steps")


def inversion_overrides(args: argparse.Namespace, cfg: Config) -> list[str]:
    """``--inversion`` / ``--iters`` as ``inversion.*`` overrides; ``--iters`` counts for the
    method in force (``--inversion``, else ``cfg``'s)."""
    sets = []
    if getattr(args, "inversion", None):
        sets.append(f"inversion.method={args.inversion}")
    if getattr(args, "iters", None):
        method = args.inversion or cfg.inversion.method
        sets.append(f"inversion.{'gl_iters' if method == 'gl' else 'grad_steps'}={args.iters}")
    return sets


def with_inversion_args(cfg: Config, args: argparse.Namespace) -> Config:
    return apply_overrides(cfg, inversion_overrides(args, cfg))


# --- prepare / train -------------------------------------------------------------------------

def _setup_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="folder of audio for one domain (searched at any depth)")
    p.add_argument("output", type=Path, help="folder to write the cached mels to")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)


@command("prepare", "cache one domain's audio as normalised mels for training", _setup_prepare)
def _prepare(args: argparse.Namespace) -> int:
    from melganvc.fit import prepare_domain

    cfg = resolve_config(args)
    report = prepare_domain(cfg, args.source, args.output, progress=not args.no_progress)
    print(f"prepared {report.kept} files ({report.frames} frames) into {args.output}")
    return 0


def _setup_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, type=Path, help="domain A: audio folder or prepared cache")
    p.add_argument("--b", required=True, type=Path, help="domain B: audio folder or prepared cache")
    p.add_argument("--out", required=True, type=Path, help="run folder (config, checkpoints, logs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--max-minutes", type=float, help="stop cleanly with a checkpoint after this long")
    p.add_argument("--steps", type=int, help="total batches to train (train.steps)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(preset=None)  # _train tells "--preset given" (refused on --resume) from not


@command("train", "train a model from two folders of unpaired audio", _setup_train)
def _train(args: argparse.Namespace) -> int:
    from melganvc.checkpoint import CHECKPOINT_NAME, checkpoint_config, load_checkpoint
    from melganvc.fit import fit, training_corpora

    extra = [f"train.steps={args.steps}"] if args.steps else []
    extra += [f"train.max_minutes={args.max_minutes}"] if args.max_minutes else []
    if args.resume and (args.out / CHECKPOINT_NAME).is_file():
        cfg = checkpoint_config(load_checkpoint(args.out))  # resume with the run's own config
        cfg = apply_overrides(cfg, args.overrides + extra)
        _refuse_other_config(args, cfg, extra)
    else:
        args.preset = args.preset or DEFAULT_PRESET
        cfg = apply_overrides(resolve_config(args), extra)
    corpora = training_corpora(cfg, (args.a, args.b), args.out, progress=not args.no_progress)
    state = fit(cfg, corpora[0], corpora[1], args.out, resume=args.resume,
                progress=not args.no_progress)
    print(f"trained to step {state.step}; checkpoint: {args.out / CHECKPOINT_NAME}")
    return 0


def _refuse_other_config(args: argparse.Namespace, run_cfg: Config, extra: list[str]) -> None:
    """A resumed run keeps the config it was started with: ``--preset``/``--config`` may only
    restate it (same ``--set``/``--steps`` applied to both), never silently replace or be
    dropped; ``--set`` is the way to change a field of a resumed run."""
    from melganvc.fit import config_differences

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


# --- evaluate / demo ------------------------------------------------------------------------

def _setup_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", type=Path, action="append", default=[],
                   help="run folder or checkpoint to evaluate (repeat to compare several "
                        "against baselines computed once)")
    p.add_argument("--converted", type=Path, help="already-converted files (same names as --source)")
    p.add_argument("--source", required=True, type=Path, help="held-out source-speaker utterances")
    p.add_argument("--target", required=True, type=Path, help="target-speaker utterances")
    p.add_argument("--refs", type=Path, help="parallel target utterances (same names) for MCD/LSD")
    p.add_argument("--out", required=True, type=Path, help="report folder (report.json, report.html)")
    p.add_argument("--limit", type=int, help="evaluate at most this many source utterances")
    p.add_argument("--music", action="store_true",
                   help="not speech: skip speaker similarity and ASR (timbre, F0, MCD remain)")
    p.add_argument("--device", default="auto")
    add_inversion_args(p, "checkpoint")
    p.add_argument("--asr", choices=["whisper", "whisper-base", "pocketsphinx"], default="whisper",
                   help="recogniser for CER/WER: whisper (tiny.en, default), whisper-base "
                        "(the whisper-base extra), pocketsphinx (light; overstates content loss)")
    p.add_argument("--no-naturalness", dest="naturalness", action="store_false",
                   help="skip the DistillMOS naturalness judge")


@command("evaluate", "score a model: naturalness, speaker similarity, ASR error, MCD, F0, RTF "
         "vs baselines",
         _setup_evaluate)
def _evaluate(args: argparse.Namespace) -> int:
    from melganvc.checkpoint import checkpoint_config, load_checkpoint
    from melganvc.evaluate import run_evaluation, summary_lines

    if not args.ckpt and args.converted is None:
        raise UserError("evaluate needs --ckpt or --converted")
    if len(args.ckpt) > 1 and args.converted is not None:
        raise UserError("--converted scores one set of files: give at most one --ckpt with it")
    cfg = (checkpoint_config(load_checkpoint(args.ckpt[0])) if args.ckpt
           else preset_config("speech16k"))
    cfg = with_inversion_args(cfg, args)
    results = run_evaluation(cfg, ckpts=args.ckpt, source=args.source, target=args.target,
                             out=args.out, refs=args.refs, converted=args.converted,
                             limit=args.limit, device=args.device, speech=not args.music,
                             asr=args.asr, naturalness=args.naturalness)
    print("\n".join(summary_lines(results)))
    print(f"report: {args.out / 'report.html'}")
    return 0


def _setup_demo_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", type=Path, help="folder for the generated corpora")
    p.add_argument("--kind", choices=["voice", "music", "both"], default="voice")
    p.add_argument("--train", type=int, default=120, help="training utterances per domain")
    p.add_argument("--test", type=int, default=10, help="held-out utterances per domain")
    p.add_argument("--seed", type=int, default=0)


@command("demo-data", "generate offline demo corpora (two synthetic voices; two timbres)",
         _setup_demo_data)
def _demo_data(args: argparse.Namespace) -> int:
    from melganvc.demo_data import generate_music_demo, generate_voice_demo

    if args.kind in ("voice", "both"):
        generate_voice_demo(args.output, n_train=args.train, n_test=args.test, seed=args.seed)
        print(f"voice demo: {args.output / 'voice'}/{{A,B}}/{{train,test}}")
    if args.kind in ("music", "both"):
        generate_music_demo(args.output, n_train=args.train, n_test=args.test, seed=args.seed)
        print(f"music demo: {args.output / 'music'}/{{A,B}}/{{train,test}}")
    return 0


def _setup_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder")
    p.add_argument("--train", action="store_true",
                   help="train a model instead of using the bundled demo-voice model")
    p.add_argument("--minutes", type=float, help="training time budget (implies --train; "
                   "default 4)")
    p.add_argument("--steps", type=int, help="stop after this many batches (implies --train)")
    p.add_argument("--sentences", type=int, default=120, help="training sentences per voice")
    p.add_argument("--test", type=int, default=10, help="held-out sentences per voice")


@command("demo", "end to end on built-in data: demo voices -> (bundled or trained) model -> "
         "convert -> report",
         _setup_demo)
def _demo(args: argparse.Namespace) -> int:
    from melganvc.demo import run_demo

    train = args.train or args.minutes is not None or args.steps is not None
    run_demo(args.out, minutes=4.0 if args.minutes is None else args.minutes, steps=args.steps,
             n_train=args.sentences, n_test=args.test, train=train)
    return 0


# --- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    _import_command_modules()
    parser = argparse.ArgumentParser(prog="melganvc", description="Voice conversion and audio style transfer with GANs on mel-spectrograms (MelGAN-VC).")
    parser.add_argument("--version", action="version", version=f"melganvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, setup, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        setup(p)
        p.set_defaults(handler=handler)
    return parser


def _import_command_modules() -> None:
    """Subcommands defined outside this file register themselves on import."""
    import melganvc.cli_commands  # noqa: F401


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler, ``docker stop``), raised in the main thread like Ctrl-C,
    so every ``atomic_path`` removes its temp file and the command exits cleanly."""


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM like SIGINT while a command runs; the previous handler comes back after
    (``main`` may be called in-process). Outside the main thread signals cannot be handled."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            return int(args.handler(args) or 0)
        except UserError as exc:
            print(f"melganvc: error: {exc}", file=sys.stderr)
            return 2
        except Terminated:
            print("melganvc: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print("melganvc: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
