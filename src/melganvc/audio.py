"""Audio in and out: any file libsndfile reads -> mono float32 at the configured rate, and back.

Every problem with a user's file becomes an ``AudioError`` naming the file and the reason, so
the CLI can print one line instead of a traceback. Writes are atomic and tagged as converted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf
import soxr

from melganvc import __version__
from melganvc.errors import AudioError
from melganvc.io_utils import atomic_path

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".opus"}
PROVENANCE = f"converted by melganvc {__version__} (voice conversion; synthetic audio)"
MIN_SAMPLE_RATE = 1000  # lower rates are broken or hostile headers (and would upsample 16x+)
MAX_AMPLITUDE = 1e6  # float files may exceed 1.0 (even int16-scaled floats do), not by this
UNKNOWN_FRAMES = 2**63 - 1  # what libsndfile reports when a header does not give the length
READ_SAMPLES = 1 << 22  # samples per read: a header's claimed length is never allocated up front


def is_audio_path(path: Path) -> bool:
    """Cheap name-based filter for folder walks; the real check happens when reading."""
    return path.suffix.lower() in AUDIO_SUFFIXES


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).split(":")[-1].strip() or "unknown format"
        raise AudioError(path, f"not a readable audio file ({reason})") from None
    except OSError as exc:
        raise AudioError(path, f"cannot open ({exc.strerror or exc})") from None
    if handle.frames == 0 or handle.samplerate <= 0:
        handle.close()
        raise AudioError(path, "contains no audio (zero length)")
    if handle.samplerate < MIN_SAMPLE_RATE:
        handle.close()
        raise AudioError(path, f"sample rate {handle.samplerate} Hz is not supported "
                               f"(need at least {MIN_SAMPLE_RATE} Hz)")
    return handle


def _sequential(handle: sf.SoundFile) -> sf.SoundFile:
    """Mark ``handle`` for front-to-back reading only.

    After every read soundfile re-seeks to where the read ended; in a FLAC whose header holds
    no length (streamed encoders write 0, libsndfile then reports 2^63 frames) or a wrong one,
    that seek fails at the end of the data, and the samples just read are lost. libsndfile has
    already advanced the position, so for sequential reads the seek is redundant: skip it.
    """
    handle.seekable = lambda: False  # the instance attribute shadows the method
    return handle


def _unknown_length(handle: sf.SoundFile) -> bool:
    return handle.frames >= UNKNOWN_FRAMES


def _read_block(path: Path, handle: sf.SoundFile, frames: int) -> np.ndarray:
    try:
        return handle.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, f"corrupt or truncated audio ({exc})") from None


def _block_frames(handle: sf.SoundFile, frames: int) -> int:
    """``frames`` per read, capped so one read holds at most ``READ_SAMPLES`` samples."""
    return max(1, min(frames, READ_SAMPLES // max(1, handle.channels)))


def _check_finite(path: Path, block: np.ndarray) -> None:
    if not block.size:
        return
    peak = float(np.abs(block).max())  # NaN propagates through max
    if not np.isfinite(peak):
        raise AudioError(path, "contains NaN or infinite samples")
    if peak > MAX_AMPLITUDE:
        raise AudioError(path, f"samples far outside [-1, 1] (peak {peak:.3g}): "
                               "a damaged floating-point file?")


def _to_mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)


def audio_info(path: str | Path) -> tuple[int, int]:
    """(sample_rate, frames) without reading samples (unless the header does not say how many:
    then they are counted); raises ``AudioError`` on bad files."""
    path = Path(path)
    with _open(path) as handle:
        if not _unknown_length(handle):
            return handle.samplerate, handle.frames
        _sequential(handle)
        block, frames = _block_frames(handle, READ_SAMPLES), 0
        while True:
            count = _read_block(path, handle, block).shape[0]
            frames += count
            if count < block:
                break
        if frames == 0:
            raise AudioError(path, "contains no audio (zero length)")
        return handle.samplerate, frames


def load(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (downmix, then soxr resampling).

    Returns shape ``(samples,)``. Raises ``AudioError`` for unreadable, empty or non-finite audio.
    """
    path = Path(path)
    with _sequential(_open(path)) as handle:
        # Read in bounded blocks until the data ends: headers can lie about the length (a FLAC
        # of unknown length reports 2^63 frames, a damaged one any number).
        source_rate, block, pieces = handle.samplerate, _block_frames(handle, READ_SAMPLES), []
        while True:
            data = _read_block(path, handle, block)
            _check_finite(path, data)
            if data.shape[0]:
                pieces.append(_to_mono(data))
            if data.shape[0] < block:
                break
    if not pieces:
        raise AudioError(path, "contains no audio (zero length)")
    mono = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32)
    if mono.size == 0:
        raise AudioError(path, "too short to resample (zero samples at the target rate)")
    return np.ascontiguousarray(mono)


