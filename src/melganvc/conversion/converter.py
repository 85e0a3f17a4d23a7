"""Conversion with a trained generator: mels, arrays, files of any length.

Usable from a notebook without the CLI::

    from melganvc import Converter
    conv = Converter.from_checkpoint("runs/a2b")            # run folder or checkpoint file
    out = conv.convert(wave, sr)                            # numpy in, numpy out, same rate
    conv.convert_file("in.flac", "out.wav")                 # hour-long files in bounded memory
    with conv.stream(48000) as s:                           # real time, see pipeline.py
        y = s.push(block)

How a mel is translated (``method.md``, "Inference"): G works on chunks of ``L`` frames on a
global grid. ``overlap=0`` is the reference: back-to-back chunks, the last one aligned to the
end of the input, no cross-fade. ``overlap=k`` (frames, or a fraction of ``L`` up to 0.5)
starts a chunk every ``L - k`` frames and cross-fades the overlaps with a raised cosine, which
removes the seams at chunk borders (see ``melganvc.evaluation.seams``) for up to 2x the generator work.
Any input of at least one frame works (short inputs are padded with silence and cropped).

Waveforms go through ``StreamingConverter``: features with exact STFT context at block edges,
chunked G, block-wise inversion, a loudness match (RMS of the active part, peak capped at
0.99 by gain, never clipped) and resampling back to the input rate. The output has exactly
the input's length. Written files carry a provenance tag (``io.audio_writer.PROVENANCE``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from melganvc.config import (
    Config,
    InversionConfig,
)
from melganvc.conversion.loading import (
    InversionSetting,
    load_generator,
    with_conversion,
    with_inversion,
)
from melganvc.conversion.pipeline import (
    STREAM_BLOCK_FRAMES,
    STREAM_OVERLAP_FRAMES,
    Stages,
    StreamingConverter,
)
from melganvc.device import select_device
from melganvc.dsp.loudness import input_gain, level_meter
from melganvc.dsp.mel import FeatureStream, MelSpectrogram
from melganvc.dsp.stereo import StereoPanner
from melganvc.io.audio import (
    as_mono_float32,
    audio_info,
    channel_count,
    check_sample_rate,
    iter_blocks,
)
from melganvc.io.audio_writer import AudioWriter
from melganvc.io.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
)
from melganvc.models.chunk_stream import ChunkStream, resolve_overlap
from melganvc.vocoders import AnyInverter, build_inverter


class Converter:
    """A generator plus everything needed to turn audio or mels into converted audio.

    ``Converter(generator, config)`` takes any module mapping ``(batch, n_mels, L)`` mels to
    the same shape; ``from_checkpoint`` is the usual way in. How the model is applied is the
    config's ``conversion`` section (``ConversionConfig``: overlap, fade, batch_size,
    match_loudness, normalize_input, block_frames, block_overlap, stereo, postfilter); the
    keyword options of the same names change it for this converter (``None``: keep), and
    ``inversion`` changes the ``inversion`` section (see ``from_checkpoint``). ``self.config``
    is what is in force.
    """

    def __init__(self, generator: nn.Module, config: Config, *,
                 inversion: InversionSetting = None, device: str | torch.device = "cpu",
                 overlap: float | str | None = None, fade: str | None = None,
                 batch_size: int | None = None, match_loudness: bool | None = None,
                 normalize_input: bool | None = None, block_frames: int | None = None,
                 block_overlap: int | None = None, stereo: bool | None = None,
                 postfilter: float | None = None) -> None:
        cfg = with_inversion(config, inversion)
        self.config = with_conversion(
            cfg, cfg.model.chunk_frames, overlap=overlap, fade=fade, batch_size=batch_size,
            match_loudness=match_loudness, normalize_input=normalize_input,
            block_frames=block_frames, block_overlap=block_overlap, stereo=stereo,
            postfilter=postfilter)
        self.device = select_device(device)
        self.generator = generator.to(self.device).eval()
        self.mel = MelSpectrogram(self.config.features).to(self.device)
        self.source = "in-memory generator"
        self._inverters: dict[tuple[int | None, int | None], AnyInverter] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto",
                        use_ema: bool = True, inversion: InversionSetting = None,
                        **options: Any) -> Converter:
        """Load G from a run folder or checkpoint file (training or generator-only).

        Uses the EMA generator when the checkpoint has one and ``use_ema``. ``inversion``
        changes the inversion settings: an ``InversionConfig``, a dict of its fields, or
        override strings such as ``["method=gl", "gl_iters=4"]``. ``options`` go to
        ``Converter`` (``overlap``, ``fade``, ...).
        """
        payload = load_checkpoint(path, map_location="cpu")
        return cls.from_payload(payload, device, use_ema, inversion, source=str(path), **options)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], device: str | torch.device = "auto",
                     use_ema: bool = True, inversion: InversionSetting = None, source: str = "checkpoint",
                     **options: Any) -> Converter:
        """Like ``from_checkpoint`` for an already loaded checkpoint dict."""
        cfg = checkpoint_config(payload)
        models = payload.get("models")
        if not isinstance(models, dict) or "generator" not in models:
            raise CheckpointError(f"{source}: the checkpoint holds no generator")
        key = "generator_ema" if use_ema and "generator_ema" in models else "generator"
        conv = cls(load_generator(cfg, models[key]), cfg, inversion=inversion, device=device,
                   **options)
        conv.source = f"{source} ({key}, step {payload.get('step', '?')})"
        return conv

    def with_options(self, **options: Any) -> Converter:
        """A converter sharing this one's generator (and inverters, when the features and
        inversion settings stay) with some options changed: ``conv.with_options(overlap=0)``.
        The options are ``Converter``'s; unset ones keep this converter's values."""
        other = Converter(self.generator, self.config, **({"device": self.device} | options))
        same = (other.config.features, other.config.inversion) == \
            (self.config.features, self.config.inversion)
        if same and other.device == self.device:
            other._inverters = self._inverters
        other.source = self.source
        return other

    # --- properties ---------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """The model's sample rate (``convert`` accepts and returns any rate)."""
        return self.config.features.sample_rate

    @property
    def chunk_frames(self) -> int:
        return self.config.model.chunk_frames

    @property
    def inversion(self) -> InversionConfig:
        return self.config.inversion

    @property
    def overlap(self) -> int:
        """Chunk overlap in frames."""
        return resolve_overlap(self.config.conversion.overlap, self.chunk_frames)

    @property
    def fade(self) -> str:
        return self.config.conversion.fade

    @property
    def batch_size(self) -> int:
        return self.config.conversion.batch_size

    @property
    def match_loudness(self) -> bool:
        return self.config.conversion.match_loudness

    @property
    def normalize_input(self) -> bool:
        return self.config.conversion.normalize_input

    # --- conversion ---------------------------------------------------------------------------

    def inverter(self, block_frames: int | None = None, overlap_frames: int | None = None
                 ) -> AnyInverter:
        """The (cached) inverter ``inversion.method`` names, for blocks of ``block_frames``
        (``None``: its defaults)."""
        key = (block_frames, overlap_frames)
        if key not in self._inverters:
            blocks = {} if block_frames is None else {"block_frames": block_frames}
            if overlap_frames is not None:
                blocks["overlap_frames"] = overlap_frames
            self._inverters[key] = build_inverter(self.config.features, self.config.inversion,
                                                  **blocks).to(self.device)
        return self._inverters[key]

    def chunk_stream(self) -> ChunkStream:
        return ChunkStream.from_config(self.generator, self.config, self.device)

    def convert_mel(self, mel: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Translate a normalised mel ``(n_mels, T)``, any ``T >= 1``; same type and shape back."""
        is_numpy = isinstance(mel, np.ndarray)
        x = torch.as_tensor(mel, dtype=torch.float32)
        n_mels = self.config.features.n_mels
        if x.dim() != 2 or x.shape[0] != n_mels or x.shape[1] < 1:
            raise ValueError(f"expected a mel shaped ({n_mels}, frames >= 1), got {tuple(x.shape)}")
        out = self.chunk_stream().run(x.to(self.device)).cpu()
        return out.numpy() if is_numpy else out.to(mel.device)

    def stream(self, sample_rate: int | None = None, *,
               block_frames: int | None = STREAM_BLOCK_FRAMES,
               overlap_frames: int | None = STREAM_OVERLAP_FRAMES,
               input_gain: float = 1.0) -> StreamingConverter:
        """A ``StreamingConverter`` for audio at ``sample_rate`` (default: the model's).
        ``block_frames``/``overlap_frames`` set the inversion blocks: smaller is lower latency,
        a little slower and a little less accurate; ``None`` takes the ``Inverter`` defaults
        (what offline conversion uses). ``input_gain`` scales the audio before the features
        only (offline conversion brings the input to ``INPUT_LEVEL_DBFS``, see ``input_gain``)."""
        stages = Stages(self.config, FeatureStream(self.mel), self.chunk_stream(),
                        self.inverter(block_frames, overlap_frames), self.match_loudness)
        return StreamingConverter(stages, sample_rate, input_gain=input_gain)

    def _offline_stream(self, sample_rate: int, gain: float = 1.0) -> StreamingConverter:
        conversion = self.config.conversion
        return self.stream(sample_rate, block_frames=conversion.block_frames,
                           overlap_frames=conversion.block_overlap, input_gain=gain)

    def input_gain(self, blocks: Any, sample_rate: int) -> float:
        """The gain ``convert`` applies before the features for this audio (``blocks``: an
        array or an iterable of arrays at ``sample_rate``); 1.0 without ``normalize_input``."""
        if not self.normalize_input:
            return 1.0
        meter = level_meter(sample_rate)
        for block in [blocks] if isinstance(blocks, np.ndarray) else blocks:
            meter.add(block)
        return input_gain(meter.active_rms())

    def convert(self, waveform: np.ndarray, sr: int | None = None) -> np.ndarray:
        """Convert audio at rate ``sr`` (default: the model's); returns mono float32 audio at
        ``sr`` of the same length.

        ``waveform``: ``(samples,)``, ``(samples, channels)`` or ``(channels, samples)`` (at most
        8 channels, down-mixed); float in [-1, 1] or integer PCM (scaled by its range). Rates
        outside 1 kHz..768 kHz, empty, non-finite or mis-scaled audio raise ``ValueError``.
        """
        x = as_mono_float32(waveform)
        if x.size == 0:
            raise ValueError("cannot convert an empty waveform")
        rate = check_sample_rate(self.sample_rate if sr is None else sr)
        stream = self._offline_stream(rate, self.input_gain(x, rate))
        with stream:
            out = [stream.push(x), stream.flush()]
        return np.concatenate(out)

    def convert_file(self, in_path: str | Path, out_path: str | Path, *,
                     progress: bool | Callable[[float], Any] | None = None,
                     block_seconds: float = 10.0, overwrite: bool = True) -> float:
        """Convert an audio file block by block (bounded memory); returns its duration (s).

        The output (``.wav`` float or ``.flac`` 16-bit, by suffix) has the input's sample rate
        and length and a provenance tag; a stereo input gives stereo (``conversion.stereo``,
        see ``dsp.stereo``), any other a mono output. It appears atomically: on any error no
        file is left.
        ``progress``: ``True`` for a tqdm bar, or a callable given the seconds just converted.
        Unreadable inputs raise ``AudioError`` (a ``UserError``) naming the file. With
        ``overwrite=False`` an existing output -- even one another process wrote meanwhile --
        is kept and ``AudioError`` ("exists") raised.
        """
        in_path, out_path = Path(in_path), Path(out_path)
        rate, frames = audio_info(in_path)
        duration = frames / rate
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=round(duration, 2), unit="s", desc=in_path.name, leave=False)
            update: Callable[[float], Any] | None = bar.update
        else:
            update = progress if callable(progress) else None
        gain = self.input_gain(iter_blocks(in_path, rate, block_seconds), rate)  # a pre-pass
        stream = self._offline_stream(rate, gain)
        stereo = self.config.conversion.stereo and channel_count(in_path) == 2
        panner = StereoPanner(rate) if stereo else None
        try:
            with stream, AudioWriter(out_path, rate, overwrite=overwrite,
                                     channels=2 if stereo else 1) as writer:
                for block in iter_blocks(in_path, rate, block_seconds, channels=stereo):
                    mono = block.mean(axis=1, dtype=np.float32) if stereo else block
                    out = stream.push(mono)
                    writer.write(panner.push(out, block) if panner else out)
                    if update is not None:
                        update(len(block) / rate)
                tail = stream.flush()
                writer.write(np.concatenate([panner.push(tail, np.zeros((0, 2))), panner.flush()])
                             if panner else tail)
        finally:
            if bar is not None:
                bar.close()
        return duration
