"""The training loop around ``train_batch``: run folder, resume, progress, TensorBoard, samples.

A run folder holds ``config.yaml`` (resolved), ``checkpoint.pt`` (latest, atomic, every
``checkpoint_every`` batches) and ``logs/`` (TensorBoard: every loss, mel images of fixed A
inputs and their translations, and audio of the translations at each eval). For speech, each
eval also scores those translations with the ``eval`` extra's judges (``SampleJudges``):
``judge/naturalness`` (DistillMOS, 1-5) and ``judge/similarity_b`` (resemblyzer cosine to B).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from melganvc.config import Config, FeatureConfig, to_dict
from melganvc.device import ThreadGovernor, select_device, tune_for_training
from melganvc.errors import UserError
from melganvc.io.checkpoint import field_differences
from melganvc.io.run_dir import RunDir
from melganvc.models.chunk_stream import ChunkStream
from melganvc.training import distributed as dist_utils
from melganvc.training.data import (
    MelCorpus,
    PrepareReport,
    corpus_origin,
    describe_source,
    is_prepared,
    prepare,
    print_report,
    stale_reason,
)
from melganvc.training.precision import resolve_precision
from melganvc.training.selection import STALE_NOTE, sample_quality
from melganvc.training.step import (
    TrainState,
    build_state,
    run_progress,
    sample_batch,
    save_best_generator,
    save_run_checkpoint,
    set_learning_rate,
    should_stop,
    train_batch,
    try_resume,
    warm_start,
)
from melganvc.vocoders import AnyInverter, build_inverter

if TYPE_CHECKING:
    from melganvc.judges.naturalness import NaturalnessJudge
    from melganvc.judges.speaker import SpeakerEncoder

EVAL_MAX_FRAMES = 256  # ~3 s of 16 kHz speech per logged example
HOLDOUT_FACTOR = 4  # select_best holds the sample inputs out only when A has >= 4x as many
# The judges are 16 kHz speech models (they resample their input): the speech presets (16 and
# 8 kHz, and the HiFi-GAN vocoder's speech features at 22.05 kHz) are scored; the other presets
# above 16 kHz are for music, which they cannot judge.
JUDGE_MAX_RATE = 16000


def judged(features: FeatureConfig) -> bool:
    """Whether the sample judges can score audio of these features (speech, not music)."""
    return features.sample_rate <= JUDGE_MAX_RATE or features.recipe == "hifigan"


def prepare_domain(cfg: Config, source: Path, output: Path, progress: bool = True) -> PrepareReport:
    """Cache one domain for this config's crop length, printing counted skips."""
    report = prepare(source, output, cfg.features, cfg.model.crop_chunks * cfg.model.chunk_frames,
                     progress=progress)
    print_report(source, report)
    return report


def training_corpora(cfg: Config, sources: tuple[Path, Path], run_dir: Path,
                     progress: bool = True) -> tuple[Path, Path]:
    """The prepared corpora for domains A and B: a prepared folder is used as given; an audio
    folder is cached in ``RUN/cache/{a,b}``, which is reused only while it holds that folder's
    current audio prepared with this config (else prepared again, with a one-line note).

    Both sources are checked before either is prepared, so a typo in ``--b`` fails at once and
    never trains on what an earlier run left in the cache.
    """
    min_frames = cfg.model.crop_chunks * cfg.model.chunk_frames
    described = [None if is_prepared(path) else describe_source(path, min_frames)
                 for path in sources]
    origins = [corpus_origin(path) for path in sources]
    if origins[0] == origins[1]:
        print(f"melganvc: warning: --a and --b are the same audio ({origins[0]}): the model "
              "will learn to map a domain onto itself", file=sys.stderr)
    corpora = []
    for name, path, source in zip(("a", "b"), sources, described, strict=True):
        if source is None:
            corpora.append(Path(path))
            continue
        cache = RunDir(Path(run_dir)).cache(name)
        if not is_prepared(cache):  # first run, or a prepare that was interrupted
            prepare_domain(cfg, path, cache, progress=progress)
        elif (why := stale_reason(cache, source, cfg.features)) is not None:
            print(f"melganvc: note: {why}; preparing it again", file=sys.stderr)
            prepare_domain(cfg, path, cache, progress=progress)
        corpora.append(cache)
    return corpora[0], corpora[1]


