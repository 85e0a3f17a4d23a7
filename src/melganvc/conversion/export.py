"""Exports: a generator-only checkpoint and ONNX."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from melganvc.config import (
    ConfigError,
    to_dict,
)
from melganvc.conversion.converter import Converter
from melganvc.io.audio_writer import PROVENANCE
from melganvc.io.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from melganvc.io.files import atomic_path
from melganvc.models.networks import Generator
from melganvc.models.spectral_norm import inference_copy

# --- exports -----------------------------------------------------------------------------------

def save_generator(path: str | Path, source: Converter | dict[str, Any] | str | Path,
                   dtype: torch.dtype = torch.float16, use_ema: bool = True) -> Path:
    """Write a small generator-only checkpoint (``Converter.from_checkpoint`` reads it).

    ``source``: a ``Converter``, a loaded checkpoint dict, or a checkpoint file / run folder
    (its EMA generator if it has one and ``use_ema``). Weights are stored without spectral norm
    in ``dtype`` (half precision by default: half the size of the float32 weights; converted
    mels change by ~1e-3). Atomic write.
    """
    if isinstance(source, (str, Path)):
        source = load_checkpoint(source, map_location="cpu")
    step = source.get("step") if isinstance(source, dict) else None
    if not isinstance(source, Converter):
        source = Converter.from_payload(source, device="cpu", use_ema=use_ema)
    state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
             for k, v in source.generator.state_dict().items()}
    path = Path(path)
    payload = {"config": to_dict(source.config), "kind": "generator",
               "models": {"generator": state}}
    save_checkpoint(path, payload | ({"step": step} if step is not None else {}))
    return path


def export_onnx(source: Converter | nn.Module, path: str | Path, opset: int = 17,
                n_mels: int | None = None, chunk_frames: int | None = None) -> Path:
    """Export G to ONNX (input ``mel`` / output ``converted``, ``(batch, n_mels, frames)``,
    dynamic batch and frames; frames must be a multiple of 4, the model expects chunks of
    ``chunk_frames``). Atomic write; the model's metadata carries the provenance tag."""
    if isinstance(source, Converter):
        module, cfg = source.generator, source.config
        n_mels, chunk_frames = cfg.features.n_mels, cfg.model.chunk_frames
        meta: dict[str, Any] = {"sample_rate": cfg.features.sample_rate,
                                "hop_length": cfg.features.hop_length, "n_fft": cfg.features.n_fft}
    else:
        module, meta = source, {}
        if n_mels is None or chunk_frames is None:
            raise ValueError("export_onnx(module, ...) needs n_mels and chunk_frames")
        if any(isinstance(m, nn.Module) and "parametrizations" in dict(m.named_children())
               for m in module.modules()):
            # a parametrised module here is one of our networks (G): inference_copy rebuilds it
            # from its ``hparams``
            module = inference_copy(cast(Generator, module))
    module = copy.deepcopy(module).cpu().eval()  # the converter's own copy stays where it is
    meta |= {"n_mels": n_mels, "chunk_frames": chunk_frames, "provenance": PROVENANCE}
    path = Path(path)
    example = torch.zeros(2, n_mels, chunk_frames)
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the 'export' extra: pip install 'melganvc[export]'") \
            from None
    import warnings

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation / constant-folding chatter
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["mel"], output_names=["converted"],
                          dynamic_axes={"mel": {0: "batch", 2: "frames"},
                                        "converted": {0: "batch", 2: "frames"}})
        model = onnx.load(str(tmp))
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=str(value))
        model.doc_string = "MelGAN-VC generator exported by melganvc; " + PROVENANCE
        onnx.save(model, str(tmp))
    return path
