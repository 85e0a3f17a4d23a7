"""``detect`` (is this audio converted?) and ``train-detector``.

``detect`` exit status, for scripts: 0 = every file judged real; 1 = at least one file judged
converted; 2 = no file judged converted but some could not be read or judged (or a usage
error).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from melganvc.apps.cli.options import Command
from melganvc.config import DetectorConfig
from melganvc.errors import UserError

FLAGGED, ERRORS = 1, 2


def _setup_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path, metavar="FILE|DIR",
                   help="audio files, or folders searched for audio at any depth")
    p.add_argument("--model", type=Path, help="a train-detector checkpoint (default: the bundled "
                                              "detector)")
    p.add_argument("--threshold", type=float,
                   help="probability from which a file is called converted (default: the "
                        "detector's, chosen at its held-out equal error rate)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _files(inputs: list[Path]) -> list[Path]:
    from melganvc.io.audio import find_audio

    files: list[Path] = []
    for item in inputs:
        files.extend(find_audio(item)[0] if item.is_dir() else [item])
    return files


def _detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from melganvc.detection import Detector
    from melganvc.errors import AudioError

    detector = Detector.load(args.model)
    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            raise UserError("--threshold must be between 0 and 1")
        detector.config = dataclasses.replace(detector.config, threshold=args.threshold)
    files = _files(args.inputs)
    if not files:
        raise UserError(f"no audio files in {', '.join(map(str, args.inputs))}")
    results: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    bar = tqdm(files, unit="file", disable=args.no_progress or len(files) < 2, file=sys.stderr,
               leave=False)
    for path in bar:
        try:
            found = detector.detect_file(path).as_dict()
        except AudioError as exc:  # one line; the other files are still judged
            errors.append({"path": str(path), "error": exc.reason})
            if not args.json:
                bar.write(f"melganvc: error: {exc}", file=sys.stderr)
            continue
        results.append(found)
        if not args.json:
            bar.write(_line(found))
    flagged = sum(r["converted"] for r in results)
    summary = {"files": len(files), "converted": flagged, "real": len(results) - flagged,
               "errors": len(errors), "threshold": detector.config.threshold}
    if args.json:
        print(json.dumps({"detector": detector.source, "results": results, "errors": errors,
                          "summary": summary}, indent=2))
    else:
        print(f"{len(files)} file(s): {flagged} converted, {len(results) - flagged} real, "
              f"{len(errors)} error(s) (threshold {detector.config.threshold:.3f})")
    return FLAGGED if flagged else ERRORS if errors else 0


def _line(result: dict[str, Any]) -> str:
    verdict = "CONVERTED" if result["converted"] else "real"
    tag = "  [melganvc tag]" if result["tagged"] else ""
    return f"{verdict:<9} {result['probability']:.3f}  {result['path']}{tag}"


def _setup_train_detector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real", type=Path, action="append", required=True,
                   help="folder of real recordings (repeatable; sub-folders = speakers)")
    p.add_argument("--converted", type=Path, action="append", required=True,
                   help="folder of converted or resynthesised audio (repeatable; sub-folders = "
                        "systems)")
    p.add_argument("--out", type=Path, required=True, help="detector checkpoint to write (.pt)")
    p.add_argument("--epochs", type=int,
                   help=f"passes over the data (default {DetectorConfig.epochs})")
    p.add_argument("--seed", type=int, help=f"random seed (default {DetectorConfig.seed})")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop after the epoch that passes this time (0 = no limit)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a detector setting, e.g. --set batch_size=16 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _train_detector(args: argparse.Namespace) -> int:
    from melganvc.config import detector_config, override_fields
    from melganvc.detection.training import train_detector

    if args.out.exists() and not args.overwrite:
        raise UserError(f"{args.out}: exists (use --overwrite to replace it)")
    fields = override_fields(args.overrides)
    fields |= {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    metrics = train_detector(args.real, args.converted, args.out, detector_config(fields),
                             max_minutes=args.max_minutes, progress=not args.no_progress)
    print(f"detector: {args.out} (held-out EER {100 * metrics['held_out_eer']:.2f}% at "
          f"threshold {metrics['threshold']:.3f}, epoch {metrics['epoch']})")
    return 0


COMMANDS = (
    Command("detect", "is this audio converted? probability, verdict and provenance tag per "
                      "file", _setup_detect, _detect),
    Command("train-detector", "train a converted-audio detector from folders of real and "
                              "converted audio", _setup_train_detector, _train_detector),
)
