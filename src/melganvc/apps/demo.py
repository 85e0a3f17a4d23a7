"""``melganvc demo`` / ``make demo``: hear the method work in minutes, offline, on 2 CPU cores.

Generates two synthetic speakers (espeak-ng, male A and female B, disjoint sentences), takes
the bundled ``demo-voice`` generator (or, with ``train=True`` or when none is bundled, trains
the small ``demo`` configuration for a time budget, resuming an earlier demo run), converts A's
held-out sentences, and writes an evaluation report with identity and oracle baselines.

``melganvc demo --music``: the bundled ``demo-music`` model (jazz combo -> string ensemble,
trained on scores played by sampled real instruments) converts recordings: the user's own
(``--input``, any audio, kept at its rate and stereo image), or else held-out pieces rendered
here with FluidSynth, then scored for timbre, melody and seams against the rendered strings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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


def convert_demo(run: Path, files: list[Path], out: Path, what: str, step: str = "[3/4]",
                 suffix: str | None = None) -> list[Path]:
    from melganvc.conversion.converter import Converter

    converter = Converter.from_checkpoint(run)
    outputs = []
    print(f"{step} converting {len(files)} {what} into {out}")
    for path in files:
        target = out / (path.name if suffix is None else path.with_suffix(suffix).name)
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
    convert_demo(run, sorted((voice / "A" / "test").glob("*.wav")), converted,
                 "held-out A sentences")
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


MUSIC_MODEL = "demo-music"
MUSIC_SOURCE, MUSIC_TARGET = "jazz", "strings"


def music_inputs(out: Path, inputs: list[Path], n_test: int) -> tuple[list[Path], Path | None]:
    """The recordings to convert and, when they were rendered here, the parallel string
    renderings to score against (``None`` for the user's own files)."""
    from melganvc.errors import UserError
    from melganvc.io.audio import find_audio

    if inputs:
        files = [f for path in inputs for f in (find_audio(path)[0] if path.is_dir() else [path])]
        if not files:
            raise UserError("--input: no audio files found")
        print(f"[1/3] converting your {len(files)} recording(s)")
        return files, None
    from melganvc.apps.demo_data.instruments import generate_instrument_corpus, missing_tools

    reason = missing_tools()
    if reason:
        raise UserError(f"the music demo renders held-out pieces with FluidSynth, but {reason}; "
                        "or give your own recordings with --input FILE")
    root = out / "data" / "instruments"
    if not (root / MUSIC_TARGET / "test").is_dir():
        print(f"[1/3] rendering {n_test} held-out pieces (jazz combo and strings) into {root}")
        generate_instrument_corpus(out / "data", (MUSIC_SOURCE, MUSIC_TARGET), n_train=0,
                                   n_test=n_test)
    else:
        print(f"[1/3] using the rendered pieces in {root}")
    return sorted((root / MUSIC_SOURCE / "test").glob("*.flac")), root


def run_music_demo(out: Path, inputs: Sequence[Path] = (), n_test: int = 3) -> dict | None:
    """Convert recordings with the bundled jazz -> strings model; score rendered ones."""
    from melganvc.errors import UserError
    from melganvc.evaluation.runner import run_evaluation, summary_lines
    from melganvc.io.checkpoint import checkpoint_config, load_checkpoint
    from melganvc.io.pretrained import bundled_path

    started = time.monotonic()
    out = Path(out)
    model = bundled_path(MUSIC_MODEL)
    if model is None:
        raise UserError(f"this installation has no bundled '{MUSIC_MODEL}' model")
    files, rendered = music_inputs(out, list(inputs), n_test)
    converted = out / "converted"
    convert_demo(model, files, converted, f"recording(s) to '{MUSIC_TARGET}'", "[2/3]",
                 suffix=".flac")
    results = None
    if rendered is not None:
        print("[3/3] evaluating timbre, melody and seams against identity and the real strings")
        results = run_evaluation(checkpoint_config(load_checkpoint(model)), ckpts=[model],
                                 source=rendered / MUSIC_SOURCE / "test",
                                 target=rendered / MUSIC_TARGET / "test",
                                 refs=rendered / MUSIC_TARGET / "test", out=out / "report",
                                 converted=converted, speech=False)
        print("\n".join(summary_lines(results)))
        print(f"  report:  {out / 'report' / 'report.html'}")
    print(f"\ndone in {(time.monotonic() - started) / 60:.1f} min")
    print(f"  listen:  {converted}/  (sources: {', '.join(str(f) for f in files[:3])}"
          f"{' ...' if len(files) > 3 else ''})")
    return results
