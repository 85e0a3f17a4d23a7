"""melganvc: voice conversion and audio style transfer with GANs on mel-spectrograms.

Public API: ``Converter`` (``from melganvc import Converter``), ``load_checkpoint``,
``__version__``. Imported lazily so ``melganvc --version`` does not pay for torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Converter", "__version__", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "Converter":
        from melganvc.convert import Converter

        return Converter
    if name == "load_checkpoint":
        from melganvc.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'melganvc' has no attribute {name!r}")