def iter_blocks(path: str | Path, sample_rate: int, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks at ``sample_rate`` so hour-long files never sit in memory whole."""
    path = Path(path)
    with _sequential(_open(path)) as handle:
        source_rate = handle.samplerate
        block = _block_frames(handle, int(block_seconds * source_rate))
        stream = soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32", quality="HQ") \
            if source_rate != sample_rate else None
        while True:
            data = _read_block(path, handle, block)
            last = data.shape[0] < block
            _check_finite(path, data)
            mono = _to_mono(data)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if mono.size:
                yield mono
            if last:
                break


class AudioWriter:
    """Incremental, atomic writer: blocks go to a temp file renamed into place on ``close()``.

    Used as a context manager; if the block raises, the temp file is removed and no output
    file appears.
    """

    def __init__(self, path: str | Path, sample_rate: int, subtype: str | None = None) -> None:
        self.path = Path(path)
        fmt = WRITE_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise AudioError(self.path, f"cannot write '{self.path.suffix}' (use .wav or .flac)")
        self._format, self._rate = fmt, sample_rate
        self._subtype = subtype or ("PCM_16" if fmt == "FLAC" else "FLOAT")
        self._ctx = atomic_path(self.path)
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> Self:
        try:
            tmp = self._ctx.__enter__()
        except OSError as exc:
            raise AudioError(self.path, f"cannot write ({exc.strerror or exc})") from None
        try:
            self._file = sf.SoundFile(str(tmp), "w", self._rate, 1, self._subtype, format=self._format)
            self._file.comment = PROVENANCE  # FLAC needs strings before the first sample
            self._file.software = f"melganvc {__version__}"
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self._ctx.__exit__(type(exc), exc, None)
            raise AudioError(self.path, f"cannot write ({exc})") from None
        return self

    def write(self, block: np.ndarray) -> None:
        assert self._file is not None
        block = np.asarray(block, dtype=np.float32)
        if block.size and not np.isfinite(block).all():  # never write a file of NaN
            raise AudioError(self.path, "the output has NaN or infinite samples; nothing written")
        try:
            self._file.write(np.clip(block, -1.0, 1.0))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:  # e.g. no space left
            raise AudioError(self.path, f"cannot write ({exc})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        failure = None
        if self._file is not None:
            try:
                self._file.close()
            except (sf.LibsndfileError, RuntimeError, OSError) as error:
                failure = error
        if exc_type is None and failure is not None:
            self._ctx.__exit__(type(failure), failure, failure.__traceback__)  # drops the temp file
            raise AudioError(self.path, f"cannot write ({failure})") from None
        try:
            self._ctx.__exit__(exc_type, exc, tb)  # success: rename into place; else: clean up
        except OSError as error:  # the rename failed, e.g. the target is a folder
            raise AudioError(self.path, f"cannot write ({error.strerror or error})") from None


def save(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform atomically as wav (float) or flac (16-bit) with the provenance tag."""
    waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
    with AudioWriter(path, sample_rate) as writer:
        writer.write(waveform)


def read_comment(path: str | Path) -> str:
    """The file's comment tag (tests and users can check provenance)."""
    with sf.SoundFile(str(path)) as handle:
        return handle.comment
