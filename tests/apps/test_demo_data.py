"""Demo corpora: layout, audio format, unpaired and held-out text, domains that really differ."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from melganvc.apps.demo_data import (
    generate_music_demo,
    generate_voice_demo,
    render_note,
    sentence_stream,
)
from melganvc.errors import UserError

SR = 16000


def read_table(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t")[0] == "file"
    return dict(line.split("\t", 1) for line in lines[1:])


def read_mono(path: Path) -> np.ndarray:
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (SR, 1), path
    wave, _ = sf.read(str(path), dtype="float32")
    return wave


def median_f0(wave: np.ndarray, fmin: float = 60.0, fmax: float = 500.0) -> float:
    """Median F0 (Hz) of the loud, clearly periodic 40 ms frames, by normalised autocorrelation."""
    frame, hop = int(0.04 * SR), int(0.01 * SR)
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    frames = frames[energy > 0.1 * energy.max()]
    spectrum = np.fft.rfft(frames, n=2 * frame, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :frame]
    autocorr /= autocorr[:, :1]
    low, high = int(SR / fmax), int(SR / fmin)
    lags = low + autocorr[:, low:high].argmax(axis=1)
    periodic = autocorr[np.arange(len(lags)), lags] > 0.5
    return float(np.median(SR / lags[periodic]))


@pytest.fixture(scope="module")
def voice_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("espeakng_loader")
    out = tmp_path_factory.mktemp("demo")
    summary = generate_voice_demo(out, n_train=4, n_test=2, seed=3, progress=False)
    return out / "voice", summary


def test_voice_layout_format_and_durations(voice_root: tuple[Path, dict]) -> None:
    root, summary = voice_root
    for domain in "AB":
        table = read_table(root / domain / "transcripts.tsv")
        assert sorted(table) == sorted(
            str(p.relative_to(root / domain)) for p in (root / domain).glob("*/*.wav"))
        for split, count in (("train", 4), ("test", 2)):
            files = sorted((root / domain / split).glob("*.wav"))
            assert len(files) == count == summary["domains"][domain][split]
            for path in files:
                wave = read_mono(path)
                assert 1.5 <= len(wave) / SR <= 4.0
                assert np.sqrt(np.mean(wave**2)) > 0.03 and np.abs(wave).max() <= 1.0
        seconds = summary["domains"][domain]["train_seconds"]
        assert 4 * 1.5 <= seconds <= 4 * 4.0


def test_voice_sentences_are_unpaired_and_held_out(voice_root: tuple[Path, dict]) -> None:
    root, _ = voice_root
    sets = {}
    for domain in "AB":
        for name, text in read_table(root / domain / "transcripts.tsv").items():
            sets.setdefault((domain, name.split("/")[0]), set()).add(text)
    for first, second in itertools.combinations(sets, 2):
        assert not sets[first] & sets[second], (first, second)


def test_sentence_streams_disjoint_at_scale() -> None:
    drawn = {(d, s): list(itertools.islice(sentence_stream(d, s, seed=0), 300))
             for d in "AB" for s in ("train", "test")}
    for texts in drawn.values():
        assert len(set(texts)) == len(texts)
        assert all(7 <= len(text.split()) <= 11 for text in texts)
    for first, second in itertools.combinations(drawn, 2):
        assert not set(drawn[first]) & set(drawn[second])


def test_speaker_b_is_much_higher_pitched(voice_root: tuple[Path, dict]) -> None:
    root, _ = voice_root
    f0 = {d: np.mean([median_f0(read_mono(p)) for p in (root / d).glob("*/*.wav")]) for d in "AB"}
    assert 60 < f0["A"] < 140 and 180 < f0["B"] < 350, f0
    assert f0["B"] > 1.3 * f0["A"], f0


def test_voice_rerun_is_identical_and_prunes(voice_root: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = voice_root
    generate_voice_demo(tmp_path, n_train=4, n_test=2, seed=3, progress=False)
    for path in root.glob("*/*/*.wav"):  # same samples (the header holds a date)
        again = tmp_path / "voice" / path.relative_to(root)
        assert np.array_equal(sf.read(str(path))[0], sf.read(str(again))[0]), path
    generate_voice_demo(tmp_path, n_train=2, n_test=1, seed=3, progress=False)
    assert len(list((tmp_path / "voice" / "A" / "train").glob("*.wav"))) == 2
    assert len(read_table(tmp_path / "voice" / "B" / "transcripts.tsv")) == 3


def test_missing_espeak_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail
    with pytest.raises(UserError, match=r"pip install 'melganvc\[demo\]'"):
        generate_voice_demo(tmp_path, n_train=1, n_test=0, progress=False)


def test_broken_espeak_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loader = pytest.importorskip("espeakng_loader")
    monkeypatch.setattr(loader, "get_data_path", lambda: str(tmp_path / "no-data"))
    with pytest.raises(UserError, match="did not start"):
        generate_voice_demo(tmp_path, n_train=1, n_test=0, progress=False)


@pytest.mark.parametrize("kwargs", [{"n_train": 0}, {"n_test": -1}, {"sample_rate": 100}])
def test_bad_counts_are_user_errors(kwargs: dict, tmp_path: Path) -> None:
    with pytest.raises(UserError):
        generate_music_demo(tmp_path, **kwargs)


def harmonic_levels(wave: np.ndarray, f0: float) -> np.ndarray:
    """Magnitudes of harmonics 1-4 (peak within +-3% of k*f0) of a Hann-windowed segment."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    freqs = np.fft.rfftfreq(len(wave), 1 / SR)
    return np.array([spectrum[np.abs(freqs - k * f0) < 0.03 * k * f0].max() for k in (1, 2, 3, 4)])


