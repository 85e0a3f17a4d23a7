"""Block-wise conversion: the one pipeline behind offline, long-file and real-time conversion.

``StreamingConverter.push(block)`` takes audio of any block size and returns the converted
audio that is ready; ``flush()`` returns the rest. Every stage works on a *global* grid (STFT
frames, L-frame chunks, inversion blocks, gain frames), so the result does not depend on how
the input was cut into blocks: offline conversion (``Converter.convert`` / ``convert_file``) is
this same pipeline fed with big blocks, and memory stays bounded for inputs of any length.

Stages (model rate R = ``features.sample_rate``; input rate ``sample_rate``)::

    resample sample_rate -> R (soxr stream, skipped when equal)
    FeatureStream   samples -> normalised mel frames (exact STFT context at block edges)
    ChunkStream     mel -> G on L-frame chunks of a global grid, cross-faded (and the
                    contrast postfilter, dsp/postfilter.py, when on) -> final frames
    InversionStream mel -> waveform, block by block (phase carried across blocks)
    resample R -> sample_rate
    _Loudness       running RMS match on active frames + peak cap 0.99 (no clipping)
    hold back to the fixed latency

Each stage keeps its own state and is called in turn from the caller's thread (no worker
threads): the inverter's state is an ``InversionStream`` (``Inverter.stream()``) with
``push``/``flush`` like the others, so the shared ``Inverter`` itself holds none.

Latency (``latency_samples`` / ``latency_ms``): after pushes totalling ``n`` input samples,
exactly ``max(0, n - latency_samples)`` converted samples have been returned; ``flush()``
returns the rest, so the output always has the input's length. The latency is the worst-case
delay of the stages above: STFT look-ahead (n_fft/2), one chunk plus one chunk hop (plus
the postfilter's look-ahead of half its window, when on), one inversion block plus two
inversion overlaps, two gain frames, and the resamplers' filter delays. With the reference
features (16 kHz, hop 192, L = 24) and the streaming defaults (inversion blocks of 64 frames,
overlap 0.5) it is 1152 ms at 16 kHz.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np
import torch

from melganvc.dsp.fifo import SampleFifo
from melganvc.dsp.loudness import _Loudness
from melganvc.dsp.mel import FeatureStream
from melganvc.dsp.resample import _Resampler, resampler_delay
from melganvc.io.audio import as_mono_float32, check_sample_rate
from melganvc.models.chunk_stream import ChunkStream

if TYPE_CHECKING:
    from melganvc.config import Config
    from melganvc.vocoders import AnyInverter


STREAM_BLOCK_FRAMES = 64  # inversion block for real-time use (SC 0.109 vs 0.101 with 1024)
STREAM_OVERLAP_FRAMES = 8  # the smallest overlap Inverter accepts for the reference STFT
MAX_PIECE_SECONDS = 10.0  # bigger pushes are processed in pieces of this size


# ----------------------------------------------------------------------------------------------
# the pipeline


@functools.lru_cache(maxsize=64)
def _stage_delay(half: int, hop: int, chunk: int, step: int, block: int, overlap: int,
                 gain_frame: int, held: int = 0) -> int:
    """Worst-case delay (model-rate samples) of features -> chunks -> inversion -> gain.

    What each stage has released depends on the input length ``n`` only through the number of
    STFT frames ``F = (n - half) // hop + 1``, so the worst ``n`` for each ``F`` is the last
    one before frame ``F`` (``half + F * hop - 1``). Then: final frames ``M = ((F - L) // S +
    1) * S``, less the postfilter's ``held`` look-ahead frames; inverted samples ``(B - V) *
    hop * ((M - 2V) // (B - V))`` once ``M >= B + V`` (``InversionStream`` inverts a block
    of ``B`` frames when ``B + V`` are pending and holds back the ``V``-frame cross-fade);
    released samples ``Q * (samples // Q - 1)`` (the gain stage; ``gain_frame=0`` leaves it
    out). A few periods of the combined grid cover every alignment.
    """
    span = block - overlap
    period = math.lcm(step, span, max(1, gain_frame // math.gcd(gain_frame, hop or 1)))
    frames = np.arange(1, chunk + held + block + 2 * overlap + 3 * period + 2, dtype=np.int64)
    final = np.where(frames >= chunk, ((frames - chunk) // step + 1) * step, 0)
    final = np.maximum(final - held, 0)
    inverted = np.where(final >= block + overlap, span * hop * ((final - 2 * overlap) // span), 0)
    released = gain_frame * np.maximum(inverted // gain_frame - 1, 0) if gain_frame else inverted
    return int(max(half, (half + frames * hop - 1 - released).max()))


@dataclass(frozen=True)
class Stages:
    """The pipeline's parts, assembled by their owner (``Converter.stream``), so the pipeline
    never reaches back into it. Each stage is fresh: it holds the state of one stream."""

    config: Config
    features: FeatureStream
    chunks: ChunkStream
    inverter: AnyInverter  # shared between streams: inverters keep no per-stream state
    match_loudness: bool = True


class StreamingConverter:
    """Real-time conversion: ``push`` audio blocks (any size), get converted audio back.

    Usually made with ``Converter.stream(sample_rate)``. ``sample_rate`` is the rate of the
    pushed and returned audio (default: the model's); blocks are mono float arrays (2-D arrays
    ``(samples, channels)`` are down-mixed). After pushes totalling ``n`` samples, exactly
    ``max(0, n - latency_samples)`` samples have come back; ``flush()`` returns the rest (the
    total equals the input length). The inverter's blocks set the latency (see
    ``Converter.stream``). ``input_gain`` scales the audio
    before the features only (the output level still follows the input as given): offline
    conversion sets it to bring the input to ``INPUT_LEVEL_DBFS`` (see ``input_gain``).
    """

    def __init__(self, stages: Stages, sample_rate: int | None = None, *,
                 input_gain: float = 1.0) -> None:
        cfg = stages.config
        feat = cfg.features
        self.config = cfg
        self.model_rate = feat.sample_rate
        self.sample_rate = check_sample_rate(feat.sample_rate if sample_rate is None
                                             else sample_rate)
        if not (math.isfinite(input_gain) and input_gain > 0):
            raise ValueError(f"input_gain must be a positive number, got {input_gain!r}")
        self.input_gain = float(input_gain)
        self._inverter = stages.inverter
        self._features = stages.features
        self._chunks = stages.chunks
        # the loudness stage works at the output rate, after resampling, so the peak cap holds
        # for the samples actually returned
        gain_frame = max(1, round(2 * feat.hop_length * self.sample_rate / self.model_rate))
        self._loudness = _Loudness(gain_frame, stages.match_loudness, 1 / input_gain)
        self._rs_in = _Resampler(self.sample_rate, self.model_rate)
        self._rs_out = _Resampler(self.model_rate, self.sample_rate)
        self._latency = self._worst_delay(gain_frame)
        self._piece = max(1, int(MAX_PIECE_SECONDS * self.sample_rate))
        self._inversion = stages.inverter.stream()
        self._fifo = SampleFifo()  # converted samples held back to the fixed latency
        self.samples_in = 0  # at sample_rate
        self.samples_out = 0
        self._model_in = 0  # at the model rate
        self._model_out = 0
        self._converted = 0  # at sample_rate, before the hold-back
        self._closed = False

    # --- public ---------------------------------------------------------------------------

    @property
    def latency_samples(self) -> int:
        """Fixed delay of the output behind the input, in samples at ``sample_rate``."""
        return self._latency

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self._latency / self.sample_rate

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the converted samples now ready (maybe none)."""
        x = as_mono_float32(block)
        if self._closed:
            raise RuntimeError("this StreamingConverter was flushed or closed; make a new one")
        self.samples_in += x.size
        try:
            for i in range(0, x.size, self._piece):
                piece = x[i:i + self._piece]
                piece = self._gained(piece)  # the loudness stage undoes the gain
                self._loudness.add_input(piece)
                self._enqueue(self._process(self._rs_in(piece), last=False))
        except BaseException:
            self.close()
            raise
        return self._release(max(0, self.samples_in - self.latency_samples))

    def flush(self) -> np.ndarray:
        """End of input: returns the remaining output; the converter cannot be used again."""
        if self._closed:
            raise RuntimeError("this StreamingConverter was flushed or closed; make a new one")
        try:
            self._loudness.add_input(np.zeros(0, np.float32), last=True)
            self._enqueue(self._process(self._rs_in(np.zeros(0, np.float32), last=True),
                                        last=True))
        finally:
            self.close()
        out = self._release(None)
        missing = self.samples_in - self.samples_out - out.size
        if missing > 0:
            out = np.concatenate([out, np.zeros(missing, np.float32)])
        elif missing < 0:
            out = out[:out.size + missing]
        self.samples_out += out.size
        return out

    def close(self) -> None:
        """Stop early: later ``push``/``flush`` calls raise; ``flush`` does this itself."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _worst_delay(self, gain_frame: int) -> int:
        """``latency_samples``: the stages' worst-case delay plus the resamplers'."""
        cfg = self.config
        same_rate = self.sample_rate == self.model_rate
        delay = _stage_delay(cfg.features.n_fft // 2, cfg.features.hop_length,
                             cfg.model.chunk_frames, self._chunks.step,
                             self._inverter.block_frames, self._inverter.overlap_frames,
                             gain_frame if same_rate else 0, self._chunks.delay)
        if same_rate:
            return delay
        into = resampler_delay(self.sample_rate, self.model_rate)
        back = resampler_delay(self.model_rate, self.sample_rate)
        return math.ceil((delay + into) * self.sample_rate / self.model_rate) + back \
            + 2 * gain_frame + 2

    def _gained(self, x: np.ndarray) -> np.ndarray:
        return x if self.input_gain == 1.0 else x * np.float32(self.input_gain)

    def _process(self, x: np.ndarray, last: bool) -> np.ndarray:
        """Model-rate samples in -> output samples at ``sample_rate`` (as far as ready)."""
        self._model_in += x.size
        final = self._chunks.push(self._features.push(x))  # empty in, empty out
        waves = [self._inversion.push(final)]
        if last:
            rest = self._features.flush()
            tail = [self._chunks.push(rest)] if rest.shape[-1] else []
            waves.append(self._inversion.push(torch.cat(tail + [self._chunks.flush()], dim=-1)))
            waves.append(self._inversion.flush())
        y = torch.cat(waves).float().cpu().numpy()
        if last:  # the inverter gives (frames - 1) * hop samples: pad to the input length
            y = _fit(y, self._model_in - self._model_out)
        self._model_out += y.size
        y = self._rs_out(y, last=last)
        if last:  # resampling may be a sample off
            y = _fit(y, self.samples_in - self._converted)
        self._converted += y.size
        return self._loudness.push(y, last=last)

    def _enqueue(self, y: np.ndarray) -> None:
        self._fifo.put(y)

    def _release(self, upto: int | None) -> np.ndarray:
        want = self._fifo.size if upto is None else upto - self.samples_out
        out = self._fifo.take(want)
        if upto is not None:
            self.samples_out += out.size
        return out


def _fit(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``size`` samples."""
    size = max(size, 0)
    return x[:size] if x.size >= size else np.concatenate([x, np.zeros(size - x.size, x.dtype)])
