"""Scoring: ``evaluate_systems`` scores several systems on the same utterances and returns the
results dict (schema below); ``report_html.write_report`` writes it as ``report.json`` and as
one self-contained HTML page.

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
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from melganvc.evaluation.music import SeamCheck
from melganvc.evaluation.pitch import F0Stats, f0_contour, f0_stats_from_contours
from melganvc.evaluation.results import CORPUS_METRICS, METRICS, RESULTS_SCHEMA, EvalItem
from melganvc.evaluation.scorer import Scorer, Timer, f0_dict
from melganvc.evaluation.spectral import SpectralConfig, timbre_profile
from melganvc.evaluation.transcripts import BackgroundTranscripts, asr_waves
from melganvc.judges.protocols import QualityJudge, Recogniser
from melganvc.judges.speaker import SpeakerEncoder, centroid_of, cosine
from melganvc.judges.waves import SAMPLE_RATE, wave_key
from melganvc.version import __version__

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _as_item(item: EvalItem | Sequence[Any]) -> EvalItem:
    """Callers may pass plain ``(name, converted, source, reference)`` tuples."""
    if isinstance(item, EvalItem):
        return item
    return EvalItem(*item)


def _judge_name(judge: object | None) -> str | None:
    """The name a judge goes by in the report (its class name if it gives none)."""
    return None if judge is None else str(getattr(judge, "name", type(judge).__name__))


def _judge_details(judge: object | None) -> dict[str, Any] | None:
    """What a judge says about itself (model, hashes, decoding), for the record."""
    describe = getattr(judge, "describe", None)
    return dict(describe()) if callable(describe) else None


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
    melody: bool = False,
    seams: SeamCheck | None = None,
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
    ``melody`` adds the chroma correlation with each item's source, ``seams`` the seam score
    on that model grid (``evaluation.music``).
    """
    if not target_refs:
        raise ValueError("evaluate_systems needs at least one target-speaker reference")
    cfg = spectral or SpectralConfig(sample_rate=sample_rate)
    timer = Timer()
    say = progress or (lambda _msg: None)
    target_f0, source_f0 = _reference_f0(target_refs, source_refs, sample_rate, f0_method, timer)
    speaker = (_speaker_references(encoder, target_refs, source_refs, sample_rate, timer, say)
               if encoder is not None else {})
    timbre = _timbre_references(target_refs, source_refs, sample_rate, cfg, timer)
    all_items = {name: [_as_item(item) for item in raw] for name, raw in systems.items()}
    heard = _start_transcripts(transcriber, all_items, sample_rate)
    scorer = Scorer(sample_rate, cfg, f0_method, target_f0, timbre, speaker, timer, encoder,
                    heard, naturalness, melody, seams)
    results_systems = _score_systems(scorer, all_items, say)
    return {
        "schema": RESULTS_SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "melganvc_version": __version__,
        "sample_rate": sample_rate,
        "systems": results_systems,
        "references": _references_summary(len(target_refs), len(source_refs), target_f0,
                                          source_f0, speaker),
        "metrics": {**METRICS, **CORPUS_METRICS},
        "analysis": _analysis(f0_method, encoder, transcriber, naturalness, cfg),
        "config": dict(config) if config is not None else None,
        "checkpoint_sha256": checkpoint_sha256,
        "rtf": rtf,
        "timing_s": timer.seconds,
    }


def _reference_f0(target_refs: Sequence[np.ndarray], source_refs: Sequence[np.ndarray],
                  sample_rate: int, f0_method: str, timer: Timer) -> tuple[F0Stats, F0Stats]:
    """Pooled F0 statistics of the two speakers' references (the F0 metrics' yardstick)."""
    start = time.perf_counter()
    target_contours = [f0_contour(w, sample_rate, f0_method) for w in target_refs]
    source_contours = [f0_contour(w, sample_rate, f0_method) for w in source_refs]
    timer.add("f0", start)
    return f0_stats_from_contours(target_contours), f0_stats_from_contours(source_contours)


