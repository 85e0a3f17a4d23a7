"""From a checkpoint and options to what a ``Converter`` runs: the generator ready for
inference (spectral norm settled, plain weights) and the config in force (the checkpoint's,
with the inversion and conversion settings a user may change)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from melganvc.config import (
    Config,
    ConfigError,
    InversionConfig,
    apply_overrides,
    from_dict,
)
from melganvc.io.checkpoint import (
    CheckpointError,
)
from melganvc.models.chunk_stream import resolve_overlap
from melganvc.models.networks import Generator
from melganvc.models.spectral_norm import inference_copy, settle_spectral_norm

SETTLE_ITERATIONS = 100  # power iterations per spectral-norm layer when loading a run



InversionSetting = InversionConfig | Mapping[str, Any] | str | Sequence[str] | None


def with_inversion(cfg: Config, inversion: InversionSetting) -> Config:
    """Apply an inversion setting: an ``InversionConfig``, a dict of its fields, or override
    strings (``"gl_iters=4"``, ``"inversion.gl_iters=4"``; ``"conversion.*"`` too, the other
    section a conversion may change)."""
    if inversion is None:
        return cfg
    if isinstance(inversion, InversionConfig):
        return replace(cfg, inversion=inversion).validate()
    if isinstance(inversion, Mapping):
        return from_dict({"inversion": dict(inversion)}, base=cfg)
    items = []
    for item in [inversion] if isinstance(inversion, str) else inversion:
        key = str(item).partition("=")[0].strip()
        if "." not in key:
            item = f"inversion.{str(item).strip()}"
        elif not key.startswith(("inversion.", "conversion.")):
            raise ConfigError(f"'{item}': only inversion.* and conversion.* settings can change "
                              "at conversion time (features and model are fixed by the checkpoint)")
        items.append(item)
    return apply_overrides(cfg, items)


def with_conversion(cfg: Config, chunk_frames: int, **changes: Any) -> Config:
    """``cfg`` with the given ``ConversionConfig`` fields changed (``None``: keep); ``overlap``
    may also be a string (``"reference"``, ``"8"``), resolved to frames."""
    given = {k: v for k, v in changes.items() if v is not None}
    if "overlap" in given:
        given["overlap"] = float(resolve_overlap(given["overlap"], chunk_frames))
    if not given:
        return cfg
    try:
        conversion = replace(cfg.conversion, **given)
    except TypeError as exc:
        raise TypeError(f"unknown conversion option ({exc})") from None
    return replace(cfg, conversion=conversion).validate()


def load_generator(cfg: Config, state: dict[str, Tensor]) -> nn.Module:
    """An eval-mode generator without spectral-norm overhead from a state dict.

    Takes a training state (spectral-norm parametrised keys) or a plain one as written by
    ``save_generator`` (any float dtype; weights become float32).
    """
    parametrised = any(".parametrizations." in k for k in state)
    gen = Generator(cfg.features.n_mels, cfg.model.generator_channels, spectral_norm=parametrised)
    try:
        gen.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"generator weights do not fit the checkpoint's config ({first})") \
            from None
    # Converge sigma for the weights as stored (also repairs EMA checkpoints of earlier
    # versions, which averaged the power-iteration vectors).
    return inference_copy(settle_spectral_norm(gen, SETTLE_ITERATIONS))
