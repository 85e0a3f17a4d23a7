"""The demo corpus writers: two unpaired speakers and two unpaired instruments on disk.

Voice: speaker A is a low male espeak-ng voice, speaker B a high female one, each reading its
own sentences (``sentences``), spoken by ``espeak.EspeakProcess``. Music: A piano-like, B
clarinet-like phrases (``music``). Both write ``{A,B}/{train,test}/{A,B}_{split}_NNNN.wav`` plus
a table per domain, deterministic for a given seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from melganvc.apps.demo_data.espeak import EspeakProcess, Speaker
from melganvc.apps.demo_data.music import melody, render_melody
from melganvc.apps.demo_data.sentences import SPLITS, sentence_stream
from melganvc.dsp.resample import resample
from melganvc.errors import UserError
from melganvc.io.audio_writer import save
from melganvc.io.files import atomic_write_text

MIN_SECONDS, MAX_SECONDS = 1.5, 4.0
SPEAKERS = {"A": Speaker("en-us+m3", 35, 40), "B": Speaker("en-us+f3", 70, 55)}
TIMBRES = {"A": "piano", "B": "clarinet"}


# ---------------------------------------------------------------- waveform clean-up
def trim_and_normalize(wave: np.ndarray, sample_rate: int, top_db: float = 40.0,
                       pad_seconds: float = 0.05, rms_db: float = -20.0) -> np.ndarray:
    """Cut edge silence (10 ms frames under peak - ``top_db``), then set the RMS, cap the peak."""
    frame = max(1, sample_rate // 100)
    n_frames = len(wave) // frame
    if n_frames == 0:
        return wave.astype(np.float32)
    energy = np.sqrt(np.mean(wave[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    active = np.flatnonzero(energy > energy.max() * 10 ** (-top_db / 20))
    pad = int(pad_seconds * sample_rate)
    start = max(0, active[0] * frame - pad)
    stop = min(len(wave), (active[-1] + 1) * frame + pad)
    wave = wave[start:stop].astype(np.float64)
    wave *= 10 ** (rms_db / 20) / max(np.sqrt(np.mean(wave**2)), 1e-9)
    wave *= min(1.0, 0.95 / max(np.abs(wave).max(), 1e-9))
    return wave.astype(np.float32)


def _clear_old(folder: Path, prefix: str) -> None:
    """Remove files a previous run wrote with our naming, so a smaller rerun leaves no extras."""
    for old in folder.glob(f"{prefix}_*.wav"):
        old.unlink()


def _check_counts(n_train: int, n_test: int, sample_rate: int) -> None:
    """Refuse counts and rates that cannot make a usable corpus, before writing anything."""
    if n_train < 1 or n_test < 0 or sample_rate < 8000:
        raise UserError(f"need n_train >= 1, n_test >= 0, sample_rate >= 8000 "
                        f"(got {n_train}, {n_test}, {sample_rate})")


# ---------------------------------------------------------------- voice demo
def generate_voice_demo(out_dir: Path, n_train: int = 120, n_test: int = 10, seed: int = 0,
                        sample_rate: int = 16000, progress: bool = True) -> dict:
    """Write two unpaired synthetic speakers under ``out_dir/voice``; return a summary dict.

    Layout: ``voice/{A,B}/{train,test}/{A,B}_{split}_NNNN.wav`` (mono, ``sample_rate``, 1.5-4 s)
    and ``voice/{A,B}/transcripts.tsv`` (header ``file<TAB>text``, paths relative to the speaker
    folder). Sentences never repeat across speakers or splits. Deterministic for a given ``seed``.
    Raises ``UserError`` if espeakng-loader is missing or broken.
    """
    _check_counts(n_train, n_test, sample_rate)
    with EspeakProcess(seed) as engine:
        root = Path(out_dir) / "voice"
        summary: dict = {"sample_rate": sample_rate, "root": str(root), "domains": {}}
        counts = {"train": n_train, "test": n_test}
        with tqdm(total=2 * (n_train + n_test), desc="demo voices", unit="utt",
                  disable=not progress) as bar:
            for domain, speaker in SPEAKERS.items():
                summary["domains"][domain] = _voice_domain(engine, root / domain, domain, speaker,
                                                           counts, seed, sample_rate, bar)
    return summary


def _voice_domain(engine: EspeakProcess, folder: Path, domain: str, speaker: Speaker,
                  counts: dict[str, int], seed: int, sample_rate: int, bar: tqdm) -> dict:
    """One speaker's splits and transcripts; utterances outside 1.5-4 s are redrawn."""
    rng = np.random.default_rng([seed, 100 + "AB".index(domain)])
    rows = ["file\ttext"]
    info: dict[str, Any] = {"voice": speaker.voice, "rejected": 0}
    for split in SPLITS:
        _clear_old(folder / split, f"{domain}_{split}")
        seconds, written = 0.0, 0
        for text in sentence_stream(domain, split, seed):
            if written == counts[split]:
                break
            rate, pitch = int(rng.integers(150, 181)), speaker.pitch + int(rng.integers(-4, 5))
            raw = engine.synthesize(text, speaker, rate, pitch)
            wave = resample(raw, engine.sample_rate, sample_rate)
            wave = trim_and_normalize(wave, sample_rate)
            duration = len(wave) / sample_rate
            if not MIN_SECONDS <= duration <= MAX_SECONDS:
                info["rejected"] += 1
                if info["rejected"] > 100 + 10 * sum(counts.values()):
                    raise RuntimeError(f"espeak-ng output for {domain} keeps missing "
                                       f"{MIN_SECONDS}-{MAX_SECONDS} s (last: {duration:.2f} s)")
                continue
            name = f"{split}/{domain}_{split}_{written:04d}.wav"
            save(folder / name, wave, sample_rate)
            rows.append(f"{name}\t{text}")
            seconds, written = seconds + duration, written + 1
            bar.update(1)
        info[split], info[f"{split}_seconds"] = written, round(seconds, 2)
    atomic_write_text(folder / "transcripts.tsv", "\n".join(rows) + "\n")
    return info


