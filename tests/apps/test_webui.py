"""``melganvc serve`` end to end in a real browser: Debian's Chromium driven by Playwright.

Starts the CLI on a free localhost port, uploads a short wav, converts, fetches the result the
page plays and checks it (non-silent, right duration); then a corrupt and a too-long upload,
the Training tab, the Detect tab, and a recording from Chromium's fake microphone. The screenshot is kept in ``test-artifacts/web-ui.png``.

Needs ``playwright`` (Python package; its own browser download is not used) and Chromium at
``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it and sets
``MELGANVC_REQUIRE_BROWSER=1`` so a missing browser fails CI instead of skipping).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, make_checkpoint, speech_like

ROOT = REPO
ARTIFACTS = ROOT / "test-artifacts"
# Headless as root in a closed network: no sandbox, and none of Chromium's background traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 # a fake microphone (a beeping tone) that needs no permission prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def chromium_path() -> str:
    path = os.environ.get("MELGANVC_CHROMIUM") or shutil.which("chromium") or ""
    missing = []
    if not path:
        missing.append("Chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("MELGANVC_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    chromium_path()
    root = tmp_path_factory.mktemp("webui")
    ckpt = make_checkpoint(root / "toy.pt")
    runs = root / "runs"
    (runs / "toy-run").mkdir(parents=True)
    shutil.copy(ckpt, runs / "toy-run" / "checkpoint.pt")
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_TEMP_DIR=str(root / "gradio"))
    with open(root / "serve.log", "w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "melganvc", "serve", "--ckpt", str(ckpt), "--runs", str(runs),
             "--no-bundled", "--port", str(port), "--max-seconds", "3.5", "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    proc.kill()
                    pytest.fail(f"melganvc serve did not start:\n{log.read()}")
                time.sleep(0.5)
        yield url, root
        proc.terminate()
        proc.wait(timeout=30)


def test_upload_convert_listen(server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, root = server
    good = root / "hello.wav"
    sf.write(good, speech_like(2.0, sr=22050), 22050)
    bad = root / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    long = root / "long.wav"
    sf.write(long, speech_like(4.0), 16000)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, timeout=60_000)
        expect(page.locator("#about")).to_contain_text("16000 Hz", timeout=30_000)

        upload = page.locator("#source input[type=file]")
        upload.set_input_files(str(good))
        expect(page.locator("#source button[aria-label='Download']").first).to_be_visible(
            timeout=30_000)
        page.locator("#convert").click()
        expect(page.locator("#status")).to_contain_text("converted 2.0 s", timeout=120_000)
        link = page.locator("#result a[download]").first
        expect(link).to_have_attribute("download", "hello_toy.wav")
        audio, rate = fetch_result(page)
        assert rate == 22050 and abs(audio.shape[0] / rate - 2.0) < 1e-3
        assert np.sqrt(np.mean(audio**2)) > 0.01, "converted audio is silent"
        expect(page.locator("#result-mel img")).to_be_visible()
        expect(page.locator("#download")).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-ui.png"), full_page=True)

        for path, message in ((bad, "broken.wav: not a readable audio file"),
                              (long, "long.wav: 4 s is longer than the 3.5 s limit")):
            page.locator("#source button[aria-label='Clear']").first.click()
            upload.set_input_files(str(path))
            expect(page.locator("#source button[aria-label='Download']").first).to_be_visible(
                timeout=30_000)
            page.locator("#convert").click()
            expect(page.locator("#status")).to_contain_text(message, timeout=60_000)
            expect(page.locator("#download")).to_be_hidden()

        page.get_by_role("tab", name="Training").click()
        expect(page.locator("#run-status")).to_contain_text("toy-run", timeout=30_000)
        browser.close()


def fetch_result(page) -> tuple[np.ndarray, int]:
    """The converted audio the page offers (the download link of the result player)."""
    href = page.locator("#result a[download]").first.get_attribute("href")
    with urllib.request.urlopen(href, timeout=30) as response:
        return sf.read(io.BytesIO(response.read()))


def test_record_from_microphone(server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_context(permissions=["microphone"]).new_page()
        page.goto(url, timeout=60_000)
        page.locator("#source button[aria-label='Record audio']").click()
        page.locator("#source button", has_text="Record").first.click()
        page.wait_for_timeout(2000)
        page.locator("#source button", has_text="Stop").first.click()
        # The recording uploads after Stop; convert once the server holds it (its Download
        # button appears then; converting earlier answers "upload or record some audio").
        expect(page.locator("#source button[aria-label='Download']").first).to_be_visible(
            timeout=30_000)
        page.locator("#convert").click()
        expect(page.locator("#status")).to_contain_text("converted", timeout=120_000)
        audio, rate = fetch_result(page)
        assert 1.0 < audio.shape[0] / rate <= 3.5, "the 2 s recording did not arrive whole"
        assert np.sqrt(np.mean(audio**2)) > 0.01
        browser.close()


def test_detect_tab(server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, root = server
    good = root / "check-me.wav"
    sf.write(good, speech_like(2.0), 16000)
    bad = root / "check-broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, timeout=60_000)
        page.get_by_role("tab", name="Detect").click()
        upload = page.locator("#detect-source input[type=file]")
        for path, message in ((good, "that check-me.wav was made by mel-spectrogram"),
                              (bad, "check-broken.wav: not a readable audio file")):
            if path is bad:
                page.locator("#detect-source button[aria-label='Clear']").first.click()
            upload.set_input_files(str(path))
            expect(page.locator("#detect-source button[aria-label='Download']").first
                   ).to_be_visible(timeout=30_000)
            page.locator("#detect").click()
            expect(page.locator("#detect-status")).to_contain_text(message, timeout=60_000)
        browser.close()


def test_live_page_streams_the_microphone(server: tuple[str, Path]) -> None:
    """Chromium's fake capture plays a speech file; the Live page streams it through the
    server and plays the converted chunks, with the latency readout."""
    from playwright.sync_api import expect, sync_playwright

    url, root = server
    voice = root / "fake-mic.wav"
    sf.write(voice, np.tile(speech_like(2.0, sr=48000), 3), 48000, subtype="PCM_16")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=[
            *CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={voice}"])
        page = browser.new_context(permissions=["microphone"]).new_page()
        page.goto(url + "live", timeout=60_000)
        page.locator("#live-mic button", has_text="Record").first.click()
        expect(page.locator("#live-status")).to_contain_text("latency", timeout=60_000)
        page.wait_for_timeout(1500)
        status = page.locator("#live-status").inner_text()
        page.locator("#live-mic button", has_text="Stop").first.click()
        seconds = float(status.split("live ")[1].split(" s")[0])
        assert seconds >= 0.5, status  # several chunks went through
        assert "RTF" in status and "conversion" in status
        browser.close()
