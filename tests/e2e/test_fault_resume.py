"""Training survives SIGKILL at any moment: kill, ``--resume``, repeat, then let it finish.

The trainer runs as a subprocess (``melganvc.apps.cli.main`` with ``train_batch`` wrapped to print
``step N`` after each batch, so the test knows how far it got). Kills land during start-up and
corpus preparation, between batches, and while a checkpoint is being written. The moment is
chosen by the (seeded) plan, never by how fast the machine is: the wrapped trainer *holds*
(blocks until killed) after a given batch, or inside ``torch.save`` of a checkpoint -- before
any byte, half-way (half of the bytes written) or after the last byte, but before the rename.
So a fast machine cannot finish before the kill and a slow one is only waited for.
After each kill: the checkpoint on disk still loads with ``weights_only``, its step never goes
back, the resumed run starts exactly there, at most one checkpoint interval of batches is lost,
and temp files left by the kill are removed by the next run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speech_like

from melganvc.io.checkpoint import CHECKPOINT_NAME, load_checkpoint

TRAINER = """
import io, os, sys, time
import torch
import melganvc.training.loop as fit_module

HOLD_STEP = int(os.environ.get("KILLTEST_HOLD_STEP", "0"))  # hold after this batch
HOLD_SAVE = os.environ.get("KILLTEST_HOLD_SAVE", "")  # hold in the next checkpoint write
_train_batch = fit_module.train_batch
_save = torch.save


def hold(what):
    print(f"held {what}", flush=True)
    time.sleep(600)  # until the test kills us (bounded, so a broken test cannot hang CI)
    sys.exit(3)


def traced(state, a, b):
    losses = _train_batch(state, a, b)
    print(f"step {state.step}", flush=True)
    if HOLD_STEP and state.step >= HOLD_STEP:
        hold(f"step {state.step}")
    return losses


