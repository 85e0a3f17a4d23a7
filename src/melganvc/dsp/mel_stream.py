"""Block-wise features and chunk translation on a global grid (the first half of streaming).

``FeatureStream`` turns waveform blocks into exactly the frames ``MelSpectrogram`` gives for
the whole signal; ``ChunkStream`` runs G on L-frame chunks of a grid anchored at frame 0 and
cross-fades overlapping chunks. Both return results as soon as they are final, and both give
bit-identical results however the input is cut into blocks (see ``MIN_COLUMNS`` and
``ChunkStream.translate``), which keeps streaming and offline conversion the same audio:
Griffin-Lim turns even last-bit differences of its input into audible phase differences.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from melganvc.dsp.mel import MelSpectrogram, power_to_db

# Products with fewer columns than this take other BLAS kernels (different rounding), so the
# features of a 1-frame block would differ in the last bit from the same frame in a big block.
# Small blocks are padded to this many frames.
MIN_COLUMNS = 16



class FeatureStream:
    """Waveform blocks -> normalised mel frames, identical to ``MelSpectrogram`` on the whole.

    Frame ``f`` is centred on sample ``f * hop`` and needs samples up to ``f * hop + n_fft/2``;
    the start is reflect-padded as soon as ``n_fft/2 + 1`` samples are in, the end on
    ``flush()``. Inputs shorter than that are handled by ``MelSpectrogram`` itself on flush.
    ``flush()`` completes ``samples // hop + 1`` frames in total.
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
        return self._frames()

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
        self._buf = np.concatenate([self._buf, tail])
        out = self._frames()
        assert self.frames == self.samples // self.hop + 1, (self.frames, self.samples)
        return out

    def _frames(self) -> Tensor:
        count = (self._buf.size - self.n_fft) // self.hop + 1
        if count <= 0:
            return self._empty()
        segment = torch.from_numpy(self._buf[:(count - 1) * self.hop + self.n_fft])
        mel = self.mel
        with torch.no_grad():
            spec = torch.stft(segment.to(mel.window.device), self.n_fft, self.hop,
                              window=mel.window, center=False, return_complex=True)
            power = mel.power(spec)
            if count < MIN_COLUMNS:  # see MIN_COLUMNS: same BLAS path for every block size
                power = torch.nn.functional.pad(power, (0, MIN_COLUMNS - count))
            out = mel.normalize(power_to_db(torch.matmul(mel.filterbank, power),
                                            mel.cfg.ref_level_db))[:, :count]
        self._buf = self._buf[count * self.hop:]
        self.frames += count
        return out

    def _empty(self) -> Tensor:
        return self.mel.filterbank.new_zeros(self.mel.cfg.n_mels, 0)
