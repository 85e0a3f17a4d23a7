"""A folder of links to the first audio files of a folder (sorted names) whose durations add up
to at least N minutes: the 1- and 3-minute training sets of docs/results.md ("how much data").

    python recipes/data_subset.py ../shared/data/vcc2016_full/SF1/train data/amount/SF1_3min --minutes 3
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import soundfile as sf

from melganvc.io.audio import find_audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="folder of audio files")
    p.add_argument("out", type=Path, help="new folder of links (must be empty or absent)")
    p.add_argument("--minutes", type=float, required=True)
    args = p.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"data_subset: {args.out} is not empty")
    files = sorted(find_audio(args.source)[0])
    args.out.mkdir(parents=True, exist_ok=True)
    seconds, count = 0.0, 0
    for f in files:
        if seconds >= 60 * args.minutes:
            break
        link = args.out / f.name
        if link.exists():
            sys.exit(f"data_subset: two files named {f.name} under {args.source}")
        os.symlink(f.resolve(), link)
        seconds += sf.info(f).duration
        count += 1
    print(f"{count} files, {seconds / 60:.2f} minutes -> {args.out}")


if __name__ == "__main__":
    main()
