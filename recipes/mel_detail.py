"""How much detail converted mels keep, against the target speaker's real mels of the same
sentences: per quarter of the mel bands, the mean |frame-to-frame| change (time detail), the
mean |band-to-band| change (harmonic and formant detail) and the per-band std over time, over
active frames (within 40 dB of each utterance's peak). Over-smoothed output scores below the
real speech. Prints JSON (docs/results.md, "What the converted mels lack").

    python recipes/mel_detail.py --ckpt runs/full/SF1_TM1 \\
        --source ../shared/data/vcc2016_full/SF1/eval --target ../shared/data/vcc2016_full/TM1/eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from melganvc import Converter
from melganvc.io.audio import find_audio, load

ACTIVE = 0.8  # normalised units below the loudest frame: 2.0 span 100 dB, so 0.8 is 40 dB


def detail(mel: np.ndarray) -> dict[str, np.ndarray]:
    """Per-band detail statistics of one normalised mel ``(n_mels, frames)``."""
    level = mel.mean(0)
    active = mel[:, level > level.max() - ACTIVE]
    freq = np.abs(np.diff(active, axis=0)).mean(1)
    return {"time_delta": np.abs(np.diff(active, axis=1)).mean(1),
            "freq_delta": np.append(freq, freq[-1]), "std": active.std(1)}


def by_quarter(rows: list[dict[str, np.ndarray]]) -> dict[str, list[float]]:
    out = {}
    for key in rows[0]:
        mean = np.mean([r[key] for r in rows], axis=0)
        out[key] = [round(float(mean[b].mean()), 4) for b in np.array_split(np.arange(mean.size), 4)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--source", required=True, type=Path, help="held-out source utterances")
    ap.add_argument("--target", required=True, type=Path, help="the target reading them (same names)")
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    conv = Converter.from_checkpoint(args.ckpt, device="cpu")
    rate = conv.sample_rate
    rows: dict[str, list[dict[str, np.ndarray]]] = {"converted": [], "target": [], "source": []}
    for path in find_audio(args.source)[0][: args.limit]:
        reference = args.target / path.relative_to(args.source)
        if not reference.is_file():
            continue
        source = conv.mel(torch.from_numpy(load(path, rate)))
        mels = {"source": source, "converted": torch.as_tensor(conv.convert_mel(source)),
                "target": conv.mel(torch.from_numpy(load(reference, rate)))}
        for name, mel in mels.items():
            rows[name].append(detail(mel.numpy()))
    print(json.dumps({name: by_quarter(r) for name, r in rows.items() if r}, indent=1))


if __name__ == "__main__":
    main()
