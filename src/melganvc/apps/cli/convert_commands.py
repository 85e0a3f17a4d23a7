"""Subcommands that use a trained model: ``convert``, ``stream``, the exports and the
bundled-model list."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from melganvc.apps.cli.options import (
    Command,
    add_model_args,
    converter_payload,
    load_converter,
)
from melganvc.errors import UserError

# --- convert ----------------------------------------------------------------------------------


def _setup_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN",
                   help="audio files or folders (searched at any depth, tree mirrored)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", choices=["wav", "flac"], default="wav",
                   help="output format: wav (float) or flac (16-bit)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="convert on a Ray cluster (the cluster extra): ADDRESS of a running "
                        "one (e.g. 10.0.0.5:6379 or auto), or none to start a local instance")
    p.add_argument("--workers", type=int, default=2, help="with --ray: converters at once")
    p.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="with --ray: CPUs (torch threads) per converter")
    p.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="with --ray: GPUs per converter (its model runs on CUDA when > 0)")
    add_model_args(p)


def _convert(args: argparse.Namespace) -> int:
    from melganvc.conversion.batch import BatchReport, no_jobs_message, plan_jobs, run_batch

    def warn(message: str) -> None:
        print(message, file=sys.stderr)

    if args.ray is None and (args.workers != 2 or args.cpus_per_worker != 1.0
                             or args.gpus_per_worker != 0.0):
        raise UserError("--workers, --cpus-per-worker and --gpus-per-worker go with --ray")
    converter = load_converter(args) if args.ray is None else None
    report = BatchReport()
    jobs = plan_jobs(args.inputs, args.out, "." + args.format, report, warn)
    if not jobs and not report.failed:
        raise UserError(no_jobs_message(args.inputs, args.out, report))
    if converter is None:
        _convert_on_ray(args, jobs, report, warn)
    else:
        run_batch(converter, jobs, report, overwrite=args.overwrite,
                  progress=not args.no_progress, log=warn)
    print(report.summary(args.out))
    return 1 if report.failed else 0


def _convert_on_ray(args: argparse.Namespace, jobs: list, report: Any,
                    warn: Callable[[str], None]) -> None:
    """``convert --ray``: the checkpoint goes to the workers through Ray's object store."""
    from melganvc.conversion.cluster import ClusterOptions, run_ray_batch

    payload, options = converter_payload(args)
    options["device"] = "cuda" if args.gpus_per_worker > 0 else "cpu"  # each worker's own
    cluster = ClusterOptions(args.ray or None, args.workers, args.cpus_per_worker,
                             args.gpus_per_worker)
    run_ray_batch(payload, options, jobs, report, cluster, overwrite=args.overwrite,
                  progress=not args.no_progress, log=warn)


# --- stream -----------------------------------------------------------------------------------


def _setup_stream(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="audio file, read in real-time-sized blocks")
    p.add_argument("output", type=Path, help="output .wav or .flac")
    p.add_argument("--block-ms", type=float, default=100.0, help="input block length (ms)")
    p.add_argument("--block-frames", type=int, default=64,
                   help="inversion block (frames): smaller = lower latency, slower")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_model_args(p)


def _stream(args: argparse.Namespace) -> int:
    from melganvc.conversion.batch import same_file
    from melganvc.io.audio import audio_info, iter_blocks
    from melganvc.io.audio_writer import AudioWriter

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


# --- live -------------------------------------------------------------------------------------


def _setup_live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input", help="input device (number or name; default: the system's)")
    p.add_argument("--output", help="output device (number or name; default: the system's)")
    p.add_argument("--block-ms", type=float, default=20.0, help="audio block length (ms)")
    p.add_argument("--rate", type=int, help="device sample rate (default: the model's)")
    p.add_argument("--gate-db", type=float, default=-45.0,
                   help="noise gate: input below this level (dBFS) gives silence, not babble")
    p.add_argument("--no-gate", action="store_true", help="convert everything, room noise too")
    p.add_argument("--seconds", type=float,
                   help="stop after this much input audio (default: Ctrl-C)")
    p.add_argument("--buffer-ms", type=float, default=0.0,
                   help="at least this much output buffer (default: sized by a warm-up); more "
                        "latency, fewer dropouts on a busy machine")
    p.add_argument("--record-input", type=Path, help="also write the microphone to this file")
    p.add_argument("--record-output", type=Path, help="also write the converted audio here")
    p.add_argument("--latency-table", action="store_true",
                   help="print the latency of each stage and exit")
    p.add_argument("--ckpt", type=Path, help="run folder, checkpoint or bundled model name")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE",
                   help="override an inversion.* or conversion.* setting, e.g. "
                        "conversion.postfilter=1 (a model saved with the postfilter on: "
                        "360 ms less latency)")


