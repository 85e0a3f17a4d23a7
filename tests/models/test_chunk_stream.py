import torch

from melganvc.models.chunk_stream import ChunkStream
from melganvc.training.chunks import join_chunks, split_chunks


def translate(g, mel: torch.Tensor, chunk_frames: int, batch_size: int = 64) -> torch.Tensor:
    return ChunkStream(g, mel.shape[0], chunk_frames, batch_size=batch_size).run(mel)


def test_split_join_round_trip_chunk_major() -> None:
    mel = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)
    chunks = split_chunks(mel, 4)
    assert chunks.shape == (6, 3, 4)
    assert torch.equal(chunks[1], mel[1, :, 0:4])  # chunk 0 of sample 1
    assert torch.equal(chunks[2], mel[0, :, 4:8])  # chunk 1 of sample 0
    assert torch.equal(join_chunks(chunks, 3), mel)


def test_translate_any_length_with_identity_and_batches() -> None:
    g = torch.nn.Identity()
    for frames in (1, 5, 24, 25, 100):
        mel = torch.rand(8, frames)
        assert torch.equal(translate(g, mel, 4, batch_size=3), mel)


def test_translate_is_chunkwise() -> None:
    """A generator that adds the chunk mean: each chunk must be processed on its own."""
    g = lambda x: x - x.mean(dim=(1, 2), keepdim=True)
    mel = torch.rand(3, 8)
    out = translate(g, mel, 4)
    assert torch.allclose(out[:, :4].mean(), torch.tensor(0.0), atol=1e-6)
