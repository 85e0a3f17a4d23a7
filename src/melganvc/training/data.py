"""Domain corpora: a folder of audio -> one cached, memory-mapped mel shard -> random crops.

``prepare`` runs once per domain (any depth, any format libsndfile reads). Training then samples
random crops (``model.crop_chunks`` · L frames) straight from the memory map with one fancy-index per batch, so the data
path costs next to nothing and an hour of audio does not need an hour's worth of RAM.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from melganvc.config import FeatureConfig, to_dict
from melganvc.dsp.mel import MelSpectrogram
from melganvc.errors import AudioError, UserError
from melganvc.io.audio import find_audio, load
from melganvc.io.files import (
    PlainWriter,
    atomic_path,
    atomic_write_text,
    remove_stale_temps,
    write_failure_reason,
)

INDEX = "index.json"
SHARD = "mels.npy"
TRIM_TOP_DB = 40.0  # frames this far below the utterance's loudest frame count as silence


def trim_silence(mel: torch.Tensor, top_db: float = TRIM_TOP_DB) -> torch.Tensor:
    """Drop leading/trailing frames quieter than the loudest frame by more than ``top_db``.

    ``mel`` is normalised ``(n_mels, frames)``; frame loudness is its mean normalised level,
    where 2.0 normalised units span 100 dB.
    """
    level = mel.mean(dim=0)
    loud = torch.nonzero(level >= level.max() - top_db / 50.0).flatten()
    if loud.numel() == 0:
        return mel[:, :0]
    return mel[:, int(loud[0]) : int(loud[-1]) + 1]


@dataclass
class PrepareReport:
    kept: int
    frames: int
    too_short: list[str]
    unreadable: list[str]
    non_audio: int


def prepare(source: Path, out: Path, features: FeatureConfig, min_frames: int,
            progress: bool = True) -> PrepareReport:
    """Turn a folder of audio into ``out/mels.npy`` (float16, frames concatenated) + ``index.json``.

    Files shorter than ``min_frames`` after trimming, and unreadable files, are skipped and
    counted; if nothing usable remains it is an error (a cache nobody can train on is useless).
    The index records what the cache was made from (``describe_source``), taken before reading,
    so a file changed meanwhile makes the cache look stale rather than current.
    """
    audio_files, other = find_audio(Path(source))
    if not audio_files:
        raise UserError(f"{source}: no audio files found")
    origin = _source_record(Path(source), audio_files, min_frames)
    extractor = MelSpectrogram(features)
    mels, names, too_short, unreadable = [], [], [], []
    for path in tqdm(audio_files, desc=f"prepare {Path(source).name}", disable=not progress,
                     unit="file"):
        try:
            wave = load(path, features.sample_rate)
        except AudioError as exc:
            unreadable.append(str(exc))
            continue
        with torch.no_grad():
            mel = trim_silence(extractor.long(torch.from_numpy(wave)))
        if mel.shape[1] < min_frames:
            too_short.append(str(path))
            continue
        mels.append(mel.numpy().astype(np.float16))
        names.append(str(path.relative_to(source)))
    if not mels:
        example = (unreadable or [f"{too_short[0]}: shorter than {min_frames} frames"])[0]
        raise UserError(f"{source}: no usable audio (unreadable: {len(unreadable)}, "
                        f"shorter than {min_frames} frames: {len(too_short)}; first: {example})")
    _write_shard(Path(out), mels, names, features, origin)
    frames = sum(m.shape[1] for m in mels)
    return PrepareReport(len(mels), frames, too_short, unreadable, len(other))


def _write_shard(out: Path, mels: list[np.ndarray], names: list[str], features: FeatureConfig,
                 origin: dict[str, Any]) -> None:
    lengths = [m.shape[1] for m in mels]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    index = {"features": to_dict(features), "names": names, "offsets": offsets, "lengths": lengths,
             "source": origin}
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out, SHARD, INDEX)  # left by a killed earlier prepare
        # The index is written last: its presence means "complete". Drop an old one first, so
        # a kill between the two writes cannot pair an old index with a new shard.
        (out / INDEX).unlink(missing_ok=True)
        with atomic_path(out / SHARD) as tmp:
            try:
                with open(tmp, "wb") as fh:  # PlainWriter: a full disk keeps its errno
                    np.save(PlainWriter(fh), np.concatenate(mels, axis=1))
            except OSError as exc:
                raise _unwritable(out, exc, tmp) from None  # while the temp still exists
        atomic_write_text(out / INDEX, json.dumps(index))
    except OSError as exc:
        raise _unwritable(out, exc, out / INDEX) from None


def _unwritable(out: Path, exc: OSError, written: Path) -> UserError:
    return UserError(f"{out}: cannot write the prepared corpus "
                     f"({write_failure_reason(exc, written)})")


def is_prepared(path: Path) -> bool:
    return (path / INDEX).is_file() and (path / SHARD).is_file()


def describe_source(source: Path, min_frames: int) -> dict[str, Any]:
    """What preparing ``source`` now would read: its resolved path and a digest of its audio
    files' names, sizes and modification times. A cache whose index records another
    description holds other audio (``stale_reason``). Raises ``UserError`` if ``source`` is
    not a folder, so a missing ``--a``/``--b`` is an error even when a cache exists."""
    return _source_record(Path(source), find_audio(Path(source))[0], min_frames)


def _source_record(source: Path, audio_files: list[Path], min_frames: int) -> dict[str, Any]:
    digest = hashlib.sha256()
    for path in audio_files:
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:  # vanished or unreadable: prepare will skip it too
            size, mtime = -1, -1
        digest.update(json.dumps([str(path.relative_to(source)), size, mtime]).encode() + b"\n")
    return {"path": str(source.resolve()), "files": len(audio_files),
            "listing": digest.hexdigest(), "min_frames": min_frames}


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        index = json.loads((Path(path) / INDEX).read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def recorded_source(path: Path, index: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The source description a prepared corpus recorded (None: unreadable, or made by a
    melganvc from before sources were recorded); ``index``: its already-read index."""
    found = (index if index is not None else _read_index(path) or {}).get("source")
    return found if isinstance(found, dict) else None


