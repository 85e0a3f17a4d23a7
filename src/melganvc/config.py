"""One typed, frozen configuration tree; defaults are the reference (MelGAN-VC, 16 kHz speech).

A config is saved inside every checkpoint and run folder, loads from YAML or TOML, and takes
``section.field=value`` overrides from the command line. No torch import here on purpose: the
CLI can validate a config before paying for torch.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from melganvc.errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override the user wrote is wrong; the message says which field."""


MEL_RECIPES = ("reference", "hifigan")
INVERSION_METHODS = ("gl", "grad", "hifigan")
PRECISIONS = ("auto", "fp32", "bf16")  # train.precision
LR_SCHEDULES = ("constant", "cosine")  # train.lr_schedule


@dataclass(frozen=True)
class FeatureConfig:
    """Waveform <-> normalised log-mel (method.md, "Features").

    ``recipe`` picks how mel values are made: ``reference`` is the paper's (HTK filterbank on the
    window-normalised power spectrum, 10 log10); ``hifigan`` is the pretrained HiFi-GAN's own
    (librosa's Slaney filterbank on the plain STFT magnitude, 20 log10, i.e. the vocoder's natural
    log of the magnitude mel up to a constant factor). Either way the dB values between
    ``ref_level_db + min_level_db`` and ``ref_level_db`` map to [-1, 1].
    """

    recipe: str = "reference"
    sample_rate: int = 16000
    n_fft: int = 1152  # = window length = 6 * hop
    hop_length: int = 192
    n_mels: int = 192
    f_min: float = 0.0
    f_max: float = 8000.0  # top of the mel scale; Nyquist for every preset but hifigan's
    ref_level_db: float = 20.0
    min_level_db: float = -100.0


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes; the frequency kernel always spans ``features.n_mels``."""

    chunk_frames: int = 24  # L: frames G translates at once
    crop_chunks: int = 3  # training crops are crop_chunks * L frames; fixes D's input size
    generator_channels: int = 256
    critic_channels: int = 512
    siamese_channels: int = 256
    vec_len: int = 128
    spectral_norm: bool = True
    # A second, 2-D patch critic of this width (models/patch_critic.py); 0: the reference's
    # single full-band critic.
    patch_critic_channels: int = 0


@dataclass(frozen=True)
class LossConfig:
    """Weights of the generator/siamese objective: adv + travel*(TraVeL+margin) + identity*id."""

    travel: float = 10.0
    identity: float = 0.5
    margin: float = 2.0  # delta of the siamese margin loss
    # L1 between the batch-mean critic features of real B and of G(A), every hidden layer of
    # every critic (unpaired feature matching); 0: off, as in the reference.
    feature_match: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gupt: int = 3  # G and S step every `gupt` critic steps
    # constant (the reference) | cosine: from lr down to lr * lr_floor as the run nears its end
    # (train.steps or train.max_minutes, whichever comes first)
    lr_schedule: str = "constant"
    lr_floor: float = 0.1
    steps: int = 20000  # critic steps (batches)
    checkpoint_every: int = 500
    eval_every: int = 1000
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # fp32 | bf16 (autocast) | auto: time a few batches of each at the start and keep the
    # faster (training/precision.py); the run's config records the choice.
    precision: str = "auto"
    ema: float = 0.0  # EMA decay for an inference copy of G; 0 disables
    critic_augment: bool = False  # DiffAugment on the critic's inputs (augment.py)
    num_eval_examples: int = 4
    max_minutes: float = 0.0  # stop cleanly (with a checkpoint) after this wall time; 0 = no limit
    # Keep the generator whose held-out sample translations score best (naturalness +
    # similarity to B, at every eval) as RUN/best.pt, which conversion of the run folder uses;
    # the sample inputs are then held out of A's training crops.
    select_best: bool = False
    patience: int = 0  # stop after this many evals without a better best.pt; 0: never early
    # Start from a base model's networks (a run folder, checkpoint file or bundled model with
    # the same features and model sizes) instead of random ones; "": random (the reference).
    init: str = ""


@dataclass(frozen=True)
class InversionConfig:
    """Mel -> waveform. ``gl``: fast Griffin-Lim; ``grad``: the reference's gradient inversion;
    ``hifigan``: the pretrained universal HiFi-GAN (``melganvc.vocoders.hifigan``; needs the
    ``hifigan`` features: the default recipe ``speech-hifigan`` and the ``hifigan`` preset)."""

    method: str = "gl"
    gl_iters: int = 28  # beats librosa 32-iteration GL in spectral convergence at RTF ~0.02
    gl_momentum: float = 0.99
    nnls_iters: int = 60
    grad_steps: int = 2000
    grad_lr: float = 0.003


@dataclass(frozen=True)
class ConversionConfig:
    """How a trained model is applied. Unlike features and model these may change at conversion
    time (``Converter`` options, ``melganvc convert --overlap`` / ``--set conversion.*``); a
    run's TensorBoard samples use them too, so they sound like ``convert``."""

    # chunk overlap: a fraction of a chunk (0 < f <= 0.5) or frames (>= 1); 0: back-to-back
    # chunks (the reference). Half a chunk with a raised-cosine cross-fade scored the best seams
    # (benchmarks/convert.py, evaluation/seams.py) at 2x the generator work.
    overlap: float = 0.5
    fade: str = "cosine"  # cross-fade of overlapping chunks: cosine | linear
    batch_size: int = 64  # chunks per generator call (bounds memory on long inputs)
    match_loudness: bool = True  # the output level follows the input's
    normalize_input: bool = True  # the features see the input at the level of speech corpora
    block_frames: int = 1024  # offline inversion blocks of long inputs (frames)
    block_overlap: int = 48  # frames shared by neighbouring inversion blocks
    # a stereo file gives a stereo file: the mid is converted and re-panned band by band like
    # the source (dsp/stereo.py); false: a mono file. Other channel counts are always down-mixed.
    stereo: bool = True
    # contrast postfilter on G's mels (dsp/postfilter.py): each band's deviation from its moving
    # average over postfilter_ms is scaled by this factor; 1.0 is off (every preset). 1.3 lifts
    # DistillMOS by ~0.3 on speech-hifigan models, but the judge gives real speech nearly as
    # much, a second judge and MCD do not agree (docs/results.md, "A contrast postfilter").
    # A stream waits half the window.
    postfilter: float = 1.0
    postfilter_ms: float = 730.0

    def postfilter_frames(self, hop_seconds: float) -> int:
        """The postfilter's window on a grid of ``hop_seconds`` frames: odd, at least 3."""
        return 2 * max(1, int(self.postfilter_ms / 1000.0 / hop_seconds / 2)) + 1


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    conversion: ConversionConfig = field(default_factory=ConversionConfig)

    def validate(self) -> Config:
        f, m = self.features, self.model
        if f.n_fft < f.hop_length or f.hop_length <= 0:
            raise ConfigError("features: need 0 < hop_length <= n_fft")
        if not 0 <= f.f_min < f.f_max <= f.sample_rate / 2:
            raise ConfigError("features: need 0 <= f_min < f_max <= sample_rate/2")
        if f.recipe not in MEL_RECIPES:
            raise ConfigError(f"features.recipe must be one of {', '.join(MEL_RECIPES)}, "
                              f"got {f.recipe!r}")
        if not f.min_level_db < 0:
            raise ConfigError("features.min_level_db must be negative")
        if m.chunk_frames < 4 or m.chunk_frames % 4:
            raise ConfigError("model.chunk_frames must be a positive multiple of 4 (two stride-2 stages)")
        if m.crop_chunks < 2:
            raise ConfigError("model.crop_chunks must be >= 2 (TraVeL compares two chunks)")
        if m.patch_critic_channels < 0 or self.loss.feature_match < 0:
            raise ConfigError("model.patch_critic_channels and loss.feature_match must be >= 0")
        if self.train.gupt < 1 or self.train.batch_size < 1:
            raise ConfigError("train: gupt and batch_size must be >= 1")
        if self.train.lr_schedule not in LR_SCHEDULES or not 0 <= self.train.lr_floor <= 1:
            raise ConfigError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)} "
                              f"and 0 <= train.lr_floor <= 1")
        if self.train.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.train.precision!r}")
        if self.inversion.method not in INVERSION_METHODS:
            raise ConfigError(f"inversion.method must be one of {', '.join(INVERSION_METHODS)}, "
                              f"got {self.inversion.method!r}")
        if self.inversion.method == "hifigan" and not vocoder_features(f):
            raise ConfigError("inversion.method=hifigan needs the vocoder's own features (the "
                              "'hifigan' preset: 22050 Hz, n_fft 1024, hop 256, 80 Slaney mels); "
                              f"these are {f.recipe}, {f.sample_rate} Hz, {f.n_mels} mels")
        self._validate_conversion()
        return self

    def _validate_conversion(self) -> None:
        c, half = self.conversion, self.model.chunk_frames // 2
        if c.fade not in ("cosine", "linear"):
            raise ConfigError(f"conversion.fade must be 'cosine' or 'linear', got {c.fade!r}")
        if c.overlap < 0 or not (c.overlap <= 0.5 or (c.overlap.is_integer() and c.overlap <= half)):
            raise ConfigError(f"conversion.overlap must be a fraction of a chunk up to 0.5 or "
                              f"0..{half} frames (half a chunk), got {c.overlap:g}")
        if c.batch_size < 1 or c.block_frames < 1 or not 0 <= c.block_overlap < c.block_frames:
            raise ConfigError("conversion: need batch_size >= 1, block_frames >= 1 and "
                              "0 <= block_overlap < block_frames")
        if not (0 < c.postfilter <= 4 and 0 < c.postfilter_ms <= 10_000):
            raise ConfigError(f"conversion.postfilter must be in (0, 4] (1: off) and "
                              f"conversion.postfilter_ms in (0, 10000]; got {c.postfilter:g} "
                              f"and {c.postfilter_ms:g}")


