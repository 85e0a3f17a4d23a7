"""The results of an evaluation: schema, metric tables, the item types scoring
takes, and plain-JSON conversion."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from melganvc.judges.waves import SAMPLE_RATE

RESULTS_SCHEMA = "melganvc.report/1"

# key -> (label, which direction is better, unit / note). Order = column order in the tables.
METRICS: dict[str, dict[str, str]] = {
    "naturalness": {"label": "naturalness", "better": "higher",
                    "note": "DistillMOS: predicted mean opinion score of the audio alone, 1-5 "
                            "(real VCC2016 speech about 4)"},
    "sim_target": {"label": "similarity to target", "better": "higher",
                   "note": "cosine of resemblyzer embeddings to the target speaker centroid"},
    "sim_source": {"label": "similarity to source", "better": "lower",
                   "note": "cosine to the source speaker centroid"},
    "accept_rate": {"label": "accept rate", "better": "higher",
                    "note": "share of utterances closer to the target than to the source centroid"},
    "timbre_target": {"label": "timbre to target", "better": "higher",
                      "note": "cosine of the mean log-mel profile to the target's (any audio)"},
    "timbre_source": {"label": "timbre to source", "better": "lower",
                      "note": "cosine of the mean log-mel profile to the source's"},
    "timbre_accept": {"label": "timbre accept", "better": "higher",
                      "note": "share of clips whose profile is closer to the target's"},
    "cer": {"label": "CER", "better": "lower",
            "note": "character error rate of the output's ASR transcript vs the source's "
                    "(same recogniser, normalised text)"},
    "wer": {"label": "WER", "better": "lower", "note": "word error rate, same transcripts"},
    "cer_ref": {"label": "CER vs target reading", "better": "lower",
                "note": "CER of the output's transcript vs that of the target speaker reading "
                        "the same sentence (--refs)"},
    "wer_ref": {"label": "WER vs target reading", "better": "lower",
                "note": "WER, same transcripts"},
    "mcd": {"label": "MCD (dB)", "better": "lower",
            "note": "mel-cepstral distortion (c1..c24, DTW) vs the parallel target utterance"},
    "lsd": {"label": "LSD (dB)", "better": "lower",
            "note": "log-spectral distance along the same DTW path"},
    "f0_hz": {"label": "F0 (Hz)", "better": "closer to target",
              "note": "geometric mean F0 over voiced frames"},
    "f0_mean_diff_st": {"label": "F0 mean diff (st)", "better": "closer to 0",
                        "note": "mean log-F0 minus the target speaker's, in semitones"},
    "f0_std_ratio": {"label": "log-F0 std ratio", "better": "closer to 1",
                     "note": "std of log-F0 divided by the target speaker's"},
    "voiced_fraction": {"label": "voiced fraction", "better": "closer to target",
                        "note": "share of frames with an F0"},
    "melody": {"label": "melody", "better": "higher",
               "note": "chroma correlation with the source (pitch classes of 110 Hz-2 kHz per "
                       "32 ms frame, centred cosine): 1 = the same notes, ~0 unrelated music"},
    "seam": {"label": "seam score", "better": "closer to 1",
             "note": "spectral flux at the worst chunk-periodic offset over elsewhere, at the "
                     "model's features (1 = no seam; identity shows the chance level)"},
    "duration_s": {"label": "duration (s)", "better": "", "note": "length of the scored audio"},
}
CORPUS_METRICS: dict[str, dict[str, str]] = {
    "cer_corpus": {"label": "CER (corpus)", "better": "lower",
                   "note": "character edits over all reference characters"},
    "wer_corpus": {"label": "WER (corpus)", "better": "lower",
                   "note": "word edits over all reference words"},
    "cer_ref_corpus": {"label": "CER vs target reading (corpus)", "better": "lower",
                       "note": "character edits against the target readings' transcripts"},
    "wer_ref_corpus": {"label": "WER vs target reading (corpus)", "better": "lower",
                       "note": "word edits against the target readings' transcripts"},
}
SYSTEM_NOTES = {
    "converted": "the model's output",
    "identity": "the source only resynthesised (features and inversion, no model): the floor",
    "oracle": "the target speaker's own utterances: the ceiling",
    "oracle_parallel": "the target speaker reading the source's sentences: a perfect "
                       "conversion; its CER is the recogniser's floor on the target voice",
    "oracle_resynth": "the same through features and inversion: the best a converted mel "
                      "can sound",
}


def system_note(name: str) -> str:
    """What a system is, for the report (``converted:<run>``: one of several checkpoints)."""
    if name.startswith("converted:"):
        return f"the output of the model in {name.partition(':')[2]}"
    return SYSTEM_NOTES.get(name, "")


BAR_METRICS = ("naturalness", "sim_target", "accept_rate", "timbre_accept", "cer", "mcd", "lsd",
               "f0_mean_diff_st")
# rates over per-utterance booleans: mean key -> row key
ACCEPT_KEYS = {"accept_rate": "accepted", "timbre_accept": "timbre_accepted"}


@dataclass(frozen=True)
class EvalItem:
    """One scored utterance of one system.

    ``converted``: the audio being scored. ``source``: the input it was made from (its ASR
    transcript is the content reference; ``None`` skips CER/WER). ``reference``: the target
    speaker's parallel utterance of the same sentence (``None`` skips MCD/LSD).
    """

    name: str
    converted: np.ndarray
    source: np.ndarray | None = None
    reference: np.ndarray | None = None


@dataclass
class UtteranceScores:
    """Every metric of one scored utterance: one row of a system's ``per_utterance`` table
    (``asdict`` gives the JSON row). ``None``: a judge that was not run or could not score."""

    name: str
    duration_s: float
    timbre_target: float | None = None
    timbre_source: float | None = None
    timbre_accepted: bool | None = None
    naturalness: float | None = None
    sim_target: float | None = None
    sim_source: float | None = None
    accepted: bool | None = None
    transcript: str | None = None
    source_transcript: str | None = None
    cer: float | None = None
    wer: float | None = None
    ref_transcript: str | None = None
    cer_ref: float | None = None
    wer_ref: float | None = None
    mcd: float | None = None
    lsd: float | None = None
    f0_hz: float | None = None
    f0_log_mean: float | None = None
    f0_log_std: float | None = None
    voiced_fraction: float | None = None
    f0_mean_diff_st: float | None = None
    f0_std_ratio: float | None = None
    melody: float | None = None
    seam: float | None = None


@dataclass(frozen=True)
class ReportExample:
    """Audio shown in the report: spectrogram triptych and players (``target`` optional)."""

    name: str
    source: np.ndarray
    converted: np.ndarray
    target: np.ndarray | None = None
    sample_rate: int = SAMPLE_RATE


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (e.g. the checkpoint being evaluated)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()




# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN and infinities become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
