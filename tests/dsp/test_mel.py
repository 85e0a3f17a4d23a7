import numpy as np
import pytest
import torch
from conftest import shared_path, speech_like

from melganvc.config import Config, preset_config
from melganvc.dsp.mel import MelSpectrogram, mel_filterbank
from melganvc.io.audio import load


def reference_mel(wave: np.ndarray, cfg) -> np.ndarray:
    """The method's pipeline computed independently with librosa in float64."""
    librosa = pytest.importorskip("librosa")
    f = cfg
    spec = np.abs(librosa.stft(wave.astype(np.float64), n_fft=f.n_fft, hop_length=f.hop_length,
                               win_length=f.n_fft, window="hann", center=True, pad_mode="reflect"))
    window = librosa.filters.get_window("hann", f.n_fft, fftbins=True)
    power = spec**2 / np.sum(window**2)
    fb = librosa.filters.mel(sr=f.sample_rate, n_fft=f.n_fft, n_mels=f.n_mels, fmin=f.f_min,
                             fmax=f.f_max, htk=True, norm=None)
    db = librosa.power_to_db(fb @ power, ref=1.0, amin=1e-10, top_db=None) - f.ref_level_db
    return np.clip((db - f.min_level_db) / -f.min_level_db * 2 - 1, -1, 1)


def test_matches_librosa_on_real_speech() -> None:
    cfg = Config().features
    worst = 0.0
    for name in ("SF1/100001.wav", "TM1/100002.wav"):
        wave = load(shared_path("vcc2016", name), cfg.sample_rate)
        ours = MelSpectrogram(cfg)(torch.from_numpy(wave)).numpy()
        ref = reference_mel(wave, cfg)
        assert ours.shape == ref.shape == (192, wave.size // 192 + 1)
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= 1e-4


@pytest.mark.parametrize("preset", ["speech8k", "music22k", "music44k"])
def test_presets_match_librosa(preset: str) -> None:
    cfg = preset_config(preset).features
    wave = speech_like(1.0, cfg.sample_rate)
    ours = MelSpectrogram(cfg)(torch.from_numpy(wave)).numpy()
    assert np.abs(ours - reference_mel(wave, cfg)).max() <= 1e-4


def test_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=1152, n_mels=192, fmin=0, fmax=8000, htk=True, norm=None)
    assert np.abs(mel_filterbank(16000, 1152, 192, 0.0, 8000.0) - ref).max() < 1e-6


def test_batched_equals_single_and_short_inputs() -> None:
    mel = MelSpectrogram(Config().features)
    waves = torch.from_numpy(np.stack([speech_like(0.5, seed=s) for s in range(3)]))
    batched = mel(waves)
    assert torch.allclose(batched[1], mel(waves[1]), atol=1e-6)
    for samples in (1, 191, 192, 600):
        out = mel(waves[0, :samples])
        assert out.shape == (192, samples // 192 + 1)
        assert torch.isfinite(out).all()


def test_normalise_round_trip() -> None:
    mel = MelSpectrogram(Config().features)
    x = torch.linspace(-1, 1, 101)
    assert torch.allclose(mel.normalize(mel.denormalize(x)), x, atol=1e-6)
    assert mel.denormalize(torch.tensor(-1.0)) == -100.0
    # to_power inverts the dB mapping, so a mel from audio maps back to its power (above the floor)
    wave = torch.from_numpy(speech_like(0.3))
    power = mel.linear_mel(wave.unsqueeze(0))[0]
    back = mel.to_linear(mel(wave))
    keep = power > 1e-7
    assert torch.allclose(back[keep], power[keep], rtol=1e-3)


@pytest.mark.parametrize("samples", [100, 577, 963, 2880, 3072, 16000])
def test_one_framing_core_gives_the_same_bits_however_cut(samples: int) -> None:
    """forward, long and FeatureStream share ``MelSpectrogram.frames``: equal to the bit for
    any piece size, short files (fewer than COLUMN_TILE frames) included."""
    from melganvc.dsp.mel import FeatureStream

    mel = MelSpectrogram(Config().features)
    x = speech_like(1.0, seed=3)[:samples]
    whole = mel(torch.from_numpy(x))
    assert whole.shape == (192, samples // 192 + 1)
    for block_frames in (1, 3, 17, 4096):
        assert torch.equal(mel.long(torch.from_numpy(x), block_frames=block_frames), whole)
    for block in (1, 250, samples) if samples < 1000 else (37, 250, 1000):
        stream = FeatureStream(mel)
        parts = [stream.push(x[i:i + block]) for i in range(0, samples, block)] + [stream.flush()]
        assert torch.equal(torch.cat(parts, -1), whole)
