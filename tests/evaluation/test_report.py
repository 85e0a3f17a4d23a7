"""Report: results structure from ``evaluate_systems`` and a self-contained HTML page.

Fast and data-free: stand-in encoder / transcriber objects (the real ones are covered in
test_metrics.py) and synthetic harmonic signals.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from melganvc.evaluation.images import png_bytes, svg_bar_chart
from melganvc.evaluation.report_html import write_report
from melganvc.evaluation.results import (
    RESULTS_SCHEMA,
    EvalItem,
    ReportExample,
    sha256_file,
    to_jsonable,
)
from melganvc.evaluation.scoring import evaluate_systems
from melganvc.evaluation.spectral import mel_spectrogram_db

SR = 16000


def voice(f0: float, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """Harmonic tone with vibrato and a pause: the 'speaker' is its F0."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * (3 + seed) * t))) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0)))
    wave = wave * (np.sin(2 * np.pi * 1.3 * t) > -0.5)
    wave = 0.2 * wave / np.abs(wave).max() + 0.001 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


class FakeEncoder:
    """Embedding = normalised mean log-mel spectrum: enough to tell the stand-in voices apart."""

    def embed(self, wave: np.ndarray, sample_rate: int = SR) -> np.ndarray:
        vector = mel_spectrogram_db(wave).mean(axis=1)
        vector = vector - vector.mean()
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def embed_many(self, waves: list[np.ndarray], sample_rate: int = SR) -> np.ndarray:
        return np.stack([self.embed(w, sample_rate) for w in waves])


class FakeTranscriber:
    """'Recognises' a voice by its length; converted audio of the same length matches."""

    def transcribe(self, wave: np.ndarray, sample_rate: int = SR) -> str:
        return "they came and went" if wave.size > SR else "hello"


class FakeJudge:
    """'Naturalness' = 1 + 4 x the share of energy below 1 kHz: lower voices score higher."""

    name = "fake judge"

    def score(self, wave: np.ndarray, sample_rate: int = SR) -> float:
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        low = spectrum[: int(1000 * wave.size / sample_rate)].sum()
        return float(1 + 4 * low / spectrum.sum())

    def describe(self) -> dict:
        return {"name": self.name, "weights_sha256": "ef" * 32}


@pytest.fixture(scope="module")
def results() -> dict:
    src = [voice(220.0, seed=s) for s in range(3)]
    tgt = [voice(110.0, seed=s) for s in range(3)]
    converted = [voice(118.0, seed=s) for s in range(3)]
    names = [f"utt{i}" for i in range(3)]
    return evaluate_systems(
        {
            "converted": [EvalItem(n, c, s, t) for n, c, s, t in zip(names, converted, src, tgt,
                                                                     strict=True)],
            "identity": [(n, s, s, t) for n, s, t in zip(names, src, tgt, strict=True)],
            "oracle <b>": [EvalItem(n, t) for n, t in zip(names, tgt, strict=True)],
        },
        target_refs=tgt, source_refs=src, encoder=FakeEncoder(), transcriber=FakeTranscriber(),
        naturalness=FakeJudge(),
        config={"model": {"channels": 32}, "seed": 1}, checkpoint_sha256="ab" * 32,
        rtf={"cpu": 0.05},
    )


def test_results_structure(results: dict) -> None:
    assert results["schema"] == RESULTS_SCHEMA
    assert list(results["systems"]) == ["converted", "identity", "oracle <b>"]
    converted = results["systems"]["converted"]
    assert len(converted["per_utterance"]) == 3 and converted["mean"]["utterances"] == 3
    row = converted["per_utterance"][0]
    for key in ("name", "sim_target", "sim_source", "accepted", "cer", "wer", "mcd", "lsd",
                "f0_hz", "f0_mean_diff_st", "f0_std_ratio", "voiced_fraction", "transcript"):
        assert key in row
    assert converted["mean"]["accept_rate"] == 1.0
    assert results["systems"]["identity"]["mean"]["accept_rate"] == 0.0
    # timbre needs no model: 118 Hz harmonics sit closer to the 110 Hz voice than to 220 Hz
    assert converted["mean"]["timbre_accept"] == 1.0
    assert results["systems"]["identity"]["mean"]["timbre_accept"] == 0.0
    assert converted["mean"]["timbre_target"] > converted["mean"]["timbre_source"]
    assert results["systems"]["identity"]["mean"]["cer"] == 0.0
    oracle = results["systems"]["oracle <b>"]["mean"]
    assert oracle["mcd"] is None and oracle["cer"] is None and oracle["sim_target"] < 0.9999
    assert abs(converted["mean"]["f0_mean_diff_st"] - 12 * math.log2(118 / 110)) < 0.5
    assert results["systems"]["identity"]["mean"]["mcd"] > converted["mean"]["mcd"] > 0
    assert results["config"]["seed"] == 1 and results["rtf"] == {"cpu": 0.05}
    assert results["references"]["target"]["utterances"] == 3


