"""Waveform <-> normalised log-mel (method.md, "Features"), in one of two recipes.

``reference`` (the paper's, exactly)::

    mel        = HTK mel filterbank (no area normalisation) @ |STFT|^2 / sum(window^2)
    dB         = 10 log10(max(mel, 1e-10)) - ref_level_db

``hifigan`` (the pretrained HiFi-GAN's own input, so its vocoder can invert our mels)::

    mel        = Slaney mel filterbank (librosa's default, area-normalised) @ |STFT|
    dB         = 20 log10(max(mel, 1e-10)) - ref_level_db     (= ln(mel) * 20 / ln 10 - ref)

and then, for both, ``normalised = clip(((dB - min_level_db) / -min_level_db) * 2 - 1, -1, 1)``.
The *linear* mel (``linear_mel``, ``to_linear``) is the filterbank's output: mel power for the
reference, mel magnitude for ``hifigan``; inversion matches it.

The filterbank and window are built per config and held by a ``MelSpectrogram`` object (no
global caches); everything is batched torch, so the same code runs on CPU and GPU.

Whole files (``MelSpectrogram.forward``), long files in pieces (``MelSpectrogram.long``) and
waveform blocks (``FeatureStream``) all go through one framing core, ``MelSpectrogram.frames``,
so a frame gets the same bits however the signal is cut. That keeps streaming and offline
conversion the same audio: Griffin-Lim turns even last-bit differences of its input into
audible phase differences.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from melganvc.config import FeatureConfig

AMIN = 1e-10
POWER_CAP = 1e30  # far above the +1 clip of the normalised range, far below float32's max
# BLAS rounds a column of a product by the product's width: narrow products take other
# kernels (a 1-frame block's features differed in the last bit from the same frame in a big
# block), and MKL's SSE4.2 sgemm (older CPUs; `make test-kernels`) rounds by where a column
# falls. ``MelSpectrogram.frames`` pads every product to a multiple of this many frames, which
# gives every frame the same bits in a block of any size.
COLUMN_TILE = 16


def hz_to_mel_htk(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz_htk(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


# Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above
_SLANEY_STEP = 200.0 / 3  # Hz per mel below the break
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    brk = _SLANEY_BREAK_HZ / _SLANEY_STEP
    log_part = brk + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOGSTEP
    return np.where(hz >= _SLANEY_BREAK_HZ, log_part, hz / _SLANEY_STEP)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    brk = _SLANEY_BREAK_HZ / _SLANEY_STEP
    return np.where(mel >= brk, _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOGSTEP * (mel - brk)),
                    _SLANEY_STEP * mel)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float,
                   scale: str = "htk") -> np.ndarray:
    """Triangular mel filters, shape ``(n_mels, n_fft//2+1)``.

    ``htk``: HTK mel scale, peak 1 (the reference). ``slaney``: Slaney's scale, each filter
    scaled to unit area (``2 / width``), as ``librosa.filters.mel``'s defaults (HiFi-GAN's).
    """
    to_mel, to_hz = ((hz_to_mel_htk, mel_to_hz_htk) if scale == "htk"
                     else (hz_to_mel_slaney, mel_to_hz_slaney))
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if scale == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


class MelSpectrogram(nn.Module):
    """Batched feature extractor for one ``FeatureConfig``.

    ``forward(wave)``: ``(batch, samples)`` or ``(samples,)`` -> normalised mel
    ``(batch, n_mels, frames)`` in [-1, 1], ``frames = samples // hop + 1``.
    """

    window: Tensor  # buffers, declared for the type checker
    filterbank: Tensor

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        reference = cfg.recipe == "reference"
        window = torch.hann_window(cfg.n_fft, periodic=True, dtype=torch.float64)
        # reference: torchaudio-style "normalized", the magnitude divided by sqrt(sum(w^2)), so
        # the power by sum(w^2); hifigan: the plain STFT
        self.power_scale = float(window.pow(2).sum()) if reference else 1.0
        # the filterbank weighs power (reference) or magnitude (hifigan)
        self.exponent = 2 if reference else 1
        self.db_factor = 10.0 if reference else 20.0
        self.register_buffer("window", window.float(), persistent=False)
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max,
                            "htk" if reference else "slaney")
        self.register_buffer("filterbank", torch.from_numpy(fb).float(), persistent=False)

    def num_frames(self, samples: int) -> int:
        return samples // self.cfg.hop_length + 1

    def centre_pad(self, wave: Tensor) -> Tensor:
        """``wave`` with the ``n_fft/2`` reflected samples each side that centre frame ``f`` on
        sample ``f * hop``. Inputs too short to reflect are zero-extended first, so a single hop
        of audio still gives a spectrum (with extra frames at the end for the caller to crop)."""
        half = self.cfg.n_fft // 2
        if wave.shape[-1] <= half:
            wave = F.pad(wave, (0, half + 1 - wave.shape[-1]))
        return F.pad(wave.unsqueeze(0), (half, half), mode="reflect")[0]

    def _stft(self, padded: Tensor) -> Tensor:
        return torch.stft(padded, self.cfg.n_fft, self.cfg.hop_length, window=self.window,
                          center=False, return_complex=True)

    def stft(self, wave: Tensor) -> Tensor:
        """Complex STFT ``(batch, n_fft//2+1, frames)``, centred with reflect padding."""
        return self._stft(self.centre_pad(wave))[..., :self.num_frames(wave.shape[-1])]

    def power(self, spec: Tensor) -> Tensor:
        """Normalised power of a complex STFT, finite for any finite audio."""
        power = (spec.real.square() + spec.imag.square()) / self.power_scale
        # Samples beyond ~1e17 (a damaged float file) overflow to inf, and inf * 0 in the
        # filterbank product would be NaN: cap them, so finite audio always gives a finite mel.
        return torch.nan_to_num(power, nan=POWER_CAP, posinf=POWER_CAP)

    def linear(self, power: Tensor) -> Tensor:
        """What the filterbank weighs: ``power`` itself, or its square root (``hifigan``)."""
        return power if self.exponent == 2 else power.sqrt()

    def linear_mel(self, wave: Tensor) -> Tensor:
        """Linear mel of ``wave`` (differentiable; what inversion matches)."""
        return torch.matmul(self.filterbank, self.linear(self.power(self.stft(wave))))

    def frames(self, padded: Tensor) -> Tensor:
        """The framing core: normalised mel of every whole frame of ``padded`` ``(..., samples)``.

        Frame ``i`` covers ``padded[..., i * hop : i * hop + n_fft]``; the caller supplies the
        context (``centre_pad``, or the neighbouring samples of a longer signal). Products are
        zero-padded to a multiple of ``COLUMN_TILE`` frames (at least one tile), so a frame
        gets the same bits in a block of any size.
        """
        linear = self.linear(self.power(self._stft(padded)))
        count = linear.shape[-1]
        columns = max(COLUMN_TILE, -(-count // COLUMN_TILE) * COLUMN_TILE)
        if columns > count:
            linear = F.pad(linear, (0, columns - count))
        mel = torch.matmul(self.filterbank, linear)
        return self.normalize(self.to_db(mel))[..., :count]

    def forward(self, wave: Tensor) -> Tensor:
        return self.frames(self.centre_pad(wave))[..., :self.num_frames(wave.shape[-1])]

    def long(self, wave: Tensor, block_frames: int = 4096) -> Tensor:
        """``forward`` for one long ``(samples,)`` wave in bounded memory: the same frames,
        ``block_frames`` at a time from the reflect-padded signal (an hour of 16 kHz audio
        would otherwise hold a 1.4 GB complex spectrogram at once)."""
        frames, hop, n_fft = self.num_frames(wave.shape[-1]), self.cfg.hop_length, self.cfg.n_fft
        padded = self.centre_pad(wave)
        pieces = [self.frames(padded[..., start * hop:(min(frames, start + block_frames) - 1) * hop + n_fft])
                  for start in range(0, frames, block_frames)]
        return torch.cat(pieces, dim=-1)

    def normalize(self, db: Tensor) -> Tensor:
        lo = self.cfg.min_level_db
        return torch.clamp((db - lo) / -lo * 2.0 - 1.0, -1.0, 1.0)

    def denormalize(self, mel: Tensor) -> Tensor:
        """Normalised mel -> dB (after the ``ref_level_db`` offset); inverse of ``normalize``."""
        lo = self.cfg.min_level_db
        return (mel + 1.0) / 2.0 * -lo + lo

    def to_db(self, linear_mel: Tensor) -> Tensor:
        """Linear mel -> dB after the ``ref_level_db`` offset (before ``normalize``)."""
        return self.db_factor * torch.log10(torch.clamp(linear_mel, min=AMIN)) \
            - self.cfg.ref_level_db

    def to_linear(self, mel: Tensor) -> Tensor:
        """Normalised mel -> linear mel (power, or magnitude for ``hifigan``): what inversion
        must match."""
        return torch.pow(10.0, (self.denormalize(mel) + self.cfg.ref_level_db) / self.db_factor)

    def to_log(self, mel: Tensor) -> Tensor:
        """Normalised mel -> natural log of the linear mel: HiFi-GAN's input for ``hifigan``."""
        return (self.denormalize(mel) + self.cfg.ref_level_db) * (math.log(10.0) / self.db_factor)


def frames_to_samples(frames: int, hop_length: int) -> int:
    """Samples a mel of ``frames`` frames stands for (inverse of ``num_frames`` up to one hop)."""
    return max(0, (frames - 1) * hop_length)


class FeatureStream:
    """Waveform blocks -> normalised mel frames, identical to ``MelSpectrogram`` on the whole.

    Frame ``f`` is centred on sample ``f * hop`` and needs samples up to ``f * hop + n_fft/2``;
    the start is reflect-padded as soon as ``n_fft/2 + 1`` samples are in, the end on
    ``flush()``, and every ready frame goes through ``MelSpectrogram.frames``. Inputs shorter
    than that are handled by ``MelSpectrogram`` itself on flush. ``flush()`` completes
    ``samples // hop + 1`` frames in total.
    """

    def __init__(self, mel: MelSpectrogram) -> None:
        self.mel = mel
        cfg = mel.cfg
        self.n_fft, self.hop, self.half = cfg.n_fft, cfg.hop_length, cfg.n_fft // 2
        self.samples = 0  # input samples pushed
        self.frames = 0  # frames returned
        self._head: list[np.ndarray] = []  # input before the start padding can be built
        self._buf: np.ndarray | None = None  # padded stream from padded index frames * hop
        self._last = np.zeros(0, np.float32)  # the last half + 1 input samples (end padding)

    def push(self, x: np.ndarray) -> Tensor:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self.samples += x.size
        self._last = np.concatenate([self._last, x[-(self.half + 1):]])[-(self.half + 1):]
        if self._buf is None:
            self._head.append(x)
            if self.samples < self.half + 1:
                return self._empty()
            start = np.concatenate(self._head)
            self._head = []
            x = np.concatenate([start[1:self.half + 1][::-1], start])
            self._buf = np.zeros(0, np.float32)
        self._buf = np.concatenate([self._buf, x])
        return self._ready()

    def flush(self) -> Tensor:
        if self.samples == 0:
            return self._empty()
        if self._buf is None:  # shorter than n_fft/2 + 1: MelSpectrogram zero-extends
            wave = torch.from_numpy(np.concatenate(self._head)).to(self.mel.window.device)
            with torch.no_grad():
                out = self.mel(wave)
            self._head = []
            self.frames = out.shape[-1]
            return out
        tail = self._last[:-1][::-1]  # x[n-2], ..., x[n-1-half]
        assert self._buf is not None
        self._buf = np.concatenate([self._buf, tail])
        out = self._ready()
        assert self.frames == self.samples // self.hop + 1, (self.frames, self.samples)
        return out

    def _ready(self) -> Tensor:
        """The frames the buffer holds whole, from ``MelSpectrogram.frames``."""
        assert self._buf is not None  # only called once the start padding is built
        count = (self._buf.size - self.n_fft) // self.hop + 1
        if count <= 0:
            return self._empty()
        segment = torch.from_numpy(self._buf[:(count - 1) * self.hop + self.n_fft])
        with torch.no_grad():
            out = self.mel.frames(segment.to(self.mel.window.device))
        self._buf = self._buf[count * self.hop:]
        self.frames += count
        return out

    def _empty(self) -> Tensor:
        return self.mel.filterbank.new_zeros(self.mel.cfg.n_mels, 0)
