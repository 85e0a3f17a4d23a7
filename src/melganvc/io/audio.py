"""Audio in: any file libsndfile reads -> mono float32 at the configured rate, whole or in
blocks; the one folder walker; the checks every audio array passes. Writing is
``io.audio_writer``.

Every problem with a user's file becomes an ``AudioError`` naming the file and the reason, so
the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from melganvc.errors import AudioError, UserError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".opus"}
MIN_SAMPLE_RATE = 1000  # lower rates are broken or hostile headers (and would upsample 16x+)
# Higher rates are hostile headers: a 96 KB file "at 2 GHz" costs minutes of resampler set-up.
# 768 kHz is the highest rate audio interfaces and DSD-to-PCM converters use.
MAX_SAMPLE_RATE = 768_000
# Float audio may exceed 1.0 a little (inter-sample peaks, unnormalised mixes); far above it is
# mis-scaled audio -- integer PCM stored as float peaks near 32767 -- which the fixed-level
# features would clip into noise (mel correlation 0.34 with the correctly scaled file).
MAX_AMPLITUDE = 16.0
MAX_CHANNELS = 8  # 2-D arrays: the axis of at most this size (the other longer) is channels
UNKNOWN_FRAMES = 2**63 - 1  # what libsndfile reports when a header does not give the length
READ_SAMPLES = 1 << 22  # samples per read: a header's claimed length is never allocated up front


def is_audio_path(path: Path) -> bool:
    """Cheap name-based filter for folder walks; the real check happens when reading."""
    return path.suffix.lower() in AUDIO_SUFFIXES


def find_audio(root: Path) -> tuple[list[Path], list[Path]]:
    """All audio files under ``root`` (sorted, any depth) and the other files skipped: not
    audio by name, hidden (any part of the path below ``root`` starts with "."), or not a
    regular file (reading a FIFO blocks forever). One rule for training, conversion and
    evaluation, so a file is either used by all of them or by none."""
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    audio: list[Path] = []
    skipped: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        wanted = not hidden and path.is_file() and is_audio_path(path)
        (audio if wanted else skipped).append(path)
    return audio, skipped


def check_sample_rate(rate: int, what: str = "sample rate") -> int:
    """``rate`` as an int within [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]; ``ValueError`` otherwise.

    One rule for headers and API callers: below 1 kHz the resampler upsamples 16x+ (a 1 Hz
    "rate" ran for minutes), far above any real interface it is a lying header.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float, np.floating)) \
            or not float(rate).is_integer():
        raise ValueError(f"{what} must be a whole number of Hz, got {rate!r}")
    rate = int(rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"{what} {rate} Hz is not supported (need {MIN_SAMPLE_RATE}.."
                         f"{MAX_SAMPLE_RATE} Hz)")
    return rate


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if not path.is_file():  # a FIFO would block the read forever; a device never ends
        raise AudioError(path, "not a regular file (a pipe, device or socket)")
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
    try:
        check_sample_rate(handle.samplerate)
    except ValueError as exc:
        handle.close()
        raise AudioError(path, str(exc)) from None
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
                               "integer PCM stored as float, or a damaged file? scale it to "
                               "[-1, 1]")


def as_mono_float32(audio: object) -> np.ndarray:
    """An API caller's array as mono float32 in [-1, 1] (the arrays ``load`` returns).

    Accepts ``(samples,)``, ``(samples, channels)`` and ``(channels, samples)`` -- the layout of
    torchaudio and librosa -- with at most ``MAX_CHANNELS`` channels, told apart by which axis
    is the short one (an ambiguous shape is refused, never guessed). Integer PCM is scaled by
    its range (int16 by 32768, uint8 around 128) as audio files are; booleans, complex numbers
    and float samples far outside [-1, 1] are refused: cast without scaling they convert to
    loud noise. Raises ``TypeError``/``ValueError`` with the reason.
    """
    x = np.asarray(audio)
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer)
                                   or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"audio must be an array of float or integer samples, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"expected audio shaped (samples,), (samples, channels) or (channels, "
                         f"samples), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        middle = (int(info.max) + int(info.min) + 1) / 2  # 0 for signed, 128 for uint8
        x = ((x.astype(np.float64) - middle) / (int(info.max) + 1 - middle)).astype(np.float32)
    else:
        x = x.astype(np.float32, copy=False)
    if x.size:
        peak = float(np.abs(x).max())  # NaN propagates through max
        if not np.isfinite(peak):
            raise ValueError("audio contains NaN or infinite samples")
        if peak > MAX_AMPLITUDE:
            raise ValueError(f"float samples far outside [-1, 1] (peak {peak:.3g}): integer "
                             "PCM cast to float? divide by 32768 (int16) or pass the int array")
    return np.ascontiguousarray(_downmix_2d(x) if x.ndim == 2 else x)


def _downmix_2d(x: np.ndarray) -> np.ndarray:
    """Mono from ``(samples, channels)`` or ``(channels, samples)``: the short axis is channels."""
    rows, cols = x.shape
    if rows <= MAX_CHANNELS and (cols > MAX_CHANNELS or cols == 0):
        axis = 0
    elif cols <= MAX_CHANNELS and (rows > MAX_CHANNELS or rows == 0):
        axis = 1
    else:
        raise ValueError(f"audio shape {x.shape} is ambiguous: pass (samples,), or (samples, "
                         f"channels) / (channels, samples) with at most {MAX_CHANNELS} channels")
    return x.mean(axis=axis, dtype=np.float32)


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


def channel_count(path: str | Path) -> int:
    """How many channels ``path`` has (``AudioError`` on bad files)."""
    path = Path(path)
    with _open(path) as handle:
        return int(handle.channels)


def iter_blocks(path: str | Path, sample_rate: int, block_seconds: float = 10.0, *,
                channels: bool = False) -> Iterator[np.ndarray]:
    """Yield float32 blocks at ``sample_rate`` so hour-long files never sit in memory whole:
    mono ``(samples,)``, or with ``channels`` every channel, ``(samples, channels)``."""
    path = Path(path)
    with _sequential(_open(path)) as handle:
        source_rate, width = handle.samplerate, handle.channels if channels else 1
        block = _block_frames(handle, int(block_seconds * source_rate))
        stream = soxr.ResampleStream(source_rate, sample_rate, width, dtype="float32",
                                     quality="HQ") if source_rate != sample_rate else None
        while True:
            data = _read_block(path, handle, block)
            last = data.shape[0] < block
            _check_finite(path, data)
            out = data.astype(np.float32).reshape(-1, width) if channels else _to_mono(data)
            if stream is not None:
                out = stream.resample_chunk(out, last=last)
            if out.shape[0]:
                yield out
            if last:
                break
