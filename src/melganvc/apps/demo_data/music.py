"""The demo instruments: seeded melodies rendered by numpy additive synthesis.

``melody`` draws a phrase of (MIDI note, seconds); ``render_melody`` plays it as ``piano`` (all
harmonics, slightly stretched, decaying) or ``clarinet`` (odd harmonics, sustained, vibrato).
"""

from __future__ import annotations

import numpy as np

SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 3, 5, 7, 9, 10),
          (0, 2, 4, 7, 9), (0, 2, 3, 5, 7, 8, 11))  # major, minor, dorian, pentatonic, harm. minor


def melody(rng: np.random.Generator, min_seconds: float = 4.0,
           max_seconds: float = 7.6) -> list[tuple[int, float]]:
    """A seeded phrase of (MIDI note, seconds): scale steps, leaps and arpeggios.

    Notes last ``min_seconds``-``max_seconds``; with the release tail the clip stays under 8 s.
    """
    scale = SCALES[rng.integers(len(SCALES))]
    root, beat = int(rng.integers(55, 68)), 60.0 / rng.uniform(80, 140)
    target, degree = rng.uniform(min_seconds, max_seconds), int(rng.integers(0, 5))
    notes: list[tuple[int, float]] = []
    while sum(seconds for _, seconds in notes) < target:
        if rng.random() < 0.2:  # arpeggio of eighth notes on the current degree
            figure = [(degree + step, 0.5 * beat) for step in (0, 2, 4, 7)[: rng.integers(3, 5)]]
        else:
            degree = int(np.clip(degree + rng.choice([-3, -2, -1, -1, 1, 1, 2, 3]), -2, 9))
            figure = [(degree, rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]) * beat)]
        for step, seconds in figure:
            octave, index = divmod(step, len(scale))
            notes.append((root + 12 * octave + scale[index], float(seconds)))
    overshoot = sum(seconds for _, seconds in notes) - target
    notes[-1] = (notes[-1][0], max(0.15, notes[-1][1] - overshoot))
    return notes


def render_note(timbre: str, midi: int, seconds: float, sample_rate: int) -> np.ndarray:
    """One note, ``seconds`` long plus a short release tail; float32 mono, unnormalised.

    piano: all harmonics, slightly stretched (string stiffness), decaying - higher ones faster.
    clarinet: odd harmonics only (closed pipe), sustained, with a gentle 5 Hz vibrato.
    """
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    release = 0.08
    t = np.arange(int((seconds + release) * sample_rate)) / sample_rate
    wave = np.zeros_like(t)
    if timbre == "piano":
        for k in range(1, 30):
            fk = k * f0 * np.sqrt(1 + 3e-4 * k * k)
            if fk > 0.45 * sample_rate:
                break
            ring = t[: int(9.2 / (1.0 + 0.7 * k) * sample_rate)]  # until it has decayed by 80 dB
            wave[: len(ring)] += (k**-0.9 * np.exp(-ring * (1.0 + 0.7 * k))
                                  * np.sin(2 * np.pi * fk * ring))
        envelope = np.minimum(t / 0.004, 1.0) * np.exp(-np.maximum(t - seconds, 0.0) / 0.025)
    else:
        phase = 2 * np.pi * f0 * np.cumsum(1 + 0.004 * np.sin(2 * np.pi * 5.0 * t)) / sample_rate
        for k in range(1, 30, 2):
            if k * f0 > 0.45 * sample_rate:
                break
            wave += k**-1.6 * np.sin(k * phase)
        envelope = np.clip(np.minimum(t / 0.04, (seconds + release - t) / release), 0.0, 1.0)
    return (wave * envelope).astype(np.float32)


def render_melody(notes: list[tuple[int, float]], timbre: str, sample_rate: int) -> np.ndarray:
    """Overlap-add the notes of a phrase (each note's release rings into the next)."""
    total = sum(seconds for _, seconds in notes)
    out = np.zeros(int((total + 0.1) * sample_rate), np.float32)
    onset = 0.0
    for midi, seconds in notes:
        note = render_note(timbre, midi, seconds, sample_rate)
        start = int(onset * sample_rate)
        out[start:start + len(note)] += note[: len(out) - start]
        onset += seconds
    return out
