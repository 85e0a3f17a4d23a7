"""`melganvc demo --music`: the bundled music model on the user's recordings (stereo kept) or
on held-out pieces rendered here (needs FluidSynth: skipped without it, required in CI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from melganvc.apps.cli import main
from melganvc.apps.demo_data.instruments import missing_tools
from melganvc.io.audio_writer import read_comment


def test_music_demo_converts_your_recording_keeping_rate_and_stereo(tmp_path: Path, capsys):
    t = np.arange(int(2.5 * 44100)) / 44100
    tone = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    sf.write(tmp_path / "mine.ogg", np.stack([tone, 0.5 * tone], 1), 44100)
    assert main(["demo", "--music", "--input", str(tmp_path / "mine.ogg"),
                 "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "converted" / "mine.flac"
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, t.size)
    assert "converted by melganvc" in read_comment(out)
    assert "listen" in capsys.readouterr().out


def test_music_demo_usage_errors_are_one_line(tmp_path: Path, capsys):
    assert main(["demo", "--input", str(tmp_path)]) == 2
    assert "--input is for the music demo" in capsys.readouterr().err
    assert main(["demo", "--music", "--input", str(tmp_path)]) == 2
    assert "no audio files" in capsys.readouterr().err


def test_music_demo_on_rendered_pieces(tmp_path: Path, capsys):
    reason = missing_tools()
    if reason:
        if os.environ.get("MELGANVC_REQUIRE_FLUIDSYNTH") == "1":
            pytest.fail(f"MELGANVC_REQUIRE_FLUIDSYNTH=1 but {reason}")
        pytest.skip(reason)
    assert main(["demo", "--music", "--test", "1", "--out", str(tmp_path / "d")]) == 0
    report = json.loads((tmp_path / "d" / "report" / "report.json").read_text())
    converted = report["systems"]["converted"]["mean"]
    assert converted["melody"] is not None and converted["timbre_accept"] is not None
    assert report["systems"]["identity"]["mean"]["melody"] > 0.9  # the baseline keeps the notes
    assert "report.html" in capsys.readouterr().out
