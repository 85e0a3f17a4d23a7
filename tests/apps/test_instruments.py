"""The real-instrument corpus: FluidSynth renders scores; split by piece, parallel test files,
arrangements that really differ, and a MIDI writer we check byte by byte.

Rendering needs Debian's fluidsynth + fluid-soundfont-gm and music21 (the music extra):
skipped with the reason when missing, except in CI (``MELGANVC_REQUIRE_FLUIDSYNTH=1``, set by
``.ci/run``, which installs them), where a missing tool fails.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from melganvc.apps.demo_data.instruments import (
    ARRANGEMENTS,
    SAMPLE_RATE,
    Note,
    Voice,
    _vlq,
    clips,
    generate_instrument_corpus,
    midi_file,
    missing_tools,
    split_pieces,
)
from melganvc.errors import UserError
from melganvc.evaluation.spectral import SpectralConfig, timbre_profile


def test_vlq_matches_the_midi_standard():
    # examples from the Standard MIDI File specification
    assert _vlq(0) == b"\x00" and _vlq(0x40) == b"\x40" and _vlq(0x7F) == b"\x7f"
    assert _vlq(0x80) == b"\x81\x00" and _vlq(0x2000) == b"\xc0\x00"
    assert _vlq(0x3FFF) == b"\xff\x7f" and _vlq(0x0FFFFFFF) == b"\xff\xff\xff\x7f"


def test_midi_file_structure():
    parts = [[Note(0, 1, 72), Note(1, 1, 74)], [Note(0, 2, 48)]]
    data = midi_file(parts, [Voice(40), Voice(42)], 120.0, np.random.default_rng(0), 90, False)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22  # track length is right
    assert data.endswith(b"\x00\xff\x2f\x00")
    assert b"\xff\x51\x03" + (500000).to_bytes(3, "big") in data  # 120 bpm
    assert b"\xc0\x28" in data and b"\xc1\x2a" in data  # programs 40 and 42 on channels 0, 1
    assert data.count(bytes([0x90])) >= 2 and b"\xc9" not in data  # notes, no drum kit
    drums = midi_file(parts, [Voice(0), Voice(32)], 120.0, np.random.default_rng(0), 90, True)
    assert b"\xc9\x28" in drums and b"\x99" in drums  # brush kit on the drum channel


def test_split_keeps_test_pieces_out_of_training_and_domains_apart():
    pool = [f"p{i}" for i in range(50)]
    train, test = split_pieces(pool, ["piano", "strings"], 10, 5, seed=0)
    assert len(test) == 5 and all(len(v) == 10 for v in train.values())
    assert not set(test) & (set(train["piano"]) | set(train["strings"]))
    assert not set(train["piano"]) & set(train["strings"])  # unpaired
    assert split_pieces(pool, ["piano", "strings"], 10, 5, seed=0) == (train, test)
    assert split_pieces(pool, ["piano", "strings"], 10, 5, seed=1)[1] != test
    with pytest.raises(UserError, match="only 3 pieces"):
        split_pieces(pool[:3], ["piano"], 1, 3, seed=0)


def test_clips_are_named_by_position_and_skip_silence():
    n = int(8 * SAMPLE_RATE)
    audio = np.zeros((3 * n + 100, 2), np.float32)
    audio[:n] = 0.1
    audio[2 * n: 3 * n] = 0.2
    kept = clips(audio)
    assert [k for k, _ in kept] == [0, 2] and all(c.shape == (n, 2) for _, c in kept)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    reason = missing_tools()
    if reason:
        if os.environ.get("MELGANVC_REQUIRE_FLUIDSYNTH") == "1":
            pytest.fail(f"MELGANVC_REQUIRE_FLUIDSYNTH=1 but {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("inst")
    summary = generate_instrument_corpus(root, ["piano", "strings", "jazz"], n_train=1, n_test=1,
                                         seed=3, progress=False)
    return root / "instruments", summary


def test_corpus_layout_and_format(corpus):
    root, summary = corpus
    assert summary["sample_rate"] == SAMPLE_RATE == 44100
    for domain in ("piano", "strings", "jazz"):
        for split in ("train", "test"):
            files = sorted((root / domain / split).glob("*.flac"))
            assert files, (domain, split)
            assert len(files) == summary["domains"][domain][split]
            info = sf.info(str(files[0]))
            assert (info.samplerate, info.channels) == (44100, 2)
            assert abs(info.duration - 8.0) < 0.01
            wave, _ = sf.read(str(files[0]), dtype="float32")
            assert np.isfinite(wave).all() and 0.01 < np.abs(wave).max() <= 1.0
    rows = (root / "pieces.tsv").read_text().splitlines()
    assert rows[0].startswith("piece\tsplit\tdomain") and len(rows) == 1 + 3 + 3


def test_test_pieces_are_parallel_and_arrangements_differ(corpus):
    root, _ = corpus
    names = {d: {p.name for p in (root / d / "test").glob("*.flac")} for d in ("piano", "strings")}
    shared = sorted(names["piano"] & names["strings"])
    assert shared, "the same test piece must exist in both arrangements, under the same name"
    train_pieces = {p.name.rsplit("_", 1)[0] for d in ("piano", "strings", "jazz")
                    for p in (root / d / "train").glob("*.flac")}
    assert not train_pieces & {n.rsplit("_", 1)[0] for n in shared}  # test music is unseen
    cfg = SpectralConfig(sample_rate=SAMPLE_RATE, n_fft=4096, win_length=2048, hop_length=512)

    def profile(domain: str, name: str) -> np.ndarray:
        wave, _ = sf.read(str(root / domain / "test" / name), dtype="float32")
        return timbre_profile(wave.mean(axis=1), cfg)

    piano, strings = profile("piano", shared[0]), profile("strings", shared[0])
    assert float(piano @ strings) < 0.95  # same notes, audibly different instruments


def test_unknown_domain_is_one_line_error(tmp_path):
    if missing_tools():
        pytest.skip(missing_tools())
    with pytest.raises(UserError, match="instrument domains are"):
        generate_instrument_corpus(tmp_path, ["kazoo"], n_train=1, n_test=0, progress=False)
    assert set(ARRANGEMENTS) == {"piano", "strings", "brass", "jazz"}
