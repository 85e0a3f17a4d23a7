"""Naturalness (DistillMOS) and similarity to the target of a model's conversions with the
contrast postfilter at several strengths and windows (and, with ``--overlaps``, chunk
overlaps) -- and of real speech resynthesised through the same features, postfilter and
vocoder, which shows how much of a gain is the judge's taste for contrast rather than the
generator's blur removed. Prints one JSON line per setting (docs/results.md, "A contrast
postfilter" and "Identity 10 in the default's own 20 minutes").

    python recipes/postfilter_sweep.py --ckpt runs/v25/default-SF1-TM1 \\
        --source ../shared/data/vcc2016_full/SF1/eval --target ../shared/data/vcc2016_full/TM1 \\
        --limit 20 --strengths 1,1.25,1.3,1.35 --windows-ms 730 \
        --sets converted,source_resynth,target_resynth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from mel_detail import by_quarter, detail  # recipes/: the detail measure of "What the mels lack"

from melganvc import Converter
from melganvc.config import ConversionConfig
from melganvc.dsp.postfilter import Postfilter
from melganvc.io.audio import find_audio, load
from melganvc.judges.naturalness import NaturalnessJudge
from melganvc.judges.speaker import SpeakerEncoder, cosine, speaker_centroid


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--source", type=Path, required=True, help="source speaker's held-out files")
    p.add_argument("--target", type=Path, required=True,
                   help="target speaker folder with train/ (centroid) and eval/ (resynthesis)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--strengths", type=floats, default=[1.0, 1.3])
    p.add_argument("--windows-ms", type=floats, default=[730.0])
    p.add_argument("--save", type=Path, help="also write each setting's audio under this folder "
                                             "(for a second judge: recipes/dnsmos_score.py)")
    p.add_argument("--overlaps", type=floats, default=None,
                   help="chunk overlaps to convert with (fractions of a chunk or frames, as "
                        "conversion.overlap; default: the run's)")
    p.add_argument("--sets", default="converted",
                   help="comma-separated: converted, source_resynth, target_resynth")
    args = p.parse_args()

    conv = Converter.from_checkpoint(args.ckpt, device="cpu", postfilter=1.0)  # G's own mels
    rate, hop = conv.sample_rate, conv.config.features.hop_length / conv.sample_rate
    inverter = conv.inverter()
    encoder, judge = SpeakerEncoder(num_threads=2), NaturalnessJudge(num_threads=2)
    centroid = speaker_centroid(encoder, [load(f, 16000) for f in
                                          find_audio(args.target / "train")[0][:20]], 16000)

    def mel_of(path: Path) -> torch.Tensor:
        x = load(path, rate)
        with torch.no_grad():
            return conv.mel(torch.from_numpy(x * conv.input_gain(x, rate)))

    sources = [mel_of(f) for f in find_audio(args.source)[0][:args.limit]]
    overlaps = args.overlaps or [conv.config.conversion.overlap]
    convs = {ov: conv.with_options(overlap=ov) for ov in overlaps}
    sets = {f"converted@{ov:g}": lambda c=c: [c.convert_mel(m) for m in sources]
            for ov, c in convs.items()}
    sets |= {"source_resynth": lambda: sources,
             "target_resynth": lambda: [mel_of(f) for f in
                                        find_audio(args.target / "eval")[0][:args.limit]]}
    names = [k for name in args.sets.split(",") for k in sets
             if k == name or k.startswith(name + "@")]
    for name in names:
        mels = sets[name]()
        for window in args.windows_ms:
            for strength in args.strengths:
                frames = ConversionConfig(postfilter_ms=window).postfilter_frames(hop)
                pf = Postfilter(strength, frames)
                nat, sim, delta = [], [], []
                folder = args.save / f"{name}_{strength:g}_{window:g}ms" if args.save else None
                for i, mel in enumerate(mels):
                    with torch.no_grad():
                        filtered = pf.apply(mel)
                        wave = inverter(filtered).numpy()
                    delta.append(detail(filtered.numpy()))
                    if folder is not None:
                        folder.mkdir(parents=True, exist_ok=True)
                        sf.write(folder / f"{i:03d}.wav", np.clip(wave, -1, 1), rate)
                    nat.append(judge.score(wave, rate))
                    sim.append(cosine(encoder.embed(wave, rate), centroid))
                print(json.dumps({"system": name, "strength": strength, "window_ms": window,
                                  "frames": frames, "naturalness": round(float(np.nanmean(nat)), 3),
                                  "sim_target": round(float(np.nanmean(sim)), 3),
                                  "time_delta": by_quarter(delta)["time_delta"],
                                  "utterances": len(mels)}), flush=True)


if __name__ == "__main__":
    main()
