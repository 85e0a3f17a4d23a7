"""Block-wise conversion: the one pipeline behind offline, long-file and real-time conversion.

``StreamingConverter.push(block)`` takes audio of any block size and returns the converted
audio that is ready; ``flush()`` returns the rest. Every stage works on a *global* grid (STFT
frames, L-frame chunks, inversion blocks, gain frames), so the result does not depend on how
the input was cut into blocks: offline conversion (``Converter.convert`` / ``convert_file``) is
this same pipeline fed with big blocks, and memory stays bounded for inputs of any length.

Stages (model rate R = ``features.sample_rate``; input rate ``sample_rate``)::

    resample sample_rate -> R (soxr stream, skipped when equal)
    FeatureStream   samples -> normalised mel frames (exact STFT context at block edges)
    ChunkStream     mel -> G on L-frame chunks of a global grid, cross-faded -> final frames
    Inverter.stream mel -> waveform, block by block (phase carried across blocks)
    resample R -> sample_rate
    _Loudness       running RMS match on active frames + peak cap 0.99 (no clipping)
    hold back to the fixed latency

Latency (``latency_samples`` / ``latency_ms``): after pushes totalling ``n`` input samples,
exactly ``max(0, n - latency_samples)`` converted samples have been returned; ``flush()``
returns the rest, so the output always has the input's length. The latency is the worst-case
delay of the stages above: STFT look-ahead (n_fft/2), one chunk plus one chunk hop, one
inversion block plus two inversion overlaps, two gain frames, and the resamplers' filter
delays. With the reference features (16 kHz, hop 192, L = 24) and the streaming defaults
(inversion blocks of 64 frames, overlap 0.5) it is 1152 ms at 16 kHz.
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Self

import numpy as np
import soxr
import torch
from torch import Tensor

from melganvc.audio import as_mono_float32, check_sample_rate
from melganvc.blockwise import ChunkStream, FeatureStream

if TYPE_CHECKING:
    from melganvc.convert import Converter
    from melganvc.invert import Inverter

STREAM_BLOCK_FRAMES = 64  # inversion block for real-time use (SC 0.109 vs 0.101 with 1024)
STREAM_OVERLAP_FRAMES = 8  # the smallest overlap Inverter accepts for the reference STFT
MAX_PIECE_SECONDS = 10.0  # bigger pushes are processed in pieces of this size
PEAK = 0.99  # output peak cap (a gain, never clipping)

__all__ = ["INPUT_LEVEL_DBFS", "InverterFeed", "LevelMeter", "StreamingConverter",
           "input_gain", "resampler_delay"]


# ----------------------------------------------------------------------------------------------
# inversion: Inverter.stream (a pull-style generator) driven from push-style code


class _Stop(Exception):
    pass


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_IDLE, _END, _ABORT = object(), object(), object()


class InverterFeed:
    """Feed mel pieces to ``Inverter.stream`` one at a time and collect what it yields.

    ``Inverter.stream`` pulls pieces from an iterable; it runs in a worker thread whose input
    iterator waits for the next ``feed``. Each ``feed`` returns once the stream asks for more
    input, i.e. with everything it could produce so far; ``finish`` ends the stream.
    """

    def __init__(self, inverter: Inverter) -> None:  
        self._inverter = inverter
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="melganvc-inverter", daemon=True)
        self._open = True
        self._thread.start()
        self._collect(_IDLE)

    def feed(self, mel: Tensor) -> list[Tensor]:
        if mel.shape[-1] == 0:
            return []
        self._inbox.put(mel)
        return self._collect(_IDLE)

    def finish(self) -> list[Tensor]:
        self._inbox.put(_END)
        out = self._collect(_END)
        self._thread.join()
        self._open = False
        return out

    def abort(self) -> None:
        if self._open:
            self._open = False
            self._inbox.put(_ABORT)
            self._thread.join()

    def _source(self):
        while True:
            self._outbox.put(_IDLE)
            item = self._inbox.get()
            if item is _END:
                return
            if item is _ABORT:
                raise _Stop
            yield item

    def _run(self) -> None:
        try:
            with torch.no_grad():
                for wave in self._inverter.stream(self._source()):
                    self._outbox.put(wave)
        except _Stop:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._outbox.put(_Failure(exc))
            return
        self._outbox.put(_END)

    def _collect(self, until: object) -> list[Tensor]:
        out = []
        while True:
            item = self._outbox.get()
            if item is until:
                return out
            if isinstance(item, _Failure):
                self._open = False
                raise item.exc
            out.append(item)


# ----------------------------------------------------------------------------------------------
# loudness


class _Loudness:
    """Output level follows the input: running match of the active parts' RMS, peak <= 0.99.

    Works on gain frames of ``frame`` samples (a global grid). A frame is *active* when its RMS
    is above -60 dBFS and within 40 dB of the loudest frame so far, judged separately for the
    input and the (un-scaled) output, as loudness gates do. The gain is the ratio of the two
    active parts' RMS over all frames up to the current one (so it converges to the whole-file
    match), clamped to +-40 dB. It is linear between frame ends; each end is also capped at
    ``PEAK / peak`` of both frames it joins, so no sample exceeds ``PEAK``: a gain, never
    clipping. That needs one frame of look-ahead.
    """

    ABS_GATE, REL_GATE, MAX_GAIN = 1e-3, 1e-2, 100.0

    def __init__(self, frame: int, match: bool = True, scale: float = 1.0) -> None:
        self.frame, self.match = frame, match
        # ``scale`` multiplies the result (1 / the input gain: the input was measured after
        # it); the peak cap is divided by it so the returned samples stay within ``PEAK``
        self._scale, self._peak = scale, PEAK / scale
        self._in_partial = np.zeros(0, np.float32)
        self._in_frames: deque[np.ndarray] = deque()  # input frames not yet matched
        self._in_gate, self._out_gate = _Gate(), _Gate()
        self._out = np.zeros(0, np.float32)  # output not yet released
        self._gain = 1.0
        self._anchor: float | None = None  # gain at the end of the last released frame

    def add_input(self, x: np.ndarray, last: bool = False) -> None:
        data = np.concatenate([self._in_partial, x])
        whole = data.size // self.frame * self.frame
        self._in_frames.extend(data[i:i + self.frame] for i in range(0, whole, self.frame))
        self._in_partial = data[whole:]
        if last and self._in_partial.size:
            self._in_frames.append(self._in_partial)
            self._in_partial = np.zeros(0, np.float32)

    def push(self, y: np.ndarray, last: bool = False) -> np.ndarray:
        self._out = np.concatenate([self._out, y])
        q, out = self.frame, []
        while self._out.size >= 2 * q or (last and self._out.size):
            out.append(self._apply(self._out[:q], self._out[q:2 * q]))
            self._out = self._out[q:]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _apply(self, cur: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self._in_frames:
            self._in_gate.add(self._in_frames.popleft())
        self._out_gate.add(cur)
        if self.match and self._in_gate.power > 0 and self._out_gate.power > 0:
            ratio = math.sqrt(self._in_gate.power / self._out_gate.power)
            self._gain = min(max(ratio, 1 / self.MAX_GAIN), self.MAX_GAIN)
        peak_cur = float(np.abs(cur).max())
        peak = max(peak_cur, float(np.abs(nxt).max()) if nxt.size else 0.0)
        anchor = min(self._gain, self._peak / peak) if peak > 0 else self._gain
        start = self._anchor if self._anchor is not None else min(
            self._gain, self._peak / peak_cur if peak_cur > 0 else self._gain)
        self._anchor = anchor
        ramp = start + (anchor - start) * (np.arange(1, cur.size + 1, dtype=np.float32) / cur.size)
        ramp *= np.float32(self._scale)
        return (cur * ramp).astype(np.float32)


class _Gate:
    """Mean power of the active frames seen so far (absolute and relative gate)."""

    def __init__(self) -> None:
        self.energy, self.samples, self.loudest = 0.0, 0, 0.0

    def add(self, frame: np.ndarray) -> None:
        frame = frame.astype(np.float64)  # float32 energy overflows for samples above ~1e19
        energy = float(np.dot(frame, frame))
        rms = math.sqrt(energy / frame.size)
        self.loudest = max(self.loudest, rms)
        if rms > max(_Loudness.ABS_GATE, _Loudness.REL_GATE * self.loudest):
            self.energy += energy
            self.samples += frame.size

    @property
    def power(self) -> float:
        return self.energy / self.samples if self.samples else 0.0


INPUT_LEVEL_DBFS = -20.0  # active RMS the features see: the level of typical speech corpora
LEVEL_GATE = 1e-6  # -120 dBFS: digital silence; otherwise only the relative gate decides, so
# the estimate scales with the input (an absolute gate near a recording's noise floor does not)
MAX_INPUT_GAIN = 1000.0  # +-60 dB


class LevelMeter:
    """Active RMS of audio fed block by block (frames of ``frame`` samples on a global grid).

    A frame is active when its RMS is above -120 dBFS and within 40 dB of the loudest frame,
    judged at the end, so the estimate does not depend on how the audio was cut into blocks.
    """

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self._partial = np.zeros(0, np.float32)
        self._power: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        data = np.concatenate([self._partial, np.asarray(x, np.float32)])
        whole = data.size // self.frame * self.frame
        if whole:
            frames = data[:whole].astype(np.float64).reshape(-1, self.frame)
            self._power.append(np.einsum("ij,ij->i", frames, frames) / self.frame)
        self._partial = data[whole:]

    def active_rms(self) -> float:
        power = np.concatenate(self._power) if self._power else np.zeros(0)
        if self._partial.size:
            tail = self._partial.astype(np.float64)
            power = np.append(power, float(np.dot(tail, tail)) / tail.size)
        if not power.size:
            return 0.0
        keep = power > max(LEVEL_GATE**2, 1e-4 * float(power.max()))
        return math.sqrt(float(power[keep].mean())) if keep.any() else 0.0


def input_gain(active_rms: float, level_dbfs: float = INPUT_LEVEL_DBFS) -> float:
    """The gain that brings audio of ``active_rms`` to ``level_dbfs`` (within +-60 dB; 1 for
    silence). The features have a fixed level range, so a quiet input converted badly: the
    level-aligned result's mel correlation with the same input converted at its normal level
    was 0.63-0.78 at -30 dB and 0.31-0.66 at -40 dB; with this gain 0.993-0.996 at both
    (bundled demo-voice model, espeak and VCC2016 speech)."""
    if active_rms <= 0:
        return 1.0
    gain = 10 ** (level_dbfs / 20) / active_rms
    return min(max(gain, 1 / MAX_INPUT_GAIN), MAX_INPUT_GAIN)


# ----------------------------------------------------------------------------------------------
# resampling


@functools.lru_cache(maxsize=32)
def resampler_delay(in_rate: int, out_rate: int) -> int:
    """Worst-case delay (output samples) of a soxr HQ ``ResampleStream``, measured once.

    Fed with pieces worth ~4 output samples over 0.16 s (the delay settles within the filter
    span), so the cost follows the output rate, not a header's claimed input rate; the margin
    covers what finer pieces could add (one piece's worth of output, plus 4).
    """
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
    piece = np.zeros(4 * max(1, -(-in_rate // out_rate)), np.float32)
    fed = produced = 0
    worst = 0.0
    for _ in range(max(64, math.ceil(0.16 * in_rate / piece.size))):
        produced += stream.resample_chunk(piece, last=False).size
        fed += piece.size
        worst = max(worst, fed * out_rate / in_rate - produced)
    return math.ceil(worst) + math.ceil(piece.size * out_rate / in_rate) + 4


class _Resampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ") \
            if in_rate != out_rate else None

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return x
        return self._stream.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)


# ----------------------------------------------------------------------------------------------
# the pipeline


@functools.lru_cache(maxsize=64)
def _stage_delay(half: int, hop: int, chunk: int, step: int, block: int, overlap: int,
                 gain_frame: int) -> int:
    """Worst-case delay (model-rate samples) of features -> chunks -> inversion -> gain.

    What each stage has released depends on the input length ``n`` only through the number of
    STFT frames ``F = (n - half) // hop + 1``, so the worst ``n`` for each ``F`` is the last
    one before frame ``F`` (``half + F * hop - 1``). Then: final frames ``M = ((F - L) // S +
    1) * S``; inverted samples ``(B - V) * hop * ((M - 2V) // (B - V))`` once ``M >= B + V``
    (``Inverter.stream`` inverts a block of ``B`` frames when ``B + V`` are pending and holds
    back the ``V``-frame cross-fade); released samples ``Q * (samples // Q - 1)`` (the gain
    stage; ``gain_frame=0`` leaves it out). A few periods of the combined grid cover every
    alignment.
    """
    span = block - overlap
    period = math.lcm(step, span, max(1, gain_frame // math.gcd(gain_frame, hop or 1)))
    frames = np.arange(1, chunk + block + 2 * overlap + 3 * period + 2, dtype=np.int64)
    final = np.where(frames >= chunk, ((frames - chunk) // step + 1) * step, 0)
    inverted = np.where(final >= block + overlap, span * hop * ((final - 2 * overlap) // span), 0)
    released = gain_frame * np.maximum(inverted // gain_frame - 1, 0) if gain_frame else inverted
    return int(max(half, (half + frames * hop - 1 - released).max()))


class StreamingConverter:
    """Real-time conversion: ``push`` audio blocks (any size), get converted audio back.

    Usually made with ``Converter.stream(sample_rate)``. ``sample_rate`` is the rate of the
    pushed and returned audio (default: the model's); blocks are mono float arrays (2-D arrays
    ``(samples, channels)`` are down-mixed). After pushes totalling ``n`` samples, exactly
    ``max(0, n - latency_samples)`` samples have come back; ``flush()`` returns the rest (the
    total equals the input length). ``block_frames``/``overlap_frames`` set the inversion
    blocks: smaller is lower latency, a little slower and a little less accurate; ``None`` takes
    the ``Inverter`` defaults (what offline conversion uses). ``input_gain`` scales the audio
    before the features only (the output level still follows the input as given): offline
    conversion sets it to bring the input to ``INPUT_LEVEL_DBFS`` (see ``input_gain``).
    """

    def __init__(self, converter: Converter, sample_rate: int | None = None, *,
                 block_frames: int | None = STREAM_BLOCK_FRAMES,
                 overlap_frames: int | None = STREAM_OVERLAP_FRAMES,
                 input_gain: float = 1.0) -> None:
        cfg = converter.config
        feat = cfg.features
        self.converter = converter
        self.model_rate = feat.sample_rate
        self.sample_rate = check_sample_rate(feat.sample_rate if sample_rate is None
                                             else sample_rate)
        device = converter.device
        if not (math.isfinite(input_gain) and input_gain > 0):
            raise ValueError(f"input_gain must be a positive number, got {input_gain!r}")
        self.input_gain = float(input_gain)
        self._inverter = converter.inverter(block_frames, overlap_frames)
        self._features = FeatureStream(converter.mel)
        self._chunks = ChunkStream(converter.generator, feat.n_mels, cfg.model.chunk_frames,
                                   converter.overlap, converter.fade, converter.batch_size, device)
        # the loudness stage works at the output rate, after resampling, so the peak cap holds
        # for the samples actually returned
        gain_frame = max(1, round(2 * feat.hop_length * self.sample_rate / self.model_rate))
        self._loudness = _Loudness(gain_frame, converter.match_loudness, 1 / input_gain)
        self._rs_in = _Resampler(self.sample_rate, self.model_rate)
        self._rs_out = _Resampler(self.model_rate, self.sample_rate)
        self._latency = self._worst_delay(gain_frame)
        self._piece = max(1, int(MAX_PIECE_SECONDS * self.sample_rate))
        self._feed: InverterFeed | None = None
        self._fifo: deque[np.ndarray] = deque()
        self._fifo_size = 0
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
        """Stop early (frees the inversion worker); ``flush`` does this itself."""
        self._closed = True
        if self._feed is not None:
            self._feed.abort()
            self._feed = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown anything may be gone
            self.close()

    # --- internals ------------------------------------------------------------------------

    def _worst_delay(self, gain_frame: int) -> int:
        """``latency_samples``: the stages' worst-case delay plus the resamplers'."""
        cfg = self.converter.config
        same_rate = self.sample_rate == self.model_rate
        delay = _stage_delay(cfg.features.n_fft // 2, cfg.features.hop_length,
                             cfg.model.chunk_frames, self._chunks.step,
                             self._inverter.block_frames, self._inverter.overlap_frames,
                             gain_frame if same_rate else 0)
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
        if self._feed is None:
            self._feed = InverterFeed(self._inverter)
        self._model_in += x.size
        mel = self._features.push(x) if x.size else self._features._empty()
        final = self._chunks.push(mel) if mel.shape[-1] else self._chunks._take(0)
        waves = self._feed.feed(final)
        if last:
            rest = self._features.flush()
            tail = [self._chunks.push(rest)] if rest.shape[-1] else []
            waves += self._feed.feed(torch.cat(tail + [self._chunks.flush()], dim=-1))
            waves += self._feed.finish()
            self._feed = None
        y = torch.cat([w.reshape(-1) for w in waves]).float().cpu().numpy() if waves \
            else np.zeros(0, np.float32)
        if last:  # the inverter gives (frames - 1) * hop samples: pad to the input length
            y = _fit(y, self._model_in - self._model_out)
        self._model_out += y.size
        y = self._rs_out(y, last=last)
        if last:  # resampling may be a sample off
            y = _fit(y, self.samples_in - self._converted)
        self._converted += y.size
        return self._loudness.push(y, last=last)

    def _enqueue(self, y: np.ndarray) -> None:
        if y.size:
            self._fifo.append(y)
            self._fifo_size += y.size

    def _release(self, upto: int | None) -> np.ndarray:
        want = self._fifo_size if upto is None else min(self._fifo_size, upto - self.samples_out)
        parts, need = [], max(0, want)
        while need > 0:
            head = self._fifo.popleft()
            if head.size > need:
                self._fifo.appendleft(head[need:])
                head = head[:need]
            parts.append(head)
            need -= head.size
        out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self._fifo_size -= out.size
        if upto is not None:
            self.samples_out += out.size
        return out


def _fit(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``size`` samples."""
    size = max(size, 0)
    return x[:size] if x.size >= size else np.concatenate([x, np.zeros(size - x.size, x.dtype)])
