"""Subcommands that live beside the core ones in ``cli.py`` (conversion, evaluation, demo)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from melganvc.cli import add_inversion_args, command, inversion_overrides
from melganvc.errors import UserError

# --- shared model options -----------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--overlap", help="chunk overlap: frames, a fraction of a chunk up to 0.5, or "
                                     "0 for the reference (back-to-back chunks); default 0.5")
    add_inversion_args(p, "checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="inversion.FIELD=VALUE", help="override an inversion setting")


def load_converter(args: argparse.Namespace):
    from melganvc.checkpoint import checkpoint_config, load_checkpoint
    from melganvc.convert import Converter

    payload = load_checkpoint(args.ckpt, map_location="cpu")
    sets = list(args.overrides) + inversion_overrides(args, checkpoint_config(payload))
    return Converter.from_payload(payload, device=args.device, use_ema=not args.no_ema,
                                  inversion=sets or None, source=str(args.ckpt),
                                  overlap=args.overlap)


# --- convert ----------------------------------------------------------------------------------


def _setup_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN",
                   help="audio files or folders (searched at any depth, tree mirrored)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", choices=["wav", "flac"], default="wav",
                   help="output format: wav (float) or flac (16-bit)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)


@command("convert", "convert audio files or folders with a trained model", _setup_convert)
def _convert(args: argparse.Namespace) -> int:
    from melganvc.batch import BatchReport, no_jobs_message, plan_jobs, run_batch

    def warn(message: str) -> None:
        print(message, file=sys.stderr)

    converter = load_converter(args)
    report = BatchReport()
    jobs = plan_jobs(args.inputs, args.out, "." + args.format, report, warn)
    if not jobs and not report.failed:
        raise UserError(no_jobs_message(args.inputs, args.out, report))
    run_batch(converter, jobs, report, overwrite=args.overwrite,
              progress=not args.no_progress, log=warn)
    print(report.summary(args.out))
    return 1 if report.failed else 0


# --- stream -----------------------------------------------------------------------------------


def _setup_stream(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="audio file, read in real-time-sized blocks")
    p.add_argument("output", type=Path, help="output .wav or .flac")
    p.add_argument("--block-ms", type=float, default=100.0, help="input block length (ms)")
    p.add_argument("--block-frames", type=int, default=64,
                   help="inversion block (frames): smaller = lower latency, slower")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_model_args(p)


@command("stream", "convert a file block by block as a real-time stream would; print latency",
         _setup_stream)
def _stream(args: argparse.Namespace) -> int:
    from melganvc.audio import AudioWriter, audio_info, iter_blocks
    from melganvc.batch import same_file

    if args.block_ms <= 0:
        raise UserError("--block-ms must be positive")
    if same_file(args.input, args.output):
        raise UserError(f"{args.output}: is the input itself; choose another output")
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output} exists (use --overwrite)")
    converter = load_converter(args)
    rate, frames = audio_info(args.input)
    stream = converter.stream(rate, block_frames=args.block_frames)
    slowest, start = 0.0, time.perf_counter()
    with stream, AudioWriter(args.output, rate, overwrite=args.overwrite) as writer:
        for block in iter_blocks(args.input, rate, block_seconds=args.block_ms / 1000):
            tick = time.perf_counter()
            writer.write(stream.push(block))
            slowest = max(slowest, time.perf_counter() - tick)
        writer.write(stream.flush())
    elapsed, seconds = time.perf_counter() - start, frames / rate
    print(f"latency {stream.latency_ms:.1f} ms ({stream.latency_samples} samples at {rate} Hz); "
          f"RTF {elapsed / seconds:.3f}; slowest block {1000 * slowest:.1f} ms "
          f"(blocks of {args.block_ms:g} ms); wrote {args.output}")
    return 0


# --- export-onnx ------------------------------------------------------------------------------


def _setup_export_onnx(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("output", type=Path, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-ema", action="store_true", help="export the raw generator, not its EMA")


@command("export-onnx", "export the generator as ONNX (dynamic batch and frames)",
         _setup_export_onnx)
def _export_onnx(args: argparse.Namespace) -> int:
    from melganvc.convert import Converter, export_onnx

    converter = Converter.from_checkpoint(args.ckpt, device="cpu", use_ema=not args.no_ema)
    export_onnx(converter, args.output, opset=args.opset)
    cfg = converter.config
    print(f"wrote {args.output}: input 'mel' (batch, {cfg.features.n_mels}, frames), frames a "
          f"multiple of 4; trained on chunks of {cfg.model.chunk_frames} frames")
    return 0


# --- export-generator / models ----------------------------------------------------------------


def _setup_export_generator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("output", type=Path, help="output .pt (generator only, half precision)")
    p.add_argument("--no-ema", action="store_true", help="export the raw generator, not its EMA")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")


@command("export-generator", "write a small generator-only checkpoint to share or bundle",
         _setup_export_generator)
def _export_generator(args: argparse.Namespace) -> int:
    import torch

    from melganvc.convert import save_generator

    dtype = torch.float32 if args.fp32 else torch.float16
    path = save_generator(args.output, args.ckpt, dtype=dtype, use_ema=not args.no_ema)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB); convert with --ckpt {path}")
    return 0


@command("models", "list the bundled pretrained models (usable as --ckpt NAME)",
         lambda p: None)
def _models(args: argparse.Namespace) -> int:
    from melganvc.pretrained import bundled_models, model_card

    for name, path in bundled_models().items():
        title = next((line.lstrip("# ") for line in model_card(name).splitlines() if line), "")
        print(f"{name:<14} {path.stat().st_size / 2**20:5.1f} MB  {title}")
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


@command("serve", "web page: upload or record audio, convert, listen, compare", _setup_serve)
def _serve(args: argparse.Namespace) -> int:
    from melganvc.serve import Catalog, ConversionService, Limits
    from melganvc.webui import serve

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