def _references_of(embed: Callable[[list[np.ndarray]], np.ndarray],
                   target_refs: Sequence[np.ndarray], source_refs: Sequence[np.ndarray],
                   sample_rate: int) -> dict[str, Any]:
    """Per role: the references' vectors, their wave keys (to leave one out) and centroid."""
    out = {}
    for role, refs in (("target", target_refs), ("source", source_refs)):
        embeddings = embed(list(refs))
        out[role] = {"embeddings": embeddings,
                     "keys": [wave_key(w, sample_rate) for w in refs],
                     "centroid": centroid_of(embeddings) if len(refs) else None}
    return out


def _speaker_references(encoder: SpeakerEncoder, target_refs: Sequence[np.ndarray],
                        source_refs: Sequence[np.ndarray], sample_rate: int, timer: Timer,
                        say: Callable[[str], None]) -> dict[str, Any]:
    """Speaker embeddings of the references, embedded in one batch per speaker."""
    start = time.perf_counter()
    say("speaker embeddings of the reference utterances")
    speaker = _references_of(lambda waves: encoder.embed_many(waves, sample_rate),
                             target_refs, source_refs, sample_rate)
    timer.add("speaker", start)
    return speaker


def _timbre_references(target_refs: Sequence[np.ndarray], source_refs: Sequence[np.ndarray],
                       sample_rate: int, cfg: SpectralConfig, timer: Timer) -> dict[str, Any]:
    """Mean log-mel profiles of the references: the timbre metrics, which need no encoder."""
    start = time.perf_counter()
    timbre = _references_of(lambda waves: np.array([timbre_profile(w, cfg) for w in waves])
                            .reshape(len(waves), cfg.n_mels),
                            target_refs, source_refs, sample_rate)
    timer.add("spectral", start)
    return timbre


def _start_transcripts(transcriber: Recogniser | None,
                       systems: Mapping[str, Sequence[EvalItem]],
                       sample_rate: int) -> BackgroundTranscripts | None:
    """Queue every transcript before scoring starts, so the ASR runs beside the other judges."""
    if transcriber is None:
        return None
    waves = [w for items in systems.values() for w in asr_waves(items)]
    return BackgroundTranscripts(transcriber, waves, sample_rate)


def _score_systems(scorer: Scorer, systems: Mapping[str, Sequence[EvalItem]],
                   say: Callable[[str], None]) -> dict[str, Any]:
    """Every system's results; the transcript workers are stopped even if scoring fails."""
    try:
        return {name: scorer.system(name, items, say) for name, items in systems.items()}
    finally:
        if scorer.heard is not None:
            scorer.heard.close()
            scorer.timer.seconds["asr"] = scorer.heard.busy_s


def _references_summary(n_target: int, n_source: int, target_f0: F0Stats, source_f0: F0Stats,
                        speaker: dict[str, Any]) -> dict[str, Any]:
    """The references section: counts, F0 and how far apart the two speakers' centroids are."""
    references: dict[str, Any] = {
        "target": {"utterances": n_target, "f0": f0_dict(target_f0)},
        "source": {"utterances": n_source, "f0": f0_dict(source_f0)},
        "target_source_cosine": None,
    }
    if speaker.get("source", {}).get("centroid") is not None:
        references["target_source_cosine"] = cosine(speaker["target"]["centroid"],
                                                    speaker["source"]["centroid"])
    return references


def _analysis(f0_method: str, encoder: SpeakerEncoder | None, transcriber: Recogniser | None,
              naturalness: QualityJudge | None, cfg: SpectralConfig) -> dict[str, Any]:
    """Which judges and settings produced the numbers, for the record."""
    return {"f0_method": f0_method, "speaker_encoder": "resemblyzer" if encoder else None,
            "asr": _judge_name(transcriber), "asr_details": _judge_details(transcriber),
            "naturalness": _judge_name(naturalness),
            "naturalness_details": _judge_details(naturalness),
            "spectral": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