def config_differences(run: Config, requested: Config) -> list[str]:
    """Each field where ``requested`` differs from a run's own config, as one clause.
    ``train.precision=auto`` matches the precision the run chose at its start."""
    if requested.train.precision == "auto":
        requested = replace(requested, train=replace(requested.train,
                                                     precision=run.train.precision))
    return field_differences(to_dict(requested), to_dict(run))


def sample_holdout(cfg: Config, utterances: int) -> int:
    """How many of A's first utterances (the sample inputs) ``train.select_best`` keeps out of
    training: all of them when A has at least ``HOLDOUT_FACTOR`` times as many, else none (a
    user with a few long files should not lose most of their data to the judges)."""
    wanted = cfg.train.num_eval_examples if cfg.train.select_best else 0
    return wanted if utterances >= HOLDOUT_FACTOR * wanted else 0


def open_corpora(cfg: Config, a: Path, b: Path) -> tuple[MelCorpus, MelCorpus]:
    """The two domains; with ``train.select_best`` A's sample inputs are held out of training
    when A has enough utterances (``sample_holdout``), with a warning when it has not."""
    crop = cfg.model.crop_chunks * cfg.model.chunk_frames
    corpus_a = MelCorpus(a, cfg.features, crop)
    holdout = sample_holdout(cfg, len(corpus_a))
    if holdout:
        corpus_a.hold_out(holdout)
    elif cfg.train.select_best and dist_utils.is_main():
        print(f"melganvc: warning: {a}: only {len(corpus_a)} utterances, so the "
              f"{min(cfg.train.num_eval_examples, len(corpus_a))} sample inputs that choose "
              "best.pt (train.select_best) are trained on too", file=sys.stderr)
    return corpus_a, MelCorpus(b, cfg.features, crop)


def eval_examples(cfg: Config, corpus: MelCorpus) -> list[torch.Tensor]:
    """A fixed set of A utterances (the first few), so logged translations are comparable."""
    count = min(cfg.train.num_eval_examples, len(corpus))
    return [corpus.utterance(i)[:, :EVAL_MAX_FRAMES] for i in range(count)]


def mel_image(mel: torch.Tensor) -> np.ndarray:
    """Normalised mel ``(n_mels, T)`` -> ``(1, n_mels, T)`` image in [0, 1], low frequencies at the bottom."""
    return ((mel.flip(0).clamp(-1, 1) + 1) / 2).unsqueeze(0).cpu().numpy()


class SampleJudges:
    """Naturalness (DistillMOS) and speaker similarity to B (resemblyzer) of the logged sample
    translations, written as ``judge/naturalness`` (mean over the examples, 1-5) and
    ``judge/similarity_b`` (mean cosine of each example's embedding to the centroid of
    ``references``, a few B utterances, -1..1).

    The judges and the B centroid (the references inverted once with the samples' inverter) are
    loaded at the first eval, once per run. Without the ``eval`` extra, one warning is printed
    and nothing is scored; music (sample rate above 16 kHz) is never scored."""

    def __init__(self, references: list[torch.Tensor]) -> None:
        self.references = references
        self.disabled = False
        self.naturalness: NaturalnessJudge | None = None
        self.encoder: SpeakerEncoder | None = None
        self.centroid: np.ndarray | None = None

    def _load(self, inverter, device: torch.device, sample_rate: int) -> bool:
        threads = torch.get_num_threads()  # DistillMOS gets the training threads: it waits
        try:
            from melganvc.judges.naturalness import NaturalnessJudge
            from melganvc.judges.speaker import SpeakerEncoder, speaker_centroid

            self.naturalness = NaturalnessJudge(num_threads=threads)
            self.encoder = SpeakerEncoder()  # one thread: its small LSTM gains nothing from more
        except (ImportError, UserError) as exc:
            print(f"melganvc: warning: judge/* scalars not logged ({exc})", file=sys.stderr)
            self.disabled = True
            return False
        with torch.no_grad():
            waves = [inverter(mel.to(device)).reshape(-1).clamp(-1, 1).cpu().numpy()
                     for mel in self.references]
        self.centroid = speaker_centroid(self.encoder, waves, sample_rate)
        return True

    def log(self, state: TrainState, writer, waves: list[np.ndarray], inverter
            ) -> tuple[float, float] | None:
        """Score ``waves`` (the sample translations, at the model's rate), log the means and
        return them (naturalness, similarity); ``None`` when they cannot be judged."""
        sample_rate = state.cfg.features.sample_rate
        if self.disabled or not waves or not judged(state.cfg.features):
            return None
        if self.naturalness is None and not self._load(inverter, state.device, sample_rate):
            return None
        from melganvc.judges.speaker import cosine

        # _load sets all three, or disables the judges (an error there ends the run)
        assert self.naturalness is not None and self.encoder is not None
        assert self.centroid is not None
        mos = [self.naturalness.score(w, sample_rate) for w in waves]
        sim = [cosine(self.encoder.embed(w, sample_rate), self.centroid) for w in waves]
        means = []
        for tag, values in (("judge/naturalness", mos), ("judge/similarity_b", sim)):
            finite = [v for v in values if math.isfinite(v)]  # NaN: a silent translation
            means.append(float(np.mean(finite)) if finite else math.nan)
            if finite:
                writer.add_scalar(tag, means[-1], state.step)
        return means[0], means[1]


