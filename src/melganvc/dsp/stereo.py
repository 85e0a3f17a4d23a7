"""Stereo out of a mono conversion: the source's panning, band by band, frame by frame.

Models are trained and run on one channel. For a stereo input ``Converter.convert_file``
converts the mid (the mean of the channels, as for any input) and ``StereoPanner`` spreads the
result over two channels again with the *source's* left/right balance: in each ~46 ms frame
and each of ``N_BANDS`` log-spaced bands, the louder source channel gets the converted signal
at gain 1 and the quieter one at ``sqrt(E_quiet / E_loud)`` (amplitude panning; gains never
exceed 1, so nothing is pushed past the mono output's peak). A centred instrument stays centred
(both gains 1: the channels equal the mono conversion), a violin panned left stays left.

Why not convert each channel: twice the generator and inversion work, and the two channels'
independently estimated phases and GAN outputs differ, which smears the image. What this does
not keep: inter-channel phase and time differences (the width of a reverb tail, spaced-pair
recordings) -- the output's channels are in phase. Cost: three FFTs in and two out per frame;
a stereo file takes about a quarter longer than a mono one (``benchmarks/stereo.py``).

Streaming (``push``/``flush``) on a global frame grid, like the rest of the pipeline, so the
result does not depend on how the audio was cut into blocks; the output has the input's length.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

N_BANDS = 24
FRAME_SECONDS = 0.046


def frame_size(sample_rate: int) -> int:
    """An even FFT size near ``FRAME_SECONDS`` (a power of two)."""
    return max(64, 2 ** round(np.log2(FRAME_SECONDS * sample_rate)))


def band_index(n_fft: int, sample_rate: int, n_bands: int = N_BANDS) -> np.ndarray:
    """The band of each rfft bin: log-spaced edges from 100 Hz to Nyquist, DC..100 Hz first."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = np.geomspace(100.0, sample_rate / 2, n_bands)[:-1]
    return np.searchsorted(edges, freqs, side="right")


def pan_gains(source: Tensor, bands: np.ndarray, n_bands: int = N_BANDS) -> Tensor:
    """Gains ``(frames, 2, bins)`` from the source's spectra ``(frames, 2, bins)``."""
    member = torch.from_numpy(np.arange(n_bands)[None, :] == bands[:, None]).float()
    per_band = (source.real ** 2 + source.imag ** 2) @ member  # (frames, 2, bands)
    loud = per_band.amax(dim=1, keepdim=True)
    floor = 1e-12 * max(float(loud.max()) if loud.numel() else 0.0, 1e-30)
    gains = torch.where(loud > floor, torch.sqrt(per_band / loud.clamp(min=floor)), 1.0)
    return gains[..., torch.from_numpy(bands)]


class StereoPanner:
    """``push(mono, stereo)`` -> stereo ``(samples, 2)``: the converted mono re-panned like the
    source ``stereo`` block of the same span (sample ``i`` of each belongs together; the two may
    arrive in different block sizes, e.g. the converted signal behind the source by the
    converter's latency). ``flush()`` returns the rest; the output has as many samples as
    ``mono`` was pushed in total."""

    def __init__(self, sample_rate: int) -> None:
        self.n = frame_size(sample_rate)
        self.hop = self.n // 2
        # sqrt-Hann in and out: the product is a periodic Hann, which sums to 1 at hop n/2
        self.window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n) / self.n)
                              ).astype(np.float32)
        self.bands = band_index(self.n, sample_rate)
        self._mono = np.zeros(self.hop, np.float32)  # lead-in: the first samples get 2 frames
        self._source = np.zeros((self.hop, 2), np.float32)
        self._carry = np.zeros((self.hop, 2), np.float32)
        self._skip = self.hop  # lead-in still to drop from the output
        self._pushed = self._returned = 0

    def push(self, mono: np.ndarray, stereo: np.ndarray) -> np.ndarray:
        self._mono = np.concatenate([self._mono, np.asarray(mono, np.float32).reshape(-1)])
        self._source = np.concatenate([self._source, np.asarray(stereo, np.float32).reshape(-1, 2)])
        self._pushed += np.asarray(mono).size
        return self._emit(self._frames())

    def flush(self) -> np.ndarray:
        missing = max(0, len(self._mono) - len(self._source))  # source never given: silent
        pad = self.n + self.hop
        self._mono = np.concatenate([self._mono, np.zeros(pad, np.float32)])
        self._source = np.concatenate([self._source, np.zeros((missing + pad, 2), np.float32)])
        return self._emit(self._frames())

    def _frames(self) -> np.ndarray:
        """Overlap-added output of every complete frame both buffers hold (``(k * hop, 2)``)."""
        count = (min(len(self._mono), len(self._source)) - self.n) // self.hop + 1
        if count <= 0:
            return np.zeros((0, 2), np.float32)
        span = (count - 1) * self.hop + self.n
        window = torch.from_numpy(self.window)
        mono = torch.from_numpy(self._mono[:span]).unfold(0, self.n, self.hop)  # (f, n) views
        source = torch.from_numpy(self._source[:span]).unfold(0, self.n, self.hop)  # (f, 2, n)
        mono, source = torch.fft.rfft(mono * window), torch.fft.rfft(source * window)
        spectra = mono[:, None, :] * pan_gains(source, self.bands)
        frames = (torch.fft.irfft(spectra, self.n) * window).transpose(1, 2).numpy()
        first, second = frames[:, : self.hop], frames[:, self.hop:]
        before = np.concatenate([self._carry[None], second[:-1]])
        self._carry = second[-1]
        used = count * self.hop
        self._mono, self._source = self._mono[used:], self._source[used:]
        return (first + before).reshape(-1, 2)

    def _emit(self, out: np.ndarray) -> np.ndarray:
        drop = min(self._skip, len(out))
        self._skip -= drop
        out = out[drop:]
        out = out[: max(0, self._pushed - self._returned)]
        self._returned += len(out)
        return out.astype(np.float32)
