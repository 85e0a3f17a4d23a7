"""The web page of ``melganvc serve`` (Gradio): upload or record, convert, listen, compare;
check whether a recording was converted (the Detect tab).

The page only wires widgets to ``serve.ConversionService``; every rule (which models, size and
duration limits, file names) lives there. Element ids (``#source``, ``#convert``, ``#result``,
``#status`` ...) are stable for the browser test and for users' own scripts.

What this file adds to Gradio's defaults, because uploads are people's voices and the page
may face other machines:

- the source takes only files uploaded to this server: Gradio would otherwise download a URL
  (or copy a server path) a client puts in the request, before our code runs;
- each upload is deleted once converted or refused; Gradio's cache (uploads never converted,
  its copies of results) lives in the service's work folder, is swept after ``CACHE_TTL_S``
  and goes with that folder on shutdown (also on SIGTERM);
- exceptions that are not ``UserError`` show as a bare "Error" (``show_error=False``): their
  text may hold server paths; run history and the MCP server (both fetch or store data the
  page does not need) are off.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from melganvc.apps.service import METHODS, QUALITIES, ConversionService
from melganvc.apps.uploads import (
    UPLOAD_GONE,
    UPLOADS,
    accept_only_uploads,
    discard_upload,
    upload_folder,
    uploaded_file,
)
from melganvc.errors import UserError

CACHE_TTL_S = 900  # Gradio deletes the files it holds once they are this old ...
CACHE_SWEEP_S = 60  # ... looking this often
HEADER = """# melganvc
Convert speech or music from one domain to another with a MelGAN-VC model.
Upload a file or record from the microphone, pick a model, press **Convert**.
For conversion while you speak, open the **Live** page (`/live`)."""


def _import_gradio():
    # Gradio phones home for analytics and version checks unless told not to; this tool is offline.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise UserError("the web UI needs Gradio: pip install 'melganvc[serve]'") from None
    return gr


def _shows_user_errors(gr: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator showing ``UserError``s as a message on the page instead of a generic
    failure. Keeps the function's name: Gradio names the HTTP endpoint after it."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any) -> Any:
            try:
                return fn(*args)
            except UserError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
        return wrapped
    return decorate


def _upload_path(upload: str | None, folder: Path) -> Path:
    """The server-side file of an upload (the source widget checked it already), or the
    ``UserError`` a user sees when there is none or it is gone."""
    if not upload:
        raise UserError("upload or record some audio first")
    path = uploaded_file(upload, folder)
    if not path.is_file():
        raise UserError(UPLOAD_GONE)
    return path


def _handlers(service: ConversionService, gr: Any) -> SimpleNamespace:
    """The page's callbacks. Gradio names each HTTP endpoint after its function
    (``/describe``), so the names are part of the page's interface."""
    user_errors = _shows_user_errors(gr)

    def convert(model: str, upload: str | None, method: str, quality: str):
        """Outputs: result audio, two mel images, download button, status line. A user mistake
        clears the outputs and shows its one-line message in the status (and as a toast).
        The upload is deleted afterwards, converted or not."""
        folder = upload_folder()
        try:
            if not upload:
                raise UserError("upload or record some audio first")
            if not model:
                raise UserError("choose a model first")
            result = service.convert(model, _upload_path(upload, folder), method, quality)
        except UserError as exc:
            gr.Warning(str(exc))
            return None, None, None, gr.DownloadButton(visible=False), f"**Error:** {exc}"
        finally:
            discard_upload(upload, folder)
        return (str(result.audio), str(result.source_mel), str(result.converted_mel),
                gr.DownloadButton(value=str(result.audio), visible=True), result.message)

    @user_errors
    def refresh_models(current: str | None):
        names = service.model_names()
        value = current if current in names else (names[0] if names else None)
        return gr.Dropdown(choices=names, value=value), describe(value)

    @user_errors
    def describe(model: str | None) -> str:
        return service.describe(model or "")

    @user_errors
    def refresh_runs(current: str | None):
        names = service.run_names()
        value = current if current in names else (names[0] if names else None)
        return (gr.Dropdown(choices=names, value=value), *progress(value))

    @user_errors
    def progress(run: str | None):
        if not run:
            return "No runs under the runs folder yet (`melganvc train --out runs/NAME`).", None
        text, rows = service.run_progress(run)
        import pandas as pd  # a Gradio dependency

        return text, pd.DataFrame(rows, columns=["step", "value", "series"])

    def detect(upload: str | None) -> str:
        """The detector's verdict on an upload (deleted afterwards), or the error message."""
        folder = upload_folder()
        try:
            return service.detect(_upload_path(upload, folder))
        except UserError as exc:
            gr.Warning(str(exc))
            return f"**Error:** {exc}"
        finally:
            discard_upload(upload, folder)

    def live(model: str, chunk: Any, session: Any):
        try:
            return service.live(model, chunk, session)
        except UserError as exc:
            gr.Warning(str(exc))
            return None, None, f"**Error:** {exc}"

    return SimpleNamespace(convert=convert, refresh_models=refresh_models, describe=describe,
                           refresh_runs=refresh_runs, progress=progress, detect=detect, live=live)


def _convert_tab(service: ConversionService, gr: Any, on: SimpleNamespace) -> SimpleNamespace:
    """Model choice, inversion settings, the source and result players and their mels."""
    models = service.model_names()
    with gr.Tab("Convert"):
        with gr.Row():
            model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                                elem_id="model", scale=4)
            reload = gr.Button("Refresh list", elem_id="refresh-models", scale=1)
        about = gr.Markdown(on.describe(models[0]) if models else on.describe(None), elem_id="about")
        with gr.Row():
            method = gr.Radio(list(METHODS), value="auto", label="Inversion",
                              info="auto: the model's own; gl: fast Griffin-Lim; grad: gradient "
                                   "inversion (slower); hifigan: neural vocoder (models trained "
                                   "on its features)")
            quality = gr.Radio(list(QUALITIES), value="standard", label="Quality",
                               info="more iterations: cleaner phase, slower")
        limits = service.limits
        with gr.Row(equal_height=True):
            source = gr.Audio(sources=["upload", "microphone"], type="filepath",
                              label=f"Source (≤ {limits.max_seconds:g} s, ≤ {limits.max_mb:g} MB)",
                              buttons=["download"], elem_id="source")
            accept_only_uploads(source, gr)
            result = gr.Audio(type="filepath", label="Converted", interactive=False,
                              buttons=["download"], elem_id="result")
        run_button = gr.Button("Convert", variant="primary", elem_id="convert")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            source_mel = gr.Image(type="filepath", label="Source mel-spectrogram",
                                  interactive=False, buttons=["fullscreen"],
                                  elem_id="source-mel")
            result_mel = gr.Image(type="filepath", label="Converted mel-spectrogram",
                                  interactive=False, buttons=["fullscreen"],
                                  elem_id="result-mel")
        download = gr.DownloadButton("Download converted audio", visible=False,
                                     elem_id="download")
    return SimpleNamespace(model=model, reload=reload, about=about, method=method,
                           quality=quality, source=source, result=result, run=run_button,
                           status=status, source_mel=source_mel, result_mel=result_mel,
                           download=download)


def _training_tab(service: ConversionService, gr: Any) -> SimpleNamespace:
    """A run's progress: its status line and loss / judge curves."""
    with gr.Tab("Training"):
        runs = service.run_names()
        with gr.Row():
            run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run",
                              elem_id="run", scale=4)
            reload_runs = gr.Button("Refresh", elem_id="refresh-runs", scale=1)
        run_status = gr.Markdown(elem_id="run-status")
        losses = gr.LinePlot(x="step", y="value", color="series", label="Losses",
                             elem_id="losses")

    return SimpleNamespace(run=run, reload=reload_runs, status=run_status, losses=losses)


def _detect_tab(service: ConversionService, gr: Any) -> SimpleNamespace:
    """Was this audio converted? The bundled detector's verdict on an upload."""
    with gr.Tab("Detect"):
        gr.Markdown("Check whether a recording was made by mel-spectrogram voice conversion or "
                    "resynthesis (this toolkit or a similar pipeline). The verdict comes from the "
                    "audio itself; a provenance tag, when present, is reported too.")
        limits = service.limits
        audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                         label=f"Audio to check (≤ {limits.max_seconds:g} s, ≤ {limits.max_mb:g} MB)",
                         elem_id="detect-source")
        accept_only_uploads(audio, gr)
        button = gr.Button("Check", variant="primary", elem_id="detect")
        verdict = gr.Markdown(elem_id="detect-status")
    return SimpleNamespace(audio=audio, run=button, verdict=verdict)


LIVE_CHUNK_S = 0.25  # how often the browser sends its microphone (Gradio ``stream_every``)


def _live_page(service: ConversionService, gr: Any) -> SimpleNamespace:
    """The browser's microphone converted as it streams, with the latency readout. A page of
    its own (``/live``): as a fourth tab beside the other three, Gradio 6.31's streaming
    microphone mostly sent no chunks in our Chromium test (with any two of them it did)."""
    models = service.model_names()
    with gr.Column():
        gr.Markdown("## Live conversion\nSpeak into the microphone: the converted voice plays "
                    "back as you talk. Latency = the model's pipeline + the browser's chunks; a noise gate keeps "
                    "silence silent. `melganvc live` on this machine's own sound card is faster.")
        model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                            elem_id="live-model")
        with gr.Row(equal_height=True):
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy",
                           label="Microphone", elem_id="live-mic")
            out = gr.Audio(streaming=True, autoplay=True, interactive=False,
                           label="Converted", elem_id="live-out")
        status = gr.Markdown(elem_id="live-status")
        session = gr.State(None)
    return SimpleNamespace(model=model, mic=mic, out=out, status=status, session=session)


def build_app(service: ConversionService):
    """The Gradio ``Blocks`` page for ``service`` (not launched)."""
    gr = _import_gradio()
    on = _handlers(service, gr)
    with gr.Blocks(title="melganvc", analytics_enabled=False,
                   delete_cache=(CACHE_SWEEP_S, CACHE_TTL_S)) as app:
        gr.Markdown(HEADER)
        c = _convert_tab(service, gr, on)
        t = _training_tab(service, gr)
        d = _detect_tab(service, gr)
        d.run.click(on.detect, [d.audio], [d.verdict])
        c.run.click(on.convert, [c.model, c.source, c.method, c.quality],
                    [c.result, c.source_mel, c.result_mel, c.download, c.status])
        c.reload.click(on.refresh_models, [c.model], [c.model, c.about])
        c.model.change(on.describe, [c.model], [c.about])
        t.reload.click(on.refresh_runs, [t.run], [t.run, t.status, t.losses])
        t.run.change(on.progress, [t.run], [t.status, t.losses])
        app.load(on.progress, [t.run], [t.status, t.losses])
    with app.route("Live", "/live"):
        live = _live_page(service, gr)
        live.mic.stream(on.live, [live.model, live.mic, live.session],
                        [live.out, live.session, live.status], stream_every=LIVE_CHUNK_S,
                        time_limit=3600)
    return app


def use_private_cache(service: ConversionService) -> Path:
    """Point Gradio's cache at ``<workdir>/uploads``: this server's alone, and deleted with
    the work folder (``service.close``). ``GRADIO_TEMP_DIR`` is read by Gradio when it makes
    components and the app, and it is process-wide: one server per process."""
    cache = service.workdir / UPLOADS
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    return cache


@contextlib.contextmanager
def sigterm_stops_server() -> Iterator[None]:
    """While serving, SIGTERM (``kill``, systemd, ``docker stop``) stops the server like
    Ctrl-C, so the caller's clean-up runs; a second SIGTERM ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(service: ConversionService, host: str = "127.0.0.1", port: int = 7860,
          block: bool = True):
    """Launch the page; returns the Gradio app. With ``block`` it serves until Ctrl-C or
    SIGTERM, then deletes Gradio's cache for it; otherwise it returns at once, serving, and
    the caller ends it with ``app.close()`` and ``service.close()`` (which deletes the cache)."""
    cache = use_private_cache(service)
    app = build_app(service)
    app.queue(default_concurrency_limit=1)  # conversions are CPU-heavy: one at a time
    with sigterm_stops_server() if block else contextlib.nullcontext():
        try:
            app.launch(server_name=host, server_port=port, max_file_size=service.limits.max_bytes,
                       prevent_thread_lock=not block, ssr_mode=False, show_error=False,
                       footer_links=[], run_history=False, mcp_server=False,
                       enable_monitoring=False)
        except OSError as exc:
            shutil.rmtree(cache, ignore_errors=True)
            raise UserError(f"cannot serve on {host}:{port} ({exc})") from None
        finally:
            if block:  # Gradio has stopped serving (Ctrl-C or SIGTERM)
                app.close(verbose=False)
                shutil.rmtree(cache, ignore_errors=True)
    return app
