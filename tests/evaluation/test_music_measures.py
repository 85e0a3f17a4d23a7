"""Melody preservation (chroma correlation) and the evaluation's seam score."""

from __future__ import annotations

import numpy as np
import pytest

from melganvc.config import preset_config
from melganvc.evaluation.music import SeamCheck, chromagram, melody_similarity

SR = 16000


def tune(midis: list[int], timbre: str, seconds: float = 0.4, sr: int = SR) -> np.ndarray:
    """Notes in sequence: ``bright`` (all harmonics) or ``hollow`` (odd harmonics, quieter top)."""
    t = np.arange(int(seconds * sr)) / sr
    harmonics = range(1, 9) if timbre == "bright" else range(1, 12, 2)
    out = []
    for midi in midis:
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        note = sum(np.sin(2 * np.pi * k * f0 * t) / k ** (1 if timbre == "bright" else 2)
                   for k in harmonics if k * f0 < sr / 2)
        out.append(note * np.hanning(t.size))
    return (0.3 * np.concatenate(out) / np.abs(np.concatenate(out)).max()).astype(np.float32)


MELODY = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 55]
OTHER = [61, 66, 70, 63, 68, 58, 61, 66, 70, 63, 68, 58]


def test_chroma_finds_the_pitch_class():
    chroma = chromagram(tune([69], "bright", 1.0), SR)
    assert np.argmax(chroma[len(chroma) // 2]) == 9  # A


def test_same_notes_in_another_timbre_score_high_other_notes_low():
    source = tune(MELODY, "bright")
    same = melody_similarity(source, source, SR)
    other_timbre = melody_similarity(source, tune(MELODY, "hollow"), SR)
    other_notes = melody_similarity(source, tune(OTHER, "bright"), SR)
    assert same == pytest.approx(1.0)
    assert other_timbre > 0.8 and other_notes < 0.3
    assert melody_similarity(tune(MELODY, "bright", sr=44100), tune(MELODY, "hollow", sr=44100),
                             44100) == pytest.approx(other_timbre, abs=0.02)  # any rate
    assert np.isnan(melody_similarity(np.zeros(SR), source, SR))


def test_seam_check_sees_a_chunk_periodic_jump():
    cfg = preset_config("reference").features
    check = SeamCheck(cfg, 24)
    smooth = tune(MELODY * 2, "bright")
    hop = cfg.hop_length
    seamy = smooth.copy()
    edges = np.arange(24 * hop, seamy.size, 24 * hop)
    for edge in edges:  # a click at every chunk border
        seamy[edge: edge + 40] += 0.5
    assert check.score(seamy, SR) > check.score(smooth, SR) + 0.3
    assert np.isnan(check.score(smooth[:2000], SR))  # too short for two chunks