def test_naturalness_and_target_reading_columns(results: dict) -> None:
    """Every system gets a naturalness score per utterance and as a mean; an item with a
    parallel reference also gets CER/WER against the reference's transcript."""
    for name, system in results["systems"].items():
        rows = system["per_utterance"]
        assert all(1.0 <= r["naturalness"] <= 5.0 for r in rows), name
        assert system["mean"]["naturalness"] == pytest.approx(
            np.mean([r["naturalness"] for r in rows]))
    converted = results["systems"]["converted"]
    assert converted["mean"]["naturalness"] > results["systems"]["identity"]["mean"][
        "naturalness"]  # 118 Hz harmonics carry more low energy than 220 Hz ones
    row = converted["per_utterance"][0]
    assert row["ref_transcript"] == "they came and went" and row["cer_ref"] == 0.0
    assert converted["mean"]["cer_ref_corpus"] == 0.0 and converted["mean"]["wer_ref"] == 0.0
    oracle = results["systems"]["oracle <b>"]
    assert oracle["mean"]["cer_ref"] is None and oracle["mean"]["cer_ref_corpus"] is None
    analysis = results["analysis"]
    assert analysis["naturalness"] == "fake judge" and analysis["asr"] == "FakeTranscriber"
    assert analysis["naturalness_details"]["weights_sha256"] == "ef" * 32
    assert {"naturalness", "asr"} <= set(results["timing_s"])


def test_summary_lines_show_naturalness_and_target_reading_cer(results: dict) -> None:
    from melganvc.evaluation.runner import summary_lines

    lines = summary_lines(results)
    header = lines[0].split()
    assert header[:2] == ["system", "naturalness"] and "cer_ref_corpus" in header
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns
    assert "fake judge" not in lines[-1] and "FakeTranscriber" in lines[-1]
    music = {"systems": {"a": {"mean": {"timbre_accept": 1.0, "naturalness": None}}}}
    assert "naturalness" not in summary_lines(music)[0]  # absent everywhere: no column


class RecordingTranscriber:
    """Records which thread transcribed what."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def transcribe(self, wave: np.ndarray, sample_rate: int = SR) -> str:
        import threading

        self.calls.append((threading.current_thread().name, wave.size))
        return "hello" if wave.size < SR else "they came and went"


def test_transcripts_run_once_each_on_one_worker_thread() -> None:
    """The recogniser runs beside the other judges on a single worker thread, once per
    distinct waveform (a source shared by two systems is heard once)."""
    src = [voice(220.0, seed=s) for s in range(2)]
    tgt = [voice(110.0, seed=s) for s in range(2)]
    recorder = RecordingTranscriber()
    results = evaluate_systems(
        {"converted": [EvalItem(f"u{i}", tgt[i], src[i], tgt[i]) for i in range(2)],
         "identity": [EvalItem(f"u{i}", src[i], src[i], tgt[i]) for i in range(2)]},
        target_refs=tgt, source_refs=src, transcriber=recorder)
    assert len(recorder.calls) == 4  # 2 sources + 2 targets; nothing twice
    assert {thread for thread, _ in recorder.calls} == {"melganvc-asr_0"}  # no concurrency
    assert results["systems"]["identity"]["mean"]["cer"] == 0.0
    assert results["timing_s"]["asr"] >= 0.0


def test_metrics_without_models_are_none() -> None:
    wave = voice(150.0)
    results = evaluate_systems({"converted": [EvalItem("a", wave, wave)]}, target_refs=[wave])
    row = results["systems"]["converted"]["per_utterance"][0]
    assert row["sim_target"] is None and row["cer"] is None and row["mcd"] is None
    assert row["f0_hz"] == pytest.approx(150.0, rel=0.05)
    assert row["timbre_target"] == pytest.approx(1.0) and row["timbre_accepted"] is None
    assert results["systems"]["converted"]["mean"]["accept_rate"] is None
    with pytest.raises(ValueError, match="target"):
        evaluate_systems({}, target_refs=[])


def test_to_jsonable() -> None:
    value = {"a": np.float32(1.5), "b": float("nan"), "c": (np.int64(2), np.bool_(True)),
             "d": np.arange(2), "e": Path("x")}
    assert to_jsonable(value) == {"a": 1.5, "b": None, "c": [2, True], "d": [0, 1], "e": "x"}


def decode_png(data: bytes) -> np.ndarray:
    """Minimal PNG reader for our writer's output (8-bit, filter 0), checking every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and b"IEND" in chunks
    channels = {0: 1, 2: 3}[colour]
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8)
    rows = raw.reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, channels).squeeze()