def log_samples(state: TrainState, writer, examples: list[torch.Tensor],
                judges: SampleJudges | None, inverter: AnyInverter) -> tuple[float, float] | None:
    """Log the sample translations; return their judged (naturalness, similarity) if any.
    ``inverter``: the config's, built once per run (a neural vocoder is a 55 MB load)."""
    generator = state.inference_generator()
    was_training = generator.training
    generator.eval()
    rate = state.cfg.features.sample_rate
    waves = []
    for i, mel in enumerate(examples):
        # as `convert` applies the model (overlap, postfilter): samples sound like it
        fake = ChunkStream.from_config(generator, state.cfg, state.device).run(mel.to(state.device))
        writer.add_image(f"mel/{i}_source", mel_image(mel), state.step)
        writer.add_image(f"mel/{i}_converted", mel_image(fake), state.step)
        with torch.no_grad():
            wave = inverter(fake).reshape(-1).clamp(-1, 1).cpu()
        writer.add_audio(f"audio/{i}_converted", wave, state.step, rate)
        waves.append(wave.numpy())
    generator.train(was_training)
    return judges.log(state, writer, waves, inverter) if judges is not None else None


def select(state: TrainState, run_dir: Path, writer, scores: tuple[float, float] | None) -> bool:
    """``train.select_best``: keep this eval's generator as ``best.pt`` if its samples are the
    best so far, say when the run has stopped improving; ``True``: stop (``train.patience``)."""
    t, selection = state.cfg.train, state.selection
    if not t.select_best or scores is None:
        return False
    quality = sample_quality(*scores)
    writer.add_scalar("judge/quality", quality, state.step)
    if selection.update(state.step, quality):
        save_best_generator(state, run_dir)
        return False
    if selection.stale == STALE_NOTE or (t.patience and selection.stale >= t.patience):
        tqdm.write(f"melganvc: step {state.step}: no better samples for {selection.stale} evals "
                   f"(best {selection.best:.3f} at step {selection.best_step}, kept in "
                   f"{RunDir(run_dir).best})", file=sys.stderr)
    # only rank 0 evaluates: an early stop there alone would leave the other ranks waiting
    return bool(t.patience) and selection.stale >= t.patience and not dist_utils.is_active()


def note_threads(governor: ThreadGovernor, threads: int, step: int, writer) -> None:
    """Say (once per change) that the governor moved torch's threads, and log it."""
    why = "other processes busy on its CPUs" if threads < governor.max_threads else "CPUs free again"
    tqdm.write(f"melganvc: step {step}: training on {threads} of {governor.max_threads} threads "
               f"({why}; --threads N fixes the count)", file=sys.stderr)
    if writer is not None:
        writer.add_scalar("perf/threads", threads, step)


