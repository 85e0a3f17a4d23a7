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

import base64
import datetime as _dt
import hashlib
import html
import io
import json
import math
import struct
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from melganvc import __version__
from melganvc.io_utils import atomic_write_text
from melganvc.metrics import (
    SAMPLE_RATE,
    F0Stats,
    QualityJudge,
    Recogniser,
    SpeakerEncoder,
    SpectralConfig,
    centroid_of,
    corpus_error_rates,
    cosine,
    error_rates,
    f0_contour,
    f0_stats_from_contours,
    mel_spectrogram_db,
    semitones,
    speaker_scores,
    spectral_distance,
    timbre_profile,
    wave_key,
)

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


# ---------------------------------------------------------------------------------------------
# Pictures: PNG writer, colour map, spectrograms, SVG bars
# ---------------------------------------------------------------------------------------------


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 array as PNG (zlib, no filters)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    rows = image.reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


# viridis at 9 evenly spaced points; linear interpolation between them is close enough here
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to viridis-like RGB uint8, shape ``values.shape + (3,)``."""
    x = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    low = np.floor(x).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (x - low)[..., None]
    rgb = _VIRIDIS[low] * (1.0 - frac) + _VIRIDIS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def spectrogram_pngs(waves: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE,
                     dynamic_range_db: float = 80.0, row_scale: int = 2) -> list[bytes]:
    """Log-mel spectrogram PNGs (low frequencies at the bottom) on one shared dB scale."""
    cfg = SpectralConfig(sample_rate=sample_rate)
    specs = [mel_spectrogram_db(w, cfg) for w in waves]
    top = max(float(s.max()) for s in specs)
    images = []
    for spec in specs:
        scaled = (spec - (top - dynamic_range_db)) / dynamic_range_db
        rgb = colormap(scaled[::-1])
        images.append(png_bytes(np.repeat(rgb, row_scale, axis=0)))
    return images


def wav_bytes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of a mono wave (peak-limited to [-1, 1])."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0),
             sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_PALETTE = ("#3b6fb6", "#9a9a9a", "#3a9a5b", "#d08c2f", "#a0479a", "#c23b3b")


def svg_bar_chart(title: str, values: Mapping[str, float | None], better: str = "",
                  width: int = 420) -> str:
    """Inline SVG horizontal bar chart, one bar per system (``None`` shows as 'n/a')."""
    row, label_w, value_w, top_pad = 26, 110, 64, 30
    finite = [v for v in values.values() if v is not None and math.isfinite(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    span = (hi - lo) or 1.0
    plot_w = width - label_w - value_w
    zero_x = label_w + plot_w * (0.0 - lo) / span
    height = top_pad + row * len(values) + 8
    caption = f"{title} ({better} is better)" if better else title
    parts = [(f'<svg class="bars" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(caption)}">'),
             f'<text x="4" y="18" font-size="13" font-weight="bold">{html.escape(caption)}</text>']
    for k, (name, value) in enumerate(values.items()):
        y = top_pad + k * row
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" font-size="12" '
                     f'text-anchor="end">{html.escape(name)}</text>')
        if value is None or not math.isfinite(value):
            parts.append(f'<text x="{zero_x + 4:.1f}" y="{y + 16}" font-size="12" '
                         f'fill="#888">n/a</text>')
            continue
        x_end = label_w + plot_w * (value - lo) / span
        x0, bar_w = min(zero_x, x_end), abs(x_end - zero_x)
        colour = _PALETTE[k % len(_PALETTE)]
        parts.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(bar_w, 1.0):.1f}" '
                     f'height="{row - 8}" fill="{colour}"><title>{html.escape(name)}: '
                     f'{value:.4g}</title></rect>')
        parts.append(f'<text x="{label_w + plot_w + 4}" y="{y + 16}" font-size="12">'
                     f'{value:.3g}</text>')
    parts.append(f'<line x1="{zero_x:.1f}" y1="{top_pad}" x2="{zero_x:.1f}" '
                 f'y2="{height - 6}" stroke="#333" stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f0f0f0} td.text{text-align:left;max-width:260px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.triptych{display:flex;gap:8px;align-items:flex-start;overflow-x:auto}
.triptych figure{margin:0} figcaption{font-size:12px;color:#555}
.example{margin-bottom:28px} code{font-size:12px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str,
           text_cols: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for values in rows:
        cells = "".join(
            f'<td class="text">{_fmt(v)}</td>' if i in text_cols else f"<td>{_fmt(v)}</td>"
            for i, v in enumerate(values))
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _present(systems: Mapping[str, Any], key: str, where: str = "mean") -> bool:
    if where == "mean":
        return any(s["mean"].get(key) is not None for s in systems.values())
    return any(r.get(key) is not None for s in systems.values() for r in s["per_utterance"])


def _example_html(example: ReportExample, max_seconds: float) -> str:
    limit = int(max_seconds * example.sample_rate)
    panels = [("source", example.source), ("converted", example.converted)]
    if example.target is not None:
        panels.append(("target", example.target))
    clipped = [(label, np.asarray(w, dtype=np.float32).reshape(-1)[:limit]) for label, w in panels]
    pngs = spectrogram_pngs([w for _, w in clipped], example.sample_rate)
    figures = []
    for (label, wave), png in zip(clipped, pngs, strict=True):
        audio = _data_uri("audio/wav", wav_bytes(wave, example.sample_rate))
        figures.append(
            f'<figure><img alt="{label} spectrogram" src="{_data_uri("image/png", png)}">'
            f"<figcaption>{label} (log-mel, 0–{example.sample_rate // 2000} kHz)</figcaption>"
            f'<audio controls preload="none" src="{audio}">'
            f"</audio></figure>")
    return (f'<div class="example"><h3>{html.escape(example.name)}</h3>'
            f'<div class="triptych">{"".join(figures)}</div></div>')


def render_html(results: Mapping[str, Any], examples: Sequence[ReportExample] = (),
                title: str = "melganvc evaluation", max_audio_seconds: float = 6.0) -> str:
    """The report page as one string (no external resources)."""
    systems: Mapping[str, Any] = results.get("systems", {})
    metrics: Mapping[str, Any] = results.get("metrics", METRICS)
    out = [(f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"),
           f"<h1>{html.escape(title)}</h1>"]

    facts = [("created", results.get("created")), ("melganvc", results.get("melganvc_version")),
             ("checkpoint sha256", results.get("checkpoint_sha256")),
             ("real-time factor", json.dumps(to_jsonable(results.get("rtf")))
              if results.get("rtf") is not None else None)]
    analysis = results.get("analysis") or {}
    facts += [("recogniser (CER/WER)", analysis.get("asr")),
              ("naturalness judge", analysis.get("naturalness"))]
    facts += [(f"{name} checkpoint", f"{info.get('path')} (sha256 {info.get('sha256')})")
              for name, info in (results.get("checkpoints") or {}).items()]
    refs = results.get("references", {})
    for role in ("target", "source"):
        info = refs.get(role)
        if info:
            f0 = info.get("f0", {})
            facts.append((f"{role} references",
                          f"{info.get('utterances')} utterances, F0 {_fmt(f0.get('mean_hz'))} Hz"))
    if refs.get("target_source_cosine") is not None:
        facts.append(("target–source centroid cosine", _fmt(refs["target_source_cosine"])))
    out.append("<p>" + "<br>".join(f"<b>{html.escape(k)}:</b> <code>{_fmt(v)}</code>"
                                   for k, v in facts if v is not None) + "</p>")

    mean_keys = [k for k in metrics if k in METRICS and _present(systems, k)]
    corpus_keys = [k for k in CORPUS_METRICS if _present(systems, k)]
    out.append("<h2>Summary (mean over utterances)</h2>")
    headers = ["system", "n", *[metrics[k]["label"] for k in mean_keys],
               *[CORPUS_METRICS[k]["label"] for k in corpus_keys]]
    rows = [[name, s["mean"].get("utterances"), *[s["mean"].get(k) for k in mean_keys],
             *[s["mean"].get(k) for k in corpus_keys]] for name, s in systems.items()]
    out.append(_table(headers, rows, "summary", frozenset({0})))
    out.append("<p>" + "<br>".join(f"<b>{html.escape(n)}</b>: {html.escape(system_note(n))}"
                                   for n in systems if system_note(n)) + "</p>")
    out.append("<p>" + "<br>".join(
        f"<b>{html.escape(metrics[k]['label'])}</b>: {html.escape(metrics[k].get('note', ''))}"
        + (f" ({html.escape(metrics[k]['better'])} is better)" if metrics[k].get("better") else "")
        for k in mean_keys) + "</p>")

    charts = [svg_bar_chart(metrics[k]["label"], {n: s["mean"].get(k) for n, s in systems.items()},
                            metrics[k].get("better", ""))
              for k in BAR_METRICS if k in mean_keys]
    if charts:
        out.append(f'<h2>Charts</h2><div class="charts">{"".join(charts)}</div>')

    if examples:
        out.append("<h2>Examples</h2>")
        out.extend(_example_html(e, max_audio_seconds) for e in examples)

    out.append("<h2>Per utterance</h2>")
    row_keys = [*ACCEPT_KEYS.values(), *[k for k in METRICS if k not in ACCEPT_KEYS],
                "transcript", "source_transcript", "ref_transcript"]
    for name, system in systems.items():
        keys = [k for k in row_keys if any(r.get(k) is not None for r in system["per_utterance"])]
        labels = [metrics.get(k, {}).get("label", k.replace("_", " ")) for k in keys]
        text_cols = frozenset(i + 1 for i, k in enumerate(keys) if "transcript" in k)
        rows = [[r.get("name"), *[r.get(k) for k in keys]] for r in system["per_utterance"]]
        out.append(f"<h3>{html.escape(name)}</h3>")
        out.append(_table(["utterance", *labels], rows, f"per-utterance system-{html.escape(name)}",
                          text_cols))

    if results.get("config") is not None:
        config_json = json.dumps(to_jsonable(results["config"]), indent=2, sort_keys=True)
        out.append(f"<h2>Configuration</h2><details><summary>config</summary>"
                   f"<pre>{html.escape(config_json)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(out_dir: str | Path, results: Mapping[str, Any],
                 examples: Sequence[ReportExample] = (), *, config: Mapping[str, Any] | None = None,
                 checkpoint_sha256: str | None = None, title: str = "melganvc evaluation",
                 max_examples: int = 3, max_audio_seconds: float = 6.0) -> tuple[Path, Path]:
    """Write ``report.json`` (every number) and ``report.html`` atomically into ``out_dir``.

    ``config`` / ``checkpoint_sha256`` given here override those in ``results``. Only the first
    ``max_examples`` examples are embedded, each clipped to ``max_audio_seconds``, to keep the
    page small. Returns ``(json_path, html_path)``.
    """
    out_dir = Path(out_dir)
    merged = dict(results)
    if config is not None:
        merged["config"] = dict(config)
    if checkpoint_sha256 is not None:
        merged["checkpoint_sha256"] = checkpoint_sha256
    clean = to_jsonable(merged)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    atomic_write_text(json_path, json.dumps(clean, indent=2, allow_nan=False) + "\n")
    atomic_write_text(html_path, render_html(clean, list(examples)[:max_examples], title,
                                             max_audio_seconds))
    return json_path, html_path
