"""melganvc: voice conversion and audio style transfer with GANs on mel-spectrograms.

Public API: ``Converter`` (``from melganvc import Converter``), ``load_checkpoint``,
``detect`` (is a file converted audio?), ``__version__``. Imported lazily so ``melganvc --version`` does not pay for torch.
"""

from typing import Any

from melganvc.version import __version__

__all__ = ["Converter", "__version__", "detect", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "Converter":
        from melganvc.conversion.converter import Converter

        return Converter
    if name == "load_checkpoint":
        from melganvc.io.checkpoint import load_checkpoint

        return load_checkpoint
    if name == "detect":
        from melganvc.detection import detect

        return detect
    raise AttributeError(f"module 'melganvc' has no attribute {name!r}")
