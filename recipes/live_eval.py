"""Convert a folder the way ``melganvc live`` does (device blocks of ``--block-ms``, the live
inversion blocks), without a sound card, so ``melganvc evaluate --converted`` can score what a
live listener hears; and print the model's latency table.

    python recipes/live_eval.py --ckpt runs/v22/live-SF1-TM1 \
        --source ../shared/data/vcc2016_full/SF1/eval --out runs/v22/live-converted

The noise gate is left out (it only silences pauses); outputs keep their inputs' names and
lengths (the pipeline's flush returns the tail a live stream would play next).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from melganvc.apps.live import latency_table, live_blocks
from melganvc.conversion.converter import Converter
from melganvc.io.audio import find_audio, load
from melganvc.io.audio_writer import save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--source", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--block-ms", type=float, default=16.0)
    args = p.parse_args()
    conv = Converter.from_checkpoint(args.ckpt, device="cpu")
    rate = conv.sample_rate
    block = round(args.block_ms * rate / 1000)
    compute = audio = 0.0
    for path in find_audio(args.source)[0]:
        x = load(path, rate)
        blocks, overlap = live_blocks(conv)
        stream = conv.stream(rate, block_frames=blocks, overlap_frames=overlap)
        start = time.perf_counter()
        pieces = [stream.push(x[i:i + block]) for i in range(0, x.size, block)]
        pieces.append(stream.flush())
        compute += time.perf_counter() - start
        audio += x.size / rate
        out = args.out / path.relative_to(args.source).with_suffix(".wav")
        save(out, np.concatenate(pieces), rate)
    table = latency_table(conv, rate, block)
    print(json.dumps({"ckpt": args.ckpt, "block_ms": args.block_ms, "rtf": compute / audio,
                      "latency_ms": {k: round(v, 1) for k, v in table.items()}}, indent=2))


if __name__ == "__main__":
    main()