# ---------------------------------------------------------------- music demo
def generate_music_demo(out_dir: Path, n_train: int = 60, n_test: int = 8, seed: int = 0,
                        sample_rate: int = 16000, progress: bool = True) -> dict:
    """Write two unpaired instrument domains under ``out_dir/music``; return a summary dict.

    A is piano-like, B clarinet-like; each domain and split gets its own seeded phrases (never
    the same ones). Layout: ``music/{A,B}/{train,test}/{A,B}_{split}_NNNN.wav`` (4-8 s) and
    ``music/{A,B}/phrases.tsv`` (``file<TAB>notes`` as ``midi:seconds`` pairs).
    """
    _check_counts(n_train, n_test, sample_rate)
    root = Path(out_dir) / "music"
    summary: dict = {"sample_rate": sample_rate, "root": str(root), "domains": {}}
    counts = {"train": n_train, "test": n_test}
    with tqdm(total=2 * (n_train + n_test), desc="demo music", unit="clip",
              disable=not progress) as bar:
        for domain, timbre in TIMBRES.items():
            summary["domains"][domain] = _music_domain(root / domain, domain, timbre, counts,
                                                       seed, sample_rate, bar)
    return summary


def _music_domain(folder: Path, domain: str, timbre: str, counts: dict[str, int], seed: int,
                  sample_rate: int, bar: tqdm) -> dict:
    """One instrument's splits and phrase table (each split its own seeded generator)."""
    rows = ["file\tnotes"]
    info: dict[str, Any] = {"timbre": timbre}
    for split in SPLITS:
        _clear_old(folder / split, f"{domain}_{split}")
        rng = np.random.default_rng([seed, 200 + 2 * "AB".index(domain) + SPLITS.index(split)])
        seconds = 0.0
        for index in range(counts[split]):
            notes = melody(rng)
            wave = trim_and_normalize(render_melody(notes, timbre, sample_rate), sample_rate,
                                      top_db=60.0)
            name = f"{split}/{domain}_{split}_{index:04d}.wav"
            save(folder / name, wave, sample_rate)
            rows.append(f"{name}\t" + " ".join(f"{midi}:{dur:.3f}" for midi, dur in notes))
            seconds += len(wave) / sample_rate
            bar.update(1)
        info[split], info[f"{split}_seconds"] = counts[split], round(seconds, 2)
    atomic_write_text(folder / "phrases.tsv", "\n".join(rows) + "\n")
    return info
