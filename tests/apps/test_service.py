"""The service behind ``melganvc serve`` (no browser): catalogue, limits, conversion, progress;
bundled models and the ``models`` / ``export-generator`` / ``serve`` commands."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_checkpoint, speech_like

from melganvc.apps.catalog import Catalog
from melganvc.apps.cli import main
from melganvc.apps.service import (
    MAX_LOADED_MODELS,
    QUALITY,
    ConversionService,
    Limits,
    public_message,
    safe_name,
)
from melganvc.config import apply_overrides, preset_config
from melganvc.conversion.converter import Converter
from melganvc.errors import UserError
from melganvc.io import pretrained
from melganvc.io.checkpoint import CheckpointError, resolve_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "g.pt")


@pytest.fixture
def service(ckpt: Path, tmp_path: Path) -> ConversionService:
    svc = ConversionService(Catalog((ckpt,), tmp_path / "runs", bundled=False),
                            Limits(max_mb=1.0, max_seconds=3.0), device="cpu",
                            workdir=tmp_path / "work")
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def small_run(tiny_corpora: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from melganvc.training.loop import fit

    cfg = apply_overrides(preset_config("tiny"), ["train.steps=4", "train.log_every=1",
                                                  "train.eval_every=0", "train.checkpoint_every=4"])
    runs = tmp_path_factory.mktemp("runs")
    fit(cfg, *tiny_corpora, runs / "group" / "tiny", progress=False)
    return runs


def write(path: Path, seconds: float, sr: int = 16000) -> Path:
    sf.write(path, speech_like(seconds, sr=sr), sr)
    return path


def test_convert_writes_audio_and_mel_images(service: ConversionService, tmp_path: Path) -> None:
    name = service.model_names()[0]
    source = write(tmp_path / "my voice (1).wav", 1.5, sr=22050)
    result = service.convert(name, source, "gl", "fast")
    audio, rate = sf.read(result.audio)
    assert rate == 22050 and audio.shape == (int(1.5 * 22050),)
    assert np.sqrt(np.mean(audio**2)) > 0.01
    assert result.audio.parent.parent == service.workdir
    assert result.audio.name == "my_voice_1_g.wav"
    for png in (result.source_mel, result.converted_mel):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "real-time factor" in result.message and result.seconds == pytest.approx(1.5)


GL_GRAD = sorted(key for key in QUALITY if key[0] != "hifigan")  # the bundled models' features


@pytest.mark.parametrize(("method", "quality"), GL_GRAD)
def test_quality_settings_reach_the_inverter(service: ConversionService, method: str,
                                             quality: str) -> None:
    conv = service.converter(service.model_names()[0], method, quality)
    assert conv.inversion.method == method
    for key, value in QUALITY[(method, quality)].items():
        assert getattr(conv.inversion, key) == value


def test_auto_is_the_models_own_inversion_and_hifigan_needs_its_features(
        service: ConversionService) -> None:
    name = service.model_names()[0]
    assert service.converter(name).inversion.method == "gl"  # "auto": the checkpoint's (gl)
    assert service.converter(name, "auto", "fast").inversion.gl_iters == 8
    with pytest.raises(UserError, match="inversion.method=hifigan needs the vocoder's own"):
        service.converter(name, "hifigan", "standard")


def test_generator_is_loaded_once_per_model(service: ConversionService) -> None:
    name = service.model_names()[0]
    first = service.converter(name, "gl", "fast")
    assert service.converter(name, "grad", "high").generator is first.generator


def test_converters_are_built_once_per_quality(service: ConversionService) -> None:
    """A new converter per request re-made its inverter's buffers every time (memory churn
    in a long-running server); now each (model, method, quality) is built once."""
    name = service.model_names()[0]
    built = {key: service.converter(name, *key) for key in GL_GRAD}
    for _ in range(3):
        for key, conv in built.items():
            assert service.converter(name, *key) is conv
            assert service.converter(name, *key).inverter() is conv.inverter()
    assert service.loaded_models() == {name: len(GL_GRAD)}


def test_models_in_memory_are_bounded(ckpt: Path, tmp_path: Path) -> None:
    copies = [shutil.copy(ckpt, tmp_path / f"m{i}.pt") for i in range(MAX_LOADED_MODELS + 2)]
    svc = ConversionService(Catalog(tuple(map(Path, copies)), bundled=False), device="cpu",
                            workdir=tmp_path / "w")
    for name in svc.model_names():
        svc.converter(name, "gl", "fast")
    assert list(svc.loaded_models()) == svc.model_names()[-MAX_LOADED_MODELS:]


def test_conversions_run_on_one_thread(service: ConversionService, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Web servers call from whichever worker thread is free. Each thread that converted got
    its own malloc arena and OpenMP team, and kept a conversion's peak: RSS 330 MB -> 1 GB.
    Every conversion must run on the service's one thread, whoever calls."""
    import melganvc.evaluation.images

    workers: set[int] = set()
    original = melganvc.evaluation.images.spectrogram_pngs

    def spy(*args, **kwargs):
        workers.add(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(melganvc.evaluation.images, "spectrogram_pngs", spy)
    source = write(tmp_path / "a.wav", 0.5)
    callers = [ThreadPoolExecutor(1) for _ in range(4)]  # all alive: four distinct threads
    try:
        for pool in callers * 2:
            pool.submit(service.convert, service.model_names()[0], source, "gl", "fast").result()
    finally:
        for pool in callers:
            pool.shutdown()
    assert len(workers) == 1 and threading.get_ident() not in workers


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "file: /etc/passwd",
                                  "bundled: ../g", ""])
