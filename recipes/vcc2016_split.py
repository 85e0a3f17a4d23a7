"""Make train/test folders (symlinks) for a VCC2016 speaker pair from ../shared/data/vcc2016.

Training sentences 100001-100030 go to train (A and B use disjoint halves, so training is
unpaired); evaluation sentences 200001-200005 go to test (parallel: same names = same text,
so the target's test folder doubles as --refs for MCD). A/extra holds the source speaker's 15
other training sentences, never trained on as A: a larger held-out source set whose parallel
references are in B/train.

    python recipes/vcc2016_split.py SF1 TM1 data/vcc_SF1_TM1
"""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcc2016"


def link(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / f.name
        if not target.exists():
            target.symlink_to(f)


def main(source: str, target: str, out: Path) -> None:
    if not SHARED.is_dir():
        sys.exit(f"vcc2016 data not found at {SHARED}")
    for role, speaker in (("A", source), ("B", target)):
        files = sorted((SHARED / speaker).glob("*.wav"))
        train = [f for f in files if f.name.startswith("1000")]
        half = train[0::2] if role == "A" else train[1::2]  # disjoint sentences: unpaired
        link(half, out / role / "train")
        if role == "A":  # A's recordings of B's training sentences: held out from A's training
            link(train[1::2], out / role / "extra")
        link([f for f in files if f.name.startswith("2000")], out / role / "test")
    print(f"wrote {out}/{{A,B}}/{{train,test}} and {out}/A/extra")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
