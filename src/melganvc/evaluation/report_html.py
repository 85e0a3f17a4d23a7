"""``report.json`` + a self-contained ``report.html`` (no external URL)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from melganvc.evaluation.images import _data_uri, spectrogram_pngs, svg_bar_chart, wav_bytes
from melganvc.evaluation.results import (
    ACCEPT_KEYS,
    BAR_METRICS,
    CORPUS_METRICS,
    METRICS,
    ReportExample,
    system_note,
    to_jsonable,
)
from melganvc.io.files import atomic_write_text

# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f0f0f0} td.text{text-align:left;max-width:260px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.triptych{display:flex;gap:8px;align-items:flex-start;overflow-x:auto}
.triptych figure{margin:0} figcaption{font-size:12px;color:#555}
.example{margin-bottom:28px} code{font-size:12px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str,
           text_cols: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for values in rows:
        cells = "".join(
            f'<td class="text">{_fmt(v)}</td>' if i in text_cols else f"<td>{_fmt(v)}</td>"
            for i, v in enumerate(values))
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _present(systems: Mapping[str, Any], key: str, where: str = "mean") -> bool:
    if where == "mean":
        return any(s["mean"].get(key) is not None for s in systems.values())
    return any(r.get(key) is not None for s in systems.values() for r in s["per_utterance"])


def _example_html(example: ReportExample, max_seconds: float) -> str:
    limit = int(max_seconds * example.sample_rate)
    panels = [("source", example.source), ("converted", example.converted)]
    if example.target is not None:
        panels.append(("target", example.target))
    clipped = [(label, np.asarray(w, dtype=np.float32).reshape(-1)[:limit]) for label, w in panels]
    pngs = spectrogram_pngs([w for _, w in clipped], example.sample_rate)
    figures = []
    for (label, wave), png in zip(clipped, pngs, strict=True):
        audio = _data_uri("audio/wav", wav_bytes(wave, example.sample_rate))
        figures.append(
            f'<figure><img alt="{label} spectrogram" src="{_data_uri("image/png", png)}">'
            f"<figcaption>{label} (log-mel, 0–{example.sample_rate // 2000} kHz)</figcaption>"
            f'<audio controls preload="none" src="{audio}">'
            f"</audio></figure>")
    return (f'<div class="example"><h3>{html.escape(example.name)}</h3>'
            f'<div class="triptych">{"".join(figures)}</div></div>')


def _facts_html(results: Mapping[str, Any]) -> str:
    """The run's facts: when, which version, checkpoints, judges, references."""
    facts = [("created", results.get("created")), ("melganvc", results.get("melganvc_version")),
             ("checkpoint sha256", results.get("checkpoint_sha256")),
             ("real-time factor", json.dumps(to_jsonable(results.get("rtf")))
              if results.get("rtf") is not None else None)]
    analysis = results.get("analysis") or {}
    facts += [("recogniser (CER/WER)", analysis.get("asr")),
              ("naturalness judge", analysis.get("naturalness"))]
    facts += [(f"{name} checkpoint", f"{info.get('path')} (sha256 {info.get('sha256')})")
              for name, info in (results.get("checkpoints") or {}).items()]
    refs = results.get("references", {})
    for role in ("target", "source"):
        info = refs.get(role)
        if info:
            f0 = info.get("f0", {})
            facts.append((f"{role} references",
                          f"{info.get('utterances')} utterances, F0 {_fmt(f0.get('mean_hz'))} Hz"))
    if refs.get("target_source_cosine") is not None:
        facts.append(("target–source centroid cosine", _fmt(refs["target_source_cosine"])))
    return "<p>" + "<br>".join(f"<b>{html.escape(k)}:</b> <code>{_fmt(v)}</code>"
                               for k, v in facts if v is not None) + "</p>"


