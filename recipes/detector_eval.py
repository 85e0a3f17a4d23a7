"""Held-out evaluation of a converted-audio detector, one row per transformation.

    python recipes/detector_eval.py --corpus data/detector --out runs/v20/detector_eval.json \
        [--model DETECTOR.pt]

Test audio (made by recipes/detector_corpus.py): real VCC2016 SM1/TM2 and FSDD nicolas (never
in training) vs conversions of the same speakers by models never seen in training (another
seed, another preset: ``unseen-models``) and by training systems (``seen-models``). Each
transformation is applied alone to every test file. False-positive rates at the detector's own
threshold are also given for real audio of other corpora: three LibriSpeech utterances and the
real music recordings of ../shared/data/music_real (each file judged whole).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from melganvc.detection import Detector
from melganvc.detection.metrics import equal_error_rate, rate_at
from melganvc.detection.transforms import TRANSFORMS
from melganvc.errors import AudioError
from melganvc.io.audio import find_audio, load
from melganvc.io.files import atomic_write_text

MUSIC_REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "music_real"


def _scores(detector: Detector, files: list[Path], transform: str, seed: int
            ) -> dict[str, np.ndarray]:
    """Scores of ``files`` after ``transform``, by folder (speaker or system); files the
    detector cannot judge (silent, or shorter than ``min_seconds``) are left out and named."""
    rate = detector.config.sample_rate
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {}
    for f in files:
        try:
            score = detector.score(TRANSFORMS[transform](load(f, rate), rate, rng), rate)
        except AudioError as exc:
            print(f"left out: {f}: {exc.reason}")
            continue
        scores.setdefault(f.parent.name, []).append(score)
    return {name: np.array(v) for name, v in scores.items()}


def _all(scores: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(list(scores.values())) if scores else np.zeros(0)


def _row(detector: Detector, groups: dict[str, list[Path]], transform: str) -> dict[str, object]:
    s = {name: _scores(detector, files, transform, seed=i)
         for i, (name, files) in enumerate(groups.items())}
    t = detector.config.threshold
    real = _all(s["real"])
    row: dict[str, object] = {"transform": transform}
    for fake in ("unseen", "seen"):
        row[f"eer_{fake}"] = equal_error_rate(real, _all(s[fake]))[0]
        row[f"miss_{fake}"] = 1.0 - rate_at(_all(s[fake]), t)
    row["eer_all"] = equal_error_rate(real, np.concatenate([_all(s["unseen"]), _all(s["seen"])]))[0]
    row["fpr_real"] = rate_at(real, t)
    for other in ("librispeech", "music"):
        if groups.get(other):
            row[f"fpr_{other}"] = rate_at(_all(s[other]), t)
    row["miss_by_system"] = {name: round(1.0 - rate_at(v, t), 4)
                             for fake in ("unseen", "seen") for name, v in s[fake].items()}
    row["fpr_by_speaker"] = {name: round(rate_at(v, t), 4) for name, v in s["real"].items()}
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, help="detector checkpoint (default: the bundled one)")
    ap.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=list(TRANSFORMS))
    args = ap.parse_args(argv)
    detector = Detector.load(args.model)
    test = args.corpus / "test"
    groups = {"real": find_audio(test / "real")[0],
              "unseen": find_audio(test / "fake" / "unseen-models")[0],
              "seen": find_audio(test / "fake" / "seen-models")[0],
              "librispeech": find_audio(MUSIC_REAL / "speech_librispeech")[0] if MUSIC_REAL.is_dir() else [],
              "music": [f for d in ("classical", "jazz", "folk") if (MUSIC_REAL / d).is_dir()
                        for f in find_audio(MUSIC_REAL / d)[0]]}
    start = time.time()
    rows = []
    for name in args.transforms:
        rows.append(_row(detector, groups, name))
        print(json.dumps(rows[-1]), flush=True)
    report = {"detector": detector.source, "threshold": detector.config.threshold,
              "files": {k: len(v) for k, v in groups.items()},
              "systems": {"unseen": sorted({p.parent.name for p in groups["unseen"]}),
                          "seen": sorted({p.parent.name for p in groups["seen"]})},
              "rows": rows, "seconds": round(time.time() - start, 1)}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