def test_png_writer_roundtrip() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(png_bytes(rgb)), rgb)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(decode_png(png_bytes(grey)), grey)
    with pytest.raises(ValueError):
        png_bytes(np.zeros((2, 2, 4), np.uint8))


def test_png_opens_in_pillow() -> None:
    image_module = pytest.importorskip("PIL.Image")
    rgb = np.random.default_rng(1).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    with image_module.open(io.BytesIO(png_bytes(rgb))) as image:
        np.testing.assert_array_equal(np.asarray(image), rgb)


def test_svg_bar_chart_handles_negative_and_missing() -> None:
    svg = svg_bar_chart("F0 <diff>", {"a": -2.0, "b": 3.0, "c": None}, "closer to 0")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 2 and "n/a" in svg and "F0 &lt;diff&gt;" in svg


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_cell:
            self.cells.append(data.strip())

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def test_write_report_renders_a_self_contained_page(results: dict, tmp_path: Path) -> None:
    examples = [ReportExample(f"utt{i}", voice(220.0, seed=i), voice(118.0, seed=i),
                              voice(110.0, seed=i)) for i in range(4)]
    examples[1] = ReportExample("no target", voice(220.0), voice(118.0))
    json_path, html_path = write_report(tmp_path / "out", results, examples,
                                        checkpoint_sha256="cd" * 32, max_examples=3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]

    data = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert data["checkpoint_sha256"] == "cd" * 32 and data["config"]["model"]["channels"] == 32
    assert data["systems"]["converted"]["mean"]["accept_rate"] == 1.0

    text = html_path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    tables = page.find("table")
    classes = [t.get("class") or "" for t in tables]
    assert "summary" in classes and sum("per-utterance" in c for c in classes) == 3
    assert "converted" in page.cells and "identity" in page.cells
    assert "oracle <b>" in page.cells and "<b>oracle" not in text  # escaped system name
    assert "they came and went" in page.cells
    assert "naturalness" in page.cells and "CER vs target reading" in page.cells
    assert "fake judge" in text  # the judges are named on the page
    assert "the source only resynthesised" in text  # what each known system is

    images = page.find("img")
    assert len(images) == 3 + 2 + 3  # three examples: triptych, pair (no target), triptych
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        pixels = decode_png(base64.b64decode(src.split(",", 1)[1]))
        assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50

    audio = page.find("audio")
    assert len(audio) == len(images)
    for attrs in audio:
        src = attrs["src"] or ""
        assert src.startswith("data:audio/wav;base64,")
        wave, rate = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert rate == SR and wave.size > SR // 2

    assert len(page.find("svg")) >= 5 and len(page.find("rect")) >= 10
    for name, attrs in page.tags:
        for attr in ("src", "href"):
            assert not (attrs.get(attr) or "").startswith(("http:", "https:", "//")), name
    assert "ab" * 32 not in text and "cd" * 32 in text  # the override wins

    write_report(tmp_path / "out", results)  # overwrite in place, no leftovers
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
