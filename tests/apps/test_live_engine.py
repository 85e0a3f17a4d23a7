"""The live engine without a sound card: gate, latency, equivalence with the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST_INVERSION, speech_like

from melganvc.apps.live import LiveEngine, NoiseGate, latency_table, live_blocks

SR = 16000


@pytest.fixture(scope="module")
def converter(ckpt):
    from melganvc.conversion.converter import Converter

    return Converter.from_checkpoint(ckpt, device="cpu", inversion=FAST_INVERSION)


def blocks(x: np.ndarray, size: int):
    return [x[i:i + size] for i in range(0, x.size, size)]


def test_gate_is_closed_in_silence_open_in_sound_and_opens_early():
    gate = NoiseGate(SR, threshold_db=-40, hold_ms=100)
    quiet = np.full(SR // 2, 1e-4, np.float32)  # -80 dBFS "room noise"
    loud = (0.3 * np.sin(np.arange(SR // 2) * 0.1)).astype(np.float32)
    gains = np.concatenate([gate.push(b) for b in blocks(np.concatenate([quiet, loud, quiet]), 333)])
    assert gains.size > 1.4 * SR  # all but the last frames are decided
    assert gains[: SR // 2 - 2 * 160].max() == 0.0  # closed during the first silence
    assert (gains[SR // 2: SR].min()) == 1.0  # fully open from the sound's first sample
    hold_end = SR + int(0.1 * SR) + 2 * 160
    assert gains[hold_end: gains.size].max() == 0.0  # closed again after the hold
    assert np.all(np.abs(np.diff(gains)) <= 1 / 160 + 1e-6)  # ramps, no clicks
    assert NoiseGate(SR, threshold_db=None).push(quiet).min() == 1.0


def test_engine_returns_block_sized_output_equal_to_the_pipeline(converter):
    x = speech_like(3.0, seed=1)
    engine = LiveEngine(converter, SR, gate_db=None)
    live = np.concatenate([engine.process(b) for b in blocks(x, 320)])
    assert live.size == x.size
    lat = engine.latency_samples
    assert np.all(live[:lat] == 0)  # silence until the pipeline's latency has passed
    block_frames, overlap = live_blocks(converter)
    assert (block_frames, overlap) == (16, 8)  # the reference STFT: the smallest GL accepts
    reference = converter.stream(SR, block_frames=block_frames, overlap_frames=overlap)
    whole = reference.push(x)
    np.testing.assert_allclose(live[lat:], whole, atol=1e-5)
    assert engine.rtf > 0


def test_engine_keeps_silence_silent(converter):
    rng = np.random.default_rng(0)
    noise = (1e-3 * rng.standard_normal(2 * SR)).astype(np.float32)  # -60 dBFS hiss
    speech = speech_like(1.0, seed=2)
    x = np.concatenate([noise, speech + noise[:SR], noise])
    engine = LiveEngine(converter, SR, gate_db=-45)
    y = np.concatenate([engine.process(b) for b in blocks(x, 320)])
    assert np.abs(y[: 2 * SR - 4 * 160]).max() == 0.0  # the hiss before the speech: silent
    assert np.sqrt(np.mean(y[2 * SR: 3 * SR] ** 2)) > 0.01  # the speech: converted


def test_latency_table_adds_up(converter):
    table = latency_table(converter, SR, 320)
    assert table["input_block"] == table["output_buffer"] == 20.0
    assert table["end_to_end"] == pytest.approx(40.0 + table["pipeline_total"])
    parts = ("stft_lookahead", "chunk", "chunk_step", "postfilter", "inversion_block", "loudness")
    assert max(table[k] for k in parts) < table["pipeline_total"] <= sum(table[k] for k in parts) + 1
    assert table["postfilter"] == 0.0  # off unless the config turns it on
    filtered = latency_table(converter.with_options(postfilter=1.3), SR, 320)
    assert filtered["postfilter"] > 0
    assert filtered["pipeline_total"] == pytest.approx(table["pipeline_total"]
                                                       + filtered["postfilter"], abs=2 * 20.0)


def test_live_latency_table_takes_conversion_settings(ckpt, capsys):
    from melganvc.apps.cli import main

    rows = {}
    for strength in ("1", "1.3"):
        assert main(["live", "--ckpt", str(ckpt), "--latency-table",
                     "--set", f"conversion.postfilter={strength}"]) == 0
        lines = capsys.readouterr().out.splitlines()
        rows[strength] = {ln.split()[0]: float(ln.split()[1]) for ln in lines}
    assert rows["1"]["postfilter"] == 0.0 < rows["1.3"]["postfilter"]
    assert rows["1.3"]["pipeline_total"] > rows["1"]["pipeline_total"]
