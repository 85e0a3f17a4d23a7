"""Atomic file writes: a crash or a bad input never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temp file lives in the same folder so the final ``os.replace`` is atomic on POSIX.
    It keeps the target's suffix so libraries that infer formats from names still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, (suffix if suffix is not None else path.suffix) + ".tmp")
    try:
        yield tmp
        _fsync(tmp)  # data on disk before the rename, so a power cut cannot leave an empty file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)  # and the rename itself


def _fsync(path: Path) -> None:
    """Flush a file's or folder's data to disk (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path, suffix: str) -> Path:
    """A new empty ``.<name>.<random><suffix>`` beside ``path``, with the umask's permissions
    (``mkstemp`` would make every output private, mode 0600)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temps(folder: Path, *names: str) -> list[Path]:
    """Delete temp files that a killed ``atomic_path`` writer left beside ``names`` in ``folder``.

    A kill between ``mkstemp`` and the final rename leaves ``.<name>.<random><suffix>.tmp``;
    it is harmless (the target is untouched) but can be as big as a checkpoint, so the next
    writer of the folder clears them. Only call this for a folder one process writes at a time.
    """
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed
