"""``melganvc serve`` against a hostile (or just careless) client, over HTTP, no browser.

The page is served in this process on a free localhost port (the SIGTERM test starts the CLI)
and driven with Gradio's plain HTTP API: ``POST /gradio_api/upload`` (multipart) and
``POST /gradio_api/call/<endpoint>`` followed by its event stream, as ``curl`` would. Checks:
client-named URLs and server paths are never fetched or read, uploads are deleted once used,
messages name models rather than server paths, and a stopped server leaves nothing behind.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from conftest import make_checkpoint, speech_like

from melganvc.apps import uploads, webui
from melganvc.apps.catalog import Catalog
from melganvc.apps.service import ConversionService, Limits
from melganvc.errors import UserError

pytest.importorskip("gradio")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen | None = None, log: Path | None = None,
                  timeout: float = 120) -> None:
    """Poll ``url`` (a safety-net timeout only; nothing here depends on speed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                if proc is not None:
                    proc.kill()
                pytest.fail(f"server did not start:\n{log.read_text() if log else ''}")
            time.sleep(0.3)


def upload(base: str, path: Path) -> str:
    """Upload a file as the page does; the server path Gradio stored it under."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{path.name}"\r\nContent-Type: audio/wav\r\n\r\n').encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{base}gradio_api/upload", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())[0]


def call(base: str, endpoint: str, *data: Any) -> tuple[str, Any]:
    """Run an endpoint through the queue: ``("complete", outputs)`` or ``("error", message)``."""
    request = urllib.request.Request(f"{base}gradio_api/call/{endpoint}",
                                     data=json.dumps({"data": list(data)}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base}gradio_api/call/{endpoint}/{event_id}",
                                timeout=300) as response:
        stream = response.read().decode()
    event = data_line = None
    for line in stream.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data_line = line.removeprefix("data: ")
    payload = json.loads(data_line) if data_line else None
    if event == "error":
        return "error", (payload or {}).get("error")
    return event, payload


def file_data(path: str, **fields: Any) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, **fields}


@dataclass
class Site:
    base: str
    service: ConversionService
    root: Path
    app: Any

    @property
    def model(self) -> str:
        return self.service.model_names()[0]

    def results(self) -> list[Path]:
        return sorted(self.service.workdir.glob("*/*.wav"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile")
    ckpt = make_checkpoint(root / "toy.pt")
    broken = root / "runs" / "broken"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    service = ConversionService(Catalog((ckpt,), root / "runs", bundled=False),
                                Limits(max_mb=1.0, max_seconds=3.0), device="cpu",
                                workdir=root / "work")
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(root / "unused"))  # restored after; serve sets its own
        app = webui.serve(service, "127.0.0.1", port, block=False)
        base = f"http://127.0.0.1:{port}/"
        try:
            wait_until_up(base)
            yield Site(base, service, root, app)
        finally:
            app.close()
            service.close()


# --- 1. no server-side fetches -----------------------------------------------------------


@pytest.fixture
def counting_http_server():
    """A local HTTP server that counts requests (stands in for an internal service)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"RIFF")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL Gradio tries to download. Gradio blocks loopback itself but fetches public
    addresses, so its download functions are replaced by recorders: a URL with any host can
    be sent without traffic leaving this machine."""
    import gradio.processing_utils as pu
    import safehttpx

    seen: list[str] = []

    async def record_async(url: str, *args: Any, **kwargs: Any):
        seen.append(str(url))
        raise RuntimeError("download attempted")

    def record(url: str, *args: Any, **kwargs: Any):
        seen.append(str(url))
        raise RuntimeError("download attempted")

    for name in ("async_ssrf_protected_download", "async_ssrf_protected_get"):
        monkeypatch.setattr(pu, name, record_async)
    for name in ("ssrf_protected_download", "save_url_to_cache", "unsafe_download"):
        monkeypatch.setattr(pu, name, record)
    monkeypatch.setattr(safehttpx, "get", record_async)
    return seen


def test_client_urls_are_never_fetched(site: Site, counting_http_server: tuple[str, list[str]],
                                       fetches: list[str]) -> None:
    local, hits = counting_http_server
    before = site.results()
    payloads = (file_data(f"{local}/voice.wav"),
                file_data(f"{local}/voice.wav", url=f"{local}/voice.wav"),
                file_data("http://voices.example.com/voice.wav"),  # a "public" host
                file_data("https://10.0.0.7/voice.wav", orig_name="voice.wav"))
    answers = [call(site.base, "convert", site.model, payload, "gl", "fast")
               for payload in payloads]
    assert fetches == [], "the server tried to download a URL the client named"
    assert hits == []
    assert site.results() == before
    assert answers == [("error", uploads.NOT_UPLOADED)] * len(payloads)
    # Marked as a stream, Gradio leaves the path alone: the handler refuses it instead.
    event, outputs = call(site.base, "convert", site.model,
                          file_data(f"{local}/voice.wav", is_stream=True), "gl", "fast")
    assert (event, outputs[-1]) == ("complete", f"**Error:** {uploads.NOT_UPLOADED}")
    assert fetches == [] and hits == [] and site.results() == before


@pytest.mark.parametrize("where", ["checkpoint", "workdir", "etc"])
def test_server_paths_are_never_read(site: Site, where: str) -> None:
    victim = {"checkpoint": site.root / "toy.pt",
              "workdir": site.service.workdir / "secret.wav",
              "etc": Path("/etc/passwd")}[where]
    if where == "workdir":
        victim.parent.mkdir(parents=True, exist_ok=True)
        sf.write(victim, speech_like(1.0), 16000)
    before = site.results()
    event, _ = call(site.base, "convert", site.model, file_data(str(victim)), "gl", "fast")
    assert event == "error"
    assert site.results() == before
    assert victim.exists()


def test_guard_writes_no_stub_files(site: Site) -> None:
    """Subclassing a Gradio component makes Gradio write ``<module>.pyi`` beside the source
    (into the package when installed): the guard must not be a subclass."""
    assert not any(Path(m.__file__).with_suffix(".pyi").exists() for m in (webui, uploads))


def test_upload_only_checks() -> None:
    folder = Path("/srv/cache").resolve()
    assert uploads.uploaded_file(folder / "ab" / "x.wav", folder) == folder / "ab" / "x.wav"
    for bad in ("http://x/y.wav", "file:///srv/cache/ab/x.wav", "//host/share/x.wav",
                str(folder), str(folder / ".." / "etc" / "x"), "", None, 3, {"path": "x"}):
        with pytest.raises(UserError, match="only audio uploaded"):
            uploads.uploaded_file(bad, folder)


# --- 3. messages name models, not server paths ---------------------------------------------


def test_errors_name_models_not_server_paths(site: Site, capfd: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    source = tmp_path / "hello.wav"
    sf.write(source, speech_like(1.0), 16000)
    event, outputs = call(site.base, "convert", "run: broken",
                          file_data(upload(site.base, source)), "gl", "fast")
    status = outputs[-1]
    assert event == "complete" and status.startswith("**Error:** run: broken: corrupt"), status
    event, message = call(site.base, "describe", "run: broken")
    assert event == "error" and message.startswith("run: broken: corrupt"), message
    for shown in (status, message):
        assert str(site.root) not in shown and "checkpoint.pt" not in shown
        assert "\n" not in shown
    assert str(site.root / "runs" / "broken" / "checkpoint.pt") in capfd.readouterr().err


# --- 4. uploads do not outlive their use ---------------------------------------------------


def test_uploads_are_deleted_once_converted_or_refused(site: Site, tmp_path: Path) -> None:
    good = tmp_path / "hello.wav"
    sf.write(good, speech_like(1.5), 16000)
    long = tmp_path / "long.wav"
    sf.write(long, speech_like(4.0), 16000)
    for source, expected in ((good, "converted 1.5 s"),
                             (long, "**Error:** long.wav: 4 s is longer than the 3 s limit")):
        stored = Path(upload(site.base, source))
        assert stored.is_file()
        event, outputs = call(site.base, "convert", site.model, file_data(str(stored)), "gl",
                              "fast")
        assert event == "complete" and outputs[-1].startswith(expected), outputs[-1]
        assert not stored.exists() and not stored.parent.exists()
        assert site.service.workdir.resolve() in stored.resolve().parents  # a private cache
        event, outputs = call(site.base, "convert", site.model, file_data(str(stored)), "gl",
                              "fast")  # pressing Convert again: a clear message
        assert outputs[-1] == f"**Error:** {uploads.UPLOAD_GONE}"
    frequency, age = site.app.delete_cache  # what is never converted goes within minutes
    assert frequency <= 60 and age <= 900


def test_sigterm_removes_work_folder_and_cache(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "toy.pt")
    temp, gradio_env = tmp_path / "tmp", tmp_path / "gradio-env"
    temp.mkdir()
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(temp),
               GRADIO_TEMP_DIR=str(gradio_env))
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "melganvc", "serve", "--ckpt", str(ckpt), "--no-bundled",
             "--runs", str(tmp_path / "runs"), "--port", str(port), "--device", "cpu"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(base, proc, log)
        source = tmp_path / "never converted.wav"
        sf.write(source, speech_like(1.0), 16000)
        kept = Path(upload(base, source))
        converted = Path(upload(base, tmp_path / "toy.pt"))  # any upload: refused, deleted
        event, outputs = call(base, "convert", f"file: {ckpt}", file_data(str(converted)),
                              "gl", "fast")
        assert event == "complete" and outputs[-1].startswith("**Error:**")
        assert kept.is_file() and len(list(temp.glob("melganvc-serve-*"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}:\n{log.read_text()}"
    assert not kept.exists()
    assert list(temp.glob("melganvc-serve-*")) == [], log.read_text()
    assert not gradio_env.exists() or not any(gradio_env.rglob("*"))
    shutil.rmtree(temp, ignore_errors=True)
