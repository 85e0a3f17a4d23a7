"""SHA-256 checks of weight files that come from other packages (judges, vocoders): a corrupted,
truncated or replaced file is refused in one line that says how to repair it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from melganvc.errors import UserError


class IntegrityError(UserError):
    """A weight file whose SHA-256 is not the pinned one: corrupted, truncated or replaced."""


def sha256_bytes(*chunks: bytes) -> str:
    """Hex SHA-256 of the concatenation of ``chunks``."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(what: str, actual: str, expected: str, fix: str) -> None:
    """Refuse a weight file whose hash is not the pinned one, in one line that says which file,
    both hashes (shortened) and how to repair it."""
    if actual != expected:
        raise IntegrityError(f"{what}: sha256 {actual[:16]}... is not the pinned "
                             f"{expected[:16]}... (corrupted or replaced file); {fix}")


def read_verified(path: Path, expected: str, fix: str) -> bytes:
    """The bytes of ``path`` after checking their SHA-256 (one clear line if it is missing)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read the model file ({exc.strerror or exc}); "
                             f"{fix}") from None
    verify_sha256(str(path), sha256_bytes(data), expected, fix)
    return data
