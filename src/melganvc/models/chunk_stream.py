"""Chunked generator inference over a stream of mel frames: fixed-size chunks
with an optional raised-cosine cross-fade, the same for a whole file and a live stream."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from melganvc.config import Config, ConfigError, ConversionConfig
from melganvc.dsp.postfilter import Postfilter

DEFAULT_OVERLAP = ConversionConfig.overlap  # why half a chunk: see ConversionConfig


def resolve_overlap(overlap: float | str | None, chunk_frames: int) -> int:
    """Overlap in frames from frames (int >= 1), a fraction of a chunk (0 < f <= 0.5) or 0.

    ``"reference"`` / ``"none"`` / ``0`` mean no overlap; ``None`` means the default.
    """
    if overlap is None:
        overlap = DEFAULT_OVERLAP
    if isinstance(overlap, str):
        text = overlap.strip().lower()
        if text in ("reference", "none", "off"):
            return 0
        try:
            overlap = float(text) if any(c in text for c in ".e") else int(text)
        except ValueError:
            raise ConfigError(f"overlap must be frames, a fraction of a chunk, or 'reference'; "
                              f"got {overlap!r}") from None
    if isinstance(overlap, bool):
        raise ConfigError("overlap must be a number")
    if isinstance(overlap, float) and not overlap.is_integer():
        if not 0 < overlap <= 0.5:
            raise ConfigError(f"overlap as a fraction of a chunk must be in (0, 0.5], got {overlap}")
        return round(overlap * chunk_frames)
    frames = int(overlap)
    if not 0 <= frames <= chunk_frames // 2:
        raise ConfigError(f"overlap must be 0..{chunk_frames // 2} frames (half a chunk), "
                          f"got {frames}")
    return frames


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
    later chunk can touch them and, with a ``postfilter``, its look-ahead (``delay`` frames)
    has arrived.
    """

    def __init__(self, generator: nn.Module, n_mels: int, chunk_frames: int, overlap: int = 0,
                 fade: str = "cosine", batch_size: int = 64,
                 device: torch.device | str = "cpu", postfilter: Postfilter | None = None) -> None:
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
        self.postfilter = postfilter or Postfilter()
        self._post = self.postfilter.stream(n_mels, self.device)

    @classmethod
    def from_config(cls, generator: nn.Module, cfg: Config,
                    device: torch.device | str = "cpu") -> ChunkStream:
        """The stream ``cfg.conversion`` describes: what ``convert`` runs, and what training
        logs as its samples, so the two cannot drift apart."""
        conv, feat, chunk = cfg.conversion, cfg.features, cfg.model.chunk_frames
        post = Postfilter(conv.postfilter,
                          conv.postfilter_frames(feat.hop_length / feat.sample_rate))
        return cls(generator, feat.n_mels, chunk, resolve_overlap(conv.overlap, chunk), conv.fade,
                   conv.batch_size, device, post)

    @property
    def delay(self) -> int:
        """Frames the postfilter holds back beyond the chunks' own schedule."""
        return self.postfilter.delay

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
            return self._post.push(self._take(0))
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
        return self._post.push(self._take(starts[-1] + S))

    def run(self, mel: Tensor) -> Tensor:
        """A whole ``(n_mels, T)`` mel through this (fresh) stream: what conversion does to a
        file, and what training logs as its samples, so the two cannot drift apart."""
        return torch.cat([self.push(mel), self.flush()], dim=-1)

    def flush(self) -> Tensor:
        total, L = self.frames, self.chunk_frames
        if total == 0:
            return self._post.flush()
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
        return torch.cat([self._post.push(self._take(total)), self._post.flush()], dim=-1)

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
