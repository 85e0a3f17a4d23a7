"""Sustained live conversion through a real audio server: ``melganvc live`` for N minutes.

    python recipes/live_soak.py --ckpt runs/v22/live-SF1-TM1 \
        --speech ../shared/data/vcc2016_full/SF1/train --minutes 5 --out runs/v22/soak

Starts a private PulseAudio server (null sinks: a virtual microphone and virtual speakers,
``melganvc.apps.live.virtual_audio``, as the live device test uses), plays the speech files back to back into the
microphone, runs ``melganvc live`` on them for the whole time, records the speakers, and prints
``melganvc live``'s summary (latency, RTF, dropouts, xruns) as JSON. Needs pulseaudio,
pulseaudio-utils, libportaudio2, libasound2-plugins and the live extra.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from melganvc.apps.live import virtual_audio
from melganvc.io.audio import find_audio, load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--speech", required=True, type=Path, help="folder of speech to play")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--block-ms", type=float, default=16.0)
    p.add_argument("--threads", type=int, help="torch threads of melganvc live (default: its own)")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = 60 * args.minutes
    pieces, total = [], 0
    for path in find_audio(args.speech)[0]:
        pieces += [load(path, 16000), np.zeros(4000, np.float32)]
        total += pieces[-2].size + 4000
        if total >= (seconds + 5) * 16000:
            break
    sf.write(args.out / "input.wav", np.concatenate(pieces), 16000)

    runtime = Path(tempfile.mkdtemp(prefix="melganvc-pulse-"))
    with virtual_audio(runtime) as env:
        status = args.out / "status.txt"
        with open(status, "w") as err:
            live = subprocess.Popen(
                [sys.executable, "-m", "melganvc", "live", "--ckpt", args.ckpt, "--input",
                 "pulse", "--output", "pulse", "--seconds", str(seconds), "--block-ms",
                 str(args.block_ms), "--record-output", str(args.out / "output.wav"),
                 *(["--threads", str(args.threads)] if args.threads else [])],
                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            while "latency" not in status.read_text():
                time.sleep(0.1)
            player = subprocess.Popen(["paplay", "--device=mic_in", str(args.out / "input.wav")],
                                      env=env)
            out, _ = live.communicate()
            player.terminate()
    print(out.strip(), file=sys.stderr)
    found = re.search(r"([\d.]+) s live; latency (\d+) ms \+ (\d+) ms devices; RTF ([\d.]+); "
                      r"dropouts (\d+); xruns (\d+)", out)
    keys = ("seconds", "latency_ms", "device_latency_ms", "rtf", "dropouts", "xruns")
    print(json.dumps({"ckpt": args.ckpt, "block_ms": args.block_ms, "threads": args.threads,
                      **({k: float(v) for k, v in zip(keys, found.groups())} if found else {})},
                     indent=2))


if __name__ == "__main__":
    main()
