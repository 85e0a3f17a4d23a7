"""Evaluation results -> ``report.json`` + a self-contained ``report.html``.

``evaluate_systems`` scores several systems on the same utterances and returns the results
dict (schema below); ``write_report`` writes it as JSON and as one HTML file with no external
URL: tables, inline-SVG bar charts, base64-PNG spectrogram triptychs (source / converted /
target, drawn by a small numpy PNG writer) and ``<audio>`` players with base64 WAV.

Results schema (``RESULTS_SCHEMA``)::

    {"schema": "melganvc.report/1", "sample_rate": 16000,
     "systems": {"converted": {"per_utterance": [{"name": ..., "naturalness": ...,
                                                  "sim_target": ..., "cer": ..., ...}, ...],
                               "mean": {"naturalness": ..., "accept_rate": ..., ...},
                               "f0_pooled": {...}},
                 "identity": {...}, "oracle": {...}},
     "references": {"target": {"utterances": n, "f0": {...}}, "source": {...},
                    "target_source_cosine": ...},
     "metrics": {key: {"label": ..., "better": "higher" | "lower" | "closer to 0", ...}},
     "analysis": {"asr": "whisper tiny.en" | ... | None, "asr_details": {...} | None,
                  "naturalness": "DistillMOS v7 ..." | None, "naturalness_details": ...},
     "config": {...} | None, "checkpoint_sha256": "..." | None, "rtf": ... | None,
     "checkpoints": {"converted:<run>": {"path": ..., "sha256": ...}, ...}  (several only;
                    "rtf" is then {"converted:<run>": ..., ...}),
     "timing_s": {"naturalness": ..., "speaker": ..., "asr": ..., "spectral": ..., "f0": ...}}

Metrics a system could not get (no encoder, no ASR, no parallel reference) are ``None``.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from melganvc.evaluation.content import corpus_error_rates, error_rates
from melganvc.evaluation.pitch import F0Stats, f0_contour, f0_stats_from_contours, semitones
from melganvc.evaluation.results import (
    ACCEPT_KEYS,
    CORPUS_METRICS,
    METRICS,
    RESULTS_SCHEMA,
    EvalItem,
)
from melganvc.evaluation.spectral import (
    SpectralConfig,
    spectral_distance,
    timbre_profile,
)
from melganvc.judges.protocols import QualityJudge, Recogniser
from melganvc.judges.speaker import SpeakerEncoder, centroid_of, cosine, speaker_scores
from melganvc.judges.waves import SAMPLE_RATE, wave_key
from melganvc.version import __version__

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _f0_dict(stats: F0Stats) -> dict[str, float | int]:
    return {"log_mean": stats.log_mean, "log_std": stats.log_std, "mean_hz": stats.mean_hz,
            "voiced_fraction": stats.voiced_fraction, "voiced_frames": stats.voiced_frames}


def _nanmean(values: Sequence[Any]) -> float | None:
    numbers = [float(v) for v in values
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    return float(np.mean(numbers)) if numbers else None


def _as_item(item: EvalItem | Sequence[Any]) -> EvalItem:
    if isinstance(item, EvalItem):
        return item
    return EvalItem(*item)


def _judge_name(judge: object | None) -> str | None:
    return None if judge is None else str(getattr(judge, "name", type(judge).__name__))


def _judge_details(judge: object | None) -> dict[str, Any] | None:
    """What a judge says about itself (model, hashes, decoding), for the record."""
    describe = getattr(judge, "describe", None)
    return dict(describe()) if callable(describe) else None


class _BackgroundTranscripts:
    """Every transcript an evaluation needs, computed on one worker thread while the main
    thread runs the other judges.

    The recognisers decode in native code that releases the GIL (CTranslate2 for Whisper), so
    on a 2-core machine Whisper and DistillMOS run side by side instead of taking turns
    (Whisper costs about 1.2 s of CPU per utterance whatever its length, the longest job). A
    recogniser that declares ``concurrency`` > 1 (Whisper with two CTranslate2 workers) gets
    that many worker threads, so its queue is not the one long path; pocketsphinx keeps one.
    A transcript depends only on its waveform, so the results do not depend on the timing."""

    def __init__(self, transcriber: Recogniser, waves: Sequence[np.ndarray],
                 sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._durations: list[float] = []
        self._transcriber = transcriber
        workers = max(1, int(getattr(transcriber, "concurrency", 1)))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="melganvc-asr")
        self._jobs: dict[str, Future[str]] = {}
        for wave in waves:
            key = wave_key(wave, sample_rate)
            if key not in self._jobs:
                self._jobs[key] = self._pool.submit(self._transcribe, wave)

    def _transcribe(self, wave: np.ndarray) -> str:
        start = time.perf_counter()
        try:
            return self._transcriber.transcribe(wave, self.sample_rate)
        finally:
            self._durations.append(time.perf_counter() - start)  # append: thread-safe

    @property
    def busy_s(self) -> float:
        """Seconds spent transcribing, summed over the workers."""
        return float(sum(self._durations))

    def get(self, wave: np.ndarray) -> str:
        """The transcript of ``wave`` (waits for the worker; computed here if not queued)."""
        job = self._jobs.get(wave_key(wave, self.sample_rate))
        return job.result() if job is not None else self._transcriber.transcribe(
            wave, self.sample_rate)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _asr_waves(items: Sequence[EvalItem]) -> list[np.ndarray]:
    """The audio to transcribe, in the order the scoring loop asks for it."""
    waves: list[np.ndarray] = []
    for item in items:
        if item.source is None and item.reference is None:
            continue
        waves.append(np.asarray(item.converted, dtype=np.float32).reshape(-1))
        waves += [w for w in (item.source, item.reference) if w is not None]
    return waves


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"naturalness": 0.0, "speaker": 0.0, "asr": 0.0,
                                          "spectral": 0.0, "f0": 0.0}

    def add(self, key: str, start: float) -> None:
        self.seconds[key] += time.perf_counter() - start


@dataclass
class _Scorer:
    """Scores one utterance or one system against the shared references: what the scoring loop
    of ``evaluate_systems`` needs, in one place instead of a dozen loose arguments."""

    sample_rate: int
    cfg: SpectralConfig
    f0_method: str
    target_f0: F0Stats
    timbre: dict[str, Any]
    speaker: dict[str, Any]
    timer: _Timer
    encoder: SpeakerEncoder | None = None
    heard: _BackgroundTranscripts | None = None
    naturalness: QualityJudge | None = None

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

    def _similarity(self, row: dict[str, Any], key: str, vector: np.ndarray,
                    references: dict[str, Any], names: tuple[str, str, str]) -> None:
        tgt = self.centroid(references, "target", key)
        assert tgt is not None  # evaluate_systems refuses to run without target references
        src = self.centroid(references, "source", key)
        row[names[0]] = cosine(vector, tgt)
        if src is not None:
            scores = speaker_scores(vector, tgt, src)
            row[names[1]], row[names[2]] = scores.to_source, scores.accepted

    def _content(self, row: dict[str, Any], wave: np.ndarray, item: EvalItem) -> None:
        """CER/WER against the source's transcript and against the target reading's."""
        row.update(transcript=None, source_transcript=None, cer=None, wer=None,
                   ref_transcript=None, cer_ref=None, wer_ref=None)
        if self.heard is None or (item.source is None and item.reference is None):
            return
        row["transcript"] = self.heard.get(wave)
        if item.source is not None:
            row["source_transcript"] = self.heard.get(item.source)
            row["cer"], row["wer"] = error_rates(row["source_transcript"], row["transcript"])
        if item.reference is not None:
            row["ref_transcript"] = self.heard.get(item.reference)
            row["cer_ref"], row["wer_ref"] = error_rates(row["ref_transcript"], row["transcript"])

    def row(self, item: EvalItem) -> tuple[dict[str, Any], np.ndarray]:
        """Every metric of one utterance, and its F0 contour (pooled per system)."""
        sr, timer = self.sample_rate, self.timer
        wave = np.asarray(item.converted, dtype=np.float32).reshape(-1)
        row: dict[str, Any] = {"name": item.name, "duration_s": wave.size / sr}
        key = wave_key(wave, sr)

        start = time.perf_counter()
        row.update(timbre_source=None, timbre_accepted=None)
        self._similarity(row, key, timbre_profile(wave, self.cfg), self.timbre,
                         ("timbre_target", "timbre_source", "timbre_accepted"))
        timer.add("spectral", start)

        row["naturalness"] = None
        if self.naturalness is not None:
            start = time.perf_counter()
            row["naturalness"] = self.naturalness.score(wave, sr)
            timer.add("naturalness", start)

        row.update(sim_target=None, sim_source=None, accepted=None)
        if self.encoder is not None:
            start = time.perf_counter()
            self._similarity(row, key, self.encoder.embed(wave, sr), self.speaker,
                             ("sim_target", "sim_source", "accepted"))
            timer.add("speaker", start)

        self._content(row, wave, item)  # timed by the worker (timing_s["asr"])

        row.update(mcd=None, lsd=None)
        if item.reference is not None:
            start = time.perf_counter()
            distance = spectral_distance(wave, item.reference, sr, self.cfg)
            row["mcd"], row["lsd"] = distance.mcd, distance.lsd
            timer.add("spectral", start)

        start = time.perf_counter()
        contour = f0_contour(wave, sr, self.f0_method)
        timer.add("f0", start)
        stats, target = f0_stats_from_contours([contour]), self.target_f0
        row.update(
            f0_hz=stats.mean_hz, f0_log_mean=stats.log_mean, f0_log_std=stats.log_std,
            voiced_fraction=stats.voiced_fraction,
            f0_mean_diff_st=semitones(stats.log_mean - target.log_mean),
            f0_std_ratio=(stats.log_std / target.log_std if target.log_std > 0
                          else float("nan")),
        )
        return row, contour

    def system(self, name: str, items: Sequence[EvalItem],
               say: Callable[[str], None]) -> dict[str, Any]:
        """Per-utterance rows, their means and corpus-level rates, and pooled F0."""
        rows: list[dict[str, Any]] = []
        contours: list[np.ndarray] = []
        for index, item in enumerate(items, 1):
            say(f"{name} {index}/{len(items)} {item.name}")
            row, contour = self.row(item)
            rows.append(row)
            contours.append(contour)
        pooled = f0_stats_from_contours(contours)
        return {"per_utterance": rows, "mean": _means(rows),
                "f0_pooled": {**_f0_dict(pooled),
                              "mean_diff_st": semitones(pooled.log_mean
                                                        - self.target_f0.log_mean)}}


def _means(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A system's mean of every metric (accept rates as shares) and its corpus CER/WER."""
    mean: dict[str, Any] = {"utterances": len(rows)}
    for key in METRICS:
        if key in ACCEPT_KEYS:
            accepted = [r[ACCEPT_KEYS[key]] for r in rows if r[ACCEPT_KEYS[key]] is not None]
            mean[key] = float(np.mean(accepted)) if accepted else None
        else:
            mean[key] = _nanmean([r.get(key) for r in rows])
    for suffix, against in (("", "source_transcript"), ("_ref", "ref_transcript")):
        scored = [r for r in rows if r[against] is not None]
        rates = (corpus_error_rates([r[against] for r in scored],
                                    [r["transcript"] for r in scored])
                 if scored else (None, None))
        mean[f"cer{suffix}_corpus"], mean[f"wer{suffix}_corpus"] = rates
    return mean