def held_save(obj, f, *args, **kwargs):
    if HOLD_SAVE == "before":
        hold("checkpoint before writing")
    if HOLD_SAVE == "half":
        buffer = io.BytesIO()
        _save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if hasattr(f, "write"):  # an open file (the temp) or a path
            f.write(data[: len(data) // 2])
            f.flush()
        else:
            with open(f, "wb") as out:
                out.write(data[: len(data) // 2])
        hold("checkpoint half written")
    _save(obj, f, *args, **kwargs)
    if HOLD_SAVE == "after":
        hold("checkpoint written, not renamed")


fit_module.train_batch = traced
torch.save = held_save
from melganvc.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""

HOLD_POINTS = ("before", "half", "after")


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kill domains")
    out = []
    for name, f0, formants in (("A", 110.0, (500, 1500, 2500)), ("B", 220.0, (800, 2000, 3200))):
        (root / name).mkdir()
        for i in range(2):
            sf.write(root / name / f"{i}.wav", speech_like(1.2, f0=f0, formants=formants, seed=i),
                     16000)
        (root / name / "broken.wav").write_text("not audio")  # warned about, every run
        out.append(root / name)
    return out[0], out[1]


@dataclass
class Trainer:
    """One ``melganvc train`` subprocess; stdout lines are collected by a thread."""

    proc: subprocess.Popen
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, tmp: Path, argv: list[str], index: int, hold: dict[str, str]) -> Trainer:
        script = tmp / "trainer.py"
        if not script.exists():
            script.write_text(TRAINER)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **hold)
        stderr_path = tmp / f"stderr.{index}.txt"
        proc = subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                                stderr=stderr_path.open("w"), text=True, env=env)
        trainer = cls(proc, stderr_path)
        trainer.reader = threading.Thread(target=trainer._read, daemon=True)
        trainer.reader.start()
        return trainer

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    @property
    def steps(self) -> list[int]:
        return [int(line.split()[1]) for line in list(self.lines) if line.startswith("step ")]

    @property
    def held(self) -> bool:
        return any(line.startswith("held ") for line in list(self.lines))

    @property
    def last_step(self) -> int | None:
        steps = self.steps
        return steps[-1] if steps else None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL
        self.drain()

    def drain(self) -> None:
        """Wait for the reader to see the end of the (dead) process's output."""
        assert self.reader is not None
        self.reader.join(timeout=30)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def resumed_at(self) -> int | None:
        found = re.search(r"melganvc: resuming .* at step (\d+)", self.stderr())
        return int(found.group(1)) if found else None


def checkpoint_temps(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"))


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 600.0, poll: float = 0.01) -> bool:
    """Poll ``predicate`` until true (-> True) or the process ends (-> False). ``timeout`` is
    only a safety net for a hung trainer, far beyond any machine's speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    raise AssertionError("trainer made no progress")


@dataclass
class Kill:
    mode: str
    last_printed: int | None  # last batch the killed process finished
    saved: int | None  # step in checkpoint.pt after the kill
    temp_left: str | None = None  # name of the temp checkpoint the kill left behind

    @property
    def lost(self) -> int:
        return (self.last_printed or 0) - (self.saved or 0)


def run_kill_campaign(tmp_path: Path, domains: tuple[Path, Path], plan: list[str], steps: int,
                      every: int, seed: int) -> tuple[list[Kill], Trainer]:
    """Kill one trainer per ``plan`` entry, resuming each time; then run to the end."""
    rng = random.Random(seed)
    run_dir = tmp_path / "run"
    argv = ["train", "--a", str(domains[0]), "--b", str(domains[1]), "--out", str(run_dir),
            "--preset", "tiny", "--set", f"train.checkpoint_every={every}", "--set",
            f"train.steps={steps}", "--no-progress"]
    kills: list[Kill] = []
    saved_before: int | None = None
    left_by_last_kill: str | None = None
    for index, mode in enumerate([*plan, "finish"]):
        stale = {p.name for p in checkpoint_temps(run_dir)}  # left by the previous kill
        target = min(steps - 1, (saved_before or 0) + rng.randint(1, 2 * every))
        hold = {"startup": {"KILLTEST_HOLD_STEP": str(target)},
                "step": {"KILLTEST_HOLD_STEP": str(min(steps - 1, target + rng.randint(0, 2)))},
                "checkpoint": {"KILLTEST_HOLD_SAVE": rng.choice(HOLD_POINTS)}}.get(mode, {})
        trainer = Trainer.start(tmp_path, argv + (["--resume"] if index else []), index, hold)
        proc = trainer.proc
        if mode == "startup":  # somewhere in imports, corpus preparation or the first batches
            time.sleep(rng.uniform(0.5, 4.0))  # a random moment; the hold keeps it alive
        elif mode == "step":  # between batches: at or a little after the target batch
            assert wait_for(lambda t=target, tr=trainer: (tr.last_step or 0) >= t, proc), \
                trainer.stderr()
            time.sleep(rng.uniform(0.0, 0.3))
        elif mode == "checkpoint":  # inside the write: the temp file exists, the rename not yet
            assert wait_for(lambda tr=trainer: tr.held, proc), trainer.stderr()
        if mode != "finish":
            assert proc.poll() is None, f"trainer ended before the '{mode}' kill"
            temps_before = {p.name for p in checkpoint_temps(run_dir)} - stale
            trainer.kill()
            left = [p.name for p in checkpoint_temps(run_dir) if p.name in temps_before]
            saved = load_checkpoint(run_dir)["step"] if (run_dir / CHECKPOINT_NAME).exists() \
                else None
            kills.append(Kill(mode, trainer.last_step, saved, left[0] if left else None))
        else:
            assert proc.wait(timeout=900) == 0, trainer.stderr()  # a safety net only
            trainer.drain()
        # The run that was just killed (or finished) started where the last kill left it
        # (unless it was killed before it got that far).
        if trainer.steps or mode == "finish":
            assert trainer.resumed_at() == saved_before, trainer.stderr()
        else:
            assert trainer.resumed_at() in (None, saved_before), trainer.stderr()
        if trainer.steps:
            assert trainer.steps[0] == (saved_before or 0) + 1
        if kills and mode != "finish":
            k = kills[-1]
            if saved_before is not None:
                assert k.saved is not None and k.saved >= saved_before  # never goes back
            if k.saved is not None:
                assert k.saved % every == 0 and k.saved <= (k.last_printed or 0)
            assert k.lost <= every, k  # at most one checkpoint interval to redo
            saved_before = k.saved
        if left_by_last_kill and trainer.steps:  # it got going: the remnant is gone
            assert not (run_dir / left_by_last_kill).exists()
        left_by_last_kill = kills[-1].temp_left if mode != "finish" else None
    return kills, trainer


def check_campaign(tmp_path: Path, kills: list[Kill], final: Trainer, steps: int) -> str:
    run_dir = tmp_path / "run"
    assert any(k.mode == "checkpoint" and k.temp_left for k in kills), \
        "no kill landed while a checkpoint was being written"
    saved = [k.saved for k in kills if k.saved is not None]
    assert saved == sorted(saved)
    assert f"trained to step {steps}" in "\n".join(final.lines)
    payload = load_checkpoint(run_dir)  # weights_only
    assert payload["step"] == steps
    assert {"generator", "critic", "siamese"} <= set(payload["models"])
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    return "; ".join(f"{k.mode}: killed after step {k.last_printed}, checkpoint at {k.saved}, "
                     f"lost {k.lost}" + (" (temp left)" if k.temp_left else "") for k in kills)


def test_random_kills_and_resumes(tmp_path: Path, domains: tuple[Path, Path]) -> None:
    """Seven SIGKILLs at random moments, two of them while a checkpoint is being written."""
    plan = ["startup", "step", "checkpoint", "step", "step", "checkpoint", "step"]
    kills, final = run_kill_campaign(tmp_path, domains, plan, steps=60, every=5, seed=20240)
    summary = check_campaign(tmp_path, kills, final, 60)
    print(f"\nkills: {len(kills)}; {summary}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_random_kills(tmp_path: Path, domains: tuple[Path, Path], seed: int) -> None:
    """Twelve kills in a random order of kinds, with checkpoints every 3 batches."""
    rng = random.Random(seed)
    plan = ["startup", "checkpoint"] + rng.choices(["step", "checkpoint"], k=10)
    kills, final = run_kill_campaign(tmp_path, domains, plan, steps=90, every=3, seed=seed)
    summary = check_campaign(tmp_path, kills, final, 90)
    print(f"\nseed {seed}: kills: {len(kills)}; {summary}")
