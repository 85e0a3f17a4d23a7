"""Block-wise features and chunk translation on a global grid (the first half of streaming).

``FeatureStream`` turns waveform blocks into exactly the frames ``MelSpectrogram`` gives for
the whole signal; ``ChunkStream`` runs G on L-frame chunks of a grid anchored at frame 0 and
cross-fades overlapping chunks. Both return results as soon as they are final, and both give
bit-identical results however the input is cut into blocks (see ``MIN_COLUMNS`` and
``ChunkStream.translate``), which keeps streaming and offline conversion the same audio:
Griffin-Lim turns even last-bit differences of its input into audible phase differences.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from melganvc.features import MelSpectrogram, power_to_db

# Products with fewer columns than this take other BLAS kernels (different rounding), so the
# features of a 1-frame block would differ in the last bit from the same frame in a big block.
# Small blocks are padded to this many frames.
MIN_COLUMNS = 16

__all__ = ["ChunkStream", "FeatureStream", "crossfade_window"]


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


# ----------------------------------------------------------------------------------------------
# chunks through G


def crossfade_window(chunk_frames: int, overlap: int, fade: str = "cosine") -> Tensor:
    """Weights of one chunk: 1 in the middle, ramps over ``overlap`` frames at both ends.

    The ramp-down of a chunk and the ramp-up of the next (``chunk_frames - overlap`` later)
    sum to exactly 1 frame by frame: raised cosine (``sin^2``) or linear.
    """
    if not 0 <= overlap <= chunk_frames // 2:
        raise ValueError(f"overlap must be in [0, {chunk_frames // 2}] frames, got {overlap}")
    window = torch.ones(chunk_frames)
    if overlap:
        r = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
        if fade == "cosine":
            ramp = torch.sin(0.5 * math.pi * r) ** 2
        elif fade == "linear":
            ramp = r
        else:
            raise ValueError(f"fade must be 'cosine' or 'linear', got {fade!r}")
        window[:overlap] = ramp.float()
        window[chunk_frames - overlap:] = ramp.flip(0).float()
    return window


class ChunkStream:
    """Mel frames -> translated mel frames, G applied to L-frame chunks on a global grid.

    Chunk ``c`` covers frames ``[c*S, c*S + L)`` with ``S = L - overlap``; overlapping chunks
    are cross-faded (``crossfade_window``; the first chunk has no ramp-up). With ``overlap=0``
    this is the reference: back-to-back chunks, no cross-fade. The end of the input is covered
    by one more chunk aligned to the last frame, which fills in whatever weight the earlier
    chunks left (the reference takes its last ``T mod L`` frames); inputs shorter than one
    chunk are padded with silence (-1) and cropped back. Frames are returned as soon as no
    later chunk can touch them.
    """

    def __init__(self, generator: nn.Module, n_mels: int, chunk_frames: int, overlap: int = 0,
                 fade: str = "cosine", batch_size: int = 64,
                 device: torch.device | str = "cpu") -> None:
        self.generator = generator
        self.n_mels, self.chunk_frames, self.overlap = n_mels, chunk_frames, int(overlap)
        self.step = chunk_frames - self.overlap
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.window = crossfade_window(chunk_frames, self.overlap, fade).to(self.device)
        self.first_window = self.window.clone()
        self.first_window[:self.overlap] = 1.0
        self.frames = 0  # frames pushed
        self.final = 0  # frames returned
        self._next_chunk = 0
        self._mel = torch.zeros(n_mels, 0, device=self.device)
        self._mel_start = 0
        self._acc = torch.zeros(n_mels, 0, device=self.device)  # weighted sum from ``final``
        self._wsum = torch.zeros(0, device=self.device)

    def push(self, mel: Tensor) -> Tensor:
        mel = mel.to(self.device, torch.float32)
        self._mel = torch.cat([self._mel, mel], dim=-1)
        self.frames += mel.shape[-1]
        L, S = self.chunk_frames, self.step
        starts = []
        while self._next_chunk * S + L <= self.frames:
            starts.append(self._next_chunk * S)
            self._next_chunk += 1
        if not starts:
            return self._take(0)
        outs = self.translate(torch.stack(
            [self._mel[:, s - self._mel_start:s - self._mel_start + L] for s in starts]))
        self._grow(starts[-1] + L)
        for s, out in zip(starts, outs):
            w = self.first_window if s == 0 else self.window
            a = s - self.final
            self._acc[:, a:a + L].addcmul_(out, w)
            self._wsum[a:a + L].add_(w)
        keep = min(self._next_chunk * S, max(0, self.frames - L))  # the end chunk needs L frames
        self._mel = self._mel[:, keep - self._mel_start:]
        self._mel_start = keep
        return self._take(starts[-1] + S)

    def flush(self) -> Tensor:
        total, L = self.frames, self.chunk_frames
        if total == 0:
            return self._take(0)
        if total < L:
            padded = torch.nn.functional.pad(self._mel, (0, L - total), value=-1.0)
            last, start = self.translate(padded[None])[0], 0
        else:
            start = total - L
            last = self.translate(self._mel[None, :, start - self._mel_start:
                                            start - self._mel_start + L])[0]
        self._grow(total)
        a = self.final - start
        fill = (1.0 - self._wsum).clamp_(min=0.0)
        self._acc.addcmul_(last[:, a:a + self._acc.shape[-1]], fill)
        return self._take(total)

    @torch.no_grad()
    def translate(self, chunks: Tensor) -> Tensor:
        """G on ``(k, n_mels, L)`` chunks, ``batch_size`` at a time.

        A batch of one chunk is run as two (the chunk twice): BLAS takes another path for a
        single row block, whose rounding differs, and the result would depend on how the input
        was cut into blocks.
        """
        outs = []
        for i in range(0, chunks.shape[0], self.batch_size):
            batch = chunks[i:i + self.batch_size]
            single = batch.shape[0] == 1
            out = self.generator(batch.expand(2, -1, -1) if single else batch).float()
            outs.append(out[:1] if single else out)
        return torch.cat(outs)

    def _grow(self, end: int) -> None:
        missing = end - (self.final + self._acc.shape[-1])
        if missing > 0:
            self._acc = torch.nn.functional.pad(self._acc, (0, missing))
            self._wsum = torch.nn.functional.pad(self._wsum, (0, missing))

    def _take(self, upto: int) -> Tensor:
        n = max(0, upto - self.final)
        out = self._acc[:, :n]
        self._acc, self._wsum = self._acc[:, n:], self._wsum[n:]
        self.final += n
        return out
