"""The detector's parts: EER, transforms, the masked network, windows, provenance, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from melganvc.config import ConfigError, DetectorConfig, detector_config
from melganvc.detection import Detector
from melganvc.detection.metrics import equal_error_rate, rate_at
from melganvc.detection.network import DetectorNet, batch_features, log_spectrogram
from melganvc.detection.transforms import TRANSFORMS, add_noise, gain, random_transform
from melganvc.errors import AudioError
from melganvc.io.audio_writer import save
from tests.conftest import speech_like

SR = 16000


def test_eer_separable_and_overlapping():
    assert equal_error_rate(np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8, 0.9])) == (0.0, 0.7)
    eer, t = equal_error_rate(np.array([0.1, 0.2, 0.3, 0.75]), np.array([0.25, 0.8, 0.85, 0.9]))
    assert (eer, t) == (pytest.approx(0.25), 0.75)  # one real flagged, one converted missed
    assert rate_at(np.array([0.1, 0.5, 0.9]), 0.5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        equal_error_rate(np.array([]), np.array([0.5]))


def _band_energy(wave: np.ndarray, low: float, high: float) -> float:
    spec = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / SR)
    return float(spec[(freqs >= low) & (freqs < high)].sum())


def test_transforms_do_what_they_say():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    phone = TRANSFORMS["8khz"](wave, SR, rng)
    assert phone.size == wave.size
    assert _band_energy(phone, 4200, 8000) < 1e-3 * _band_energy(wave, 4200, 8000)
    for codec in ("ogg", "mp3"):
        out = TRANSFORMS[codec](wave, SR, rng)
        assert abs(out.size - wave.size) < SR // 10 and out.dtype == np.float32
        assert 0.3 < np.std(out) / np.std(wave) < 2.0
    noisy = add_noise(wave, 20.0, rng)
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(20.0, abs=0.3)
    assert np.abs(gain(wave * 5, 20.0)).max() <= 1.0
    assert np.isfinite(random_transform(wave, SR, rng)).all()


def test_features_do_not_depend_on_gain():
    wave = torch.from_numpy(speech_like(1.0))
    a, b = log_spectrogram(wave, DetectorConfig()), log_spectrogram(wave * 0.01, DetectorConfig())
    assert a.shape == (257, 101) and float(a.max()) == pytest.approx(1.0)
    assert torch.allclose(a, b, atol=1e-3)


def test_padding_is_masked_out_of_pooling():
    cfg = DetectorConfig(channels=(4, 4, 4, 4, 4), hidden=8)
    torch.manual_seed(0)
    net = DetectorNet(cfg).eval()
    pooled: list[torch.Tensor] = []
    net.head.register_forward_hook(lambda module, args, out: pooled.append(args[0][0]))
    wave = torch.from_numpy(speech_like(1.0))
    length = log_spectrogram(wave, cfg).shape[1]
    for pad_seconds in (1.5, 3.0):  # both pads longer than the receptive field
        spec, frames = batch_features([wave, torch.zeros(int((1 + pad_seconds) * SR))], cfg)
        assert frames[0] == length
        with torch.no_grad():
            net(spec, frames)
            net(spec, torch.tensor([spec.shape[-1], spec.shape[-1]]))  # no mask: padding counts
    masked_1, unmasked_1, masked_2, unmasked_2 = pooled
    scale = float(masked_1.abs().max())
    assert float((masked_1 - masked_2).abs().max()) < 1e-4 * scale
    assert float((unmasked_1 - unmasked_2).abs().max()) > 1e-2 * scale  # the check can fail


def test_config_round_trip_and_errors():
    cfg = detector_config({"channels": [8, 8], "epochs": 2})
    assert cfg.channels == (8, 8) and cfg.epochs == 2
    with pytest.raises(ConfigError, match="unknown config field"):
        detector_config({"epoch": 2})
    with pytest.raises(ConfigError, match="threshold"):
        detector_config({"threshold": 1.5})


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained detector checkpoint: enough to test loading, windows and errors."""
    cfg = DetectorConfig(channels=(4, 4, 4, 4, 4), hidden=8, threshold=0.5)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "d.pt"
    Detector(DetectorNet(cfg), cfg).save(path, {"held_out_eer": 0.5})
    return path


def test_long_file_is_judged_by_windows_with_flat_memory(random_detector: Path, tmp_path: Path):
    det = Detector.load(random_detector)
    wave = np.tile(speech_like(2.0), 5)  # 10 s: windows 0-4, 4-8 and the last 2 s
    seen: list[int] = []
    real_logits = det.logits
    det.logits = lambda windows: (seen.extend(w.size for w in windows), real_logits(windows))[1]
    path = tmp_path / "long.flac"
    sf.write(path, wave, SR)
    found = det.detect_file(path)
    assert seen == [4 * SR, 4 * SR, 2 * SR]
    assert 0.0 <= found.probability <= 1.0 and found.seconds == pytest.approx(10.0)
    assert found.converted == (found.probability >= 0.5)
    assert det.score(wave, SR) == pytest.approx(found.probability, abs=1e-3)  # flac rounding


def test_silent_short_and_bad_files_are_one_line_errors(random_detector: Path, tmp_path: Path):
    det = Detector.load(random_detector)
    cases = {"silent.wav": np.zeros(SR * 2, np.float32),
             "short.wav": speech_like(0.1)}
    for name, wave in cases.items():
        sf.write(tmp_path / name, wave, SR)
        with pytest.raises(AudioError, match="silent or too short"):
            det.detect_file(tmp_path / name)
    sf.write(tmp_path / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    reasons = {"nan.wav": "NaN", "text.wav": "not a readable audio file",
               "empty.wav": "not a readable audio file"}
    for name, reason in reasons.items():
        with pytest.raises(AudioError, match=reason) as caught:
            det.detect_file(tmp_path / name)
        assert str(caught.value).startswith(str(tmp_path / name)) and "\n" not in str(caught.value)


def test_provenance_tag_is_reported_and_lost_on_reencoding(random_detector: Path, tmp_path: Path):
    det = Detector.load(random_detector)
    save(tmp_path / "ours.flac", speech_like(1.0), SR)
    wave, _ = sf.read(tmp_path / "ours.flac", dtype="float32")
    sf.write(tmp_path / "copy.ogg", wave, SR)
    assert det.detect_file(tmp_path / "ours.flac").tagged
    assert not det.detect_file(tmp_path / "copy.ogg").tagged


def test_conversion_checkpoint_is_not_a_detector(ckpt: Path):
    from melganvc.io.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not a detector checkpoint"):
        Detector.load(ckpt)


def test_codecs_survive_long_audio():
    """libsndfile's Vorbis encoder segfaulted on one 2.1 M-sample write (a 133 s song)."""
    wave = (0.1 * np.random.default_rng(0).standard_normal(2_200_000)).astype(np.float32)
    assert TRANSFORMS["ogg"](wave, SR, np.random.default_rng(0)).size == wave.size
