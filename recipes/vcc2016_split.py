"""Make train/test folders (symlinks) for a VCC2016 speaker pair from ../shared/data/vcc2016.

Training sentences 100001-100030 go to train (A and B use disjoint halves, so training is
unpaired); evaluation sentences 200001-200005 go to test (parallel: same names = same text,
so the target's test folder doubles as --refs for MCD). A/extra holds the source speaker's 15
other training sentences, never trained on as A: a larger held-out source set whose parallel
references are in B/train.

With ``--all``, both speakers train on all 30 training sentences (twice the audio; still no
pairing is used, but the same texts occur on both sides) and there is no A/extra: only the
5 evaluation sentences are held out.

    python recipes/vcc2016_split.py SF1 TM1 data/vcc_SF1_TM1
    python recipes/vcc2016_split.py SF1 TM1 data/vcc_SF1_TM1_all --all
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


def main(source: str, target: str, out: Path, use_all: bool = False) -> None:
    if not SHARED.is_dir():
        sys.exit(f"vcc2016 data not found at {SHARED}")
    for role, speaker in (("A", source), ("B", target)):
        files = sorted((SHARED / speaker).glob("*.wav"))
        train = [f for f in files if f.name.startswith("1000")]
        half = train[0::2] if role == "A" else train[1::2]  # disjoint sentences: unpaired
        link(train if use_all else half, out / role / "train")
        if role == "A" and not use_all:  # A's recordings of B's training sentences: held out
            link(train[1::2], out / role / "extra")
        link([f for f in files if f.name.startswith("2000")], out / role / "test")
    print(f"wrote {out}/{{A,B}}/{{train,test}}" + ("" if use_all else f" and {out}/A/extra"))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--all"]
    if len(args) != 3:
        sys.exit(__doc__)
    main(args[0], args[1], Path(args[2]), use_all="--all" in sys.argv[1:])