def _summary_html(systems: Mapping[str, Any], metrics: Mapping[str, Any],
                  mean_keys: Sequence[str]) -> list[str]:
    """The table of means, what each system and metric is, and the bar charts."""
    corpus_keys = [k for k in CORPUS_METRICS if _present(systems, k)]
    headers = ["system", "n", *[metrics[k]["label"] for k in mean_keys],
               *[CORPUS_METRICS[k]["label"] for k in corpus_keys]]
    rows = [[name, s["mean"].get("utterances"), *[s["mean"].get(k) for k in mean_keys],
             *[s["mean"].get(k) for k in corpus_keys]] for name, s in systems.items()]
    out = ["<h2>Summary (mean over utterances)</h2>", _table(headers, rows, "summary", frozenset({0}))]
    out.append("<p>" + "<br>".join(f"<b>{html.escape(n)}</b>: {html.escape(system_note(n))}"
                                   for n in systems if system_note(n)) + "</p>")
    out.append("<p>" + "<br>".join(
        f"<b>{html.escape(metrics[k]['label'])}</b>: {html.escape(metrics[k].get('note', ''))}"
        + (f" ({html.escape(metrics[k]['better'])} is better)" if metrics[k].get("better") else "")
        for k in mean_keys) + "</p>")
    charts = [svg_bar_chart(metrics[k]["label"], {n: s["mean"].get(k) for n, s in systems.items()},
                            metrics[k].get("better", ""))
              for k in BAR_METRICS if k in mean_keys]
    if charts:
        out.append(f'<h2>Charts</h2><div class="charts">{"".join(charts)}</div>')
    return out


def _per_utterance_html(systems: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    """One table per system: every utterance's metrics and transcripts."""
    out = ["<h2>Per utterance</h2>"]
    row_keys = [*ACCEPT_KEYS.values(), *[k for k in METRICS if k not in ACCEPT_KEYS],
                "transcript", "source_transcript", "ref_transcript"]
    for name, system in systems.items():
        keys = [k for k in row_keys if any(r.get(k) is not None for r in system["per_utterance"])]
        labels = [metrics.get(k, {}).get("label", k.replace("_", " ")) for k in keys]
        text_cols = frozenset(i + 1 for i, k in enumerate(keys) if "transcript" in k)
        rows = [[r.get("name"), *[r.get(k) for k in keys]] for r in system["per_utterance"]]
        out.append(f"<h3>{html.escape(name)}</h3>")
        out.append(_table(["utterance", *labels], rows, f"per-utterance system-{html.escape(name)}",
                          text_cols))
    return out


def render_html(results: Mapping[str, Any], examples: Sequence[ReportExample] = (),
                title: str = "melganvc evaluation", max_audio_seconds: float = 6.0) -> str:
    """The report page as one string (no external resources)."""
    systems: Mapping[str, Any] = results.get("systems", {})
    metrics: Mapping[str, Any] = results.get("metrics", METRICS)
    mean_keys = [k for k in metrics if k in METRICS and _present(systems, k)]
    out = [(f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"),
           f"<h1>{html.escape(title)}</h1>", _facts_html(results),
           *_summary_html(systems, metrics, mean_keys)]
    if examples:
        out.append("<h2>Examples</h2>")
        out.extend(_example_html(e, max_audio_seconds) for e in examples)
    out += _per_utterance_html(systems, metrics)
    if results.get("config") is not None:
        config_json = json.dumps(to_jsonable(results["config"]), indent=2, sort_keys=True)
        out.append(f"<h2>Configuration</h2><details><summary>config</summary>"
                   f"<pre>{html.escape(config_json)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(out_dir: str | Path, results: Mapping[str, Any],
                 examples: Sequence[ReportExample] = (), *, config: Mapping[str, Any] | None = None,
                 checkpoint_sha256: str | None = None, title: str = "melganvc evaluation",
                 max_examples: int = 3, max_audio_seconds: float = 6.0) -> tuple[Path, Path]:
    """Write ``report.json`` (every number) and ``report.html`` atomically into ``out_dir``.

    ``config`` / ``checkpoint_sha256`` given here override those in ``results``. Only the first
    ``max_examples`` examples are embedded, each clipped to ``max_audio_seconds``, to keep the
    page small. Returns ``(json_path, html_path)``.
    """
    out_dir = Path(out_dir)
    merged = dict(results)
    if config is not None:
        merged["config"] = dict(config)
    if checkpoint_sha256 is not None:
        merged["checkpoint_sha256"] = checkpoint_sha256
    clean = to_jsonable(merged)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    atomic_write_text(json_path, json.dumps(clean, indent=2, allow_nan=False) + "\n")
    atomic_write_text(html_path, render_html(clean, list(examples)[:max_examples], title,
                                             max_audio_seconds))
    return json_path, html_path