@dataclass(frozen=True)
class DetectorConfig:
    """The converted-audio detector (``melganvc.detection``): its front end, network and
    training; saved inside every detector checkpoint.

    Audio is judged at 16 kHz (every corpus we train on has speech up to 8 kHz; 8 kHz audio is
    upsampled) in windows of ``window_seconds``; a log spectrogram on a linear frequency axis
    (mel-domain conversion leaves its traces in fine spectral and phase detail that a mel axis
    would blur) feeds a small CNN.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    floor_db: float = -80.0  # below the window's loudest bin: digital silence vs a noise floor
    window_seconds: float = 4.0  # judged at once; longer files are averaged over windows
    min_seconds: float = 0.2  # shorter audio cannot be judged
    channels: tuple[int, ...] = (16, 24, 32, 48, 64)
    hidden: int = 64
    epochs: int = 30  # what the bundled detector was trained for
    batch_size: int = 32
    lr: float = 1e-3
    crop_seconds: float = 3.0  # training crops (shorter files whole)
    augment: float = 0.7  # probability a training crop is transformed (codec, 8 kHz, noise, ...)
    seed: int = 0
    threshold: float = 0.5  # probability above which a file is called converted (set by training)

    def validate(self) -> DetectorConfig:
        if not (0 < self.hop_length <= self.n_fft and 0 < self.min_seconds <= self.window_seconds):
            raise ConfigError("detector: need 0 < hop_length <= n_fft, 0 < min_seconds <= window_seconds")
        if not 0.0 < self.threshold < 1.0 or not 0.0 <= self.augment <= 1.0:
            raise ConfigError("detector: threshold must be in (0, 1), augment in [0, 1]")
        if self.epochs < 1 or self.batch_size < 2 or not self.channels:
            raise ConfigError("detector: need epochs >= 1, batch_size >= 2 and some channels")
        return self


def detector_config(data: dict[str, Any]) -> DetectorConfig:
    """A ``DetectorConfig`` from a checkpoint's or user's dict (unknown fields are errors)."""
    data = dict(data)
    channels = data.pop("channels", None)
    cfg = _merge(DetectorConfig(), data, "detector")
    if channels is not None:
        if not isinstance(channels, (list, tuple)) or not all(isinstance(c, int) and c > 0 for c in channels):
            raise ConfigError("detector.channels: expected a list of positive integers")
        cfg = replace(cfg, channels=tuple(channels))
    return cfg.validate()


# The pretrained HiFi-GAN's mel (its config.json; librosa's Slaney filters, natural log of the
# magnitude mel). ref/min level: magnitudes from 1e-5 (ln -11.5, HiFi-GAN's usual clamp floor)
# up to 10 (ln 2.3, above the loudest frames of speech brought to -20 dBFS) fill [-1, 1].
HIFIGAN_FEATURES = FeatureConfig(recipe="hifigan", sample_rate=22050, n_fft=1024, hop_length=256,
                                 n_mels=80, f_min=0.0, f_max=8000.0, ref_level_db=20.0,
                                 min_level_db=-120.0)


def vocoder_features(features: FeatureConfig) -> bool:
    """Whether the HiFi-GAN vocoder can read mels of ``features``: its recipe and framing
    (the level range may differ: it only sets how the same log-mel fills [-1, 1])."""
    return replace(features, ref_level_db=HIFIGAN_FEATURES.ref_level_db,
                   min_level_db=HIFIGAN_FEATURES.min_level_db) == HIFIGAN_FEATURES


_SPEECH: dict[str, Any] = {
    "model": {"generator_channels": 128, "critic_channels": 64, "siamese_channels": 64,
              "vec_len": 64},
    "loss": {"identity": 5.0},
    "train": {"batch_size": 8, "lr": 5e-4, "steps": 60000, "ema": 0.999,
              "checkpoint_every": 1000, "eval_every": 1000, "max_minutes": 20.0,
              "select_best": True}}

_MUSIC: dict[str, Any] = _SPEECH | {"train": _SPEECH["train"] | {"select_best": False}}

# Presets keep a chunk spanning about the same time (24 * 192 / 16 kHz = 0.29 s) and put the
# top of the mel scale at Nyquist (but hifigan, whose vocoder was trained on mels up to 8 kHz).
PRESETS: dict[str, dict[str, Any]] = {
    # The training recipe (docs/results.md, "The default recipe"): the best measured for ~10 min
    # of speech per speaker on a 2-core CPU in 20 minutes; `speech-hifigan` (the default) is it
    # on the vocoder's features, `speech` on the reference features. Against the reference:
    # small networks (G 128, D and S 64 channels: a batch of 8 takes 1/11 of the reference's
    # 16 on a CPU; G 128 beat G 64 at the same time budget), batch 8 at lr 5e-4, an EMA
    # generator, identity weight 5 (content), and the held-out sample judges keep the best
    # eval's generator (best.pt) rather than the last step's; the time limit ends the run.
    "speech": _SPEECH,
    # The default of `melganvc train` (docs/results.md, "A neural vocoder"): the speech recipe on
    # the pretrained HiFi-GAN's features, converted with it. On two VCC2016 pairs at the same
    # budget it beat `speech` + Griffin-Lim on naturalness (+0.10, +0.55), similarity and CER.
    # The features alone: the `hifigan` preset.
    "speech-hifigan": _SPEECH | {"features": dataclasses.asdict(HIFIGAN_FEATURES),
                                 "inversion": {"method": "hifigan"}},
    "hifigan": {"features": dataclasses.asdict(HIFIGAN_FEATURES),
                "inversion": {"method": "hifigan"}},
    # Live conversion with low latency (docs/live.md): the speech recipe on a finer grid -- a
    # 24 ms window, 6 ms hop, 96 mels, chunks of 12 frames (72 ms) -- so features, chunks and
    # Griffin-Lim blocks wait 162 ms instead of 576 ms.
    "speech-live": _SPEECH | {"features": {"sample_rate": 16000, "n_fft": 384, "hop_length": 96,
                                           "n_mels": 96, "f_max": 8000.0},
                              "model": _SPEECH["model"] | {"chunk_frames": 12}},
    # MelGAN-VC as published (method.md): the paper's features, networks and loss weights.
    "reference": {},
    "speech16k": {},  # the reference under its older name (configs written before `reference`)
    # Telephone-band speech (e.g. FSDD): half the rate, half the hop, half the mel bands.
    "speech8k": {"features": {"sample_rate": 8000, "n_fft": 576, "hop_length": 96, "n_mels": 96,
                              "f_max": 4000.0}},
    # Music (docs/results.md, "Music"): the speech recipe's networks and schedule on full-band
    # features, without the speech judges' checkpoint selection (they rate voices, not
    # instruments): the last step's EMA generator is kept.
    "music22k": _MUSIC | {"features": {"sample_rate": 22050, "n_fft": 1536, "hop_length": 256,
                                       "n_mels": 256, "f_max": 11025.0}},
    "music44k": _MUSIC | {"features": {"sample_rate": 44100, "n_fft": 3072, "hop_length": 512,
                                       "n_mels": 256, "f_max": 22050.0}},
    # The quick CPU demo: small enough to learn the demo voices in minutes on 2 cores.
    "demo": {"model": {"generator_channels": 64, "critic_channels": 64, "siamese_channels": 64,
                       "vec_len": 64},
             "train": {"batch_size": 8, "lr": 5e-4, "steps": 100000, "checkpoint_every": 200,
                       "eval_every": 1000, "log_every": 20}},
    # A tiny network for tests, the quick demo and smoke runs; same features as speech16k.
    # float32 fixed: tests compare runs number for number, and a timing probe would make the
    # precision depend on the machine and its load.
    "tiny": {"model": {"generator_channels": 32, "critic_channels": 32, "siamese_channels": 32,
                       "vec_len": 32},
             "train": {"batch_size": 4, "steps": 30, "checkpoint_every": 10, "eval_every": 15,
                       "log_every": 5, "num_eval_examples": 2, "precision": "fp32"},
             "inversion": {"gl_iters": 8, "nnls_iters": 20}},
}


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (what checkpoints and YAML files hold)."""
    return dataclasses.asdict(cfg)


