"""Atomic file writes: a crash or a bad input never leaves a half-written output behind.

Every temp file is ``.<name>.<8 hex><suffix>.tmp`` beside its target, and its writer holds an
exclusive ``flock`` on it from creation until it is renamed into place or removed. The kernel
drops that lock when the writer exits, however it exits (even ``kill -9``), so "locked" means
"a live process is writing it" and "unlocked" means "left behind": sweepers delete only unlocked
temps, and several processes may write into one folder at once without losing each other's work.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no liveness locks; see _lock and remove_stale_temps
    fcntl = None  # type: ignore[assignment]

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", the message docs promise
NEARLY_FULL_BYTES = 1 << 20  # an errno-less write failure with less free: disk full
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}(?P<suffix>\.[^.]+)?\.tmp")
# fsync errors that mean the data did not reach the disk (others: the file system cannot fsync)
_LOST_DATA = {errno.EIO, errno.ENOSPC, errno.EDQUOT}
# os.link failures that mean "no hard links on this file system", not "cannot write"
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK,
                  errno.EXDEV}


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` only if the block succeeds.

    The temp file lives in the same folder so the final rename is atomic on POSIX. It keeps
    the target's suffix so libraries that infer formats from names still work. With
    ``replace=False`` an existing ``path`` is never replaced, even one that another process
    created while this block ran: ``FileExistsError`` is raised and the temp file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, lock = _create_temp(path, (suffix if suffix is not None else path.suffix) + ".tmp")
    try:
        try:
            yield tmp
            _fsync(tmp, strict=True)  # data on disk before the rename: a power cut cannot
            _publish(tmp, path, replace)  # leave an empty file
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        os.close(lock)  # only now: until here a sweeper must see the temp as live
    _fsync(path.parent)  # and the rename itself


def _publish(tmp: Path, path: Path, replace: bool) -> None:
    """Move ``tmp`` to ``path``; without ``replace``, atomically refuse an existing ``path``.

    ``os.link`` fails with ``FileExistsError`` if ``path`` exists, with no window between the
    check and the move (``os.replace`` would replace it). File systems without hard links fall
    back to check-then-rename, which leaves a tiny window for a concurrent writer.
    """
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _fsync(path: Path, strict: bool = False) -> None:
    """Flush a file's or folder's data to disk (best effort: some file systems refuse).

    ``strict``: an error saying the data was lost (``EIO``, disk full, quota; network file
    systems report these only here) is raised, so a file that is not complete is not published.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if strict and exc.errno in _LOST_DATA:
            raise
    finally:
        os.close(fd)


def _create_temp(path: Path, suffix: str) -> tuple[Path, int]:
    """A new empty ``.<name>.<8 hex><suffix>`` beside ``path`` and an open descriptor holding
    its liveness lock, with the umask's permissions (``mkstemp`` would make every output
    private, mode 0600). Close the descriptor once the temp is renamed or removed."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        _lock(fd, wait=True)
        if _is_file_at(fd, tmp):
            return tmp, fd
        os.close(fd)  # a sweeper removed it before we locked it: take another name
    raise FileExistsError(f"no free temporary name beside {path}")


def _lock(fd: int, wait: bool) -> bool | None:
    """Take the exclusive liveness lock on ``fd``: True when taken, False when another open
    file holds it (a live writer), None when locks do not work here (no ``fcntl``; some
    network file systems), which sweepers must not take for "left over"."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (nobody removed or replaced it)."""
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _remove_if_left_over(tmp: Path, require_lock: bool) -> bool:
    """Delete ``tmp`` unless a live writer holds its lock; True if it was deleted.

    The candidate is locked (non-blocking) before the unlink, so a writer that is about to lock
    a temp it just created waits for us, then sees its file gone and takes another name.
    """
    try:
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # gone already, a symlink, or not ours to read
    try:
        locked = _lock(fd, wait=False)
        if locked is False or (locked is None and require_lock):
            return False
        if not _is_file_at(fd, tmp):
            return False
        tmp.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temps(folder: Path, *names: str) -> list[Path]:
    """Delete temp files that a killed ``atomic_path`` writer left beside ``names`` in ``folder``.

    A kill between creating the temp and the final rename leaves ``.<name>.<random><suffix>.tmp``;
    it is harmless (the target is untouched) but can be as big as a checkpoint, so the next
    writer of the folder clears them. Temps a live writer holds locked are kept; without lock
    support every match is removed, so only call this for a folder one process writes at a time.
    """
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
            if _remove_if_left_over(tmp, require_lock=False):
                removed.append(tmp)
    return removed


def sweep_stale_temps(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Delete every left-over temp of ours with one of ``suffixes`` (``.wav``, ...) in ``folder``.

    Safe in a folder that several processes write at once: a temp is removed only if no live
    process holds its lock. Where locks are unsupported nothing is removed (a live writer's
    temp cannot be told from a dead one's); the next run on a local disk clears them.
    """
    folder = Path(folder)
    wanted = {s.lower() for s in suffixes}
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        found = TEMP_NAME.fullmatch(entry.name)
        if found and (found["suffix"] or "").lower() in wanted:
            tmp = folder / entry.name
            if _remove_if_left_over(tmp, require_lock=True):
                removed.append(tmp)
    return removed


def write_failure_reason(exc: BaseException, target: Path) -> str:
    """Why a write into ``target``'s folder failed, in the words of ``strerror``.

    Writers lose ``errno`` in different ways (torch raises ``RuntimeError("[enforce fail ...")``
    when writing to a path, numpy ``OSError("N requested and M written")``): when the error
    carries no ``errno`` and the file system is (nearly) full, the reason is "No space left on
    device". Call it while the failed temp file still exists, before cleanup frees its space.
    """
    code = error_number(exc)
    if code:
        return os.strerror(code)
    if disk_full(Path(target).parent):
        return NO_SPACE
    lines = str(exc).strip().splitlines()
    return lines[0] if lines and lines[0] else type(exc).__name__


def error_number(exc: BaseException | None) -> int | None:
    """The ``errno`` of ``exc`` or of the error that caused it, if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def disk_full(folder: Path) -> bool:
    """Whether the file system holding ``folder`` has (almost) no space left for a user."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # gone, or no statvfs on this platform
        return False
    # 1 MiB, or 1% of a smaller file system (on a 64 KiB one, 1 MiB free would mean "always")
    return st.f_bavail * st.f_frsize < min(NEARLY_FULL_BYTES, st.f_blocks * st.f_frsize // 100)


class PlainWriter:
    """A binary file seen only through ``write``: numpy then writes with ``file.write``, which
    raises ``OSError(ENOSPC)`` on a full disk, instead of C ``fwrite``, whose short write it
    reports as ``"N requested and M written"`` without the reason."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def write(self, data) -> int:
        return self._handle.write(data)
