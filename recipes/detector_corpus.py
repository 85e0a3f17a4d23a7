"""Build the converted-audio detector's corpus: real speech vs this toolkit's conversions and
resyntheses, split so the test set has speakers and models the detector never saw.

    python recipes/detector_corpus.py --runs runs/v19 --extra runs/v20 --out data/detector

Layout (every file a FLAC, real ones symlinks into ../shared/data, so nothing is copied):

    OUT/train/real/<speaker>/…      OUT/train/fake/<system>/…
    OUT/test/real/<speaker>/…       OUT/test/fake/{unseen-models,seen-models}/<system>/…

Train speakers: VCC2016 SF1 SF2 TF1 TM1 (all 162 train/ files), FSDD george jackson lucas, AISHELL
S0913. Test speakers: VCC2016 SM1 TM2 (eval/ files) and FSDD nicolas. A *system* is a model
(or no model: resynthesis) plus an inversion. Test systems under ``unseen-models`` come from
models trained with another seed or another preset than any training system. ``--music`` adds
real music pieces (Debian's ``hyperrogue-music``) and music systems to the training half (the
bundled detector was trained without them: docs/detector.md, v3). Idempotent: a
rerun only makes what is missing (so a model that finished training later can be added).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from melganvc.config import preset_config
from melganvc.conversion.converter import Converter
from melganvc.io.audio import find_audio, load
from melganvc.io.audio_writer import save

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VCC = DATA / "vcc2016_full"
FSDD = DATA / "fsdd"
AISHELL = DATA / "aishell1_s0913" / "S0913"

# Real produced music (Debian's hyperrogue-music, CC BY-SA 3.0; `apt-get install
# hyperrogue-music`), cut into 10 s pieces, so the detector learns that music is not a cue.
HYPERROGUE = Path("/usr/share/hyperrogue/music")
MUSIC_PIECE_S = 10.0
MUSIC_SYSTEMS = [
    ("music-resynth-reference-gl", None, "reference", "gl"),
    ("music-resynth-hifigan-hifigan", None, "hifigan", "hifigan"),
    ("music-resynth-music22k-gl", None, "music22k", "gl"),
    ("music-demo-music-gl", "demo-music", None, "gl"),
]
TRAIN_SPEAKERS = {f"vcc-{s}": VCC / s / "train" for s in ("SF1", "SF2", "TF1", "TM1")} | \
    {f"fsdd-{s}": FSDD / s for s in ("george", "jackson", "lucas")} | {"aishell-S0913": AISHELL}
TEST_SPEAKERS = {f"vcc-{s}": VCC / s / "eval" for s in ("SM1", "TM2")} | {"fsdd-nicolas": FSDD / "nicolas"}

# (system name, checkpoint relative to --runs/--extra or a bundled name or None = resynthesis,
#  preset for resynthesis, inversion)
TRAIN_SYSTEMS = [
    ("resynth-reference-gl", None, "reference", "gl"),
    ("resynth-reference-grad", None, "reference", "grad"),
    ("resynth-hifigan-hifigan", None, "hifigan", "hifigan"),
    ("resynth-hifigan-gl", None, "hifigan", "gl"),
    ("resynth-speech8k-gl", None, "speech8k", "gl"),
    ("hifigan-SF1-TM1-hifigan", "runs:hifigan-SF1-TM1", None, "hifigan"),
    ("hifigan-SF1-TM1-gl", "runs:hifigan-SF1-TM1", None, "gl"),
    ("default-SF1-TM1-gl", "runs:default-SF1-TM1", None, "gl"),
    ("default-SF1-TM1-grad", "runs:default-SF1-TM1", None, "grad"),
    ("hifigan-TF1-SF1-hifigan", "runs:hifigan-TF1-SF1", None, "hifigan"),
    ("default-TF1-SF1-gl", "runs:default-TF1-SF1", None, "gl"),
    ("demo-voice-gl", "demo-voice", None, "gl"),
    ("demo-voice-grad", "demo-voice", None, "grad"),
]
TEST_UNSEEN = [  # another seed (s1) or another preset (reference) than any training system
    ("hifigan-s1-SF1-TM1-hifigan", "runs:hifigan-s1-SF1-TM1", None, "hifigan"),
    ("default-s1-SF1-TM1-gl", "runs:default-s1-SF1-TM1", None, "gl"),
    ("default-s1-SF1-TM1-grad", "runs:default-s1-SF1-TM1", None, "grad"),
    ("reference-SM1-TM2-gl", "extra:reference-SM1-TM2", None, "gl"),
    ("reference-SM1-TM2-grad", "extra:reference-SM1-TM2", None, "grad"),
]
TEST_SEEN = [
    ("resynth-reference-gl", None, "reference", "gl"),
    ("resynth-hifigan-hifigan", None, "hifigan", "hifigan"),
    ("hifigan-SF1-TM1-hifigan", "runs:hifigan-SF1-TM1", None, "hifigan"),
    ("default-TF1-SF1-gl", "runs:default-TF1-SF1", None, "gl"),
]
REAL_PER_SPEAKER = {"train": 162, "test": 54}
FAKE_INPUTS = {"train": 96, "test": 36}  # inputs per fake system (half for GRAD: 30x slower)


def _files(folder: Path) -> list[Path]:
    return find_audio(folder)[0]


def _pick(speakers: dict[str, Path], count: int, rng: random.Random) -> list[tuple[str, Path]]:
    """``count`` inputs drawn from all ``speakers`` in turn (VCC weighted 2:1 over FSDD/AISHELL
    because its sentences are longer and it is what users convert)."""
    pools = {name: rng.sample(_files(p), len(_files(p))) for name, p in speakers.items()}
    order = [n for n in pools for _ in range(2 if n.startswith("vcc") else 1)]
    picked: list[tuple[str, Path]] = []
    while len(picked) < count:
        for name in order:
            if pools[name] and len(picked) < count:
                picked.append((name, pools[name].pop()))
    return picked


def _converter(ckpt: str | None, preset: str | None, inversion: str, roots: dict[str, Path]
               ) -> Converter | None:
    sets = [f"method={inversion}"]
    if ckpt is None:
        assert preset is not None
        return Converter(torch.nn.Identity(), preset_config(preset), inversion=sets, device="cpu")
    where, _, name = ckpt.partition(":")
    path = roots[where] / name if name else Path(where)
    if name and not path.exists():
        print(f"skip: {path} is missing")
        return None
    return Converter.from_checkpoint(path if name else where, device="cpu", inversion=sets)


def _real(out: Path, split: str, speakers: dict[str, Path], rng: random.Random) -> None:
    for name, folder in speakers.items():
        target = out / split / "real" / name
        target.mkdir(parents=True, exist_ok=True)
        files = _files(folder)
        for src in sorted(rng.sample(files, min(len(files), REAL_PER_SPEAKER[split]))):
            link = target / src.name
            if not link.exists():
                link.symlink_to(src.resolve())


def _fake(folder: Path, systems: Sequence[tuple[str, str | None, str | None, str]],
          speakers: dict[str, Path], count: int, roots: dict[str, Path], seed: int) -> None:
    for i, (system, ckpt, preset, inversion) in enumerate(systems):
        target = folder / system
        inputs = _pick(speakers, count // 2 if inversion == "grad" and count > 36 else count,
                       random.Random(seed + i))
        todo = [(p, target / f"{speaker}-{p.stem}.flac") for speaker, p in inputs]
        todo = [(p, q) for p, q in todo if not q.exists()]
        if not todo:
            continue
        conv = _converter(ckpt, preset, inversion, roots)
        if conv is None:
            continue
        target.mkdir(parents=True, exist_ok=True)
        print(f"{target}: {len(todo)} files")
        for src, dst in todo:
            wave = load(src, conv.sample_rate)
            out = conv.convert(wave)
            save(dst, np.clip(out, -1.0, 1.0), conv.sample_rate)


def _music(out: Path, seed: int) -> None:
    """Real music pieces (train/real/music-hyperrogue) and four music systems applied to them."""
    folder = out / "train" / "real" / "music-hyperrogue"
    if not HYPERROGUE.is_dir():
        print(f"skip music: {HYPERROGUE} missing (apt-get install hyperrogue-music)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    rate, size = 16000, int(MUSIC_PIECE_S * 16000)
    for track in find_audio(HYPERROGUE)[0]:
        wave = load(track, rate)
        for i in range(wave.size // size):
            target = folder / f"{track.stem}-{i:02d}.flac"
            if not target.exists():
                save(target, wave[i * size:(i + 1) * size], rate)
    count = min(48, len(_files(folder)))
    _fake(out / "train" / "fake", MUSIC_SYSTEMS, {"music-hyperrogue": folder}, count, {}, seed + 300)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True, help="folder with the training systems' runs")
    ap.add_argument("--extra", type=Path, required=True, help="folder with the other-preset run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=["train", "test", "both"], default="both",
                    help="make only this half (run two processes to use two cores)")
    ap.add_argument("--music", action="store_true",
                    help="add real music (apt-get install hyperrogue-music) and music systems")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    roots = {"runs": args.runs, "extra": args.extra}
    _real(args.out, "train", TRAIN_SPEAKERS, random.Random(args.seed))
    _real(args.out, "test", TEST_SPEAKERS, random.Random(args.seed + 1))
    if args.split != "test":
        _fake(args.out / "train" / "fake", TRAIN_SYSTEMS, TRAIN_SPEAKERS, FAKE_INPUTS["train"],
              roots, args.seed)
        if args.music:
            _music(args.out, args.seed)
    if args.split == "train":
        return
    _fake(args.out / "test" / "fake" / "seen-models", TEST_SEEN, TEST_SPEAKERS, FAKE_INPUTS["test"],
          roots, args.seed + 100)
    _fake(args.out / "test" / "fake" / "unseen-models", TEST_UNSEEN, TEST_SPEAKERS,
          FAKE_INPUTS["test"], roots, args.seed + 200)


if __name__ == "__main__":
    main()
