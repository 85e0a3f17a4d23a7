"""Batch conversion of files and folders: plan the outputs, convert, count what happened.

Folder inputs are searched at any depth and their tree is mirrored under the output folder
(``in/a/b.flac`` -> ``out/a/b.wav``); non-audio files (by suffix) and hidden files are skipped
and counted. A bad file is reported in one line and the batch goes on; existing outputs are
kept unless ``overwrite``. Outputs appear atomically, so a failed file leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from melganvc.conversion.converter import Converter
from melganvc.errors import UserError
from melganvc.io.audio import audio_info, find_audio


@dataclass
class BatchReport:
    converted: int = 0
    seconds: float = 0.0  # audio converted
    elapsed: float = 0.0  # wall time
    skipped_existing: int = 0
    non_audio: int = 0
    inside_out: int = 0  # audio files under the output folder: our own outputs, never re-read
    failed: list[str] = field(default_factory=list)  # one-line messages

    def summary(self, out_dir: Path) -> str:
        rtf = self.elapsed / self.seconds if self.seconds else 0.0
        parts = [(f"converted {self.converted} file(s), {self.seconds:.1f} s of audio in "
                 f"{self.elapsed:.1f} s (RTF {rtf:.3f}) into {out_dir}")]
        if self.skipped_existing:
            parts.append(f"skipped {self.skipped_existing} existing (use --overwrite)")
        if self.non_audio:
            parts.append(f"ignored {self.non_audio} non-audio")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "; ".join(parts)


def plan_jobs(inputs: list[Path], out_dir: Path, suffix: str, report: BatchReport,
              warn: Callable[[str], None]) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs for files and folders; problems go to ``report``/``warn``.

    An output that would land on one of the inputs (``convert in.wav --out .``) is refused
    even with ``--overwrite``, as ffmpeg does: it would replace the recording with its
    conversion.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out must be a folder, and this is a file")
    jobs: list[tuple[Path, Path]] = []
    claimed: dict[Path, Path] = {}
    out_resolved = out_dir.resolve()

    def fail(message: str) -> None:
        report.failed.append(message)
        warn(f"melganvc: error: {message}")

    for item in inputs:
        if item.is_dir():
            pairs, ignored, inside = _walk(item, out_dir, out_resolved, suffix)
            report.inside_out += inside
            if ignored:
                report.non_audio += ignored
                warn(f"melganvc: warning: ignored {ignored} non-audio file(s) under {item}")
        elif item.is_file():
            pairs = [(item, out_dir / (item.stem + suffix))]
        elif item.exists():
            fail(f"{item}: not a regular file (a pipe, device or socket)")
            continue
        else:
            fail(f"{item}: no such file or folder")
            continue
        for src, dst in pairs:
            if same_file(src, dst):
                fail(f"{src}: not converted: its output {dst} is the input itself (even with "
                     "--overwrite); choose another --out")
                continue
            first = claimed.setdefault(dst.resolve(), src)
            if first != src:
                fail(f"{src}: not converted: its output name {dst} is taken by "
                     f"{first} (same name, other extension); rename one of them")
                continue
            jobs.append((src, dst))
    return jobs


def no_jobs_message(inputs: list[Path], out_dir: Path, report: BatchReport) -> str:
    """Why nothing is left to convert, when no file failed: say what excluded the files."""
    names = ", ".join(map(str, inputs))
    if report.inside_out:
        return (f"no audio files to convert in {names}: all {report.inside_out} lie inside the "
                f"output folder {out_dir} (outputs are never converted again); choose an --out "
                "outside the inputs")
    return f"no audio files to convert in {names}"


def same_file(src: Path, dst: Path) -> bool:
    """``dst`` names ``src`` (same resolved path, or a hard link to it): writing it would
    destroy the input."""
    if src.resolve() == dst.resolve():
        return True
    try:
        return dst.exists() and os.path.samefile(src, dst)
    except OSError:
        return False


def _walk(root: Path, out_dir: Path, out_resolved: Path, suffix: str
          ) -> tuple[list[tuple[Path, Path]], int, int]:
    """Audio under ``root`` with its mirrored output; the count of ignored files (non-audio,
    hidden, pipes and devices) and of audio files lying inside the output folder."""
    audio, skipped = find_audio(root)
    pairs, inside = [], 0
    for path in audio:
        if out_resolved == path.resolve().parent or out_resolved in path.resolve().parents:
            inside += 1  # our own outputs when --out lies inside the input
            continue
        pairs.append((path, out_dir / path.relative_to(root).with_suffix(suffix)))
    return pairs, len(skipped), inside


def run_batch(converter: Converter, jobs: list[tuple[Path, Path]], report: BatchReport, *,
              overwrite: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> BatchReport:
    """Convert every job; one line per skipped or failed file, never an exception per file."""
    from tqdm import tqdm

    total = sum(_duration(src) for src, _ in jobs)
    start = time.perf_counter()
    with tqdm(total=round(total, 1), unit="s", desc="convert", disable=None if progress else True,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        for src, dst in jobs:
            if dst.exists() and not overwrite:
                report.skipped_existing += 1
                log(f"melganvc: skipped {src}: {dst} exists (use --overwrite)")
                bar.update(_duration(src))
                continue
            done = [0.0]

            def advance(seconds: float, done: list[float] = done) -> None:
                done[0] += seconds
                bar.update(seconds)

            try:
                report.seconds += converter.convert_file(src, dst, progress=advance,
                                                         overwrite=overwrite)
                report.converted += 1
            except UserError as exc:
                report.failed.append(_one_line(str(exc)))
            except (RuntimeError, ValueError, OSError) as exc:  # unexpected: still one line
                report.failed.append(_one_line(f"{src}: {type(exc).__name__}: {exc}"))
            else:
                continue
            log(f"melganvc: error: {report.failed[-1]}")
            bar.update(max(0.0, _duration(src) - done[0]))
    report.elapsed = time.perf_counter() - start
    return report


def _duration(path: Path) -> float:
    try:
        rate, frames = audio_info(path)
    except UserError:
        return 0.0
    return frames / rate


def _one_line(message: str) -> str:
    return " ".join(message.split())