def test_music_layout_and_timbres_differ(tmp_path: Path) -> None:
    summary = generate_music_demo(tmp_path, n_train=3, n_test=1, seed=1, progress=False)
    even_odd = {}
    for domain in "AB":
        folder = tmp_path / "music" / domain
        phrases = read_table(folder / "phrases.tsv")
        assert len(phrases) == 4 == summary["domains"][domain]["train"] + 1
        ratios = []
        for name, notes in phrases.items():
            wave = read_mono(folder / name)
            assert 4.0 <= len(wave) / SR <= 8.0 and np.abs(wave).max() > 0.1
            midi, seconds = (float(x) for x in notes.split()[0].split(":"))  # first note, onset 0
            segment = wave[int(0.01 * SR): int(min(seconds, 0.5) * SR)]
            levels = harmonic_levels(segment, 440.0 * 2 ** ((midi - 69) / 12))
            ratios.append((levels[1] + levels[3]) / (levels[0] + levels[2]))
        even_odd[domain] = float(np.median(ratios))
    assert even_odd["A"] > 0.3 and even_odd["B"] < 0.05, even_odd  # clarinet: odd harmonics only
    texts = [set(read_table(tmp_path / "music" / d / "phrases.tsv").values()) for d in "AB"]
    assert not texts[0] & texts[1]


def test_piano_is_brighter_and_decays(tmp_path: Path) -> None:
    def centroid(wave: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(wave))
        return float((np.fft.rfftfreq(len(wave), 1 / SR) * spectrum).sum() / spectrum.sum())

    piano, clarinet = (render_note(t, 57, 1.0, SR) for t in ("piano", "clarinet"))
    assert centroid(piano[: SR // 4]) > 1.3 * centroid(clarinet[: SR // 4])
    tenth = SR // 10
    assert np.abs(piano[8 * tenth: 9 * tenth]).max() < 0.5 * np.abs(piano[:tenth]).max()
    assert np.abs(clarinet[8 * tenth: 9 * tenth]).max() > 0.8 * np.abs(clarinet[:tenth]).max()
