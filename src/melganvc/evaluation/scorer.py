"""Scoring one utterance and one system against the shared references (``Scorer``).

``evaluate_systems`` (in ``scoring``) builds the references once, then hands each system's
items to a ``Scorer``: one row of every metric per utterance, the system's means and corpus
error rates, and its pooled F0. ``Timer`` adds up the seconds each judge took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from melganvc.evaluation.content import corpus_error_rates, error_rates
from melganvc.evaluation.music import SeamCheck, melody_similarity
from melganvc.evaluation.pitch import F0Stats, f0_contour, f0_stats_from_contours, semitones
from melganvc.evaluation.results import ACCEPT_KEYS, METRICS, EvalItem, UtteranceScores
from melganvc.evaluation.spectral import SpectralConfig, spectral_distance, timbre_profile
from melganvc.evaluation.transcripts import BackgroundTranscripts
from melganvc.judges.protocols import QualityJudge
from melganvc.judges.speaker import SpeakerEncoder, centroid_of, cosine, speaker_scores
from melganvc.judges.waves import wave_key


def f0_dict(stats: F0Stats) -> dict[str, float | int]:
    """F0 statistics as the plain JSON the results carry."""
    return {"log_mean": stats.log_mean, "log_std": stats.log_std, "mean_hz": stats.mean_hz,
            "voiced_fraction": stats.voiced_fraction, "voiced_frames": stats.voiced_frames}


def _nanmean(values: Sequence[Any]) -> float | None:
    """Mean of the finite numbers only: a metric a judge could not give (None, NaN) is skipped."""
    numbers = [float(v) for v in values
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    return float(np.mean(numbers)) if numbers else None


class Timer:
    """Seconds spent per judge, reported as ``timing_s``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"naturalness": 0.0, "speaker": 0.0, "asr": 0.0,
                                          "spectral": 0.0, "f0": 0.0}

    def add(self, key: str, start: float) -> None:
        """Charge the time since ``start`` (a ``perf_counter`` reading) to ``key``."""
        self.seconds[key] += time.perf_counter() - start


