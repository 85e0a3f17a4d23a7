"""Speaker identity with resemblyzer d-vectors (GE2E; weights inside the wheel):
embeddings, centroids, cosine scores and the accept rate."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from melganvc.dsp.resample import resample
from melganvc.judges.waves import (
    _PKG_RESOURCES_WARNING,
    SAMPLE_RATE,
    _as_wave,
    _torch_threads,
    wave_key,
)

# ---------------------------------------------------------------------------------------------
# Speaker similarity
# ---------------------------------------------------------------------------------------------


class SpeakerEncoder:
    """resemblyzer's speaker encoder (256-d, L2-normalised d-vectors), loaded once.

    The weights are ``resemblyzer/pretrained.pt`` inside the installed wheel: nothing is fetched.
    Embeddings are cached per waveform content, so a source utterance scored in several systems
    is encoded once. ``num_threads`` (default 1) is the torch thread count used while encoding.
    """

    def __init__(self, device: str = "cpu", num_threads: int | None = 1) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PKG_RESOURCES_WARNING)
            warnings.filterwarnings("ignore", message=r".*scipy\.ndimage.*",
                                    category=DeprecationWarning)
            from resemblyzer import VoiceEncoder, preprocess_wav
        self._preprocess = preprocess_wav
        self.num_threads = num_threads
        with _torch_threads(num_threads):
            self.model = VoiceEncoder(device=device, verbose=False)
        self.model.eval()
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self.model.linear.out_features)

    def embed(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Unit-norm float32 embedding ``(256,)``; all-NaN for (near-)silent input."""
        key = wave_key(wave, sample_rate)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        wave = resample(_as_wave(wave), sample_rate, SAMPLE_RATE)
        if wave.size == 0 or float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) < 1e-5:
            embedding = np.full(self.dim, np.nan, dtype=np.float32)
        else:
            with np.errstate(divide="ignore"):
                trimmed = self._preprocess(wave.astype(np.float32), source_sr=SAMPLE_RATE)
            if trimmed.size < SAMPLE_RATE // 4:  # the VAD removed nearly everything: keep it all
                trimmed = wave
            with _torch_threads(self.num_threads):
                embedding = self.model.embed_utterance(np.asarray(trimmed, dtype=np.float32))
            embedding = np.asarray(embedding, dtype=np.float32)
        self._cache[key] = embedding
        return embedding

    def embed_many(self, waves: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Stacked embeddings ``(len(waves), 256)``."""
        if not waves:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.embed(w, sample_rate) for w in waves])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (NaN if either is NaN or zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if not np.isfinite(norm) or norm == 0.0:
        return float("nan")
    return float(np.dot(a, b) / norm)


def centroid_of(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalised mean of the finite rows of ``embeddings`` (NaN vector if none)."""
    embeddings = np.asarray(embeddings, dtype=np.float64).reshape(-1, embeddings.shape[-1])
    good = embeddings[np.isfinite(embeddings).all(axis=1)]
    if good.shape[0] == 0:
        return np.full(embeddings.shape[-1], np.nan, dtype=np.float32)
    mean = good.mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def speaker_centroid(encoder: SpeakerEncoder, waves: Sequence[np.ndarray],
                     sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A speaker's centroid: the normalised mean embedding of its utterances ``(256,)``."""
    if not waves:
        raise ValueError("speaker_centroid needs at least one utterance")
    return centroid_of(encoder.embed_many(waves, sample_rate))


@dataclass(frozen=True)
class SpeakerScores:
    """Cosine of one utterance's embedding to the target and the source centroid."""

    to_target: float
    to_source: float

    @property
    def accepted(self) -> bool:
        """True when the utterance is closer to the target speaker than to the source."""
        return bool(np.isfinite(self.to_target) and np.isfinite(self.to_source)
                    and self.to_target > self.to_source)


def speaker_scores(embedding: np.ndarray, target_centroid: np.ndarray,
                   source_centroid: np.ndarray) -> SpeakerScores:
    """Similarity of one embedding to the target and the source centroid."""
    return SpeakerScores(cosine(embedding, target_centroid), cosine(embedding, source_centroid))


def speaker_similarity(encoder: SpeakerEncoder, wave: np.ndarray, target_centroid: np.ndarray,
                       source_centroid: np.ndarray,
                       sample_rate: int = SAMPLE_RATE) -> SpeakerScores:
    """Embed ``wave`` and score it against both centroids."""
    return speaker_scores(encoder.embed(wave, sample_rate), target_centroid, source_centroid)


def accept_rate(scores: Sequence[SpeakerScores]) -> float:
    """Share of utterances closer to the target centroid than to the source centroid."""
    if not scores:
        return float("nan")
    return float(np.mean([s.accepted for s in scores]))
