"""The error type for user mistakes: the CLI prints it as one line, never a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Something the user can fix (bad file, bad option). ``str()`` is the whole message."""


class AudioError(UserError):
    """An audio file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
