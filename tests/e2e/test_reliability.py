"""Reliability and safety: a corpus of bad inputs through the CLI, hostile checkpoints.

Every case runs ``melganvc.apps.cli.main`` and checks the CLI contract: a user mistake gives one
``melganvc: error:`` line naming the file and the reason (or a counted warning when the command
can go on), a non-zero exit when nothing useful was done, never a traceback, and never a partial
output (no ``*.tmp`` remnants, no output for a failed input). The corpus is built by a fixture in
a temporary folder; nothing binary is committed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like

from melganvc.apps.cli import main
from melganvc.config import apply_overrides, preset_config, to_dict
from melganvc.errors import UserError
from melganvc.io.audio import load
from melganvc.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from melganvc.models.networks import build_models
from melganvc.training.data import INDEX, SHARD, MelCorpus

SR = 16000
FAST_RESYNTH = ["--preset", "tiny", "--iters", "2", "--set", "inversion.nnls_iters=5"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the bad-input corpus ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str  # file name inside the corpus (may hold spaces and non-ASCII)
    error: str | None  # regex the one-line error must match; None: valid audio, must work


def _tone(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def sparse_wav(path: Path, seconds: float, sr: int = SR, claimed: float | None = None) -> Path:
    """A PCM-16 wav of ``seconds`` of silence as a sparse file (costs no disk, no writing).

    ``claimed``: seconds the header says, when it should lie about the length.
    """
    n_bytes = int(seconds * sr) * 2
    head = int((claimed if claimed is not None else seconds) * sr) * 2
    header = (b"RIFF" + struct.pack("<I", min(36 + head, 0xFFFFFFFF)) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
              + b"data" + struct.pack("<I", min(head, 0xFFFFFFFF)))
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + n_bytes)
    return path


def flac_claiming(path: Path, source: bytes, total_samples: int) -> Path:
    """``source`` (a FLAC file) with STREAMINFO's 36-bit total-samples field replaced."""
    data = bytearray(source)
    assert data[:4] == b"fLaC"
    info = 8  # 4 bytes magic + 4 bytes metadata block header
    data[info + 13] = (data[info + 13] & 0xF0) | ((total_samples >> 32) & 0x0F)
    data[info + 14 : info + 18] = (total_samples & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


CASES = [
    Case("empty.wav", r"not a readable audio file"),
    Case("one sample.wav", r"too short to resynthesise \(1 samples"),
    Case("header only.wav", r"contains no audio \(zero length\)"),
    Case("truncated.wav", None),  # libsndfile reads the part that is there: a shorter file
    Case("bad header.wav", r"not a readable audio file"),
    Case("truncated.flac", r"corrupt or truncated audio"),
    Case("corrupt.flac", r"corrupt or truncated audio"),
    Case("flac in disguise.wav", None),  # a FLAC named .wav: libsndfile sniffs the content
    Case("text.wav", r"not a readable audio file"),
    Case("stereo 96k 24bit.wav", None),
    Case("8bit.wav", None),
    Case("24bit.flac", None),
    Case("nan.wav", r"contains NaN or infinite samples"),
    Case("inf.wav", r"contains NaN or infinite samples"),
    Case("huge values.wav", r"samples far outside \[-1, 1\]"),
    Case("silence.wav", None),
    Case("dc offset.wav", None),
    Case("clipped.wav", None),
    Case("hot float.wav", None),  # float samples up to 3.0: clipped on output, not an error
    Case("lying length.wav", None),  # header claims 4 GB over 1 s of data
    Case("lying length.flac", None),  # claims 2^36 samples (256 GiB as float32) over 1 s
    Case("unknown length.flac", None),  # total samples 0 (streamed encoders): 2^63 frames
    Case("100 Hz.wav", r"sample rate 100 Hz is not supported"),
    Case("long sparse.wav", None),  # 2 minutes of silence in a sparse file
    Case("ünïcödé voix été 日本.flac", None),
    Case("missing.wav", r"no such file"),
    Case("a folder.wav", r"is a folder"),
]
VALID = [c.name for c in CASES if c.error is None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad inputs ünï")  # spaces and non-ASCII in every path
    tone = _tone()
    sf.write(root / "ref.wav", tone, SR, subtype="PCM_16")
    sf.write(root / "ref.flac", tone, SR)
    wav, flac = (root / "ref.wav").read_bytes(), (root / "ref.flac").read_bytes()
    (root / "ref.wav").unlink()
    (root / "ref.flac").unlink()

    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "one sample.wav", tone[:1], SR)
    sf.write(root / "header only.wav", tone[:0], SR)
    (root / "truncated.wav").write_bytes(wav[: len(wav) // 2])
    (root / "bad header.wav").write_bytes(b"\0" * 16 + wav[16:])
    (root / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    damaged = bytearray(flac)
    damaged[len(flac) // 3 : len(flac) // 3 + 256] = bytes(range(256))
    (root / "corrupt.flac").write_bytes(bytes(damaged))
    (root / "flac in disguise.wav").write_bytes(flac)
    (root / "text.wav").write_text("this is not audio\n" * 50)
    stereo = np.stack([_tone(1.0, 96000), 0.5 * _tone(1.0, 96000)], axis=1)
    sf.write(root / "stereo 96k 24bit.wav", stereo, 96000, subtype="PCM_24")
    sf.write(root / "8bit.wav", tone, SR, subtype="PCM_U8")
    sf.write(root / "24bit.flac", tone, SR, subtype="PCM_24")
    for name, bad in (("nan.wav", np.nan), ("inf.wav", -np.inf), ("huge values.wav", 1e30)):
        x = tone.copy()
        x[SR // 2] = bad
        sf.write(root / name, x, SR, subtype="FLOAT")
    sf.write(root / "silence.wav", np.zeros(SR, np.float32), SR)
    sf.write(root / "dc offset.wav", np.full(SR, 0.5, np.float32), SR)
    sf.write(root / "clipped.wav", np.clip(10 * tone, -1, 1), SR)
    sf.write(root / "hot float.wav", 10 * tone, SR, subtype="FLOAT")
    lying = bytearray(wav)
    lying[4:8] = struct.pack("<I", 0xFFFFFFF0)  # RIFF size
    lying[40:44] = struct.pack("<I", 0xFFFFFF00)  # data size
    (root / "lying length.wav").write_bytes(bytes(lying))
    flac_claiming(root / "lying length.flac", flac, (1 << 36) - 1)
    flac_claiming(root / "unknown length.flac", flac, 0)
    sf.write(root / "100 Hz.wav", tone[:1000], 100)
    sparse_wav(root / "long sparse.wav", 120.0)
    sf.write(root / "ünïcödé voix été 日本.flac", tone, SR)
    (root / "a folder.wav").mkdir()
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``melganvc.apps.cli.main(argv)`` -> (status, stdout, stderr); never a traceback."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return status, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("melganvc: error:")]


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_corpus_covers_every_case(corpus: Path) -> None:
    present = {p.name for p in corpus.iterdir()}
    assert present == {c.name for c in CASES} - {"missing.wav"}


# --- resynth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_resynth_bad_inputs(case: Case, corpus: Path, tmp_path: Path, capsys) -> None:
    src = corpus / case.name
    out = tmp_path / "out dir ü" / "resynth.wav"
    status, stdout, err = run(capsys, "resynth", src, out, *FAST_RESYNTH)
    if case.error is None:
        assert status == 0, err
        wave, rate = sf.read(out, dtype="float32")
        assert rate == SR and wave.size > 0 and np.isfinite(wave).all()
        assert np.abs(wave).max() <= 1.0
        assert f"wrote {out}" in stdout
    else:
        assert status == 2
        lines = error_lines(err)
        assert len(lines) == 1, err
        assert str(src) in lines[0]
        assert re.search(case.error, lines[0]), lines[0]
        assert not out.exists()
    assert not leftovers(tmp_path)


def test_resynth_refuses_to_overwrite(corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    status, _, err = run(capsys, "resynth", corpus / "silence.wav", out, *FAST_RESYNTH)
    assert status == 2
    assert error_lines(err) == [f"melganvc: error: {out} exists (use --overwrite)"]
    assert out.read_bytes() == b"precious"
    status, _, err = run(capsys, "resynth", corpus / "silence.wav", out, *FAST_RESYNTH,
                         "--overwrite")
    assert status == 0, err
    assert sf.info(str(out)).frames > 0
    assert not leftovers(tmp_path)


def test_resynth_never_replaces_its_input(corpus: Path, tmp_path: Path, capsys) -> None:
    """Not even with --overwrite (as ffmpeg): the recording would be lost to its resynthesis."""
    path = tmp_path / "self.wav"
    shutil.copy(corpus / "clipped.wav", path)
    original = path.read_bytes()
    status, _, err = run(capsys, "resynth", path, path, *FAST_RESYNTH, "--overwrite")
    assert status == 2
    message = f"melganvc: error: {path}: is the input itself; choose another output"
    assert error_lines(err) == [message]
    assert path.read_bytes() == original


def test_resynth_unwritable_output(corpus: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    (tmp_path / "a folder.wav").mkdir()
    for out in (blocker / "out.wav", blocker / "deeper" / "out.wav", tmp_path / "out.mp3",
                tmp_path / "a folder.wav"):
        status, _, err = run(capsys, "resynth", corpus / "silence.wav", out, *FAST_RESYNTH,
                             "--overwrite")
        assert status == 2
        lines = error_lines(err)
        assert len(lines) == 1 and str(out) in lines[0], err
        assert "cannot write" in lines[0]
        assert not out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "a folder.wav"]
    assert not list((tmp_path / "a folder.wav").iterdir())


@pytest.mark.parametrize("stage", ["write", "close"])
def test_write_failures_are_audio_errors(stage: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (simulated) mid-write or at close: one AudioError, no file, no temp file."""
    from melganvc.io.audio_writer import save

    def full(*args, **kwargs) -> None:
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(sf.SoundFile, stage, full)
    with pytest.raises(UserError, match=r"out.wav: cannot write \(No space left on device\)"):
        save(tmp_path / "out.wav", np.zeros(1000, np.float32), SR)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_resynth_read_only_folder(corpus: Path, tmp_path: Path, capsys) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop root from writing "
                    "(test_resynth_unwritable_output covers an unwritable path)")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        status, _, err = run(capsys, "resynth", corpus / "silence.wav", folder / "out.wav",
                             *FAST_RESYNTH)
        assert status == 2 and "cannot write" in error_lines(err)[0]
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_outputs_are_not_private(corpus: Path, tmp_path: Path, capsys) -> None:
    """Atomic writes go through a temp file; the result still gets the umask's permissions."""
    status, _, _ = run(capsys, "resynth", corpus / "silence.wav", tmp_path / "o.wav",
                       *FAST_RESYNTH)
    assert status == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "o.wav").stat().st_mode & 0o777 == 0o666 & ~umask


# --- prepare ------------------------------------------------------------------------------------

def test_prepare_skips_bad_files_with_counted_warnings(corpus: Path, tmp_path: Path,
                                                       capsys) -> None:
    out = tmp_path / "cache"
    status, stdout, err = run(capsys, "prepare", corpus, out, "--preset", "tiny", "--no-progress")
    assert status == 0, err
    assert "%|" not in err  # no progress bar
    unreadable = [c for c in CASES if c.error and c.name not in ("missing.wav", "one sample.wav",
                                                                "a folder.wav")]
    assert f"skipped {len(unreadable)} unreadable" in err
    assert "skipped 2 shorter than a crop" in err  # one sample; half a second (truncated.wav)
    assert "prepared" in stdout
    assert not error_lines(err)
    index = json.loads((out / INDEX).read_text())
    kept = set(index["names"])
    assert not kept & {c.name for c in CASES if c.error}
    assert {"silence.wav", "dc offset.wav", "clipped.wav", "ünïcödé voix été 日本.flac",
            "long sparse.wav", "flac in disguise.wav"} <= kept
    assert sorted(p.name for p in out.iterdir()) == sorted([INDEX, SHARD])
    corpus_ = MelCorpus(out, preset_config("tiny").features, 72)
    crops = corpus_.sample(np.random.default_rng(0), 8)
    assert torch.isfinite(crops).all() and crops.abs().max() <= 1


def test_prepare_nothing_usable(corpus: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("empty.wav", "text.wav", "nan.wav", "one sample.wav"):
        shutil.copy(corpus / name, src / name)
    (src / "notes.txt").write_text("hello")
    status, _, err = run(capsys, "prepare", src, tmp_path / "cache", "--preset", "tiny",
                         "--no-progress")
    assert status == 2
    assert error_lines(err) == [(f"melganvc: error: {src}: no usable audio (unreadable: 3, "
                                 f"shorter than 72 frames: 1; first: {src / 'empty.wav'}: not a "
                                 "readable audio file (Format not recognised.))")]
    assert not (tmp_path / "cache").exists()
    status, _, err = run(capsys, "prepare", tmp_path / "nope", tmp_path / "cache")
    assert status == 2 and error_lines(err) == [f"melganvc: error: {tmp_path / 'nope'}: not a folder"]


def test_prepare_unwritable_output(corpus: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(corpus / "silence.wav", src)
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    for out in (blocker, blocker / "cache"):
        status, _, err = run(capsys, "prepare", src, out, "--preset", "tiny")
        assert status == 2
        reason = "File exists" if out == blocker else "Not a directory"
        assert error_lines(err) == [
            f"melganvc: error: {out}: cannot write the prepared corpus ({reason})"]
    assert blocker.read_text() == "x" and not leftovers(tmp_path)


def test_prepare_clears_remnants_and_never_pairs_old_index_with_new_shard(
        corpus: Path, tmp_path: Path, capsys) -> None:
    src, out = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    shutil.copy(corpus / "silence.wav", src)
    assert run(capsys, "prepare", src, out, "--preset", "tiny")[0] == 0
    # What a prepare killed mid-write leaves: temp files beside the (complete) old cache.
    (out / f".{SHARD}.k1ll3d00.npy.tmp").write_bytes(b"half a shard")
    (out / f".{INDEX}.k1ll3d00.json.tmp").write_text("{")
    shutil.copy(corpus / "dc offset.wav", src)
    assert run(capsys, "prepare", src, out, "--preset", "tiny")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([INDEX, SHARD])
    assert len(json.loads((out / INDEX).read_text())["names"]) == 2


@pytest.mark.parametrize("damage", ["truncated shard", "bad json", "index mismatch"])
def test_damaged_prepared_corpus_is_a_user_error(damage: str, corpus: Path, tmp_path: Path,
                                                 capsys) -> None:
    src, out = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    shutil.copy(corpus / "silence.wav", src)
    assert run(capsys, "prepare", src, out, "--preset", "tiny")[0] == 0
    if damage == "truncated shard":
        data = (out / SHARD).read_bytes()
        (out / SHARD).write_bytes(data[: len(data) // 2])
    elif damage == "bad json":
        (out / INDEX).write_text('{"features": ')
    else:
        index = json.loads((out / INDEX).read_text())
        index["lengths"] = [n * 10 for n in index["lengths"]]
        (out / INDEX).write_text(json.dumps(index))
    with pytest.raises(UserError, match="damaged prepared corpus.*prepare again"):
        MelCorpus(out, preset_config("tiny").features, 72)


# --- train --------------------------------------------------------------------------------------

TRAIN_FAST = ["--preset", "tiny", "--set", "train.eval_every=0", "--set",
              "train.checkpoint_every=2", "--no-progress"]


@pytest.fixture(scope="module")
def mixed_domains(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny domains of good speech-like files with bad files mixed in."""
    root = tmp_path_factory.mktemp("mixed domains")
    a, b = root / "A ü", root / "B"
    for domain, f0, formants in ((a, 110.0, (500, 1500, 2500)), (b, 220.0, (800, 2000, 3200))):
        (domain / "sub dir").mkdir(parents=True)
        for i in range(2):
            sf.write(domain / f"{i}.wav", speech_like(1.2, f0=f0, formants=formants, seed=i), SR)
    for name in ("text.wav", "nan.wav", "one sample.wav", "truncated.flac"):
        shutil.copy(corpus / name, a / "sub dir" / name)
    shutil.copy(corpus / "empty.wav", b / "empty.wav")
    (b / "README.txt").write_text("notes")
    return a, b


def test_train_with_bad_files_mixed_in(mixed_domains: tuple[Path, Path], tmp_path: Path,
                                       capsys) -> None:
    a, b = mixed_domains
    run_dir = tmp_path / "run ü"
    status, stdout, err = run(capsys, "train", "--a", a, "--b", b, "--out", run_dir, "--steps", "2",
                              *TRAIN_FAST)
    assert status == 0, err
    assert f"melganvc: warning: {a}: skipped 3 unreadable" in err
    assert f"melganvc: warning: {a}: skipped 1 shorter than a crop" in err
    assert f"melganvc: warning: {b}: skipped 1 unreadable" in err
    assert f"melganvc: warning: {b}: ignored 1 non-audio files" in err
    assert "prepare" not in err.replace("prepare again", "")  # --no-progress: no bars either
    assert not error_lines(err)
    assert "trained to step 2" in stdout
    assert load_checkpoint(run_dir)["step"] == 2
    assert not leftovers(run_dir)


def test_train_only_bad_files(mixed_domains: tuple[Path, Path], corpus: Path, tmp_path: Path,
                              capsys) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(corpus / "text.wav", bad)
    status, _, err = run(capsys, "train", "--a", mixed_domains[0], "--b", bad, "--out",
                         tmp_path / "run", "--steps", "2", *TRAIN_FAST)
    assert status == 2
    assert error_lines(err) == [(f"melganvc: error: {bad}: no usable audio (unreadable: 1, "
                                 f"shorter than 72 frames: 0; first: {bad / 'text.wav'}: not a "
                                 "readable audio file (Format not recognised.))")]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_train_unwritable_run_folder(tiny_corpora: tuple[Path, Path], tmp_path: Path,
                                     capsys) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    status, _, err = run(capsys, "train", "--a", tiny_corpora[0], "--b", tiny_corpora[1],
                         "--out", blocker / "run", "--steps", "1", *TRAIN_FAST)
    assert status == 2
    assert error_lines(err) == [(f"melganvc: error: {blocker / 'run'}: cannot write the run "
                                 "folder (Not a directory)")]


# --- hostile and damaged checkpoints --------------------------------------------------------------

class Smuggled:
    """An arbitrary object: unpickling it means importing and running this module's code."""

    def __init__(self) -> None:
        self.payload = "anything"


@pytest.fixture(scope="module")
def good_run(tiny_corpora: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from melganvc.training.loop import fit

    cfg = apply_overrides(preset_config("tiny"), ["train.steps=2", "train.checkpoint_every=2", "train.eval_every=0"])
    run_dir = tmp_path_factory.mktemp("good run")
    fit(cfg, *tiny_corpora, run_dir, progress=False)
    return run_dir


def copy_run(good_run: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    return run_dir


def resume(capsys, tiny_corpora: tuple[Path, Path], run_dir: Path, *extra: str):
    return run(capsys, "train", "--a", tiny_corpora[0], "--b", tiny_corpora[1], "--out", run_dir,
               "--resume", "--steps", "3", "--no-progress", *extra)


def hostile_payloads(marker: Path) -> dict[str, dict]:
    cfg = to_dict(preset_config("tiny"))
    return {
        "os.system partial": {"format": 1, "config": cfg, "step": 1,
                              "hook": functools.partial(os.system, f"touch '{marker}'")},
        "custom class": {"format": 1, "config": cfg, "step": 1, "extra": Smuggled()},
        "exec via eval": {"format": 1, "config": cfg, "step": 1,
                          "x": functools.partial(eval, f"open('{marker}', 'w')")},
    }


@pytest.mark.parametrize("kind", ["os.system partial", "custom class", "exec via eval"])
def test_hostile_checkpoint_is_refused(kind: str, good_run: Path, tiny_corpora, tmp_path: Path,
                                       capsys) -> None:
    marker = tmp_path / "pwned"
    run_dir = copy_run(good_run, tmp_path)
    torch.save(hostile_payloads(marker)[kind], run_dir / "checkpoint.pt")
    expected = {"os.system partial": "functools.partial", "custom class": "Smuggled",
                "exec via eval": "functools.partial"}[kind]
    with pytest.raises(CheckpointError, match=rf"refused: it holds a pickled Python object "
                                              rf"\([\w.]*{expected}\)") as info:
        load_checkpoint(run_dir)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    status, _, err = resume(capsys, tiny_corpora, run_dir)
    assert status == 2
    lines = error_lines(err)
    assert len(lines) == 1 and str(run_dir / "checkpoint.pt") in lines[0]
    assert "refused" in lines[0] and "only use checkpoints you trust" in lines[0]
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "empty", "not a zip",
                                    "plain pickle", "not a dict"])
def test_damaged_checkpoint_is_reported(damage: str, good_run: Path, tiny_corpora,
                                        tmp_path: Path, capsys) -> None:
    run_dir = copy_run(good_run, tmp_path)
    path = run_dir / "checkpoint.pt"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "bit flip":  # in the middle of the tensor data: torch.load would not notice
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(flipped))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not a zip":
        path.write_bytes(b"garbage" * 100)
    elif damage == "plain pickle":
        import pickle

        path.write_bytes(pickle.dumps({"format": 1, "config": {}}))
    else:
        torch.save([1, 2, 3], path)
    expected = {"truncated": r"corrupt or truncated checkpoint \(not a complete PyTorch zip",
                "bit flip": r"corrupt checkpoint \(checksum mismatch in .*data/",
                "empty": r"corrupt or truncated checkpoint \(empty file\)",
                "not a zip": r"corrupt or truncated checkpoint",
                "plain pickle": r"corrupt or truncated checkpoint",
                "not a dict": r"not a melganvc checkpoint"}[damage]
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)
    status, _, err = resume(capsys, tiny_corpora, run_dir)
    assert status == 2
    lines = error_lines(err)
    assert len(lines) == 1 and str(path) in lines[0], err
    assert re.search(expected, lines[0])


def test_incompatible_config_names_the_field(good_run: Path, tiny_corpora, tmp_path: Path,
                                             capsys) -> None:
    run_dir = copy_run(good_run, tmp_path)
    before = (run_dir / "checkpoint.pt").read_bytes()
    status, _, err = resume(capsys, tiny_corpora, run_dir, "--set", "model.generator_channels=48")
    assert status == 2
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "incompatible config: model.generator_channels is 32 in the checkpoint but 48 in this " \
           "config" in lines[0]
    assert str(run_dir / "checkpoint.pt") in lines[0]
    assert (run_dir / "checkpoint.pt").read_bytes() == before  # nothing was overwritten
    cfg_file = tmp_path / "other.yaml"
    cfg_file.write_text("preset: tiny\nmodel:\n  vec_len: 16\n")
    status, _, err = resume(capsys, tiny_corpora, run_dir, "--config", cfg_file)
    assert status == 2 and "model.vec_len is 32 in the checkpoint but 16 in this config" in err


def test_checkpoint_without_training_state(good_run: Path, tiny_corpora, tmp_path: Path,
                                           capsys) -> None:
    run_dir = copy_run(good_run, tmp_path)
    payload = load_checkpoint(run_dir)
    gen_only = {"config": payload["config"], "kind": "generator",
                "models": {"generator": payload["models"]["generator"]}}
    save_checkpoint(run_dir / "checkpoint.pt", gen_only)
    status, _, err = resume(capsys, tiny_corpora, run_dir)
    assert status == 2 and "generator-only export holds no training state" in err
    del payload["optimizers"]
    save_checkpoint(run_dir / "checkpoint.pt", {k: v for k, v in payload.items()
                                                if k not in ("format", "melganvc_version")})
    status, _, err = resume(capsys, tiny_corpora, run_dir)
    assert status == 2
    assert error_lines(err) == [(f"melganvc: error: {run_dir / 'checkpoint.pt'}: checkpoint holds "
                                 "incomplete or damaged training state (missing 'optimizers')")]


def test_resume_clears_temp_files_a_kill_left(good_run: Path, tiny_corpora, tmp_path: Path,
                                             capsys) -> None:
    run_dir = copy_run(good_run, tmp_path)
    remnants = [run_dir / ".checkpoint.pt.d34d0001.pt.tmp", run_dir / ".config.yaml.d34d.yaml.tmp"]
    for path in remnants:
        path.write_bytes(b"half written")
    keep = run_dir / "notes.tmp"  # not ours: left alone
    keep.write_text("mine")
    status, _, err = resume(capsys, tiny_corpora, run_dir, "--set", "train.eval_every=0")
    assert status == 0, err
    assert "resuming" in err and not any(p.exists() for p in remnants) and keep.exists()
    assert load_checkpoint(run_dir)["step"] == 3


def test_unwritable_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(blocker / "checkpoint.pt", {"config": {}})


# --- convert (the other helper's code: exercised, problems reported) --------------------------------

@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = preset_config("tiny")
    torch.manual_seed(0)
    gen = build_models(cfg)[0].eval()
    path = tmp_path_factory.mktemp("gen") / "g.pt"
    save_checkpoint(path, {"config": to_dict(cfg), "step": 0,
                           "models": {"generator": gen.state_dict()}})
    return path


def test_convert_bad_corpus(corpus: Path, generator_ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "converted"
    status, stdout, err = run(capsys, "convert", corpus, "--out", out, "--ckpt", generator_ckpt,
                              "--iters", "2", "--set", "inversion.nnls_iters=5", "--no-progress",
                              "--device", "cpu")
    assert status == 1  # some converted, some failed
    lines = error_lines(err)
    # "x.flac" and "x.wav" both map to out/x.wav: the first (the failing .flac) claims it.
    blocked = {"truncated.wav", "lying length.wav"}
    for case in CASES:
        target = out / Path(case.name).with_suffix(".wav")
        if case.name in ("missing.wav", "a folder.wav"):
            continue  # not files of the walk (the folder is walked into: it is empty)
        if case.name in blocked:
            assert any(f"{corpus / case.name}: not converted: its output name" in line
                       for line in lines), err
        elif case.error is None or case.name == "one sample.wav":  # convert keeps any length
            assert target.is_file(), (case.name, err)
            wave, _ = sf.read(target, dtype="float32")
            assert wave.size and np.isfinite(wave).all(), case.name
        else:
            assert any(str(corpus / case.name) in line for line in lines), (case.name, err)
            assert not target.exists(), case.name
    assert f"{len(lines)} failed" in stdout
    assert not leftovers(out)


def test_lying_headers_cost_no_memory(corpus: Path) -> None:
    """Headers claiming 2^36 or 2^63 frames: read in bounded blocks, under a 1.5 GiB cap."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))\n"
        "from melganvc.io.audio import audio_info, iter_blocks, load\n"
        "for name in sys.argv[1:]:\n"
        "    assert load(name, 16000).size == 16000, name\n"
        "    assert sum(b.size for b in iter_blocks(name, 16000)) == 16000, name\n"
        "    print(audio_info(name))\n"
    )
    names = [str(corpus / n) for n in ("lying length.flac", "unknown length.flac",
                                       "lying length.wav")]
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "(16000, 16000)"  # unknown length: counted


def test_loader_matches_valid_cases(corpus: Path) -> None:
    """Direct API: every valid case loads as finite mono float32 at the requested rate."""
    for name in VALID:
        wave = load(corpus / name, SR)
        assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all(), name
