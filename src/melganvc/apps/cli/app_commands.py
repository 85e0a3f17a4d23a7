"""Subcommands that run whole applications: ``evaluate``, the demo, its data, and the
web page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from melganvc.apps.cli.options import (
    Command,
    add_inversion_args,
    with_inversion_args,
)
from melganvc.config import apply_overrides, preset_config
from melganvc.errors import UserError

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
                   help="not speech: skip speaker similarity, ASR and naturalness; add melody "
                        "preservation (timbre, seams, F0, MCD remain)")
    p.add_argument("--device", default="auto")
    add_inversion_args(p, "checkpoint")
    p.add_argument("--asr", choices=["whisper", "whisper-base", "pocketsphinx"], default="whisper",
                   help="recogniser for CER/WER: whisper (tiny.en, default), whisper-base "
                        "(the whisper-base extra), pocketsphinx (light; overstates content loss)")
    p.add_argument("--no-naturalness", dest="naturalness", action="store_false",
                   help="skip the DistillMOS naturalness judge")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="conversion.FIELD=VALUE",
                   help="convert with a conversion.* setting changed, e.g. "
                        "conversion.postfilter=1.3 (repeatable)")


def _evaluate(args: argparse.Namespace) -> int:
    from melganvc.evaluation.runner import run_evaluation, summary_lines
    from melganvc.io.checkpoint import checkpoint_config, load_checkpoint

    if not args.ckpt and args.converted is None:
        raise UserError("evaluate needs --ckpt or --converted")
    if len(args.ckpt) > 1 and args.converted is not None:
        raise UserError("--converted scores one set of files: give at most one --ckpt with it")
    cfg = (checkpoint_config(load_checkpoint(args.ckpt[0])) if args.ckpt
           else preset_config("speech16k"))
    bad = [s for s in args.overrides if not s.strip().startswith("conversion.")]
    if bad:
        raise UserError(f"--set {bad[0]}: evaluate changes only conversion.* settings "
                        "(the inversion: --inversion/--iters)")
    cfg = apply_overrides(with_inversion_args(cfg, args), args.overrides)  # as recorded
    results = run_evaluation(cfg, ckpts=args.ckpt, source=args.source, target=args.target,
                             out=args.out, refs=args.refs, converted=args.converted,
                             limit=args.limit, device=args.device, speech=not args.music,
                             asr=args.asr, naturalness=args.naturalness,
                             conversion=args.overrides)
    print("\n".join(summary_lines(results)))
    print(f"report: {args.out / 'report.html'}")
    return 0


def _setup_demo_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", type=Path, help="folder for the generated corpora")
    p.add_argument("--kind", choices=["voice", "music", "both", "instruments"], default="voice",
                   help="voice: two espeak-ng speakers; music: two additive-synthesis timbres; "
                        "both; instruments: scores played by sampled real instruments (piano, "
                        "strings, brass, jazz combo; 44.1 kHz stereo; needs fluidsynth, "
                        "fluid-soundfont-gm and the music extra)")
    p.add_argument("--train", type=int, help="training utterances per domain (instruments: "
                   "pieces, each up to six 8 s clips); default 120, instruments 40")
    p.add_argument("--test", type=int, help="held-out utterances per domain (instruments: "
                   "pieces, the same ones in every domain); default 10, instruments 6")
    p.add_argument("--seed", type=int, default=0)


def _demo_data(args: argparse.Namespace) -> int:
    from melganvc.apps.demo_data import (
        generate_instrument_corpus,
        generate_music_demo,
        generate_voice_demo,
    )

    if args.kind == "instruments":
        summary = generate_instrument_corpus(args.output,
                                             n_train=40 if args.train is None else args.train,
                                             n_test=6 if args.test is None else args.test,
                                             seed=args.seed)
        counts = ", ".join(f"{d} {c['train']}+{c['test']}" for d, c in summary["domains"].items())
        print(f"instruments: {summary['root']}/<domain>/{{train,test}} (clips {counts})")
        return 0
    n_train = 120 if args.train is None else args.train
    n_test = 10 if args.test is None else args.test
    if args.kind in ("voice", "both"):
        generate_voice_demo(args.output, n_train=n_train, n_test=n_test, seed=args.seed)
        print(f"voice demo: {args.output / 'voice'}/{{A,B}}/{{train,test}}")
    if args.kind in ("music", "both"):
        generate_music_demo(args.output, n_train=n_train, n_test=n_test, seed=args.seed)
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
    p.add_argument("--music", action="store_true",
                   help="the music demo: the bundled demo-music model (jazz combo -> string "
                        "ensemble) on held-out rendered pieces (needs fluidsynth) or --input")
    p.add_argument("--input", type=Path, action="append", default=[], metavar="FILE|DIR",
                   help="with --music: your own recordings to convert (repeatable)")


def _demo(args: argparse.Namespace) -> int:
    from melganvc.apps.demo import run_demo, run_music_demo

    if args.input and not args.music:
        raise UserError("--input is for the music demo (--music)")
    if args.music:
        if args.train or args.minutes is not None or args.steps is not None:
            raise UserError("the music demo uses the bundled model (no --train/--minutes/--steps)")
        out = args.out if args.out != Path("runs/demo") else Path("runs/demo-music")
        run_music_demo(out, args.input, n_test=min(args.test, 3))
        return 0
    train = args.train or args.minutes is not None or args.steps is not None
    run_demo(args.out, minutes=4.0 if args.minutes is None else args.minutes, steps=args.steps,
             n_train=args.sentences, n_test=args.test, train=train)
    return 0


# --- serve ------------------------------------------------------------------------------------


def _setup_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", type=Path, action="append", default=[],
                   help="also offer this run folder or checkpoint (repeatable)")
    p.add_argument("--runs", type=Path, default=Path("runs"),
                   help="offer the runs found in this folder (default: runs)")
    p.add_argument("--no-bundled", action="store_true", help="do not offer the bundled models")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-mb", type=float, default=50.0, help="largest upload (MB)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="longest upload (seconds)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")


def _serve(args: argparse.Namespace) -> int:
    from melganvc.apps.service import Catalog, ConversionService, Limits
    from melganvc.apps.webui import serve

    if args.max_mb <= 0 or args.max_seconds <= 0:
        raise UserError("--max-mb and --max-seconds must be positive")
    if not 0 < args.port < 65536:
        raise UserError("--port must be between 1 and 65535")
    catalog = Catalog(tuple(args.ckpt), args.runs, not args.no_bundled)
    if not catalog.models():  # before the service makes its work folder
        raise UserError(f"no models to serve: none bundled, no runs in {args.runs}, no --ckpt")
    service = ConversionService(catalog, Limits(args.max_mb, args.max_seconds),
                                device=args.device)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"melganvc: warning: serving on {args.host}: other machines can reach this page",
              file=sys.stderr)
    try:
        serve(service, args.host, args.port)
    finally:
        service.close()
    return 0


COMMANDS = (
    Command("evaluate", "score a model: naturalness, speaker similarity, ASR error, MCD, F0, RTF " "vs baselines", _setup_evaluate, _evaluate),
    Command("demo-data", "generate offline demo corpora (two synthetic voices; two timbres)", _setup_demo_data, _demo_data),
    Command("demo", "end to end on built-in data: demo voices -> (bundled or trained) model -> " "convert -> report", _setup_demo, _demo),
    Command("serve", "web page: upload or record audio, convert, listen, compare", _setup_serve, _serve),
)
