"""``melganvc evaluate``: convert held-out source utterances and score them beside their baselines.

Systems in one run, so every number has its floor and ceiling beside it:
- ``converted``: the model's output (or files given with ``--converted``); with several
  checkpoints, one ``converted:<label>`` system each (``label``: the run folder's name), all
  scored against the same baselines, which are computed once;
- ``identity``: the source only resynthesised (mel -> inversion, no generator): the floor;
- ``oracle``: the target speaker's own utterances: the ceiling.

With ``--refs`` (the target speaker reading the source's sentences) two more, which separate
what the generator loses from what the recogniser and the vocoder lose:
- ``oracle_parallel``: those recordings, scored for content against the source's transcript:
  a perfect conversion (its CER is the recogniser's own floor on the target voice);
- ``oracle_resynth``: the same through features + inversion: a perfect conversion heard
  through our vocoder, the ceiling a converted mel can reach.

Speech judges (``speech=True``), loaded once before anything is converted so that a missing
package fails in one line at once: naturalness (DistillMOS, ``melganvc.judges.naturalness``), the
recogniser for CER/WER (``asr``: Whisper tiny.en by default, ``whisper-base``, or
``pocketsphinx``) and the speaker encoder (resemblyzer).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from melganvc.config import Config, InversionConfig, apply_overrides, to_dict
from melganvc.dsp.mel import MelSpectrogram
from melganvc.dsp.resample import resample
from melganvc.errors import AudioError, UserError
from melganvc.evaluation.music import SeamCheck
from melganvc.io.audio import find_audio, load
from melganvc.judges.protocols import QualityJudge, Recogniser
from melganvc.judges.speaker import SpeakerEncoder
from melganvc.judges.waves import SAMPLE_RATE
from melganvc.vocoders import build_inverter


@dataclass
class Utterance:
    name: str  # path relative to its folder, used to pair files across folders
    wave: np.ndarray


def load_folder(folder: Path, limit: int | None = None, sample_rate: int = SAMPLE_RATE) -> list[Utterance]:
    """Readable utterances of a folder (any depth), sorted; unreadable files are reported and skipped."""
    files, _ = find_audio(Path(folder))
    out = []
    for path in files[:limit] if limit else files:
        try:
            out.append(Utterance(str(path.relative_to(folder).with_suffix("")), load(path, sample_rate)))
        except AudioError as exc:
            print(f"melganvc: warning: skipped {exc}", file=sys.stderr)
    if not out:
        raise UserError(f"{folder}: no readable audio to evaluate")
    return out


def resynthesize(cfg: Config, waves: list[np.ndarray]) -> list[np.ndarray]:
    """The identity baseline: what the feature + inversion pipeline alone does to the source."""
    features, inverter = MelSpectrogram(cfg.features), build_inverter(cfg.features, cfg.inversion)
    out = []
    with torch.no_grad():
        for wave in waves:
            resampled = resample(wave, SAMPLE_RATE, cfg.features.sample_rate)
            mel = features(torch.from_numpy(resampled))
            out.append(resample(inverter(mel).numpy(), cfg.features.sample_rate, SAMPLE_RATE))
    return out


def convert_all(ckpt: Path, sources: list[Utterance], device: str,
                inversion: InversionConfig | None = None, conversion: Sequence[str] = ()
                ) -> tuple[list[np.ndarray], float]:
    """Convert every source utterance; returns the outputs and the real-time factor.
    ``conversion``: ``conversion.FIELD=VALUE`` overrides of the checkpoint's settings."""
    from melganvc.conversion.converter import Converter

    converter = Converter.from_checkpoint(ckpt, device=device, inversion=inversion)
    if conversion:
        converter = Converter(converter.generator, apply_overrides(converter.config,
                                                                   list(conversion)),
                              device=converter.device)
    started, seconds, out = time.perf_counter(), 0.0, []
    for utt in tqdm(sources, desc="convert", unit="file"):
        out.append(converter.convert(utt.wave, SAMPLE_RATE))
        seconds += utt.wave.size / SAMPLE_RATE
    return out, (time.perf_counter() - started) / max(seconds, 1e-9)


def paired(folder: Path | None, names: list[str]) -> dict[str, np.ndarray]:
    """Files of ``folder`` whose relative name (without suffix) matches a source utterance."""
    if folder is None:
        return {}
    found = {u.name: u.wave for u in load_folder(folder)}
    return {name: found[name] for name in names if name in found}


