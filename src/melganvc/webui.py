"""The web page of ``melganvc serve`` (Gradio): upload or record, convert, listen, compare.

The page only wires widgets to ``serve.ConversionService``; every rule (which models, size and
duration limits, file names) lives there. Element ids (``#source``, ``#convert``, ``#result``,
``#status`` ...) are stable for the browser test and for users' own scripts.
"""

from __future__ import annotations

import os
from typing import Any

from melganvc.errors import UserError
from melganvc.serve import METHODS, QUALITIES, ConversionService

HEADER = """# melganvc
Convert speech or music from one domain to another with a MelGAN-VC model.
Upload a file or record from the microphone, pick a model, press **Convert**."""


def _import_gradio():
    # Gradio phones home for analytics and version checks unless told not to; this tool is offline.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise UserError("the web UI needs Gradio: pip install 'melganvc[serve]'") from None
    return gr


def build_app(service: ConversionService):
    """The Gradio ``Blocks`` page for ``service`` (not launched)."""
    gr = _import_gradio()

    def user_errors(fn):
        """Show ``UserError``s as a message on the page instead of a generic failure."""
        def wrapped(*args: Any):
            try:
                return fn(*args)
            except UserError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
        return wrapped

    def convert(model: str, upload: str | None, method: str, quality: str):
        """Outputs: result audio, two mel images, download button, status line. A user mistake
        clears the outputs and shows its one-line message in the status (and as a toast)."""
        try:
            if not upload:
                raise UserError("upload or record some audio first")
            if not model:
                raise UserError("choose a model first")
            result = service.convert(model, upload, method, quality)
        except UserError as exc:
            gr.Warning(str(exc))
            return None, None, None, gr.DownloadButton(visible=False), f"**Error:** {exc}"
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

    models = service.model_names()
    with gr.Blocks(title="melganvc", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(HEADER)
        with gr.Tab("Convert"):
            with gr.Row():
                model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                                    elem_id="model", scale=4)
                reload = gr.Button("Refresh list", elem_id="refresh-models", scale=1)
            about = gr.Markdown(describe(models[0]) if models else describe(None), elem_id="about")
            with gr.Row():
                method = gr.Radio(list(METHODS), value="gl", label="Inversion",
                                  info="gl: fast Griffin-Lim; grad: gradient inversion (slower)")
                quality = gr.Radio(list(QUALITIES), value="standard", label="Quality",
                                   info="more iterations: cleaner phase, slower")
            limits = service.limits
            with gr.Row(equal_height=True):
                source = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                  label=f"Source (≤ {limits.max_seconds:g} s, ≤ {limits.max_mb:g} MB)",
                                  buttons=["download"], elem_id="source")
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
        with gr.Tab("Training"):
            runs = service.run_names()
            with gr.Row():
                run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run",
                                  elem_id="run", scale=4)
                reload_runs = gr.Button("Refresh", elem_id="refresh-runs", scale=1)
            run_status = gr.Markdown(elem_id="run-status")
            losses = gr.LinePlot(x="step", y="value", color="series", label="Losses",
                                 elem_id="losses")

        run_button.click(convert, [model, source, method, quality],
                         [result, source_mel, result_mel, download, status])
        reload.click(refresh_models, [model], [model, about])
        model.change(describe, [model], [about])
        reload_runs.click(refresh_runs, [run], [run, run_status, losses])
        run.change(progress, [run], [run_status, losses])
        app.load(progress, [run], [run_status, losses])
    return app


def serve(service: ConversionService, host: str = "127.0.0.1", port: int = 7860,
          block: bool = True):
    """Launch the page; returns the Gradio app (already serving when ``block`` is false)."""
    app = build_app(service)
    app.queue(default_concurrency_limit=1)  # conversions are CPU-heavy: one at a time
    try:
        app.launch(server_name=host, server_port=port, max_file_size=service.limits.max_bytes,
                   prevent_thread_lock=not block, ssr_mode=False, show_error=True,
                   footer_links=[])
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc})") from None
    return app
