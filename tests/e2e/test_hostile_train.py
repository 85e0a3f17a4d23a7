"""A hostile-but-realistic tester's findings, through the CLI: stale training caches, disk-full
messages, SIGTERM, shared output folders, ``--a`` = ``--b``, ``--resume --preset``.

Subprocess tests never synchronise on time: the converter runs ``melganvc.apps.cli.main`` with
``AudioWriter.write`` wrapped to print ``writing`` after its first block and then wait for a
line on stdin, so the test knows the temp file exists and the writer is mid-write; timeouts are
only a safety net. Disk-full tests mount a small tmpfs (root only; skipped otherwise).
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like

from melganvc.apps.cli import main
from melganvc.config import Config, preset_config, to_dict
from melganvc.errors import AudioError
from melganvc.io.audio_writer import AudioWriter
from melganvc.io.checkpoint import load_checkpoint, save_checkpoint
from melganvc.models.networks import build_models
from melganvc.training.data import INDEX, SHARD

SR = 16000
TRAIN_FAST = ["--preset", "tiny", "--set", "train.eval_every=0", "--no-progress"]
CONVERT_FAST = ["--iters", "2", "--set", "inversion.nnls_iters=5", "--no-progress",
                "--device", "cpu"]
SAFETY_TIMEOUT = 300  # seconds: only ever reached when something hangs

HOOKED_CONVERT = """
import sys
from melganvc.io.audio_writer import AudioWriter

_write = AudioWriter.write

def write_then_wait(self, block):
    _write(self, block)
    if not getattr(self, "_announced", False):
        self._announced = True
        print(f"writing {self.path}", flush=True)
        sys.stdin.readline()  # the test signals us here, or lets us go on with a line

AudioWriter.write = write_then_wait
from melganvc.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``melganvc.apps.cli.main(argv)`` -> (status, stdout, stderr); never a traceback."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return status, out, err


