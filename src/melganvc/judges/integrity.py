"""Loading judges safely: the install hint of the eval extra, SHA-256 checks of
weight files, and one-line errors for missing packages."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import types
from pathlib import Path

from melganvc.errors import UserError

EVAL_EXTRA = "pip install 'melganvc[eval]'"
# distillmos and xls-r-sqa declare torchaudio (no build for our torch) and transformers (xls-r-sqa's
# other models) as requirements though DistillMOS uses neither, so they are installed without
# their dependencies, outside the extra (the Makefile's install step does it).
DISTILLMOS_PINS = ("distillmos==0.9.1", "xls-r-sqa==0.1.0")
DISTILLMOS_INSTALL = f"{EVAL_EXTRA} && pip install --no-deps " + " ".join(
    f"'{pin}'" for pin in DISTILLMOS_PINS)
DISTILLMOS_WEIGHTS_SHA256 = "b18b3ac60227267cfb91e5d00ce22cc7b73716fd92f269484da1446e27031a40"
ASR_CHOICES = ("whisper", "whisper-base", "pocketsphinx")
_STUB_MARK = "__melganvc_stub__"


class IntegrityError(UserError):
    """A weight file whose SHA-256 is not the pinned one: corrupted, truncated or replaced."""


def _cpu_threads(requested: int | None) -> int:
    """Threads for one judge: half the cores (the report runs Whisper on a worker thread beside
    DistillMOS, so the two share the machine), at most 4 (they gain little past that)."""
    if requested is not None:
        return max(1, int(requested))
    return max(1, min(4, (os.cpu_count() or 1) // 2))


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


def _read_verified(path: Path, expected: str, fix: str) -> bytes:
    """The bytes of ``path`` after checking their SHA-256 (one clear line if it is missing)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read the model file ({exc.strerror or exc}); "
                             f"{fix}") from None
    verify_sha256(str(path), sha256_bytes(data), expected, fix)
    return data


def _import_or_explain(module: str, what: str, install: str) -> types.ModuleType:
    """Import an optional judge's package, or raise a one-line ``UserError`` saying what to
    install (the import error's own text is kept, since it may name a missing dependency)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{what} is not installed ({exc}): {install}") from None