def test_only_listed_models_load(service: ConversionService, name: str) -> None:
    with pytest.raises(UserError, match="unknown model"):
        service.converter(name)


def test_unknown_quality_is_refused(service: ConversionService) -> None:
    with pytest.raises(UserError, match="quality"):
        service.converter(service.model_names()[0], "gl", "ultra")


def test_limits_name_the_upload(service: ConversionService, tmp_path: Path) -> None:
    name = service.model_names()[0]
    long = write(tmp_path / "long.wav", 3.5)
    with pytest.raises(UserError, match=r"long\.wav: 4 s is longer than the 3 s limit"):
        service.convert(name, long)
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros((10000, 60), np.float32), 16000)  # 16-bit: 1.2 MB in 0.6 s
    with pytest.raises(UserError, match=r"big\.wav: 1\.1 MB is over the 1 MB upload limit"):
        service.convert(name, big)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(UserError, match=r"^bad\.wav: not a readable audio file"):
        service.convert(name, bad)
    assert not any(service.workdir.glob("*/*.wav"))  # nothing half-written


def test_messages_name_models_not_server_paths(ckpt: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Messages go to the browser: they name the model as the list does. A checkpoint
    deleted, or damaged, after the server started showed its absolute path."""
    gone = Path(shutil.copy(ckpt, tmp_path / "gone.pt"))
    runs = tmp_path / "runs"
    (runs / "bad").mkdir(parents=True)
    (runs / "bad" / "checkpoint.pt").write_bytes(b"")
    svc = ConversionService(Catalog((gone,), runs, bundled=False), device="cpu",
                            workdir=tmp_path / "w")
    gone.unlink()
    source = write(tmp_path / "a.wav", 0.5)
    names = svc.model_names()  # still lists it: refused when chosen
    assert names == [f"file: {gone}", "run: bad"]
    with pytest.raises(UserError) as excinfo:
        svc.convert(names[0], source)
    assert str(excinfo.value).startswith(f"file: {gone}: ")
    for call in (lambda: svc.convert("run: bad", source), lambda: svc.describe("run: bad")):
        with pytest.raises(UserError) as excinfo:
            call()
        message = str(excinfo.value)
        assert message == "run: bad: corrupt or truncated checkpoint (empty file)", message
    assert str(runs / "bad" / "checkpoint.pt") in capsys.readouterr().err  # the server's log
    svc.close()


def test_public_message_hides_other_paths() -> None:
    ckpt = Path("/srv/models/runs/x/checkpoint.pt")
    text = f"{ckpt}: corrupt (see /usr/lib/python3/torch/serialization.py, line 3)"
    assert public_message(text, "run: x", (ckpt,)) == (
        "run: x: corrupt (see <server path>, line 3)")
    assert public_message("odd\nreason and/or 1/2", "m", ()) == "m: odd reason and/or 1/2"


def test_safe_name_never_yields_a_path() -> None:
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("....") == "audio"
    assert safe_name("a b/c\\d:e") == "a_b_c_d_e"


def test_runs_appear_and_report_progress(small_run: Path, ckpt: Path, tmp_path: Path) -> None:
    svc = ConversionService(Catalog((), small_run, bundled=False), workdir=tmp_path / "w")
    assert svc.model_names() == ["run: group/tiny"]
    assert svc.run_names() == ["group/tiny"]
    text, rows = svc.run_progress("group/tiny")
    assert "step 4 of 4" in text
    series = {r["series"] for r in rows}
    assert {"loss/critic", "loss/adv", "loss/travel"} <= series
    assert sorted({r["step"] for r in rows}) == [1, 2, 3, 4]
    assert "trained 4 steps" in svc.describe("run: group/tiny")
    with pytest.raises(UserError):
        svc.run_progress("../group/tiny")


# --- bundled models --------------------------------------------------------------------------


@pytest.fixture
def fake_bundle(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pretrained"
    folder.mkdir()
    assert main(["export-generator", "--ckpt", str(ckpt), str(folder / "toy-voice.pt")]) == 0
    (folder / "toy-voice.md").write_text("# toy-voice: a test model\n\nUntrained tiny G.\n")
    monkeypatch.setattr(pretrained, "_folder", lambda: folder)
    return folder


def test_bundled_name_resolves_and_converts(fake_bundle: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("toy-voice") == fake_bundle / "toy-voice.pt"
    assert Converter.from_checkpoint("toy-voice", device="cpu").sample_rate == 16000
    assert main(["models"]) == 0
    assert "toy-voice" in capsys.readouterr().out and "a test model" in pretrained.model_card(
        "toy-voice")
    (tmp_path / "toy-voice").mkdir()  # a local folder of that name wins over the bundled model
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_checkpoint("toy-voice")
    svc = ConversionService(Catalog(), workdir=tmp_path / "w")
    assert svc.model_names() == ["bundled: toy-voice"]
    assert "Untrained tiny G." in svc.describe("bundled: toy-voice")
    own = make_checkpoint(tmp_path / "own.pt")  # named with --ckpt: listed (and selected) first
    assert ConversionService(Catalog((own,)), workdir=tmp_path / "w2").model_names() == [
        f"file: {own}", "bundled: toy-voice"]


def test_missing_checkpoint_lists_bundled_models(fake_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="bundled model: toy-voice"):
        resolve_checkpoint(tmp_path / "nope")


def test_export_generator_is_small_and_equivalent(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "g16.pt"
    assert main(["export-generator", "--ckpt", str(ckpt), str(out)]) == 0
    assert out.stat().st_size < 0.6 * ckpt.stat().st_size
    mel = np.random.default_rng(0).uniform(-1, 1, (192, 48)).astype(np.float32)
    full = Converter.from_checkpoint(ckpt, device="cpu").convert_mel(mel)
    half = Converter.from_checkpoint(out, device="cpu").convert_mel(mel)
    assert np.abs(full - half).max() < 1e-2


@pytest.mark.parametrize("args", [["--port", "0"], ["--max-mb", "0"],
                                  ["--runs", "nowhere", "--no-bundled"]])
def test_serve_refuses_bad_options(args: list[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *args]) == 2
    assert capsys.readouterr().err.startswith("melganvc: error: ")


def test_real_bundled_models_have_cards() -> None:
    for name, path in pretrained.bundled_models().items():
        card = pretrained.model_card(name)
        assert card.startswith(f"# {name}"), f"{name}: model card missing or untitled"
        for needed in ("## Data", "## Training", "## Measured"):
            assert needed in card, f"{name}: model card lacks {needed!r}"
        assert Converter.from_checkpoint(path, device="cpu").generator is not None


def test_detect_gives_a_verdict_and_one_line_errors(service: ConversionService,
                                                    tmp_path: Path) -> None:
    verdict = service.detect(write(tmp_path / "voice.wav", 2.0))
    assert verdict.startswith(("**Real**", "**Converted**")) and "voice.wav" in verdict
    assert "probability" in verdict and "no provenance tag" in verdict
    with pytest.raises(UserError, match=r"long\.wav: 4 s is longer than the 3 s limit"):
        service.detect(write(tmp_path / "long.wav", 3.5))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(UserError, match=r"^silent\.wav: silent or too short to judge"):
        service.detect(silent)


def test_live_chunks_keep_their_length_and_report_latency(service: ConversionService) -> None:
    name = service.model_names()[0]
    pcm = (speech_like(1.0, sr=48000) * 20000).astype(np.int16)  # a browser's rate and format
    session, outputs = None, []
    for i in range(0, pcm.size, 12000):  # 250 ms chunks
        (rate, out), session, status = service.live(name, (48000, pcm[i:i + 12000]), session)
        assert rate == 48000 and out.dtype == np.int16 and out.size == 12000
        outputs.append(out)
    assert session is not None and session.seconds == pytest.approx(1.0)
    assert "latency" in status and "RTF" in status
    first = session
    _, session, _ = service.live(name, (16000, pcm[:1600]), session)  # new rate: new engine
    assert session is not first and session.rate == 16000
    assert service.live(name, None, session) == (None, None, "")
    with pytest.raises(UserError, match="unknown model"):
        service.live("nope", (16000, pcm[:1600]), None)
