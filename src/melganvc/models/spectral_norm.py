"""Spectral normalisation: settling the power iteration after training, and a
plain inference copy without the parametrisation (conversion, ONNX export)."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

from melganvc.models.networks import Critic, Generator, Siamese


def remove_spectral_norm(module: nn.Module) -> nn.Module:
    """Bake every spectral-norm parametrisation into a plain weight, in place; returns ``module``.

    For inference/export: the weight becomes ``original / sigma`` with the current estimate of
    sigma (call ``module.eval()`` first so no further power iteration runs). Safe on a
    ``copy.deepcopy`` of a parametrised network (e.g. an EMA copy): a deep copy shares the
    original's parametrised class, and torch's removal edits that class, so each layer gets
    a private copy of its class first.
    """
    from torch.nn.utils import parametrize

    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            cls = type(sub)
            attrs = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            sub.__class__ = type(cls.__name__, cls.__bases__, attrs)
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
    return module


ModuleT = TypeVar("ModuleT", bound=nn.Module)

SN_VECTORS = ("._u", "._v")  # state-dict suffixes of the power-iteration vectors


@torch.no_grad()
def settle_spectral_norm(module: ModuleT, iterations: int = 1) -> ModuleT:
    """Run power iterations on every spectral-norm layer's own weight, in place.

    The stored vectors ``u, v`` define the sigma that eval mode divides by. They must belong to
    the weights beside them: an EMA copy's averaged weights need their own vectors (averaging
    the vectors shrinks them and inflates the weights; measured sigma 38 instead of 1 after
    20k GPU steps), and an old checkpoint's vectors are repaired by a few dozen iterations.
    """
    for sub in module.modules():
        weight_parametrizations: Any = getattr(getattr(sub, "parametrizations", None), "weight", ())
        for p in weight_parametrizations:
            if hasattr(p, "_power_method"):  # torch's own iteration, as a training forward runs it
                original = weight_parametrizations.original
                p._power_method(p._reshape_weight_to_matrix(original), iterations)
    return module


def inference_copy(module: Generator | Critic | Siamese) -> nn.Module:
    """A new network of the same size in eval mode, without spectral norm, whose weights are
    ``module``'s current normalised weights (``original / sigma``). For conversion and ONNX
    export (the exporter has no ``vdot``, which the spectral-norm parametrisation uses).
    ``module`` is left unchanged.
    """
    from torch.nn.utils import parametrize

    was_training = module.training
    module.eval()  # no power iteration while reading the weights
    try:
        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in module.state_dict().items()
                     if ".parametrizations." not in k}
            for name, sub in module.named_modules():
                if parametrize.is_parametrized(sub, "weight"):
                    state[f"{name}.weight"] = sub.weight.detach().clone()
    finally:
        module.train(was_training)
    hparams: dict[str, Any] = dict(module.hparams)  # int sizes and a bool flag
    if "spectral_norm" in hparams:
        hparams["spectral_norm"] = False
    plain = type(module)(**hparams)
    plain.load_state_dict(state, strict=True)
    plain.eval()
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain
