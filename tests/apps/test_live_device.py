"""`melganvc live` through a real audio server: PulseAudio with two null sinks, PortAudio's
ALSA "pulse" device in between. A known file is played into the virtual microphone, the
virtual speakers are recorded, and the recording must be the converted voice.

Needs pulseaudio + pulseaudio-utils + libportaudio2 + libasound2-plugins (Debian) and the
sounddevice wheel (the live extra): skipped with the reason when missing, except in CI
(``MELGANVC_REQUIRE_PULSE=1``, set by ``.ci/run``, which installs them), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("espeakng_loader", reason="demo extra (espeakng-loader) not installed")

SR = 16000
TOOLS = ("pulseaudio", "pactl", "paplay", "parecord")


def _missing() -> str | None:
    lacking = [t for t in TOOLS if shutil.which(t) is None]
    if lacking:
        return f"{', '.join(lacking)} not installed (apt install pulseaudio pulseaudio-utils)"
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"sounddevice/PortAudio unavailable ({exc})"
    return None


@pytest.fixture
def pulse(tmp_path: Path):
    """A private PulseAudio server: mic_in (sink) -> mic (source); speakers (sink)."""
    reason = _missing()
    if reason:
        if os.environ.get("MELGANVC_REQUIRE_PULSE") == "1":
            pytest.fail(f"MELGANVC_REQUIRE_PULSE=1 but {reason}")
        pytest.skip(reason)
    from melganvc.apps.live import virtual_audio

    runtime = tmp_path / "pulse"
    runtime.mkdir()
    with virtual_audio(runtime) as env:
        yield env


def test_live_converts_the_microphone_to_the_speakers(pulse, tmp_path: Path):
    from melganvc.apps.demo_data import generate_voice_demo
    from melganvc.evaluation.pitch import f0_contour

    generate_voice_demo(tmp_path / "data", n_train=1, n_test=3, progress=False)
    sentences = [sf.read(str(p))[0] for p in sorted((tmp_path / "data" / "voice" / "A" / "test").glob("*.wav"))]
    pause = np.zeros(SR // 2)
    source = np.concatenate([pause] + [np.concatenate([s, pause]) for s in sentences])
    sf.write(tmp_path / "in.wav", source, SR)

    heard = tmp_path / "heard.wav"
    recorder = subprocess.Popen(["parecord", "--device=speakers.monitor", f"--rate={SR}",
                                 "--channels=1", "--file-format=wav", str(heard)], env=pulse)
    seconds = source.size / SR + 4.0
    status = tmp_path / "status.txt"
    with open(status, "w") as err_file:
        live = subprocess.Popen([sys.executable, "-m", "melganvc", "live", "--ckpt", "demo-voice",
                                 "--input", "pulse", "--output", "pulse", "--seconds",
                                 f"{seconds:.1f}", "--record-output", str(tmp_path / "out.wav"),
                                 "--record-input", str(tmp_path / "mic.wav"),
                                 "--buffer-ms", "400"],  # a busy test machine: no stalls heard
                                env=pulse, stdout=subprocess.PIPE, stderr=err_file, text=True)
        deadline = time.monotonic() + 120
        while "latency" not in status.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)  # the model is loaded and the stream open
        subprocess.run(["paplay", "--device=mic_in", str(tmp_path / "in.wav")], env=pulse,
                       check=True, timeout=60)
        out, _ = live.communicate(timeout=120)
    err = status.read_text()
    recorder.terminate()
    recorder.wait(timeout=10)
    assert live.returncode == 0, err[-2000:]
    summary = re.search(r"RTF ([\d.]+); dropouts (\d+)", out)
    assert summary, out
    rtf, dropouts = float(summary.group(1)), int(summary.group(2))
    if rtf < 0.5:  # with this much headroom a dropout is a bug, not a slow machine
        assert dropouts == 0, out

    recorded, rate = sf.read(str(tmp_path / "out.wav"))
    heard_by_mic, _ = sf.read(str(tmp_path / "mic.wav"))
    assert rate == SR and recorded.size == heard_by_mic.size  # every captured block converted
    assert abs(recorded.size / SR - seconds) < 1.0
    played, _ = sf.read(str(heard))
    assert played.size / SR > source.size / SR  # the speakers got at least the whole speech

    def median_f0(wave: np.ndarray) -> float:
        f0 = f0_contour(wave.astype(np.float32), SR)
        return float(np.median(f0[f0 > 0]))

    # demo-voice turns the low male voice A (~90 Hz) into the high voice B (~250 Hz)
    assert median_f0(played) > 1.6 * median_f0(source)