def _coerce(value: Any, typ: type, where: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
        if typ is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return number
    if typ is str:
        return str(value)
    raise ConfigError(f"{where}: unsupported type")


def _merge(base: Any, updates: dict[str, Any], where: str = "") -> Any:
    """Return ``base`` (a dataclass) with ``updates`` (nested dict) applied and type-checked."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{where or 'config'}: expected a table of fields")
    hints = get_type_hints(type(base))
    known = {f.name for f in fields(base)}
    changes = {}
    for key, value in updates.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"unknown config field '{path}' (known: {', '.join(sorted(known))})")
        current = getattr(base, key)
        if is_dataclass(current):
            changes[key] = _merge(current, value, path)
        else:
            changes[key] = _coerce(value, hints[key], path)
    return replace(base, **changes)


def _override(item: str, names: int) -> tuple[list[str], Any]:
    """``section.field=value`` (``names`` 2) or ``field=value`` (1): the names, and the value
    read as YAML (``5000`` an int, ``[8, 8]`` a list, ``true`` a bool)."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != names or not all(parts):
        form = "section.field=value" if names == 2 else "field=value"
        raise ConfigError(f"override '{item}' must look like {form}")
    return parts, (yaml.safe_load(raw) if raw.strip() else raw)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.field=value`` strings (``--set train.steps=100``)."""
    for item in overrides:
        (section, name), value = _override(item, 2)
        cfg = _merge(cfg, {section: {name: value}})
    return cfg.validate()


def override_fields(overrides: list[str]) -> dict[str, Any]:
    """``field=value`` strings (``train-detector --set batch_size=16``) as a dict."""
    return {parts[0]: value for parts, value in (_override(item, 1) for item in overrides)}


def _legacy_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Configs written before ``train.precision`` said ``train.bf16: true|false``."""
    train = data.get("train")
    if not isinstance(train, dict) or "bf16" not in train:
        return data
    train = dict(train)
    bf16 = _coerce(train.pop("bf16"), bool, "train.bf16")
    train.setdefault("precision", "bf16" if bf16 else "fp32")
    return data | {"train": train}


def from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Build a config from a nested dict; a ``preset`` key picks the starting point."""
    data = _legacy_fields(dict(data))
    preset = data.pop("preset", None)
    cfg = base or Config()
    if preset is not None:
        cfg = preset_config(str(preset))
    return _merge(cfg, data).validate()


def preset_config(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return _merge(Config(), PRESETS[name]).validate()


def load_config(path: str | Path) -> Config:
    """Load a YAML (.yaml/.yml) or TOML (.toml) file; unknown fields are errors, not ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    try:
        return from_dict(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
