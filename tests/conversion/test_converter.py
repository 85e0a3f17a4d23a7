"""Conversion: any length, rates, loudness, chunk modes and seams, checkpoints, the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import conv_sigmas, speech_like
from torch import nn

from melganvc.apps.cli import main
from melganvc.config import ConfigError, apply_overrides, preset_config
from melganvc.conversion.converter import Converter
from melganvc.conversion.export import save_generator
from melganvc.conversion.loading import load_generator
from melganvc.evaluation.seams import seam_score
from melganvc.io.audio import load
from melganvc.io.audio_writer import read_comment
from melganvc.io.checkpoint import CheckpointError, load_checkpoint
from melganvc.models.chunk_stream import resolve_overlap
from melganvc.models.networks import Generator

FAST = ["gl_iters=4", "nnls_iters=10"]  # fast inversion: these tests check plumbing, not quality
CLI_FAST = ["--iters", "4", "--set", "inversion.nnls_iters=10", "--no-progress", "--device", "cpu"]


def active_rms(x: np.ndarray, frame: int = 384) -> float:
    frames = x[: x.size // frame * frame].reshape(-1, frame)
    rms = np.sqrt((frames**2).mean(1))
    keep = rms > max(1e-3, 0.01 * rms.max())
    return float(np.sqrt((frames[keep] ** 2).mean()))


# --- lengths, rates, loudness ------------------------------------------------------------------

@pytest.mark.parametrize("samples", [1, 100, 192, 1600, 48000])
def test_output_keeps_length(conv: Converter, samples: int) -> None:
    x = speech_like(4.0)[16000:16000 + samples]
    y = conv.convert(x, 16000)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() <= 0.99


def test_other_rates_and_channels(conv: Converter) -> None:
    x = speech_like(1.0, sr=44100)
    y = conv.convert(np.stack([x, 0.5 * x], 1), 44100)  # stereo is down-mixed
    assert y.shape == x.shape and np.abs(y).max() > 0.01
    assert conv.convert(x[:7], 44100).shape == (7,)
    assert np.abs(conv.convert(1.9 * x, 44100)).max() <= 0.99 + 1e-6  # capped after resampling
    with pytest.raises(ValueError, match="empty"):
        conv.convert(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="NaN"):
        conv.convert(np.array([0.0, np.nan] * 500, np.float32), 16000)


@pytest.mark.parametrize("level", [0.05, 0.95])
def test_loudness_follows_input_and_never_clips(conv: Converter, level: float) -> None:
    x = speech_like(3.0) * (level / 0.5)
    y = conv.convert(x, 16000)
    assert abs(20 * np.log10(active_rms(y) / active_rms(x))) < 2.0
    assert np.abs(y).max() <= 0.99 + 1e-6
    raw = conv.with_options(match_loudness=False).convert(x, 16000)
    assert np.abs(raw).max() <= 0.99 + 1e-6  # the cap holds without the loudness match too


@pytest.mark.parametrize("scale", [30.0, 1e-30])
def test_extreme_levels_stay_finite(conv: Converter, scale: float) -> None:
    """Loud (peak 15) and vanishing float audio convert to finite, peak-capped output."""
    y = conv.convert(speech_like(1.0) * np.float32(scale), 16000)
    assert np.isfinite(y).all() and np.abs(y).max() <= 0.99 + 1e-6


@pytest.mark.parametrize("scale", [40.0, 1e20, 3e38])
def test_mis_scaled_float_audio_is_refused(conv: Converter, scale: float) -> None:
    """Float audio far outside [-1, 1] (int16 values cast to float, damaged files up to
    float32's limit) once converted to noise or NaN; now it is refused with the reason."""
    with pytest.raises(ValueError, match=r"far outside \[-1, 1\]"):
        conv.convert(speech_like(1.0) * np.float32(scale), 16000)


def test_long_file_block_wise_matches_whole(conv: Converter, tmp_path: Path) -> None:
    x = speech_like(30.0, seed=3)
    sf.write(tmp_path / "long.wav", x, 16000, subtype="FLOAT")
    seconds = conv.convert_file(tmp_path / "long.wav", tmp_path / "out.wav", block_seconds=0.7)
    blockwise, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert seconds == pytest.approx(30.0) and rate == 16000
    whole = conv.convert(load(tmp_path / "long.wav", 16000), 16000)
    assert blockwise.shape == whole.shape == x.shape
    np.testing.assert_allclose(blockwise, whole, atol=1e-6)
    assert "converted by melganvc" in read_comment(tmp_path / "out.wav")


def test_minutes_long_file_keeps_length_and_rate(conv: Converter, tmp_path: Path) -> None:
    x = np.tile(speech_like(10.0, sr=22050), 18)  # 3 minutes at 22.05 kHz
    sf.write(tmp_path / "long.flac", x, 22050)
    conv.convert_file(tmp_path / "long.flac", tmp_path / "out.flac")
    info = sf.info(tmp_path / "out.flac")
    assert info.samplerate == 22050 and info.frames == x.size


# --- chunks and seams ----------------------------------------------------------------------------

class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ChunkRamp(nn.Module):
    """Adds a ramp over each chunk: a generator that is known to make seams."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.linspace(-0.3, 0.3, x.shape[-1])).clamp(-1, 1)


def test_overlap_values() -> None:
    assert resolve_overlap(0, 24) == 0 and resolve_overlap("reference", 24) == 0
    assert resolve_overlap(0.5, 24) == 12 and resolve_overlap(0.25, 24) == 6
    assert resolve_overlap(8, 24) == 8 and resolve_overlap("6", 24) == 6
    assert resolve_overlap(None, 24) == 12
    for bad in (13, 0.7, -1, "lots"):
        with pytest.raises(ConfigError):
            resolve_overlap(bad, 24)


@pytest.mark.parametrize("overlap", [0, 6, 12])
@pytest.mark.parametrize("frames", [1, 5, 24, 25, 61])
def test_cross_fade_weights_sum_to_one(overlap: int, frames: int) -> None:
    cfg = preset_config("tiny")
    mel = torch.rand(cfg.features.n_mels, frames) * 2 - 1
    out = Converter(Identity(), cfg, overlap=overlap).convert_mel(mel)
    torch.testing.assert_close(out, mel, atol=1e-6, rtol=0)


def test_reference_mode_is_back_to_back_chunks(conv: Converter) -> None:
    cfg, L = conv.config, conv.chunk_frames
    mel = torch.rand(cfg.features.n_mels, 2 * L + 7) * 2 - 1
    ref = conv.with_options(overlap=0)
    out = ref.convert_mel(mel)
    with torch.no_grad():
        chunks = conv.generator(torch.stack([mel[:, :L], mel[:, L:2 * L], mel[:, -L:]]))
    want = torch.cat([chunks[0], chunks[1], chunks[2][:, -7:]], dim=-1)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    short = ref.convert_mel(mel[:, :3].numpy())  # shorter than a chunk: padded and cropped
    assert isinstance(short, np.ndarray) and short.shape == (cfg.features.n_mels, 3)


def test_overlap_removes_seams_of_a_seamy_generator() -> None:
    cfg = preset_config("tiny")
    mel = Converter(Identity(), cfg).mel(torch.from_numpy(speech_like(6.0)))
    reference = Converter(ChunkRamp(), cfg, overlap=0).convert_mel(mel)
    faded = Converter(ChunkRamp(), cfg).convert_mel(mel)
    assert seam_score(mel, 24) < 1.3  # the input has none
    assert seam_score(reference, 24) > 2.0
    assert seam_score(faded, 24, phase="worst") < 1.3


def test_overlap_not_worse_on_a_trained_model(trained_run: Path) -> None:
    x = np.concatenate([speech_like(4.0, f0=f0, seed=i) for i, f0 in enumerate((110, 140, 95))])
    scores, base = {}, Converter.from_checkpoint(trained_run, device="cpu")
    for overlap in (0, 0.5):
        c = base.with_options(overlap=overlap)
        mel = c.convert_mel(c.mel(torch.from_numpy(x)))
        scores[overlap] = seam_score(mel, 24, phase="worst")
    assert scores[0.5] <= scores[0] + 0.05, scores


# --- checkpoints ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tiny_corpora: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from melganvc.training.loop import fit

    cfg = apply_overrides(preset_config("tiny"), ["train.steps=30", "train.checkpoint_every=30",
                                                  "train.eval_every=0", "train.ema=0.9"])
    run = tmp_path_factory.mktemp("run") / "r"
    fit(cfg, *tiny_corpora, run, progress=False)
    return run


def test_from_checkpoint_prefers_ema(trained_run: Path) -> None:
    payload = load_checkpoint(trained_run)
    cfg = Converter.from_checkpoint(trained_run, device="cpu").config
    mel = torch.rand(1, cfg.features.n_mels, 24) * 2 - 1
    with torch.no_grad():
        ema = load_generator(cfg, payload["models"]["generator_ema"])(mel)
        raw = load_generator(cfg, payload["models"]["generator"])(mel)
        got = Converter.from_checkpoint(trained_run, device="cpu").generator(mel)
        got_raw = Converter.from_checkpoint(trained_run, device="cpu", use_ema=False).generator(mel)
    torch.testing.assert_close(got, ema)
    torch.testing.assert_close(got_raw, raw)
    assert not torch.allclose(ema, raw)


def test_generator_only_export_round_trips(conv: Converter, ckpt: Path, tmp_path: Path) -> None:
    small = save_generator(tmp_path / "g16.pt", ckpt)
    assert small.stat().st_size < 0.6 * ckpt.stat().st_size
    half = Converter.from_checkpoint(small, device="cpu")
    mel = torch.rand(conv.config.features.n_mels, 50) * 2 - 1
    torch.testing.assert_close(half.convert_mel(mel), conv.convert_mel(mel), atol=2e-2, rtol=0)
    assert half.inversion == preset_config("tiny").inversion  # FAST was not baked in: ckpt given
    assert "generator" in load_checkpoint(small)["models"]
    again = save_generator(tmp_path / "g16b.pt", load_checkpoint(ckpt))  # a loaded payload
    a, b = (load_checkpoint(p)["models"]["generator"] for p in (small, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_inversion_overrides(ckpt: Path) -> None:
    c = Converter.from_checkpoint(ckpt, device="cpu", inversion=["method=grad", "inversion.grad_steps=3"])
    assert c.inversion.method == "grad" and c.inversion.grad_steps == 3
    assert Converter.from_checkpoint(ckpt, device="cpu", inversion={"gl_iters": 2}).inversion.gl_iters == 2
    with pytest.raises(ConfigError, match="only inversion"):
        Converter.from_checkpoint(ckpt, device="cpu", inversion=["features.n_mels=80"])
    with pytest.raises(CheckpointError):
        Converter.from_checkpoint(ckpt.parent / "missing.pt")


# --- CLI -----------------------------------------------------------------------------------------

def write_wav(path: Path, seconds: float = 0.5, sr: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speech_like(seconds, sr=sr, seed=seed), sr)
    return path


def no_leftovers(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_cli_converts_folders_mirroring_the_tree(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    write_wav(src / "a" / "x.wav")
    write_wav(src / "a" / "b" / "y.flac", sr=22050)
    (src / "notes.txt").write_text("not audio")
    (src / ".hidden.wav").write_text("editor backup")
    single = write_wav(tmp_path / "single.wav", seconds=0.2)
    out = tmp_path / "out"
    code = main(["convert", "--ckpt", str(ckpt), str(src), str(single), "--out", str(out),
                 "--format", "flac", *CLI_FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac")) == [
        "a/b/y.flac", "a/x.flac", "single.flac"]
    assert "ignored 2 non-audio" in captured.err
    assert "converted 3 file(s)" in captured.out
    info = sf.info(out / "a" / "b" / "y.flac")
    assert info.samplerate == 22050 and info.frames == 11025
    assert "converted by melganvc" in read_comment(out / "a" / "x.flac")


def test_cli_bad_files_fail_alone(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    write_wav(src / "good.wav")
    (src / "text.wav").write_text("hello, not audio")
    (src / "empty.wav").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["convert", "--ckpt", str(ckpt), str(src), str(tmp_path / "nope.wav"),
                 "--out", str(out), *CLI_FAST])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("melganvc: error:")]
    assert len(errors) == 3 and "Traceback" not in captured.err
    assert any("text.wav" in e for e in errors) and any("empty.wav" in e for e in errors)
    assert "1 file(s)" in captured.out and "3 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["good.wav"] and no_leftovers(tmp_path)


def test_cli_keeps_existing_outputs_unless_overwrite(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = write_wav(tmp_path / "x.wav")
    out = tmp_path / "out"
    args = ["convert", "--ckpt", str(ckpt), str(src), "--out", str(out), *CLI_FAST]
    assert main(args) == 0
    (out / "x.wav").write_bytes(b"sentinel")
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "exists (use --overwrite)" in captured.err and "skipped 1 existing" in captured.out
    assert (out / "x.wav").read_bytes() == b"sentinel"
    assert main(args + ["--overwrite"]) == 0
    assert sf.info(out / "x.wav").frames == 8000 and no_leftovers(tmp_path)


def test_cli_user_errors_are_one_line(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = write_wav(tmp_path / "x.wav")
    cases = [["--ckpt", str(tmp_path / "none.pt"), str(src)],
             ["--ckpt", str(ckpt), str(tmp_path / "empty_dir")],
             ["--ckpt", str(ckpt), str(src), "--overlap", "0.9"],
             ["--ckpt", str(ckpt), str(src), "--set", "model.chunk_frames=8"]]
    (tmp_path / "empty_dir").mkdir()
    for extra in cases:
        code = main(["convert", *extra, "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("melganvc: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_loading_repairs_shrunken_spectral_norm_vectors() -> None:
    """EMA generators of earlier runs carry averaged (shrunken) power-iteration vectors; the
    loader converges sigma for the stored weights, so every conv ends at unit spectral norm."""
    cfg = preset_config("tiny")
    torch.manual_seed(3)
    gen = Generator(cfg.features.n_mels, cfg.model.generator_channels)
    state = {k: v * 0.05 if k.endswith(("._u", "._v")) else v for k, v in gen.state_dict().items()}
    sigmas = conv_sigmas(load_generator(cfg, state).state_dict())
    assert sigmas == pytest.approx([1.0] * 6, abs=1e-3)


def test_stereo_file_gives_stereo_with_the_source_panning(conv: Converter, tmp_path: Path) -> None:
    x = speech_like(3.0, sr=44100)
    sf.write(tmp_path / "st.flac", np.stack([x, 0.25 * x], 1), 44100)
    conv.convert_file(tmp_path / "st.flac", tmp_path / "out.flac", block_seconds=0.9)
    out, rate = sf.read(tmp_path / "out.flac", dtype="float32")
    assert rate == 44100 and out.shape == (x.size, 2)
    ratio = np.sqrt(np.mean(out[:, 1] ** 2) / np.mean(out[:, 0] ** 2))
    assert ratio == pytest.approx(0.25, abs=0.05)  # right stays 12 dB under left
    mono = conv.convert(load(tmp_path / "st.flac", 44100), 44100)  # the mid, converted
    np.testing.assert_allclose(out[:, 0], mono, atol=0.02)  # left: the loud side, gain 1
    # conversion.stereo=false: one channel, the mid's conversion
    conv.with_options(stereo=False).convert_file(tmp_path / "st.flac", tmp_path / "mono.flac")
    assert sf.info(tmp_path / "mono.flac").channels == 1