def parallel_oracles(cfg: Config, sources: list[Utterance],
                     references: dict[str, np.ndarray]) -> dict[str, list]:
    """``oracle_parallel`` and ``oracle_resynth`` (see the module docstring); empty without refs."""
    from melganvc.evaluation.results import EvalItem

    pairs = [(u, references[u.name]) for u in sources if u.name in references]
    if not pairs:
        return {}
    resynth = resynthesize(cfg, [ref for _, ref in pairs])
    return {
        "oracle_parallel": [EvalItem(u.name, ref, u.wave) for u, ref in pairs],
        "oracle_resynth": [EvalItem(u.name, w, u.wave, ref) for (u, ref), w in zip(pairs, resynth)],
    }


@dataclass
class SpeechJudges:
    """The models that listen to speech; any of them ``None`` skips its metrics."""

    encoder: SpeakerEncoder | None = None
    transcriber: Recogniser | None = None
    naturalness: QualityJudge | None = None


def load_speech_judges(asr: str = "whisper", naturalness: bool = True) -> SpeechJudges:
    """Load the speech judges once (see the module docstring); a missing package raises a
    one-line ``UserError`` naming the extra to install."""
    from melganvc.judges.integrity import EVAL_EXTRA
    from melganvc.judges.naturalness import NaturalnessJudge
    from melganvc.judges.whisper import make_recogniser

    try:
        encoder = SpeakerEncoder()
    except ImportError as exc:
        raise UserError(f"the speaker encoder (resemblyzer) is not installed ({exc}): "
                        f"{EVAL_EXTRA}") from None
    return SpeechJudges(encoder, make_recogniser(asr),
                        NaturalnessJudge() if naturalness else None)


def checkpoint_labels(ckpts: Sequence[Path]) -> list[str]:
    """System names for the checkpoints: ``converted`` for one, else ``converted:<run>`` by
    run folder name (the full path where two runs share a name)."""
    if len(ckpts) == 1:
        return ["converted"]
    names = [(p.parent.name if p.suffix else p.name) or str(p) for p in ckpts]
    if len(set(names)) < len(names):
        names = [str(p) for p in ckpts]
    if len(set(names)) < len(names):
        raise UserError(f"--ckpt given twice: {next(n for n in names if names.count(n) > 1)}")
    return [f"converted:{n}" for n in names]


def check_same_features(cfg: Config, ckpts: Sequence[Path]) -> None:
    """The baselines are made with ``cfg``'s features: every checkpoint must share them."""
    from melganvc.io.checkpoint import checkpoint_config, field_differences, load_checkpoint

    for path in ckpts:
        other = checkpoint_config(load_checkpoint(path))
        diff = field_differences({"features": to_dict(cfg.features)},
                                 {"features": to_dict(other.features)})
        if diff:
            raise UserError(f"{path}: its features differ from the first checkpoint's "
                            f"({diff[0]}); evaluate it in a separate run")


def converted_systems(ckpts: Sequence[Path], cfg: Config, sources: list[Utterance],
                      device: str, conversion: Sequence[str] = ()
                      ) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Each checkpoint's conversions of the sources and its real-time factor, by system name."""
    check_same_features(cfg, ckpts)
    outputs, rtfs = {}, {}
    for label, ckpt in zip(checkpoint_labels(ckpts), ckpts):
        outputs[label], rtfs[label] = convert_all(ckpt, sources, device, cfg.inversion,
                                                  conversion)
    return outputs, rtfs


def given_conversions(converted: Path, names: list[str]) -> list[np.ndarray]:
    """Already-converted files for every source name (a missing one is an error)."""
    given = paired(converted, names)
    missing = [n for n in names if n not in given]
    if missing:
        raise UserError(f"{converted}: no converted file for {len(missing)} sources "
                        f"(e.g. {missing[0]})")
    return [given[n] for n in names]


