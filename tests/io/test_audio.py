from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from melganvc.errors import AudioError
from melganvc.io.audio import audio_info, iter_blocks, load
from melganvc.io.audio_writer import AudioWriter, read_comment, save


def test_load_downmixes_and_resamples(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "st.flac", np.stack([left, right], 1), 44100)
    wave = load(tmp_path / "st.flac", 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 16000) <= 1
    assert np.abs(wave[1000:-1000]).max() == pytest.approx(0.75, abs=0.01)


def test_blocks_match_whole_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "n.wav", rng.standard_normal(22050 * 3) * 0.1, 22050, subtype="FLOAT")
    whole = load(tmp_path / "n.wav", 16000)
    blocks = np.concatenate(list(iter_blocks(tmp_path / "n.wav", 16000, block_seconds=0.7)))
    assert abs(blocks.size - whole.size) <= 2
    n = min(blocks.size, whole.size)
    assert np.abs(blocks[200 : n - 200] - whole[200 : n - 200]).max() < 1e-3


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_is_tagged_and_round_trips(tmp_path: Path, suffix: str) -> None:
    wave = (0.3 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    save(tmp_path / f"out{suffix}", wave, 16000)
    assert "converted by melganvc" in read_comment(tmp_path / f"out{suffix}")
    back = load(tmp_path / f"out{suffix}", 16000)
    assert np.abs(back - wave).max() < 1e-3
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), AudioWriter(tmp_path / "x.wav", 16000) as writer:
        writer.write(np.zeros(100))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_name_file_and_reason(tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("hello")
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "zero.wav", np.zeros(0), 16000)
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1]), 16000, subtype="FLOAT")
    cases = {"text.wav": "not a readable audio file", "empty.wav": "not a readable audio file",
             "zero.wav": "zero length", "nan.wav": "NaN", "missing.wav": "no such file"}
    for name, reason in cases.items():
        with pytest.raises(AudioError, match=reason) as info:
            load(tmp_path / name, 16000)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(AudioError, match="use .wav or .flac"):
        save(tmp_path / "x.mp3", np.zeros(10), 16000)
    assert audio_info(tmp_path / "nan.wav") == (16000, 3)


def test_find_audio_one_hidden_rule_for_training_conversion_and_evaluation(tmp_path) -> None:
    """A file under a hidden folder (``.cache/``, ``.git/``) or with a hidden name is skipped
    by the one walker training, conversion and evaluation share (training used to skip only
    hidden names, so a file under ``.x/`` was trained on but never converted)."""
    from melganvc.conversion.batch import BatchReport, plan_jobs
    from melganvc.io.audio import find_audio

    for rel in ("a.wav", "sub/b.flac", ".x/c.wav", "sub/.d.wav", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    audio, skipped = find_audio(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in audio] == ["a.wav", "sub/b.flac"]
    assert len(skipped) == 3
    report = BatchReport()
    jobs = plan_jobs([tmp_path], tmp_path.parent / "out", ".wav", report, lambda _m: None)
    assert [src for src, _ in jobs] == audio
