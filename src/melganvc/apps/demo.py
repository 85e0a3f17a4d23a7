"""``melganvc demo`` / ``make demo``: hear the method work in minutes, offline, on 2 CPU cores.

Generates two synthetic speakers (espeak-ng, male A and female B, disjoint sentences), takes
the bundled ``demo-voice`` generator (or, with ``train=True`` or when none is bundled, trains
the small ``demo`` configuration for a time budget, resuming an earlier demo run), converts A's
held-out sentences, and writes an evaluation report with identity and oracle baselines.
"""

from __future__ import annotations

import time
from pathlib import Path

from melganvc.config import apply_overrides, preset_config


def ensure_voice_data(data: Path, n_train: int, n_test: int) -> Path:
    voice = data / "voice"
    if not (voice / "A" / "test").is_dir() or not (voice / "B" / "train").is_dir():
        from melganvc.apps.demo_data import generate_voice_demo

        print(f"[1/4] generating demo voices into {voice}")
        generate_voice_demo(data, n_train=n_train, n_test=n_test)
    else:
        print(f"[1/4] using demo voices in {voice}")
    return voice


def train_demo(voice: Path, run: Path, minutes: float, steps: int | None) -> Path:
    from melganvc.training.loop import fit, training_corpora

    sets = [f"train.max_minutes={minutes}"] + ([f"train.steps={steps}"] if steps else [])
    cfg = apply_overrides(preset_config("demo"), sets)
    caches = training_corpora(cfg, (voice / "A" / "train", voice / "B" / "train"), run)
    print(f"[2/4] training for up to {minutes:g} min (resumes {run} if it exists)")
    state = fit(cfg, caches[0], caches[1], run, resume=True)
    print(f"      trained to step {state.step}")
    return run


def convert_demo(run: Path, sources: Path, out: Path) -> list[Path]:
    from melganvc.conversion.converter import Converter

    converter = Converter.from_checkpoint(run)
    outputs = []
    files = sorted(sources.glob("*.wav"))
    print(f"[3/4] converting {len(files)} held-out A sentences into {out}")
    for path in files:
        target = out / path.name
        converter.convert_file(path, target)
        outputs.append(target)
    return outputs


BUNDLED = "demo-voice"


def run_demo(out: Path, minutes: float = 4.0, steps: int | None = None, n_train: int = 120,
             n_test: int = 10, train: bool = False) -> dict:
    """The whole demo; returns the evaluation results. Trains only when asked to (``train``)
    or when the package has no bundled ``demo-voice`` model."""
    from melganvc.evaluation.runner import run_evaluation, summary_lines
    from melganvc.io.checkpoint import checkpoint_config, load_checkpoint
    from melganvc.io.pretrained import bundled_path

    started = time.monotonic()
    out = Path(out)
    voice = ensure_voice_data(out / "data", n_train, n_test)
    bundled = bundled_path(BUNDLED)
    if train or bundled is None:
        run = train_demo(voice, out / "run", minutes, steps)
    else:
        run = bundled
        print(f"[2/4] using the bundled pretrained model '{BUNDLED}' ({bundled.name}; "
              f"model card: melganvc models); `melganvc demo --train` trains your own")
    converted = out / "converted"
    convert_demo(run, voice / "A" / "test", converted)
    print("[4/4] evaluating (speaker similarity, ASR, F0) against identity and oracle baselines")
    cfg = checkpoint_config(load_checkpoint(run))
    results = run_evaluation(cfg, ckpts=[run], source=voice / "A" / "test", target=voice / "B" / "test",
                             out=out / "report", converted=converted)
    print("\n".join(summary_lines(results)))
    print(f"\ndone in {(time.monotonic() - started) / 60:.1f} min")
    print(f"  listen:  {converted}/  (sources: {voice / 'A' / 'test'}/, target voice: {voice / 'B' / 'test'}/)")
    print(f"  report:  {out / 'report' / 'report.html'}")
    if run != bundled:
        print(f"  logs:    tensorboard --logdir {run / 'logs'}")
    return results
