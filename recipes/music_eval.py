"""Music models on held-out rendered pieces and on real recordings, as users would run them.

    python recipes/music_eval.py --run runs/v21/jazz2strings-22k --source jazz --target strings \
        --corpus data/music/instruments --real jazz folk --out runs/v21/eval-jazz2strings

For each source set (the held-out rendered pieces of ``--source``, then each folder of
../shared/data/music_real named in ``--real``), the files are converted with ``melganvc convert``
(FLAC at the input's rate and channel count: 44.1 kHz stereo), then scored with ``melganvc
evaluate --music --converted`` against the held-out rendered pieces of ``--target`` (timbre,
melody, seams; for rendered pieces also the parallel target rendering: ``oracle_parallel``).
The stereo image is compared band by band: the mean |ILD| error (dB, energy-weighted) between
source and output, against the error of a mono output (channels equal). One JSON table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from melganvc.dsp.stereo import band_index, frame_size
from melganvc.evaluation.spectral import stft_power
from melganvc.io.files import atomic_write_text

MUSIC_REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "music_real"
KEYS = ("timbre_target", "timbre_source", "timbre_accept", "melody", "seam", "mcd")


def melganvc(*args: str) -> float:
    """Run the CLI (as a user would); return its wall time."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "melganvc", *args], check=True)
    return time.perf_counter() - started


def band_ild(stereo: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and band: the inter-channel level difference (dB) and the band energy."""
    n = frame_size(rate)
    bands = band_index(n, rate)
    member = (np.arange(bands.max() + 1)[None, :] == bands[:, None]).astype(float)
    left, right = (stft_power(stereo[:, c], n, n, n // 2) @ member for c in (0, 1))
    return 10 * np.log10((left + 1e-12) / (right + 1e-12)), left + right


def stereo_error(source: Path, converted: Path) -> dict[str, float] | None:
    """Energy-weighted mean |ILD(source) - ILD(output)| (dB), and the same for a mono output."""
    src, rate = sf.read(str(source), dtype="float32", always_2d=True)
    out, _ = sf.read(str(converted), dtype="float32", always_2d=True)
    if src.shape[1] != 2:
        return None
    ild_src, energy = band_ild(src, rate)
    weight = energy / energy.sum()
    frames = min(len(ild_src), len(out) // (frame_size(rate) // 2) + 1)
    ild_out = band_ild(out, rate)[0] if out.shape[1] == 2 else np.zeros_like(ild_src)
    error = float(np.sum(weight[:frames] * np.abs(ild_src[:frames] - ild_out[:frames])))
    return {"ild_error_db": error,
            "ild_error_db_mono": float(np.sum(weight * np.abs(ild_src)))}


def score(run: Path, name: str, source: Path, target: Path, refs: Path | None,
          out: Path) -> dict:
    """Convert ``source`` with ``run``, evaluate, and measure the stereo image."""
    converted = out / name / "converted"
    seconds = melganvc("convert", str(source), "--ckpt", str(run), "--out", str(converted),
                       "--format", "flac", "--overwrite", "--no-progress")
    args = ["evaluate", "--ckpt", str(run), "--converted", str(converted), "--source",
            str(source), "--target", str(target), "--out", str(out / name / "report"),
            "--music"]
    melganvc(*args, *(["--refs", str(refs)] if refs else []))
    report = json.loads((out / name / "report" / "report.json").read_text())
    rows = {system: {k: report["systems"][system]["mean"].get(k) for k in KEYS}
            for system in report["systems"]}
    inputs = sorted(p for p in source.rglob("*") if p.suffix in (".flac", ".ogg", ".wav"))
    stereo = [e for p in inputs
              if (e := stereo_error(p, converted / p.relative_to(source).with_suffix(".flac")))]
    duration = sum(sf.info(str(p)).duration for p in inputs)
    return {"files": len(inputs), "seconds": round(duration, 1), "systems": rows,
            "convert_wall_s": round(seconds, 1),
            "stereo": {k: float(np.mean([e[k] for e in stereo])) for k in stereo[0]}
            if stereo else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--corpus", required=True, type=Path, help="the instruments corpus folder")
    p.add_argument("--source", required=True, help="source domain (e.g. jazz)")
    p.add_argument("--target", required=True, help="target domain (e.g. strings)")
    p.add_argument("--real", nargs="*", default=[], help="music_real folders to convert")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    target = args.corpus / args.target / "test"
    table = {"run": str(args.run), "rendered": score(args.run, "rendered",
                                                     args.corpus / args.source / "test", target,
                                                     target, args.out)}
    for folder in args.real:
        if not (MUSIC_REAL / folder).is_dir():
            print(f"skipped real/{folder}: {MUSIC_REAL / folder} not found", file=sys.stderr)
            continue
        table[f"real/{folder}"] = score(args.run, f"real-{folder}", MUSIC_REAL / folder, target,
                                        None, args.out)
    atomic_write_text(args.out / "music_eval.json", json.dumps(table, indent=2) + "\n")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
