"""Audio out: atomic, incremental wav/flac writing, tagged as converted (``PROVENANCE``), so
no half-written file ever appears under the final name and every output says what made it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import soundfile as sf

from melganvc.errors import AudioError
from melganvc.io.files import atomic_path, sweep_stale_temps, write_failure_reason
from melganvc.version import __version__

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
PROVENANCE_PREFIX = "converted by melganvc"  # what the detector looks for
PROVENANCE = f"{PROVENANCE_PREFIX} {__version__} (voice conversion; synthetic audio)"


class AudioWriter:
    """Incremental, atomic writer: blocks go to a temp file moved into place on ``close()``.

    Used as a context manager; if the block raises, the temp file is removed and no output
    file appears. With ``overwrite=False`` an existing file is never replaced, not even one
    that another process wrote while this one was converting. The first writer into a folder
    (per process) clears the temp files that killed writers left there; temps that live
    writers hold locked are kept (see ``io.files``), so processes may share an output folder.
    """

    _swept: ClassVar[set[str]] = set()  # folders this process has cleared already
    _SF_ERR_SYSTEM: ClassVar[int] = 2  # libsndfile's code for "a system call failed"

    def __init__(self, path: str | Path, sample_rate: int, subtype: str | None = None,
                 overwrite: bool = True, channels: int = 1, provenance: bool = True) -> None:
        self.path = Path(path)
        fmt = WRITE_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise AudioError(self.path, f"cannot write '{self.path.suffix}' (use .wav or .flac)")
        self._format, self._rate, self._channels = fmt, sample_rate, channels
        self._provenance = provenance  # False: not our output (e.g. a recorded microphone)
        self._subtype = subtype or ("PCM_16" if fmt == "FLAC" else "FLOAT")
        self._ctx = atomic_path(self.path, replace=overwrite)
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> Self:
        self._sweep_once(self.path.parent)
        try:
            tmp = self._ctx.__enter__()
        except OSError as exc:
            raise AudioError(self.path, f"cannot write ({self._reason(exc)})") from None
        try:
            self._file = sf.SoundFile(str(tmp), "w", self._rate, self._channels, self._subtype, format=self._format)
            if self._provenance:  # FLAC needs strings before the first sample
                self._file.comment = PROVENANCE
            self._file.software = f"melganvc {__version__}"
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            reason = self._reason(exc)  # before the cleanup frees the temp file's space
            self._ctx.__exit__(type(exc), exc, None)
            raise AudioError(self.path, f"cannot write ({reason})") from None
        return self

    def write(self, block: np.ndarray) -> None:
        assert self._file is not None
        block = np.asarray(block, dtype=np.float32)
        if block.size and not np.isfinite(block).all():  # never write a file of NaN
            raise AudioError(self.path, "the output has NaN or infinite samples; nothing written")
        try:
            self._file.write(np.clip(block, -1.0, 1.0))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:  # e.g. no space left
            raise AudioError(self.path, f"cannot write ({self._reason(exc)})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        failure = None
        if self._file is not None:
            try:
                self._file.close()
            except (sf.LibsndfileError, RuntimeError, OSError) as error:
                failure = error
        if exc_type is not None:  # the caller's error propagates; the temp file goes
            self._ctx.__exit__(exc_type, exc, tb)
            return
        if failure is not None:
            reason = self._reason(failure)
            self._ctx.__exit__(type(failure), failure, failure.__traceback__)  # drops the temp file
            raise AudioError(self.path, f"cannot write ({reason})") from None
        try:
            self._ctx.__exit__(None, None, None)  # rename into place
        except FileExistsError:  # overwrite=False and the file appeared while we wrote
            raise AudioError(self.path, "exists (use --overwrite)") from None
        except OSError as error:  # the rename failed, e.g. the target is a folder
            raise AudioError(self.path, f"cannot write ({self._reason(error)})") from None

    def _reason(self, exc: BaseException) -> str:
        """Why writing failed; libsndfile reports any failed system call as "System error.",
        but the errno it hides is still in cffi's record of the call (ENOSPC: disk full)."""
        if isinstance(exc, sf.LibsndfileError) and exc.code == self._SF_ERR_SYSTEM:
            code = getattr(getattr(sf, "_ffi", None), "errno", 0)
            if code:
                return os.strerror(code)
        return write_failure_reason(exc, self.path)

    @classmethod
    def _sweep_once(cls, folder: Path) -> None:
        """Clear left-over ``.NAME.<hex>.wav.tmp``/``.flac.tmp`` in ``folder`` once per process:
        they are remnants of writers killed before their rename (live writers' are kept)."""
        key = os.path.abspath(folder)
        if key not in cls._swept:
            cls._swept.add(key)
            sweep_stale_temps(folder, WRITE_FORMATS)


def save(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform atomically as wav (float) or flac (16-bit) with the provenance tag."""
    waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
    with AudioWriter(path, sample_rate) as writer:
        writer.write(waveform)


def read_comment(path: str | Path) -> str:
    """The file's comment tag (tests and users can check provenance)."""
    with sf.SoundFile(str(path)) as handle:
        return handle.comment
