"""Content: CER / WER of a transcript against a reference transcript, both normalised
(``judges.text.normalize_text``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from melganvc.judges.text import normalize_text


def error_rates(reference: str, hypothesis: str) -> tuple[float, float]:
    """(CER, WER) of ``hypothesis`` against ``reference`` after ``normalize_text``.

    An empty reference gives 0 for an empty hypothesis and 1 otherwise (jiwer refuses it).
    Rates can exceed 1 when the hypothesis has many insertions.
    """
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        value = 0.0 if not hyp else 1.0
        return value, value
    if not hyp:
        return 1.0, 1.0
    return float(jiwer.cer(ref, hyp)), float(jiwer.wer(ref, hyp))


def _edit_counts(reference: str, hypothesis: str) -> tuple[int, int, int, int]:
    """(character edits, reference characters, word edits, reference words); normalised text."""
    import jiwer

    ref_words = reference.split()
    if not hypothesis:
        return len(reference), len(reference), len(ref_words), len(ref_words)
    chars = jiwer.process_characters(reference, hypothesis)
    words = jiwer.process_words(reference, hypothesis)
    char_edits = chars.substitutions + chars.deletions + chars.insertions
    word_edits = words.substitutions + words.deletions + words.insertions
    return char_edits, len(reference), word_edits, len(ref_words)


def corpus_error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """Corpus-level (CER, WER): total edits over total reference characters / words.

    Pairs with an empty reference are skipped; NaN when no reference has any word.
    """
    totals = np.zeros(4, dtype=np.int64)
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalize_text(reference), normalize_text(hypothesis)
        if ref:
            totals += np.array(_edit_counts(ref, hyp))
    if totals[1] == 0:
        return float("nan"), float("nan")
    return float(totals[0] / totals[1]), float(totals[2] / totals[3])