@dataclass
class Scorer:
    """Scores one utterance or one system against the shared references: what the scoring loop
    of ``evaluate_systems`` needs, in one place instead of a dozen loose arguments."""

    sample_rate: int
    cfg: SpectralConfig
    f0_method: str
    target_f0: F0Stats
    timbre: dict[str, Any]
    speaker: dict[str, Any]
    timer: Timer
    encoder: SpeakerEncoder | None = None
    heard: BackgroundTranscripts | None = None
    naturalness: QualityJudge | None = None
    melody: bool = False  # chroma correlation with the source (music)
    seams: SeamCheck | None = None

    @staticmethod
    def centroid(references: dict[str, Any], role: str, key: str) -> np.ndarray | None:
        """A speaker's centroid, leaving out ``key`` when it is one of that speaker's
        references (so an oracle made of reference utterances is not flattered)."""
        info = references.get(role)
        if info is None or info["centroid"] is None:
            return None
        if key in info["keys"] and len(info["keys"]) > 1:
            return centroid_of(np.delete(info["embeddings"], info["keys"].index(key), axis=0))
        return info["centroid"]

    def _similarity(self, key: str, vector: np.ndarray, references: dict[str, Any]
                    ) -> tuple[float, float | None, bool | None]:
        """Cosine to the target centroid; with source references also to the source's and
        whether the utterance is closer to the target."""
        tgt = self.centroid(references, "target", key)
        assert tgt is not None  # evaluate_systems refuses to run without target references
        src = self.centroid(references, "source", key)
        if src is None:
            return cosine(vector, tgt), None, None
        scores = speaker_scores(vector, tgt, src)
        return cosine(vector, tgt), scores.to_source, scores.accepted

    def _content(self, row: UtteranceScores, wave: np.ndarray, item: EvalItem) -> None:
        """CER/WER against the source's transcript and against the target reading's."""
        if self.heard is None or (item.source is None and item.reference is None):
            return
        row.transcript = self.heard.get(wave)
        if item.source is not None:
            row.source_transcript = self.heard.get(item.source)
            row.cer, row.wer = error_rates(row.source_transcript, row.transcript)
        if item.reference is not None:
            row.ref_transcript = self.heard.get(item.reference)
            row.cer_ref, row.wer_ref = error_rates(row.ref_transcript, row.transcript)

    def row(self, item: EvalItem) -> tuple[UtteranceScores, np.ndarray]:
        """Every metric of one utterance, and its F0 contour (pooled per system)."""
        sr, timer = self.sample_rate, self.timer
        wave = np.asarray(item.converted, dtype=np.float32).reshape(-1)
        row = UtteranceScores(name=item.name, duration_s=wave.size / sr)
        key = wave_key(wave, sr)

        start = time.perf_counter()
        row.timbre_target, row.timbre_source, row.timbre_accepted = self._similarity(
            key, timbre_profile(wave, self.cfg), self.timbre)
        timer.add("spectral", start)

        if self.naturalness is not None:
            start = time.perf_counter()
            row.naturalness = self.naturalness.score(wave, sr)
            timer.add("naturalness", start)

        if self.encoder is not None:
            start = time.perf_counter()
            row.sim_target, row.sim_source, row.accepted = self._similarity(
                key, self.encoder.embed(wave, sr), self.speaker)
            timer.add("speaker", start)

        self._content(row, wave, item)  # timed by the worker (timing_s["asr"])

        if item.reference is not None:
            start = time.perf_counter()
            distance = spectral_distance(wave, item.reference, sr, self.cfg)
            row.mcd, row.lsd = distance.mcd, distance.lsd
            timer.add("spectral", start)

        start = time.perf_counter()
        if self.melody and item.source is not None:
            row.melody = melody_similarity(np.asarray(item.source, np.float32), wave, sr)
        if self.seams is not None:
            row.seam = self.seams.score(wave, sr)
        timer.add("spectral", start)

        start = time.perf_counter()
        contour = f0_contour(wave, sr, self.f0_method)
        timer.add("f0", start)
        stats, target = f0_stats_from_contours([contour]), self.target_f0
        row.f0_hz, row.f0_log_mean, row.f0_log_std = stats.mean_hz, stats.log_mean, stats.log_std
        row.voiced_fraction = stats.voiced_fraction
        row.f0_mean_diff_st = semitones(stats.log_mean - target.log_mean)
        row.f0_std_ratio = (stats.log_std / target.log_std if target.log_std > 0
                            else float("nan"))
        return row, contour

    def system(self, name: str, items: Sequence[EvalItem],
               say: Callable[[str], None]) -> dict[str, Any]:
        """Per-utterance rows, their means and corpus-level rates, and pooled F0."""
        rows: list[UtteranceScores] = []
        contours: list[np.ndarray] = []
        for index, item in enumerate(items, 1):
            say(f"{name} {index}/{len(items)} {item.name}")
            row, contour = self.row(item)
            rows.append(row)
            contours.append(contour)
        pooled = f0_stats_from_contours(contours)
        return {"per_utterance": [asdict(row) for row in rows], "mean": _means(rows),
                "f0_pooled": {**f0_dict(pooled),
                              "mean_diff_st": semitones(pooled.log_mean
                                                        - self.target_f0.log_mean)}}


def _means(rows: Sequence[UtteranceScores]) -> dict[str, Any]:
    """A system's mean of every metric (accept rates as shares) and its corpus CER/WER."""
    mean: dict[str, Any] = {"utterances": len(rows)}
    for key in METRICS:
        values = [getattr(r, ACCEPT_KEYS.get(key, key)) for r in rows]
        if key in ACCEPT_KEYS:
            accepted = [v for v in values if v is not None]
            mean[key] = float(np.mean(accepted)) if accepted else None
        else:
            mean[key] = _nanmean(values)
    for suffix, scored in (("", [(r.source_transcript, r.transcript) for r in rows]),
                           ("_ref", [(r.ref_transcript, r.transcript) for r in rows])):
        pairs = [(ref, hyp or "") for ref, hyp in scored if ref is not None]
        rates = (corpus_error_rates([ref for ref, _ in pairs], [hyp for _, hyp in pairs])
                 if pairs else (None, None))
        mean[f"cer{suffix}_corpus"], mean[f"wer{suffix}_corpus"] = rates
    return mean
