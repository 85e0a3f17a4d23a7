"""Property-based fuzzing (hypothesis, bounded: a few seconds each).

* The audio loader, on random bytes and on damaged copies of valid files in every format
  libsndfile writes, either raises ``AudioError`` or returns finite mono float32; nothing else.
* The feature extractor, on random lengths, batch shapes, amplitudes (silence to absurd) and
  feature settings, returns finite values in [-1, 1] with ``samples // hop + 1`` frames, and its
  bounded-memory ``long`` path gives the same frames.
"""

from __future__ import annotations

import io
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melganvc.config import FeatureConfig
from melganvc.dsp.mel import MelSpectrogram
from melganvc.errors import AudioError
from melganvc.io.audio import AUDIO_SUFFIXES, audio_info, iter_blocks, load

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


_counter = itertools.count()
_folder = tempfile.TemporaryDirectory(prefix="melganvc-fuzz-")


def write_case(data: bytes, suffix: str) -> Path:
    path = Path(_folder.name) / f"case{next(_counter)}{suffix}"
    path.write_bytes(data)
    return path


def check_loader(path: Path) -> None:
    """The contract: ``AudioError`` or finite mono float32, for load, iter_blocks and info."""
    try:
        wave = load(path, 16000)
    except AudioError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0
        assert np.isfinite(wave).all()
    try:
        for block in iter_blocks(path, 16000, block_seconds=0.25):
            assert block.dtype == np.float32 and block.ndim == 1 and np.isfinite(block).all()
        rate, frames = audio_info(path)
        assert rate > 0 and frames > 0
    except AudioError:
        pass
    finally:
        path.unlink()


MAGIC = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00",
         b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02", b"FORM\x00\x00\x00\x00AIFF", b".snd",
         b"ID3\x03\x00", b"\xff\xfb\x90\x00", b"riff"]
SUFFIXES = sorted(AUDIO_SUFFIXES) + [".WAV", ".Flac"]


@FUZZ
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=4096),
       suffix=st.sampled_from(SUFFIXES))
def test_loader_on_random_bytes(magic: bytes, body: bytes, suffix: str) -> None:
    check_loader(write_case(magic + body, suffix))


def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(3000) / 7) + 0.01 * rng.standard_normal(3000)).astype(np.float32)
    stereo = np.stack([wave, 0.5 * wave], axis=1)
    specs = [(".wav", "WAV", "PCM_16", 16000, wave), (".wav", "WAV", "FLOAT", 22050, stereo),
             (".wav", "WAV", "PCM_U8", 8000, wave), (".wav", "WAV", "PCM_24", 44100, stereo),
             (".flac", "FLAC", "PCM_16", 16000, wave), (".flac", "FLAC", "PCM_24", 48000, stereo),
             (".ogg", "OGG", "VORBIS", 16000, wave), (".opus", "OGG", "OPUS", 48000, wave),
             (".mp3", "MP3", "MPEG_LAYER_III", 16000, wave), (".aiff", "AIFF", "PCM_16", 16000, wave),
             (".au", "AU", "FLOAT", 16000, wave), (".w64", "W64", "PCM_16", 16000, stereo)]
    files = {}
    for suffix, fmt, subtype, rate, data in specs:
        buffer = io.BytesIO()
        try:
            sf.write(buffer, data, rate, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, TypeError, ValueError):
            continue  # this libsndfile build cannot write it
        files[f"{fmt}-{subtype}-{rate}{suffix}"] = buffer.getvalue()
    return files


VALID = _valid_files()


def test_valid_files_load() -> None:
    assert len(VALID) >= 8
    for name, data in VALID.items():
        wave = load(write_case(data, "." + name.rsplit(".", 1)[1]), 16000)
        assert np.isfinite(wave).all() and wave.size >= 999 and np.abs(wave).max() > 0.1, name


@FUZZ
@given(name=st.sampled_from(sorted(VALID)),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
       header_bias=st.booleans(), cut=st.one_of(st.none(), st.floats(0, 1)),
       suffix_from=st.sampled_from(["own", "other"]), other=st.sampled_from(SUFFIXES))
def test_loader_on_damaged_files(name: str, edits: list[tuple[float, int]], header_bias: bool,
                                 cut: float | None, suffix_from: str, other: str) -> None:
    data = bytearray(VALID[name])
    span = min(len(data), 96) if header_bias else len(data)  # headers are where parsers break
    for where, value in edits:
        data[min(int(where * span), len(data) - 1)] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    suffix = "." + name.rsplit(".", 1)[1] if suffix_from == "own" else other
    check_loader(write_case(bytes(data), suffix))


# --- features ------------------------------------------------------------------------------------

@st.composite
def feature_configs(draw: st.DrawFn) -> FeatureConfig:
    rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]) |
                st.integers(1000, 96000))
    hop = draw(st.integers(16, 512))
    n_fft = 2 * draw(st.integers(max(8, (hop + 1) // 2), 1024))
    return FeatureConfig(sample_rate=rate, n_fft=n_fft, hop_length=hop,
                         n_mels=draw(st.integers(4, 128)), f_min=0.0, f_max=rate / 2,
                         ref_level_db=draw(st.sampled_from([20.0, 0.0, 40.0])),
                         min_level_db=draw(st.sampled_from([-100.0, -80.0, -120.0])))


@settings(FUZZ, max_examples=500)
@given(cfg=feature_configs(), samples=st.integers(1, 6000),
       batch=st.one_of(st.none(), st.integers(1, 3)),
       amplitude=st.sampled_from([0.0, 1e-30, 1e-8, 1e-3, 0.5, 1.0, 30.0, 1e6, 1e20, 3e38]),
       kind=st.sampled_from(["noise", "sine", "dc", "impulse"]), seed=st.integers(0, 2**16))
def test_features_finite_bounded_and_framed(cfg: FeatureConfig, samples: int, batch: int | None,
                                            amplitude: float, kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (samples,) if batch is None else (batch, samples)
    if kind == "noise":
        wave = rng.standard_normal(shape)
    elif kind == "sine":
        wave = np.sin(np.arange(samples) * rng.uniform(0.01, 3.0)) * np.ones(shape)
    elif kind == "dc":
        wave = np.ones(shape)
    else:
        wave = np.zeros(shape)
        wave[..., rng.integers(samples)] = 1.0
    x = torch.from_numpy(np.clip(wave * amplitude, -3.4e38, 3.4e38).astype(np.float32))
    extractor = MelSpectrogram(cfg)
    mel = extractor(x)
    frames = samples // cfg.hop_length + 1
    expected = (cfg.n_mels, frames) if batch is None else (batch, cfg.n_mels, frames)
    assert tuple(mel.shape) == expected
    assert torch.isfinite(mel).all()
    assert mel.min() >= -1.0 and mel.max() <= 1.0
    if batch is None:
        long = extractor.long(x, block_frames=int(rng.integers(1, 12)))
        assert long.shape == mel.shape
        torch.testing.assert_close(long, mel, atol=1e-4, rtol=0)
