"""A second opinion on naturalness: DNSMOS (Microsoft's P.835 / P.808 predictors, ONNX weights
inside the ``speechmos`` wheel) of folders of audio, e.g. those ``recipes/postfilter_sweep.py
--save DIR`` writes. Not a project dependency (``speechmos`` needs ``requests`` at import and
judges noise more than naturalness: it rates espeak near real speech); run it in its own
environment::

    python -m venv /tmp/dnsmos && /tmp/dnsmos/bin/pip install speechmos==0.0.1.1 onnxruntime \\
        librosa requests soundfile
    /tmp/dnsmos/bin/python recipes/dnsmos_score.py runs/v26/sweep/*

Prints one JSON line per folder: mean OVRL, SIG, BAK and P.808 MOS (docs/results.md, "A
contrast postfilter").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from speechmos import dnsmos


def score_folder(folder: Path) -> dict[str, object]:
    rows = []
    for path in sorted(folder.glob("*.wav")):
        x, rate = sf.read(path, dtype="float32")
        x = librosa.resample(x, orig_sr=rate, target_sr=16000)
        x = 0.9 * x / max(1e-6, float(np.abs(x).max()))  # the same peak for every file
        r = dnsmos.run(x, 16000)
        rows.append([r["ovrl_mos"], r["sig_mos"], r["bak_mos"], r["p808_mos"]])
    mean = np.mean(rows, axis=0)
    return {"folder": str(folder), "files": len(rows),
            **{k: round(float(v), 3) for k, v in zip(("ovrl", "sig", "bak", "p808"), mean)}}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(score_folder(Path(arg))), flush=True)
