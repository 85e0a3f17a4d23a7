"""Loading judges safely: the install hint of the eval extra, SHA-256 checks of
weight files, and one-line errors for missing packages."""

from __future__ import annotations

import importlib
import importlib.util
import os
import types

from melganvc.errors import UserError
from melganvc.io.integrity import IntegrityError, read_verified, sha256_bytes, verify_sha256

__all__ = ["IntegrityError", "read_verified", "sha256_bytes", "verify_sha256"]

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


def _cpu_threads(requested: int | None) -> int:
    """Threads for one judge: half the cores (the report runs Whisper on a worker thread beside
    DistillMOS, so the two share the machine), at most 4 (they gain little past that)."""
    if requested is not None:
        return max(1, int(requested))
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def _import_or_explain(module: str, what: str, install: str) -> types.ModuleType:
    """Import an optional judge's package, or raise a one-line ``UserError`` saying what to
    install (the import error's own text is kept, since it may name a missing dependency)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{what} is not installed ({exc}): {install}") from None
