"""melganvc: voice conversion and audio style transfer with GANs on mel-spectrograms."""

__version__ = "0.1.0"
