"""What happens to audio between a converter and a detector: telephone band, lossy codecs,
noise, gain. Training draws them at random so the detector does not rely on detail they
destroy; evaluation applies each one alone (``TRANSFORMS``) to say which breaks it."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import soundfile as sf

from melganvc.dsp.resample import resample

Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
# libsndfile 1.2.2's Vorbis encoder crashes the process (SIGSEGV) when one write holds ~2 M
# samples (a 133 s file at 16 kHz); written in pieces it does not.
CODEC_WRITE_FRAMES = 1 << 16


def telephone(wave: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Down to 8 kHz and back: everything above 4 kHz is gone."""
    return resample(resample(wave, rate, 8000), 8000, rate)


def _codec(fmt: str, subtype: str) -> Transform:
    def encode(wave: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        buffer = io.BytesIO()
        wave = np.clip(wave, -1.0, 1.0)
        with sf.SoundFile(buffer, "w", rate, 1, subtype, format=fmt) as handle:
            for start in range(0, wave.size, CODEC_WRITE_FRAMES):
                handle.write(wave[start:start + CODEC_WRITE_FRAMES])
        buffer.seek(0)
        decoded, _ = sf.read(buffer, dtype="float32")
        return np.asarray(decoded, dtype=np.float32).reshape(-1)
    encode.__doc__ = f"Encoded as {fmt} ({subtype}, libsndfile's default bitrate) and decoded."
    return encode


ogg = _codec("OGG", "VORBIS")
mp3 = _codec("MP3", "MPEG_LAYER_III")


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise ``snr_db`` below the signal's RMS."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) or 1e-4
    noise = rng.standard_normal(wave.size).astype(np.float32) * rms * 10 ** (-snr_db / 20)
    return (wave + noise).astype(np.float32)


def gain(wave: np.ndarray, db: float) -> np.ndarray:
    """Louder or quieter by ``db``, clipped to [-1, 1] like a file would be."""
    return np.clip(wave * np.float32(10 ** (db / 20)), -1.0, 1.0).astype(np.float32)


TRANSFORMS: dict[str, Transform] = {
    "clean": lambda wave, rate, rng: wave,
    "8khz": telephone,
    "ogg": ogg,
    "mp3": mp3,
    "noise20": lambda wave, rate, rng: add_noise(wave, 20.0, rng),
    "gain-20": lambda wave, rate, rng: gain(wave, -20.0),
}


def random_transform(wave: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One or two random transforms (training augmentation), then a random gain."""
    choices: list[Transform] = [telephone, ogg, mp3,
                                lambda w, r, g: add_noise(w, float(g.uniform(10, 40)), g)]
    for index in rng.choice(len(choices), size=int(rng.integers(1, 3)), replace=False):
        wave = choices[int(index)](wave, rate, rng)
    return gain(wave, float(rng.uniform(-24, 6)))
