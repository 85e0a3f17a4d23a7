"""``melganvc live``: microphone -> conversion -> speakers, with the latency accounted for.

Two parts, so the conversion can be tested without a sound card:

* ``LiveEngine`` -- device-free: input blocks in, converted blocks of the same size out.
  A noise gate (``NoiseGate``) decides per 10 ms of *input* whether anyone is speaking; the
  converter (``Converter.stream``: the same pipeline as offline conversion, with small
  inversion blocks) converts; the gate's decision for input sample ``i`` is applied to output
  sample ``i`` (the pipeline is delay-compensated), so room noise that the model would turn
  into babble stays silent. Until the pipeline's latency has passed it returns silence.
* ``run_live`` -- the audio devices (PortAudio through ``sounddevice``): a duplex stream whose
  callback only moves samples (input queue in, output ring buffer out); a worker thread runs
  the engine. A dropout is a callback that found too few converted samples (or PortAudio
  reporting an under/overflow). A status line shows latency, real-time factor and dropouts.

Latency (``latency_table``): input block + the pipeline's worst-case delay (STFT look-ahead,
chunk of L frames plus one chunk step, inversion block plus overlaps, loudness frames,
resampling) + one block of output safety buffer + the devices' own latency (reported by
PortAudio). The docs list it per stage for each preset (docs/live.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from melganvc.dsp.fifo import SampleFifo
from melganvc.errors import UserError

if TYPE_CHECKING:
    from melganvc.conversion.converter import Converter
    from melganvc.conversion.pipeline import StreamingConverter


def live_blocks(converter: Converter) -> tuple[int, int]:
    """Inversion ``(block_frames, overlap_frames)`` for live use: the smallest overlap the
    model's Griffin-Lim accepts (``2 * ceil(n_fft / (2 hop)) + 2`` frames) and blocks of twice
    it -- the inversion's look-ahead is most of the pipeline's latency. (HiFi-GAN raises the
    overlap to its own context.)"""
    feat = converter.config.features
    overlap = 2 * -(-feat.n_fft // (2 * feat.hop_length)) + 2
    return 2 * overlap, overlap


# ---------------------------------------------------------------- the noise gate
class NoiseGate:
    """Open while the input is above ``threshold_db`` dBFS (10 ms frames), held open for
    ``hold_ms`` after the last loud frame, with ``ramp_ms`` fades; ``threshold_db=None``
    never closes. ``push`` returns the gains of the samples decided so far: a frame is decided
    once the next one is known, so the gate opens a frame before the sound does (the output
    is later than that anyway)."""

    def __init__(self, sample_rate: int, threshold_db: float | None = -45.0,
                 hold_ms: float = 250.0, ramp_ms: float = 10.0) -> None:
        self.frame = max(1, sample_rate // 100)
        self.threshold = None if threshold_db is None else 10 ** (threshold_db / 20)
        self.hold = max(1, round(hold_ms / 10))
        self.step = 1.0 / max(1, round(ramp_ms * sample_rate / 1000))
        self._partial = np.zeros(0, np.float32)
        self._loud: deque[bool] = deque()  # decisions of frames whose gains are not out yet
        self._since_loud = self.hold + 1  # start closed
        self.gain = 0.0 if threshold_db is not None else 1.0

    def push(self, block: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            return np.ones(block.size, np.float32)
        data = np.concatenate([self._partial, np.asarray(block, np.float32)])
        whole = data.size // self.frame * self.frame
        frames = data[:whole].reshape(-1, self.frame).astype(np.float64)
        self._loud.extend(np.sqrt(np.mean(frames ** 2, axis=1)) > self.threshold)
        self._partial = data[whole:]
        out = []
        while len(self._loud) >= 2:
            loud = self._loud.popleft()
            self._since_loud = 0 if loud else self._since_loud + 1
            target = 1.0 if self._since_loud <= self.hold or self._loud[0] else 0.0
            ramp = self.gain + np.sign(target - self.gain) * self.step * np.arange(1, self.frame + 1)
            ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
            self.gain = float(ramp[-1])
            out.append(ramp)
        return np.concatenate(out) if out else np.zeros(0, np.float32)


# ---------------------------------------------------------------- the engine
class LiveEngine:
    """Device-free live conversion: ``process(block)`` returns as many samples as it was
    given -- converted audio once the pipeline's latency has passed, silence before."""

    def __init__(self, converter: Converter, sample_rate: int,
                 gate_db: float | None = -45.0) -> None:
        block, overlap = live_blocks(converter)
        self.stream: StreamingConverter = converter.stream(
            sample_rate, block_frames=block, overlap_frames=overlap)
        self.sample_rate = sample_rate
        self.gate = NoiseGate(sample_rate, gate_db)
        self._gains = SampleFifo()  # the gate's gains, by input sample
        self._silence = self.stream.latency_samples  # output owed before conversion starts
        self.compute_s = 0.0
        self.audio_s = 0.0

    @property
    def latency_samples(self) -> int:
        return self.stream.latency_samples

    def process(self, block: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        block = np.asarray(block, np.float32).reshape(-1)
        self._gains.put(self.gate.push(block))
        converted = self.stream.push(block)
        out = converted * self._take_gains(converted.size)
        lead = min(self._silence, block.size)
        self._silence -= lead
        result = np.concatenate([np.zeros(lead, np.float32), out])
        self.compute_s += time.perf_counter() - start
        self.audio_s += block.size / self.sample_rate
        return result

    def _take_gains(self, n: int) -> np.ndarray:
        """The gate's gains for the next ``n`` output samples (the current gain where the gate
        has not decided yet: only when the pipeline's latency is under two gate frames)."""
        decided = self._gains.take(n)
        return np.concatenate([decided, np.full(n - decided.size, self.gate.gain, np.float32)])

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


# ---------------------------------------------------------------- latency per stage
def latency_table(converter: Converter, sample_rate: int, block: int) -> dict[str, float]:
    """The latency of each stage in ms (at ``sample_rate`` with ``block``-sample device
    blocks), and ``pipeline_total`` -- the exact worst case of the pipeline stages together
    (``StreamingConverter.latency_samples``: the stages' worst cases do not simply add up)."""
    cfg = converter.config
    feat, hop = cfg.features, cfg.features.hop_length
    blocks, overlap = live_blocks(converter)
    stream = converter.stream(sample_rate, block_frames=blocks, overlap_frames=overlap)
    chunk = converter.chunk_stream()

    def ms(model_samples: float) -> float:
        return 1000.0 * model_samples / feat.sample_rate

    return {
        "input_block": 1000.0 * block / sample_rate,
        "stft_lookahead": ms(feat.n_fft // 2),
        "chunk": ms(cfg.model.chunk_frames * hop),
        "chunk_step": ms(chunk.step * hop),
        "postfilter": ms(chunk.delay * hop),
        "inversion_block": ms((blocks + 2 * overlap) * hop),
        "loudness": ms(4 * hop),
        "pipeline_total": stream.latency_ms,
        "output_buffer": 1000.0 * block / sample_rate,
        "end_to_end": 2000.0 * block / sample_rate + stream.latency_ms,
    }


# ---------------------------------------------------------------- devices
@dataclass
class LiveStats:
    """What the status line shows, and what ``run_live`` returns."""

    seconds: float = 0.0
    dropouts: int = 0  # callbacks that found too few converted samples
    xruns: int = 0  # PortAudio's own input overflow / output underflow flags
    latency_ms: float = 0.0
    device_latency_ms: float = 0.0
    rtf: float = 0.0
    notes: list[str] = field(default_factory=list)


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise UserError("live audio needs the live extra: pip install 'melganvc[live]'") from None
    except OSError as exc:  # the wheel loads the system's PortAudio
        raise UserError(f"PortAudio is not available ({exc}); on Debian/Ubuntu: "
                        "apt install libportaudio2") from None
    return sounddevice


def list_devices() -> str:
    """The audio devices PortAudio sees (``melganvc live --list-devices``)."""
    return str(_sounddevice().query_devices())


def slowest_block(converter: Converter, rate: int, block: int, seconds: float = 2.0) -> float:
    """The longest time (s) one block took in a warm-up run of ``seconds`` of quiet noise
    (after the first calls, which allocate and pick kernels). The pipeline works in bursts --
    a chunk of G, a block of inversion -- so this, not the average, sets the output buffer."""
    engine = LiveEngine(converter, rate, None)
    noise = (1e-3 * np.random.default_rng(0).standard_normal(int(seconds * rate)))
    times = []
    for start in range(0, noise.size - block + 1, block):
        tick = time.perf_counter()
        engine.process(noise[start:start + block].astype(np.float32))
        times.append(time.perf_counter() - tick)
    return max(times[len(times) // 4:], default=0.0)


class _OutputBuffer:
    """When the output plays: after ``target`` samples of converted audio are queued -- one
    block, or more when the slowest warm-up block took longer than a block lasts (times 1.5).
    A callback that finds too few is a dropout: playback pauses until the queue holds the
    target again, and the target grows by one block (up to ``MAX_BLOCKS``), as a jitter
    buffer does -- a few dropouts buy a latency that the machine can keep."""

    MAX_BLOCKS = 64

    def __init__(self, block: int, slowest_s: float = 0.0, rate: int = 16000,
                 minimum_s: float = 0.0) -> None:
        burst = math.ceil(1.5 * slowest_s * rate / block) if slowest_s > 0 else 1
        least = math.ceil(minimum_s * rate / block)
        self.block = block
        self.target = block * min(max(1, burst, least), self.MAX_BLOCKS)
        self._playing = False

    def playing(self, queued: int) -> bool:
        if not self._playing and queued >= self.target + self.block:
            self._playing = True
        return self._playing

    def underrun(self) -> bool:
        """Called when a callback got no audio; True if it was a dropout (not the start)."""
        if not self._playing:
            return False
        self._playing = False
        self.target = min(self.target + self.block, self.MAX_BLOCKS * self.block)
        return True


class _Ring:
    """Converted samples waiting for the output callback (thread-safe FIFO)."""

    def __init__(self) -> None:
        self._fifo = SampleFifo()
        self._lock = threading.Lock()

    def put(self, x: np.ndarray) -> None:
        with self._lock:
            self._fifo.put(x)

    @property
    def size(self) -> int:
        return self._fifo.size

    def take(self, n: int) -> np.ndarray | None:
        """``n`` samples, or ``None`` (and nothing taken) when fewer are there."""
        with self._lock:
            return self._fifo.take(n) if self._fifo.size >= n else None


def run_live(converter: Converter, *, input_device: Any = None, output_device: Any = None,
             block_ms: float = 20.0, sample_rate: int | None = None,
             gate_db: float | None = -45.0, seconds: float | None = None,
             record_input: Path | None = None, record_output: Path | None = None,
             buffer_ms: float = 0.0,
             status: Callable[[LiveStats], None] | None = None) -> LiveStats:
    """Convert the input device to the output device until Ctrl-C (or ``seconds``).
    ``buffer_ms``: at least this much output buffer (default: what the warm-up says)."""
    sd = _sounddevice()
    from melganvc.io.audio_writer import AudioWriter

    rate = int(sample_rate or converter.sample_rate)
    block = max(1, round(block_ms * rate / 1000))
    engine = LiveEngine(converter, rate, gate_db)
    inbox: queue.Queue[np.ndarray | None] = queue.Queue()
    ring, stats = _Ring(), LiveStats()
    buffer = _OutputBuffer(block, slowest_block(converter, rate, block), rate, buffer_ms / 1000)
    errors: list[BaseException] = []
    captured = [0]  # input samples the device delivered

    def latency_ms() -> float:
        return 1000.0 * (block + engine.latency_samples + buffer.target) / rate

    def worker() -> None:
        try:
            while (x := inbox.get()) is not None:
                y = engine.process(x)
                ring.put(y)
                for writer, data in zip(writers, (x, y)):
                    if writer is not None:
                        writer.write(data)
        except Exception as exc:  # noqa: BLE001 -- re-raised by the main thread
            errors.append(exc)

    def callback(indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any,
                 flags: Any) -> None:
        if flags.input_overflow or flags.output_underflow:
            stats.xruns += 1
        inbox.put(indata[:, 0].copy())
        captured[0] += frames
        out = ring.take(frames) if buffer.playing(ring.size) else None
        if out is None:
            outdata.fill(0)
            if buffer.underrun():
                stats.dropouts += 1
        else:
            outdata[:, 0] = out

    writers = [AudioWriter(p, rate, provenance=tagged) if p else None
               for p, tagged in ((record_input, False), (record_output, True))]
    thread = threading.Thread(target=worker, name="melganvc-live", daemon=True)
    thread.start()
    begin = time.monotonic()
    opened: list[Any] = []
    try:
        for w in writers:
            if w is not None:
                opened.append(w.__enter__())
        with sd.Stream(samplerate=rate, blocksize=block, channels=1, dtype="float32",
                       device=(input_device, output_device), callback=callback,
                       latency="low") as audio:
            inp, out = audio.latency if isinstance(audio.latency, tuple) else (audio.latency,) * 2
            stats.device_latency_ms = 1000.0 * (inp + out)
            if status is not None:
                status(stats)  # the first line: the stream is open
            # --seconds counts audio heard, not wall time (opening a device can take a while);
            # the wall-clock guard ends a session whose device delivers nothing
            while seconds is None or (captured[0] < seconds * rate
                                      and time.monotonic() - begin < seconds + 30):
                time.sleep(0.1)
                if errors:
                    raise errors[0]
                stats.seconds, stats.rtf = captured[0] / rate, engine.rtf
                stats.latency_ms = latency_ms()
                if status is not None:
                    status(stats)
    except KeyboardInterrupt:
        stats.notes.append("stopped (Ctrl-C)")
    except (sd.PortAudioError, ValueError) as exc:  # ValueError: no such device
        raise UserError(f"audio device error: {exc}") from None
    finally:
        inbox.put(None)
        thread.join()  # the blocks already captured are converted and recorded too
        for w in opened:  # a recording ends where the session did
            w.__exit__(None, None, None)
    stats.seconds, stats.rtf, stats.latency_ms = captured[0] / rate, engine.rtf, latency_ms()
    return stats


def status_line(stats: LiveStats) -> str:
    return (f"\r{stats.seconds:7.1f} s  latency {stats.latency_ms:.0f} ms (+{stats.device_latency_ms:.0f} "
            f"ms devices)  RTF {stats.rtf:.2f}  dropouts {stats.dropouts}  xruns {stats.xruns} ")


def print_status(stats: LiveStats) -> None:
    sys.stderr.write(status_line(stats))
    sys.stderr.flush()


@contextlib.contextmanager
def virtual_audio(runtime: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio server for running ``melganvc live`` without a sound card: sink
    ``mic_in`` feeds source ``mic`` (play into it: the microphone), sink ``speakers`` is the
    output (record ``speakers.monitor``). Yields the environment that reaches this server
    (``PULSE_SOURCE``/``PULSE_SINK`` set, so PortAudio's ALSA "pulse" device uses them);
    the server is killed on exit. ``runtime``: an empty folder for its socket and state.
    Needs ``pulseaudio`` and ``pactl`` (pulseaudio-utils)."""
    env = dict(os.environ, PULSE_RUNTIME_PATH=str(runtime), PULSE_STATE_PATH=str(runtime))
    subprocess.run(["pulseaudio", "-D", "-n", "--exit-idle-time=-1",
                    "--load=module-native-protocol-unix",
                    "--load=module-null-sink sink_name=mic_in",
                    "--load=module-null-sink sink_name=speakers",
                    "--load=module-remap-source master=mic_in.monitor source_name=mic"],
                   env=env, check=True, capture_output=True, timeout=30)
    try:
        for _ in range(50):  # the daemon forks before its socket accepts clients
            if subprocess.run(["pactl", "info"], env=env, capture_output=True,
                              check=False).returncode == 0:
                break
            time.sleep(0.1)
        yield env | {"PULSE_SOURCE": "mic", "PULSE_SINK": "speakers"}
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, check=False,
                       timeout=30)
