"""Splitting mels into L-frame chunks for G and joining them back.

Training: a 3·L crop becomes 3 chunks translated as one batch (chunk-major order, so chunk i of
every sample is the slice ``[i*B:(i+1)*B]``) and joined for the critic. Inference of any length
(conversion and the training log's samples alike) is ``models.chunk_stream.ChunkStream``.
"""

from __future__ import annotations

from torch import Tensor


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
