"""Make train/test folders for an FSDD speaker pair (8 kHz spoken digits, a low-resource case).

FSDD clips are 0.14-1.3 s, most shorter than one training crop (~0.86 s), so they are joined:

- train: the official train takes (index 5-49) in files of 10 clips with 0.1 s gaps; A uses
  the odd takes, B the even ones (different recordings; training never sees pairs);
- test: the official test takes (index 0-4), five digits per file ("0 1 2 3 4" and
  "5 6 7 8 9" of take i), the same sequence for both speakers, so B's test folder doubles as
  parallel ``--refs`` for MCD.

    python recipes/fsdd_split.py jackson lucas data/fsdd_jackson_lucas
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
RATE, GAP_S, PER_FILE = 8000, 0.1, 10


def clip(speaker: str, digit: int, take: int) -> np.ndarray:
    audio, rate = sf.read(SHARED / speaker / f"{digit}_{speaker}_{take}.wav", dtype="float32")
    assert rate == RATE, rate
    return audio


def join(clips: list[np.ndarray]) -> np.ndarray:
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    return np.concatenate([part for c in clips for part in (c, gap)][:-1])


def main(source: str, target: str, out: Path) -> None:
    if not SHARED.is_dir():
        sys.exit(f"FSDD data not found at {SHARED}")
    for role, speaker, parity in (("A", source, 1), ("B", target, 0)):
        takes = [(d, t) for t in range(5, 50) if t % 2 == parity for d in range(10)]
        train = out / role / "train"
        train.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(takes), PER_FILE):
            clips = [clip(speaker, d, t) for d, t in takes[i:i + PER_FILE]]
            sf.write(train / f"{speaker}_{i // PER_FILE:03d}.wav", join(clips), RATE)
        test = out / role / "test"
        test.mkdir(parents=True, exist_ok=True)
        for take in range(5):
            for first in (0, 5):
                clips = [clip(speaker, d, take) for d in range(first, first + 5)]
                sf.write(test / f"take{take}_digits{first}-{first + 4}.wav", join(clips), RATE)
    print(f"wrote {out}/{{A,B}}/{{train,test}}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
