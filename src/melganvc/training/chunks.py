"""Splitting mels into L-frame chunks for G and joining them back.

Training: a 3·L crop becomes 3 chunks translated as one batch (chunk-major order, so chunk i of
every sample is the slice ``[i*B:(i+1)*B]``) and joined for the critic. Inference: any length is
padded to whole chunks, translated in batches, and cropped back.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def split_chunks(mel: Tensor, chunk_frames: int) -> Tensor:
    """``(batch, n_mels, k*L)`` -> ``(k*batch, n_mels, L)``, chunk-major."""
    batch, n_mels, frames = mel.shape
    k = frames // chunk_frames
    if k * chunk_frames != frames:
        raise ValueError(f"{frames} frames is not a whole number of {chunk_frames}-frame chunks")
    return mel.reshape(batch, n_mels, k, chunk_frames).permute(2, 0, 1, 3).reshape(k * batch, n_mels, chunk_frames)


def join_chunks(chunks: Tensor, k: int) -> Tensor:
    """Inverse of ``split_chunks``: ``(k*batch, n_mels, L)`` -> ``(batch, n_mels, k*L)``."""
    total, n_mels, chunk_frames = chunks.shape
    batch = total // k
    return chunks.reshape(k, batch, n_mels, chunk_frames).permute(1, 2, 0, 3).reshape(batch, n_mels, k * chunk_frames)


def pad_to_chunks(mel: Tensor, chunk_frames: int) -> Tensor:
    """Right-pad ``(n_mels, T)`` to a whole number of chunks with silence (-1, the floor)."""
    frames = mel.shape[-1]
    target = max(1, -(-frames // chunk_frames)) * chunk_frames
    return torch.nn.functional.pad(mel, (0, target - frames), value=-1.0)


@torch.no_grad()
def translate_chunks(generator: nn.Module, mel: Tensor, chunk_frames: int, batch_size: int = 64) -> Tensor:
    """Translate ``(n_mels, T)`` of any length ≥ 1 frame; returns ``(n_mels, T)``.

    Chunks go through G ``batch_size`` at a time so long inputs keep memory bounded.
    """
    frames = mel.shape[-1]
    padded = pad_to_chunks(mel, chunk_frames)
    chunks = split_chunks(padded.unsqueeze(0), chunk_frames)
    out = torch.cat([generator(chunks[i : i + batch_size]) for i in range(0, len(chunks), batch_size)])
    return join_chunks(out, len(chunks))[0, :, :frames]
