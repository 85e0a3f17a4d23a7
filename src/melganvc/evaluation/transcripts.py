"""Transcripts for an evaluation, computed in the background while the other judges run.

``evaluate_systems`` queues every waveform it will ask about (``asr_waves``) on a
``BackgroundTranscripts`` before scoring starts, then reads each transcript when its row
needs it. Kept apart from scoring because it is the one piece that owns threads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from melganvc.evaluation.results import EvalItem
from melganvc.judges.protocols import Recogniser
from melganvc.judges.waves import wave_key


class BackgroundTranscripts:
    """Every transcript an evaluation needs, computed on one worker thread while the main
    thread runs the other judges.

    The recognisers decode in native code that releases the GIL (CTranslate2 for Whisper), so
    on a 2-core machine Whisper and DistillMOS run side by side instead of taking turns
    (Whisper costs about 1.2 s of CPU per utterance whatever its length, the longest job). A
    recogniser that declares ``concurrency`` > 1 (Whisper with two CTranslate2 workers) gets
    that many worker threads, so its queue is not the one long path; pocketsphinx keeps one.
    A transcript depends only on its waveform, so the results do not depend on the timing."""

    def __init__(self, transcriber: Recogniser, waves: Sequence[np.ndarray],
                 sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._durations: list[float] = []
        self._transcriber = transcriber
        workers = max(1, int(getattr(transcriber, "concurrency", 1)))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="melganvc-asr")
        self._jobs: dict[str, Future[str]] = {}
        for wave in waves:
            key = wave_key(wave, sample_rate)
            if key not in self._jobs:
                self._jobs[key] = self._pool.submit(self._transcribe, wave)

    def _transcribe(self, wave: np.ndarray) -> str:
        """One worker job: the transcript, with its time recorded for ``busy_s``."""
        start = time.perf_counter()
        try:
            return self._transcriber.transcribe(wave, self.sample_rate)
        finally:
            self._durations.append(time.perf_counter() - start)  # append: thread-safe

    @property
    def busy_s(self) -> float:
        """Seconds spent transcribing, summed over the workers."""
        return float(sum(self._durations))

    def get(self, wave: np.ndarray) -> str:
        """The transcript of ``wave`` (waits for the worker; computed here if not queued)."""
        job = self._jobs.get(wave_key(wave, self.sample_rate))
        return job.result() if job is not None else self._transcriber.transcribe(
            wave, self.sample_rate)

    def close(self) -> None:
        """Wait for running jobs and drop queued ones, so no thread outlives the evaluation."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def asr_waves(items: Sequence[EvalItem]) -> list[np.ndarray]:
    """The audio to transcribe, in the order the scoring loop asks for it."""
    waves: list[np.ndarray] = []
    for item in items:
        if item.source is None and item.reference is None:
            continue
        waves.append(np.asarray(item.converted, dtype=np.float32).reshape(-1))
        waves += [w for w in (item.source, item.reference) if w is not None]
    return waves