def lines(err: str, kind: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"melganvc: {kind}:")]


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def write_domain(folder: Path, count: int, f0: float, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sf.write(folder / f"{i}.wav", speech_like(1.2, f0=f0, seed=seed + i), SR)
    return folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A and B (2 files each) and C (3 files, so its cache is told apart from A's)."""
    root = tmp_path_factory.mktemp("domains")
    return {"A": write_domain(root / "A", 2, 110.0), "B": write_domain(root / "B", 2, 220.0),
            "C": write_domain(root / "C", 3, 160.0, seed=10)}


@pytest.fixture(scope="module")
def base_run(domains: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step run of A -> B, its caches in RUN/cache/{a,b}; tests work on copies."""
    run_dir = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", "--a", str(domains["A"]), "--b", str(domains["B"]), "--out",
                 str(run_dir), "--steps", "1", *TRAIN_FAST]) == 0
    return run_dir


def copy_run(base_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def cache_names(cache: Path) -> list[str]:
    import json

    return json.loads((cache / INDEX).read_text())["names"]


# --- 4. stale training cache ------------------------------------------------------------------------

def test_retry_after_a_failed_attempt_prepares_the_new_a(domains: dict[str, Path],
                                                         tmp_path: Path, capsys) -> None:
    """The first attempt caches A, then fails on B; the retry with --a C must train on C."""
    bad = tmp_path / "bad B"
    bad.mkdir()
    (bad / "text.wav").write_text("not audio")
    run_dir = tmp_path / "run"
    status, _, err = run(capsys, "train", "--a", domains["A"], "--b", bad, "--out", run_dir,
                         "--steps", "1", *TRAIN_FAST)
    assert status == 2 and "no usable audio" in err
    assert cache_names(run_dir / "cache" / "a") == ["0.wav", "1.wav"]  # A's, left behind
    status, _, err = run(capsys, "train", "--a", domains["C"], "--b", domains["B"], "--out",
                         run_dir, "--steps", "1", *TRAIN_FAST)
    assert status == 0, err
    assert lines(err, "note") == [(f"melganvc: note: {run_dir / 'cache' / 'a'} was prepared from "
                                  f"{domains['A'].resolve()}, not {domains['C'].resolve()}; "
                                  "preparing it again")]
    assert cache_names(run_dir / "cache" / "a") == ["0.wav", "1.wav", "2.wav"]  # C's


def test_resume_with_a_missing_source_is_an_error(base_run: Path, domains: dict[str, Path],
                                                  tmp_path: Path, capsys) -> None:
    run_dir = copy_run(base_run, tmp_path)
    missing = tmp_path / "nonexistent"
    status, stdout, err = run(capsys, "train", "--resume", "--a", domains["C"], "--b", missing,
                              "--out", run_dir, "--steps", "2", "--no-progress")
    assert status == 2, stdout
    assert lines(err, "error") == [f"melganvc: error: {missing}: not a folder"]
    assert load_checkpoint(run_dir)["step"] == 1  # nothing trained
    assert cache_names(run_dir / "cache" / "a") == ["0.wav", "1.wav"]  # nothing prepared either


def test_resume_with_another_a_trains_on_it(base_run: Path, domains: dict[str, Path],
                                            tmp_path: Path, capsys) -> None:
    run_dir = copy_run(base_run, tmp_path)
    status, _, err = run(capsys, "train", "--resume", "--a", domains["C"], "--b", domains["B"],
                         "--out", run_dir, "--steps", "2", "--no-progress")
    assert status == 0, err
    assert len(lines(err, "note")) == 1 and "preparing it again" in err
    assert cache_names(run_dir / "cache" / "a") == ["0.wav", "1.wav", "2.wav"]
    assert load_checkpoint(run_dir)["step"] == 2


def test_changed_audio_is_prepared_again_and_unchanged_reused(domains: dict[str, Path],
                                                              tmp_path: Path, capsys) -> None:
    a = Path(shutil.copytree(domains["A"], tmp_path / "A"))
    run_dir = tmp_path / "run"
    argv = ["train", "--a", a, "--b", domains["B"], "--out", run_dir, "--no-progress"]
    assert run(capsys, *argv, "--steps", "1", *TRAIN_FAST[:-1])[0] == 0
    shard = run_dir / "cache" / "a" / SHARD
    before = shard.stat()
    status, _, err = run(capsys, *argv, "--resume", "--steps", "2")
    assert status == 0 and not lines(err, "note"), err  # unchanged: reused as it is
    assert shard.stat().st_ino == before.st_ino and shard.stat().st_mtime_ns == before.st_mtime_ns
    sf.write(a / "new.wav", speech_like(1.2, f0=130.0, seed=7), SR)
    status, _, err = run(capsys, *argv, "--resume", "--steps", "3")
    assert status == 0, err
    assert lines(err, "note") == [(f"melganvc: note: {a.resolve()} changed since "
                                  f"{run_dir / 'cache' / 'a'} was prepared; preparing it again")]
    assert cache_names(run_dir / "cache" / "a") == ["0.wav", "1.wav", "new.wav"]


def test_prepared_cache_passed_directly_still_works(domains: dict[str, Path], tmp_path: Path,
                                                    capsys) -> None:
    cache = tmp_path / "C cache"
    assert run(capsys, "prepare", domains["C"], cache, "--preset", "tiny", "--no-progress")[0] == 0
    run_dir = tmp_path / "run"
    status, _, err = run(capsys, "train", "--a", cache, "--b", domains["B"], "--out", run_dir,
                         "--steps", "1", *TRAIN_FAST)
    assert status == 0, err
    assert not lines(err, "note") and not lines(err, "warning"), err
    assert not (run_dir / "cache" / "a").exists()  # used where it is, not copied


# --- --a and --b the same audio; --resume with --preset ----------------------------------------------

def test_same_audio_for_both_domains_warns(domains: dict[str, Path], tmp_path: Path,
                                           capsys) -> None:
    b = domains["B"]
    status, _, err = run(capsys, "train", "--a", b, "--b", f"{b}/.", "--out", tmp_path / "run",
                         "--steps", "1", *TRAIN_FAST)
    assert status == 0, err
    assert lines(err, "warning") == [(f"melganvc: warning: --a and --b are the same audio "
                                     f"({b.resolve()}): the model will learn to map a domain "
                                     "onto itself")]
    # The run's own cache of B, given as --a, is the same audio too.
    status, _, err = run(capsys, "train", "--a", tmp_path / "run" / "cache" / "b", "--b", b,
                         "--out", tmp_path / "run2", "--steps", "1", *TRAIN_FAST)
    assert status == 0 and len(lines(err, "warning")) == 1, err


def test_resume_refuses_another_preset_like_another_config(base_run: Path, tmp_path: Path,
                                                           domains: dict[str, Path],
                                                           capsys) -> None:
    run_dir = copy_run(base_run, tmp_path)
    before = (run_dir / "checkpoint.pt").read_bytes()
    resume = ["train", "--resume", "--a", domains["A"], "--b", domains["B"], "--out", run_dir,
              "--steps", "2", "--no-progress"]
    status, _, err = run(capsys, *resume, "--preset", "speech16k")
    assert status == 2
    (line,) = lines(err, "error")
    assert line.startswith("melganvc: error: --preset speech16k: a resumed run keeps its own "
                           "config, and this one differs from it (")
    assert "; drop --preset (--set SECTION.FIELD=VALUE still changes a field) or train into a " \
           "new --out" in line
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    config = tmp_path / "other.yaml"
    config.write_text("preset: tiny\ntrain:\n  lr: 0.5\n")
    status, _, err = run(capsys, *resume, "--config", config)
    assert status == 2
    assert "train.lr is 0.0002 in the checkpoint but 0.5 in this config" in err, err
    assert "--config " + str(config) + ": a resumed run keeps its own config" in err
    # Restating the run's own config is fine; --set still changes fields of a resumed run.
    status, _, err = run(capsys, *resume, *TRAIN_FAST, "--set", "train.log_every=7")
    assert status == 0, err
    assert load_checkpoint(run_dir)["config"]["train"]["log_every"] == 7


# --- 9. disk full -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``make(kib)``: a fresh tmpfs of that size, unmounted after the test."""
    mounted: list[Path] = []

    def make(kib: int) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("disk-full tests mount a small tmpfs, which needs root and mount(8)")
        path = tmp_path / f"small disk {len(mounted)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = preset_config("tiny")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "g.pt"
    save_checkpoint(path, {"config": to_dict(cfg), "step": 0,
                           "models": {"generator": build_models(cfg)[0].eval().state_dict()}})
    return path


@pytest.fixture(scope="module")
def long_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, speech_like(4.0, seed=3), SR)  # 256 kB as float wav, ~100 kB as flac
    return path


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_convert_on_a_full_disk_says_so(fmt: str, small_disk, long_input: Path,
                                        generator_ckpt: Path, capsys) -> None:
    out = small_disk(48) / "out"
    status, _, err = run(capsys, "convert", long_input, "--out", out, "--format", fmt,
                         "--ckpt", generator_ckpt, *CONVERT_FAST)
    assert status == 1
    assert lines(err, "error") == [(f"melganvc: error: {out / ('long.' + fmt)}: cannot write "
                                   "(No space left on device)")]
    assert list(out.iterdir()) == []  # no partial output, no temp file


def test_prepare_on_a_full_disk_says_so(small_disk, domains: dict[str, Path], capsys) -> None:
    out = small_disk(64) / "cache"
    status, _, err = run(capsys, "prepare", domains["C"], out, "--preset", "tiny",
                         "--no-progress")
    assert status == 2
    assert lines(err, "error") == [(f"melganvc: error: {out}: cannot write the prepared corpus "
                                   "(No space left on device)")]
    assert list(out.iterdir()) == []


def test_train_checkpoint_on_a_full_disk_says_so(small_disk, tiny_corpora: tuple[Path, Path],
                                                 capsys) -> None:
    run_dir = small_disk(128) / "run"
    status, _, err = run(capsys, "train", "--a", tiny_corpora[0], "--b", tiny_corpora[1],
                         "--out", run_dir, "--steps", "1", *TRAIN_FAST)
    assert status == 2
    assert lines(err, "error") == [(f"melganvc: error: {run_dir / 'checkpoint.pt'}: cannot write "
                                   "checkpoint (No space left on device)")]
    assert not (run_dir / "checkpoint.pt").exists() and not temps(run_dir)


# --- 10. SIGTERM, stale temps, two converts into one folder -------------------------------------------

@dataclass
class HookedConvert:
    """A ``melganvc convert`` subprocess that stops mid-write until told to go on."""

    proc: subprocess.Popen
    stdout: queue.Queue
    stderr_path: Path

    @classmethod
    def start(cls, tmp: Path, *argv: object) -> HookedConvert:
        script = tmp / "hooked_convert.py"
        script.write_text(HOOKED_CONVERT)
        stderr_path = tmp / f"stderr.{os.urandom(4).hex()}.txt"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        with stderr_path.open("w") as stderr:
            proc = subprocess.Popen([sys.executable, str(script), "convert", *map(str, argv)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    text=True, env=env)
        lines_seen: queue.Queue = queue.Queue()

        def read() -> None:
            for line in proc.stdout:
                lines_seen.put(line)
            lines_seen.put(None)  # end of output: the process exited

        threading.Thread(target=read, daemon=True).start()
        return cls(proc, lines_seen, stderr_path)

    def wait_until_writing(self) -> Path:
        """Block until the writer has written a block (its temp file exists); returns the
        output it is writing."""
        try:
            while (line := self.stdout.get(timeout=SAFETY_TIMEOUT)) is not None:
                if line.startswith("writing "):
                    return Path(line.removeprefix("writing ").rstrip("\n"))
        except queue.Empty:
            pass
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"the converter never started writing: {self.stderr_path.read_text()}")

    def go_on(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> tuple[int, str]:
        try:
            status = self.proc.wait(timeout=SAFETY_TIMEOUT)
        finally:
            self.proc.kill()
        return status, self.stderr_path.read_text()


def own_temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


def test_sigterm_during_convert_exits_cleanly_without_temp(tmp_path: Path, long_input: Path,
                                                           generator_ckpt: Path) -> None:
    out = tmp_path / "out"
    convert = HookedConvert.start(tmp_path, long_input, "--out", out, "--ckpt", generator_ckpt,
                                  *CONVERT_FAST)
    target = convert.wait_until_writing()
    assert target == out / "long.wav"
    assert len(own_temps(out, "long.wav")) == 1  # mid-write: the temp file exists
    convert.proc.send_signal(signal.SIGTERM)
    status, err = convert.finish()
    assert status == 143, err
    assert "melganvc: terminated" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []  # no temp file, no output


def test_main_restores_the_sigterm_handler(capsys) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert run(capsys, "models")[0] == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_convert_sweeps_stale_temps_but_not_a_live_writers(tmp_path: Path, long_input: Path,
                                                           generator_ckpt: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".gone.0123abcd.wav.tmp", out / ".other.89abcdef.flac.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed convert")
    not_ours = [out / ".notes.tmp", out / "keep.wav.tmp", out / ".x.nothex1.wav.tmp"]
    for path in not_ours:
        path.write_text("mine")
    held = out / ".held.fedcba98.wav.tmp"  # a live writer (this process) holds its lock
    held.write_bytes(b"being written")
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    other = HookedConvert.start(tmp_path, long_input, "--out", out, "--ckpt", generator_ckpt,
                                *CONVERT_FAST)
    try:
        other.wait_until_writing()
        (live,) = own_temps(out, "long.wav")
        second = tmp_path / "second"
        second.mkdir()
        shutil.copy(long_input, second / "short.wav")
        status, _, err = run(capsys, "convert", second, "--out", out, "--ckpt", generator_ckpt,
                             *CONVERT_FAST)
        assert status == 0, err
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in not_ours) and held.exists()
        assert live.exists()  # the other convert's temp survived the sweep
    finally:
        os.close(fd)
        other.go_on()
    status, err = other.finish()
    assert status == 0, err
    assert (out / "long.wav").is_file() and (out / "short.wav").is_file()
    assert not own_temps(out, "long.wav")


def test_writer_without_overwrite_never_replaces_a_file_that_appeared(tmp_path: Path) -> None:
    target = tmp_path / "x.wav"
    with pytest.raises(AudioError, match=r"x\.wav: exists \(use --overwrite\)"), \
            AudioWriter(target, SR, overwrite=False) as writer:
        writer.write(np.zeros(1000, np.float32))
        target.write_bytes(b"published meanwhile by another process")
    assert target.read_bytes() == b"published meanwhile by another process"
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]
    with AudioWriter(target, SR) as writer:  # the default still replaces (--overwrite)
        writer.write(np.zeros(1000, np.float32))
    assert sf.info(target).frames == 1000


def test_two_converts_into_one_folder_keep_each_others_outputs(tmp_path: Path, long_input: Path,
                                                               generator_ckpt: Path,
                                                               capsys) -> None:
    out = tmp_path / "out"
    first = HookedConvert.start(tmp_path, long_input, "--out", out, "--ckpt", generator_ckpt,
                                *CONVERT_FAST)
    try:
        first.wait_until_writing()  # checked that long.wav does not exist, now writing it
        other = tmp_path / "other"
        other.mkdir()
        sf.write(other / "long.wav", speech_like(1.0, seed=9), SR)
        assert run(capsys, "convert", other, "--out", out, "--ckpt", generator_ckpt,
                   *CONVERT_FAST)[0] == 0
        published = (out / "long.wav").read_bytes()
    finally:
        first.go_on()
    status, err = first.finish()
    assert (out / "long.wav").read_bytes() == published  # not replaced without --overwrite
    assert status == 1 and f"{out / 'long.wav'}: exists (use --overwrite)" in err, err
    assert not temps(out)


def test_plain_train_uses_the_default_recipe(tmp_path: Path, capsys) -> None:
    """No --preset: the measured default recipe (``speech``), not the reference; --max-minutes 0
    lifts its time limit; --preset reference is the paper's configuration unchanged."""
    a, b = write_domain(tmp_path / "A", 2, 110.0), write_domain(tmp_path / "B", 2, 220.0)
    status, _, _ = run(capsys, "train", "--a", a, "--b", b, "--out", tmp_path / "run", "--steps",
                       "1", "--max-minutes", "0", "--set", "train.eval_every=0", "--no-progress")
    assert status == 0
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]
    speech = to_dict(preset_config("speech"))
    assert saved["model"] == speech["model"] and saved["loss"] == speech["loss"]
    assert saved["train"]["precision"] in ("fp32", "bf16")  # auto, resolved by this machine
    restated = {"steps": 60000, "max_minutes": 20.0, "eval_every": 1000, "precision": "auto"}
    assert saved["train"] | restated == speech["train"]
    assert saved["train"]["select_best"] and saved["train"]["max_minutes"] == 0
    assert preset_config("reference") == preset_config("speech16k") == Config().validate()