def run_evaluation(cfg: Config, *, ckpts: Sequence[Path] = (), source: Path, target: Path,
                   out: Path, refs: Path | None = None, converted: Path | None = None,
                   limit: int | None = None, device: str = "auto", examples: int = 3,
                   speech: bool = True, asr: str = "whisper", naturalness: bool = True,
                   judges: SpeechJudges | None = None, conversion: Sequence[str] = ()) -> dict:
    """Convert (or read) the source utterances, score all systems, write report.json/.html.

    ``ckpts``: the checkpoints to convert with (one system each, see the module docstring);
    with ``converted`` they are only recorded (hashes) and the given files are scored.
    ``speech=False`` (music, other audio) skips every speech judge (speaker encoder, ASR,
    naturalness) and adds the melody measure; timbre, spectral distances, seams and F0 remain. ``asr`` picks the recogniser
    (``whisper``, ``whisper-base``, ``pocketsphinx``); ``naturalness=False`` skips DistillMOS.
    ``judges`` passes models already loaded (they are then used as given). ``conversion``:
    ``conversion.FIELD=VALUE`` overrides for every checkpoint (e.g. its postfilter)."""
    from melganvc.evaluation.report_html import write_report
    from melganvc.evaluation.results import EvalItem, ReportExample, sha256_file
    from melganvc.evaluation.scoring import evaluate_systems
    from melganvc.io.checkpoint import resolve_checkpoint

    ckpts = [Path(c) for c in ckpts]
    if converted is None and not ckpts:
        raise UserError("evaluate needs --ckpt or --converted")
    started = time.perf_counter()
    if judges is None:
        judges = load_speech_judges(asr, naturalness) if speech else SpeechJudges()
    loaded = time.perf_counter() - started
    sources = load_folder(source, limit)
    targets = load_folder(target)
    names = [u.name for u in sources]
    rtfs: dict[str, float] = {}
    if converted is not None:
        outputs = {"converted": given_conversions(converted, names)}
    else:
        outputs, rtfs = converted_systems(ckpts, cfg, sources, device, conversion)
    references = paired(refs, names)
    identity = resynthesize(cfg, [u.wave for u in sources])
    systems = {
        **{label: [EvalItem(n, w, s.wave, references.get(n))
                   for n, w, s in zip(names, waves, sources)] for label, waves in outputs.items()},
        "identity": [EvalItem(n, w, s.wave, references.get(n)) for n, w, s in zip(names, identity, sources)],
        "oracle": [EvalItem(t.name, t.wave) for t in targets[: max(len(sources), 1)]],
        **parallel_oracles(cfg, sources, references),
    }
    hashes = {label: sha256_file(resolve_checkpoint(c))
              for label, c in zip(checkpoint_labels(ckpts), ckpts)} if ckpts else {}
    results = evaluate_systems(
        systems, target_refs=[t.wave for t in targets], source_refs=[u.wave for u in sources],
        encoder=judges.encoder, transcriber=judges.transcriber, naturalness=judges.naturalness,
        config=to_dict(cfg),
        checkpoint_sha256=next(iter(hashes.values())) if len(hashes) == 1 else None,
        rtf=(rtfs.get("converted") if len(rtfs) == 1 else rtfs) or None,
        melody=not speech, seams=SeamCheck(cfg.features, cfg.model.chunk_frames))
    if len(hashes) > 1:
        results["checkpoints"] = {label: {"path": str(c), "sha256": hashes[label]}
                                  for label, c in zip(hashes, ckpts)}
    results["timing_s"].update(load_judges=loaded, total=time.perf_counter() - started)
    first = next(iter(outputs.values()))
    shown = [ReportExample(n, s.wave, w, references.get(n, targets[i % len(targets)].wave))
             for i, (n, w, s) in enumerate(zip(names, first, sources)) if i < examples]
    write_report(out, results, shown, config=to_dict(cfg))
    return results


SUMMARY_KEYS = ("naturalness", "sim_target", "sim_source", "accept_rate", "timbre_accept",
                "melody", "cer_corpus", "wer_corpus", "cer_ref_corpus", "wer_ref_corpus", "mcd",
                "seam", "f0_hz")


def summary_lines(results: dict) -> list[str]:
    """A small fixed-width table of each system's means for the terminal: the columns that at
    least one system has (a music run has no naturalness or CER), each as wide as its name."""
    systems = results["systems"]
    keys = [k for k in SUMMARY_KEYS
            if any(isinstance(s["mean"].get(k), int | float) for s in systems.values())]
    width = max(len("system"), *map(len, systems))
    widths = [max(8, len(k)) for k in keys]
    lines = [f"{'system':<{width}} " + " ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    for name, system in systems.items():
        mean = system["mean"]
        cells = [f"{mean[k]:{w}.3f}" if isinstance(mean.get(k), int | float) else f"{'-':>{w}}"
                 for k, w in zip(keys, widths)]
        lines.append(f"{name:<{width}} " + " ".join(cells))
    analysis = results.get("analysis") or {}
    notes = [f"CER/WER: {analysis['asr']}" if analysis.get("asr") else "",
             "naturalness: DistillMOS, 1-5, higher is better" if "naturalness" in keys else ""]
    if any(notes):
        lines.append("(" + "; ".join(n for n in notes if n) + ")")
    return lines