def _device_arg(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def _live(args: argparse.Namespace) -> int:
    from melganvc.apps.live import latency_table, list_devices, print_status, run_live
    from melganvc.conversion.converter import Converter
    from melganvc.device import set_cpu_threads

    if args.list_devices:
        print(list_devices())
        return 0
    if args.ckpt is None:
        raise UserError("live needs --ckpt (a run folder, checkpoint or bundled model name)")
    if args.block_ms <= 0 or (args.seconds is not None and args.seconds <= 0) \
            or args.buffer_ms < 0:
        raise UserError("--block-ms and --seconds must be positive, --buffer-ms not negative")
    for path in (args.record_input, args.record_output):
        if path is not None and path.suffix.lower() not in (".wav", ".flac"):
            raise UserError(f"{path}: recordings are .wav or .flac")
    if args.threads is None:  # small blocks gain nothing from a thread team, and the audio
        set_cpu_threads(1)    # callback needs a core (measured: docs/live.md)
    converter = Converter.from_checkpoint(args.ckpt, device=args.device,
                                          inversion=args.overrides or None)
    rate = args.rate or converter.sample_rate
    block = max(1, round(args.block_ms * rate / 1000))
    if args.latency_table:
        for stage, ms in latency_table(converter, rate, block).items():
            print(f"{stage:16s} {ms:8.1f} ms")
        return 0
    stats = run_live(converter, input_device=_device_arg(args.input),
                     output_device=_device_arg(args.output), block_ms=args.block_ms,
                     sample_rate=rate, gate_db=None if args.no_gate else args.gate_db,
                     seconds=args.seconds, record_input=args.record_input,
                     record_output=args.record_output, buffer_ms=args.buffer_ms,
                     status=print_status)
    print(f"\n{stats.seconds:.1f} s live; latency {stats.latency_ms:.0f} ms + "
          f"{stats.device_latency_ms:.0f} ms devices; RTF {stats.rtf:.3f}; dropouts "
          f"{stats.dropouts}; xruns {stats.xruns}" + "".join(f"; {n}" for n in stats.notes))
    return 0


# --- export-onnx ------------------------------------------------------------------------------


def _setup_export_onnx(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("output", type=Path, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-ema", action="store_true", help="export the raw generator, not its EMA")


def _export_onnx(args: argparse.Namespace) -> int:
    from melganvc.conversion.converter import Converter
    from melganvc.conversion.export import export_onnx

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


def _export_generator(args: argparse.Namespace) -> int:
    import torch

    from melganvc.conversion.export import save_generator

    dtype = torch.float32 if args.fp32 else torch.float16
    path = save_generator(args.output, args.ckpt, dtype=dtype, use_ema=not args.no_ema)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB); convert with --ckpt {path}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from melganvc.io.pretrained import bundled_models, model_card

    for name, path in bundled_models().items():
        title = next((line.lstrip("# ") for line in model_card(name).splitlines() if line), "")
        print(f"{name:<14} {path.stat().st_size / 2**20:5.1f} MB  {title}")
    return 0


COMMANDS = (
    Command("convert", "convert audio files or folders with a trained model", _setup_convert, _convert),
    Command("stream", "convert a file block by block as a real-time stream would; print latency", _setup_stream, _stream),
    Command("live", "microphone -> conversion -> speakers in real time (latency, RTF, "
            "dropouts shown)", _setup_live, _live),
    Command("export-onnx", "export the generator as ONNX (dynamic batch and frames)", _setup_export_onnx, _export_onnx),
    Command("export-generator", "write a small generator-only checkpoint to share or bundle", _setup_export_generator, _export_generator),
    Command("models", "list the bundled pretrained models (usable as --ckpt NAME)", lambda p: None, _models),
)