def fit(cfg: Config, corpus_a: Path, corpus_b: Path, run_dir: Path, resume: bool = False,
        progress: bool = True, adapt_threads: bool = False) -> TrainState:
    """Train (or continue) a run; returns the final state. Safe to kill at any moment.
    ``adapt_threads``: on a CPU, follow the cores other processes leave free
    (``ThreadGovernor``; the CLI's default when ``--threads`` is not given)."""
    device = select_device(cfg.train.device)
    tune_for_training(device)
    dist_utils.init_from_env(device)
    run_dir = Path(run_dir)
    if RunDir(run_dir).has_run() and not resume:
        raise UserError(f"{run_dir}: already holds a run; pass --resume to continue it "
                        "or choose another --out")
    data_a, data_b = open_corpora(cfg, corpus_a, corpus_b)
    state = build_state(cfg, device)
    dist_utils.broadcast_module(state.generator, *state.critics(), state.siamese)
    resumed = resume and try_resume(state, run_dir)
    if resumed and dist_utils.is_main():
        print(f"melganvc: resuming {run_dir} at step {state.step}", file=sys.stderr)
    if not resumed and cfg.train.init:
        base = warm_start(state, cfg.train.init)
        if dist_utils.is_main():
            print(f"melganvc: starting from the networks of {base}", file=sys.stderr)
    resolve_precision(state, data_a, data_b)  # a resumed run's config holds its choice
    main = dist_utils.is_main()
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        try:
            # a kill mid-write leaves a temp file beside the (intact) checkpoint: cleared here
            RunDir(run_dir).save_config(state.cfg)
        except OSError as exc:
            raise UserError(f"{run_dir}: cannot write the run folder ({exc.strerror or exc})") \
                from None
        writer = SummaryWriter(str(RunDir(run_dir).logs))
    examples = eval_examples(cfg, data_a)
    judges = SampleJudges(eval_examples(cfg, data_b))
    # the samples' inverter, on the rank that logs them
    inverter = build_inverter(cfg.features, cfg.inversion).to(device) if main else None
    governor = None
    if adapt_threads and device.type == "cpu" and not dist_utils.is_active():
        governor = ThreadGovernor.for_this_process()
    _loop(state, data_a, data_b, run_dir, writer, examples, progress and main, judges, inverter,
          governor)
    if writer is not None:
        writer.close()
    return state


def _loop(state: TrainState, data_a: MelCorpus, data_b: MelCorpus, run_dir: Path, writer,
          examples: list[torch.Tensor], progress: bool,
          judges: SampleJudges | None = None, inverter: AnyInverter | None = None,
          governor: ThreadGovernor | None = None) -> None:
    t = state.cfg.train
    started = time.monotonic() - state.trained_seconds  # a resumed run continues its clock
    bar = tqdm(total=t.steps, initial=state.step, disable=not progress, unit="batch",
               dynamic_ncols=True, desc="train")
    last_saved = state.step
    while not dist_utils.rank0_says(should_stop(state)):
        if t.lr_schedule != "constant":
            set_learning_rate(state, run_progress(state))
        real_a, real_b = sample_batch(state, data_a, data_b)
        losses = train_batch(state, real_a, real_b)
        state.trained_seconds = time.monotonic() - started
        if not all(math.isfinite(v) for v in losses.values()):
            save_run_checkpoint(state, run_dir)
            raise UserError(f"training diverged at step {state.step} (non-finite loss: {losses}); "
                            "lower train.lr or check the data")
        bar.update(1)
        if governor is not None and (threads := governor.poll()) is not None:
            note_threads(governor, threads, state.step, writer)
        if state.step % t.log_every == 0 or state.step == 1:
            bar.set_postfix({k.split("/")[1]: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            if writer is not None:
                for key, value in losses.items():
                    writer.add_scalar(key, value, state.step)
                writer.add_scalar("train/lr", state.opt_gs.param_groups[0]["lr"], state.step)
        # evaluated before the checkpoint, so a resumed run knows this eval's selection
        evaluating = writer is not None and t.eval_every > 0 and state.step % t.eval_every == 0
        # inverter: built with the writer, on the rank that logs
        if evaluating and inverter is not None and select(
                state, run_dir, writer, log_samples(state, writer, examples, judges, inverter)):
            break
        if state.step % t.checkpoint_every == 0:
            save_run_checkpoint(state, run_dir)
            last_saved = state.step
    bar.close()
    if state.step != last_saved:
        save_run_checkpoint(state, run_dir)