def stale_reason(cache: Path, source: dict[str, Any], features: FeatureConfig) -> str | None:
    """Why the prepared ``cache`` does not hold ``source`` (a ``describe_source``) prepared
    with ``features``, in one clause; None when it is current and can be reused."""
    index = _read_index(cache) or {}
    recorded = recorded_source(cache, index)
    if recorded is None:
        return f"{cache} does not record which audio it was prepared from"
    if recorded.get("path") != source["path"]:
        return f"{cache} was prepared from {recorded.get('path')}, not {source['path']}"
    if index.get("features") != to_dict(features) \
            or recorded.get("min_frames") != source["min_frames"]:
        return f"{cache} was prepared with other feature or crop settings"
    if recorded.get("listing") != source["listing"]:
        return f"{source['path']} changed since {cache} was prepared"
    return None


def corpus_origin(path: Path) -> str:
    """The audio folder behind ``path`` (a prepared corpus's recorded source, else ``path``
    itself), resolved: two domains with one origin are the same audio."""
    recorded = recorded_source(path) if is_prepared(Path(path)) else None
    if recorded and isinstance(recorded.get("path"), str):
        return recorded["path"]
    return str(Path(path).resolve())


class MelCorpus:
    """A prepared domain: random fixed-length crops, uniform over all valid crop positions."""

    def __init__(self, path: Path, features: FeatureConfig, crop_frames: int) -> None:
        path = Path(path)
        if not is_prepared(path):
            raise UserError(f"{path}: not a prepared corpus (run 'melganvc prepare' first)")
        try:
            index = json.loads((path / INDEX).read_text())
            same_features = index["features"] == to_dict(features)
            self.mels = np.load(path / SHARD, mmap_mode="r")
            self.names: list[str] = list(index["names"])
            self.offsets = np.asarray(index["offsets"], dtype=np.int64)
            self.lengths = np.asarray(index["lengths"], dtype=np.int64)
            consistent = (self.mels.ndim == 2 and self.mels.shape[0] == features.n_mels
                          and len(self.names) == self.offsets.size == self.lengths.size
                          and bool(np.all(self.offsets + self.lengths <= self.mels.shape[1])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: damaged prepared corpus ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); "
                            "delete it and prepare again") from None
        if not same_features:
            raise UserError(f"{path}: prepared with different feature settings than this config; "
                            "prepare it again")
        if not consistent:
            raise UserError(f"{path}: damaged prepared corpus (index and mels do not match); "
                            "delete it and prepare again")
        self.path, self.crop_frames = path, crop_frames
        if not (self.lengths >= crop_frames).any():
            raise UserError(f"{path}: every utterance is shorter than a {crop_frames}-frame crop")
        self.hold_out(0)

    def hold_out(self, count: int) -> None:
        """Never crop the first ``count`` utterances (the held-out sample inputs of
        ``train.select_best``); 0: crop them all."""
        positions = self.lengths - self.crop_frames + 1
        keep = positions > 0
        keep[:count] = False
        if not keep.any():
            raise UserError(f"{self.path}: nothing left to train on after holding out {count} "
                            "sample utterances (train.select_best); give more audio or lower "
                            "train.num_eval_examples")
        self._starts, self._positions = self.offsets[keep], positions[keep]
        self._cumulative = np.cumsum(self._positions)

    def __len__(self) -> int:
        return len(self.names)

    def sample(self, rng: np.random.Generator, batch: int) -> torch.Tensor:
        """``batch`` random crops ``(batch, n_mels, crop_frames)`` as float32."""
        flat = rng.integers(0, int(self._cumulative[-1]), size=batch)
        utt = np.searchsorted(self._cumulative, flat, side="right")
        within = flat - (self._cumulative[utt] - self._positions[utt])
        cols = (self._starts[utt] + within)[:, None] + np.arange(self.crop_frames)
        crops = self.mels[:, cols]  # (n_mels, batch, crop)
        return torch.from_numpy(np.ascontiguousarray(crops.transpose(1, 0, 2), dtype=np.float32))

    def utterance(self, i: int) -> torch.Tensor:
        start, length = int(self.offsets[i]), int(self.lengths[i])
        return torch.from_numpy(np.asarray(self.mels[:, start : start + length], dtype=np.float32))


def print_report(source: Path, report: PrepareReport) -> None:
    """Counted warnings go to stderr; a long list of names is shortened."""
    for label, items in (("unreadable", report.unreadable), ("shorter than a crop", report.too_short)):
        if items:
            shown = "; ".join(items[:5]) + (f"; ... (+{len(items) - 5} more)" if len(items) > 5 else "")
            print(f"melganvc: warning: {source}: skipped {len(items)} {label}: {shown}", file=sys.stderr)
    if report.non_audio:
        print(f"melganvc: warning: {source}: ignored {report.non_audio} non-audio files", file=sys.stderr)
