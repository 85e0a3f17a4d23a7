"""Pictures and sound for reports and the web UI: PNG spectrograms (a small numpy
PNG writer, viridis), WAV bytes, data URIs, SVG bar charts."""

from __future__ import annotations

import base64
import html
import io
import math
import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import soundfile as sf

from melganvc.evaluation.spectral import (
    SpectralConfig,
    mel_spectrogram_db,
)
from melganvc.judges.waves import SAMPLE_RATE

# ---------------------------------------------------------------------------------------------
# Pictures: PNG writer, colour map, spectrograms, SVG bars
# ---------------------------------------------------------------------------------------------


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 array as PNG (zlib, no filters)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    rows = image.reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


# viridis at 9 evenly spaced points; linear interpolation between them is close enough here
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to viridis-like RGB uint8, shape ``values.shape + (3,)``."""
    x = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    low = np.floor(x).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (x - low)[..., None]
    rgb = _VIRIDIS[low] * (1.0 - frac) + _VIRIDIS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def spectrogram_pngs(waves: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE,
                     dynamic_range_db: float = 80.0, row_scale: int = 2) -> list[bytes]:
    """Log-mel spectrogram PNGs (low frequencies at the bottom) on one shared dB scale."""
    cfg = SpectralConfig(sample_rate=sample_rate)
    specs = [mel_spectrogram_db(w, cfg) for w in waves]
    top = max(float(s.max()) for s in specs)
    images = []
    for spec in specs:
        scaled = (spec - (top - dynamic_range_db)) / dynamic_range_db
        rgb = colormap(scaled[::-1])
        images.append(png_bytes(np.repeat(rgb, row_scale, axis=0)))
    return images


def wav_bytes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of a mono wave (peak-limited to [-1, 1])."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0),
             sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_PALETTE = ("#3b6fb6", "#9a9a9a", "#3a9a5b", "#d08c2f", "#a0479a", "#c23b3b")


def svg_bar_chart(title: str, values: Mapping[str, float | None], better: str = "",
                  width: int = 420) -> str:
    """Inline SVG horizontal bar chart, one bar per system (``None`` shows as 'n/a')."""
    row, label_w, value_w, top_pad = 26, 110, 64, 30
    finite = [v for v in values.values() if v is not None and math.isfinite(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    span = (hi - lo) or 1.0
    plot_w = width - label_w - value_w
    zero_x = label_w + plot_w * (0.0 - lo) / span
    height = top_pad + row * len(values) + 8
    caption = f"{title} ({better} is better)" if better else title
    parts = [(f'<svg class="bars" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(caption)}">'),
             f'<text x="4" y="18" font-size="13" font-weight="bold">{html.escape(caption)}</text>']
    for k, (name, value) in enumerate(values.items()):
        y = top_pad + k * row
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" font-size="12" '
                     f'text-anchor="end">{html.escape(name)}</text>')
        if value is None or not math.isfinite(value):
            parts.append(f'<text x="{zero_x + 4:.1f}" y="{y + 16}" font-size="12" '
                         f'fill="#888">n/a</text>')
            continue
        x_end = label_w + plot_w * (value - lo) / span
        x0, bar_w = min(zero_x, x_end), abs(x_end - zero_x)
        colour = _PALETTE[k % len(_PALETTE)]
        parts.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(bar_w, 1.0):.1f}" '
                     f'height="{row - 8}" fill="{colour}"><title>{html.escape(name)}: '
                     f'{value:.4g}</title></rect>')
        parts.append(f'<text x="{label_w + plot_w + 4}" y="{y + 16}" font-size="12">'
                     f'{value:.3g}</text>')
    parts.append(f'<line x1="{zero_x:.1f}" y1="{top_pad}" x2="{zero_x:.1f}" '
                 f'y2="{height - 6}" stroke="#333" stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)