def evaluate_systems(
    systems: Mapping[str, Sequence[EvalItem | Sequence[Any]]],
    *,
    target_refs: Sequence[np.ndarray],
    source_refs: Sequence[np.ndarray] = (),
    encoder: SpeakerEncoder | None = None,
    transcriber: Recogniser | None = None,
    naturalness: QualityJudge | None = None,
    sample_rate: int = SAMPLE_RATE,
    f0_method: str = "auto",
    spectral: SpectralConfig | None = None,
    config: Mapping[str, Any] | None = None,
    checkpoint_sha256: str | None = None,
    rtf: float | Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every system's utterances and return the results dict (see the module docstring).

    ``systems`` maps a system name to its items (``EvalItem`` or ``(name, converted, source,
    reference)`` tuples), typically::

        "converted": G(source)                 source=source  reference=parallel target utt
        "identity":  source resynthesised      source=source  reference=parallel target utt
        "oracle":    target speaker's utt      source=parallel source utt or None

    ``target_refs`` / ``source_refs``: utterances of the two speakers for the centroids and the
    reference F0 statistics. An item whose audio is byte-identical to one of them is scored
    against a centroid that leaves that utterance out, so an oracle made of reference
    utterances is not flattered. ``encoder`` / ``transcriber`` / ``naturalness`` ``None`` skip
    those metrics. With a transcriber, an item with a ``reference`` also gets ``cer_ref`` /
    ``wer_ref``: its transcript against the transcript of the target speaker reading the same
    sentence (the source's transcript can carry the source speaker's own misrecognitions).
    """
    if not target_refs:
        raise ValueError("evaluate_systems needs at least one target-speaker reference")
    cfg = spectral or SpectralConfig(sample_rate=sample_rate)
    timer = _Timer()
    say = progress or (lambda _msg: None)

    start = time.perf_counter()
    target_contours = [f0_contour(w, sample_rate, f0_method) for w in target_refs]
    source_contours = [f0_contour(w, sample_rate, f0_method) for w in source_refs]
    timer.add("f0", start)
    target_f0 = f0_stats_from_contours(target_contours)
    source_f0 = f0_stats_from_contours(source_contours)

    def references_of(embed: Callable[[list[np.ndarray]], np.ndarray]) -> dict[str, Any]:
        out = {}
        for role, refs in (("target", target_refs), ("source", source_refs)):
            embeddings = embed(list(refs))
            out[role] = {"embeddings": embeddings,
                         "keys": [wave_key(w, sample_rate) for w in refs],
                         "centroid": centroid_of(embeddings) if len(refs) else None}
        return out

    speaker: dict[str, Any] = {}
    if encoder is not None:
        start = time.perf_counter()
        say("speaker embeddings of the reference utterances")
        speaker = references_of(lambda waves: encoder.embed_many(waves, sample_rate))
        timer.add("speaker", start)
    start = time.perf_counter()
    timbre = references_of(lambda waves: np.array([timbre_profile(w, cfg) for w in waves])
                           .reshape(len(waves), cfg.n_mels))
    timer.add("spectral", start)

    all_items = {name: [_as_item(item) for item in raw] for name, raw in systems.items()}
    heard = (_BackgroundTranscripts(
        transcriber, [w for items in all_items.values() for w in _asr_waves(items)],
        sample_rate) if transcriber is not None else None)
    scorer = _Scorer(sample_rate, cfg, f0_method, target_f0, timbre, speaker, timer, encoder,
                     heard, naturalness)
    try:
        results_systems = {name: scorer.system(name, items, say)
                           for name, items in all_items.items()}
    finally:
        if heard is not None:
            heard.close()
            timer.seconds["asr"] = heard.busy_s

    references: dict[str, Any] = {
        "target": {"utterances": len(target_refs), "f0": _f0_dict(target_f0)},
        "source": {"utterances": len(source_refs), "f0": _f0_dict(source_f0)},
        "target_source_cosine": None,
    }
    if speaker.get("source", {}).get("centroid") is not None:
        references["target_source_cosine"] = cosine(speaker["target"]["centroid"],
                                                    speaker["source"]["centroid"])
    return {
        "schema": RESULTS_SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "melganvc_version": __version__,
        "sample_rate": sample_rate,
        "systems": results_systems,
        "references": references,
        "metrics": {**METRICS, **CORPUS_METRICS},
        "analysis": {"f0_method": f0_method, "speaker_encoder": "resemblyzer" if encoder else None,
                     "asr": _judge_name(transcriber), "asr_details": _judge_details(transcriber),
                     "naturalness": _judge_name(naturalness),
                     "naturalness_details": _judge_details(naturalness),
                     "spectral": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}},
        "config": dict(config) if config is not None else None,
        "checkpoint_sha256": checkpoint_sha256,
        "rtf": rtf,
        "timing_s": timer.seconds,
    }
