"""The ``evaluate`` report: one self-contained HTML page with its plots embedded, and the figures as JSON.

``write_report(run, directory)`` writes ``report.html`` and ``report.json``. Plots are drawn with
matplotlib's Agg backend (no display; the ``evaluate`` extra) and embedded as PNG data URIs, so the page
opens from anywhere with nothing beside it. Image URLs appear only redacted (``worker.redact``).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from worker.errors import ConfigurationError
from worker.evaluation.confusion import DECISIONS, ConfusionMatrix
from worker.evaluation.evaluate import EvaluationRun
from worker.evaluation.sweep import TagSweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HTML_FILE, JSON_FILE = "report.html", "report.json"
_STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1080px;color:#1b1b1b}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.missed{color:#a40000;font-weight:600}.met{color:#166a16}
img{max-width:100%;border:1px solid #ddd}.plots{display:grid;grid-template-columns:1fr 1fr;gap:1em}"""


def write_report(run: EvaluationRun, directory: Path) -> Path:
    """Write ``report.html`` and ``report.json`` into ``directory`` (created); returns the HTML path.

    Raises ``ConfigurationError`` when matplotlib (the ``evaluate`` extra) is not installed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / JSON_FILE).write_bytes(orjson.dumps(run.figures(), option=orjson.OPT_INDENT_2))
    page = directory / HTML_FILE
    page.write_text(render_html(run), encoding="utf-8")
    return page


def render_html(run: EvaluationRun) -> str:
    """The report page."""
    plots = _plots(run)
    matrix = run.score.matrix
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8><title>moderation-worker evaluate</title>",
        f"<style>{_STYLE}</style><h1>Evaluation of policy <code>{_e(run.score.policy_version)}</code></h1>",
        f"<p>Labeled set <code>{_e(run.labeled_set.name)}</code>: {len(run.collected.observations)} images; "
        f"analyzer <code>{_e(run.analyzer)}</code> (model {_e(', '.join(run.model_versions) or '-')}); "
        f"{run.collected.analyzer_calls} analyzer calls, {run.collected.cached} analyses from the cache; "
        f"{run.score.refused} images refused by the analyzer.</p>",
        _targets_html(run),
        "<h2>Decisions against the labels</h2>",
        _matrix_html(matrix, "label", "decided"),
        _rates_html(run),
        f"<div class=plots>{plots}</div>",
        "<h2>Suggested thresholds</h2>",
        "<p>reject_at per tag, review_at searched for the whole blocklist, on this set alone; written to "
        "the suggested policy file, never applied.</p>",
        _suggestions_html(run),
        "<h2>What the suggested policy would change</h2>",
        _matrix_html(run.suggested_diff.matrix, "current policy", "suggested policy"),
        "<h2>Images</h2>",
        _images_html(run),
        "</html>",
    ]
    return "\n".join(parts)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _targets_html(run: EvaluationRun) -> str:
    if run.targets.reject_precision is None and run.targets.approve_miss_rate is None:
        return "<p>No targets given.</p>"
    if not run.missed:
        return "<p class=met>Every target is met.</p>"
    items = "".join(f"<li>{_e(missed)}</li>" for missed in run.missed)
    return f"<p class=missed>Targets missed:</p><ul class=missed>{items}</ul>"


def _matrix_html(matrix: ConfusionMatrix, rows: str, columns: str) -> str:
    head = "".join(f"<th>{columns}: {_e(str(decision))}</th>" for decision in DECISIONS)
    body = "".join(
        f"<tr><th class=l>{rows}: {_e(str(row))}</th>"
        + "".join(f"<td>{count}</td>" for count in counts)
        + "</tr>"
        for row, counts in zip(DECISIONS, matrix.rows(), strict=True)
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _rates_html(run: EvaluationRun) -> str:
    current, suggested = run.score.matrix, run.suggested_score.matrix
    rows = (
        ("harmful approved (of images labeled rejected)", "harmful_approved_rate"),
        ("harmless rejected (of images labeled approved)", "harmless_rejected_rate"),
        ("approve miss rate (of images labeled review or rejected)", "approve_miss_rate"),
        ("reject precision (of images rejected)", "reject_precision"),
        ("sent to review (of all images)", "review_share"),
    )
    body = "".join(
        f"<tr><td class=l>{label}</td><td>{_pct(getattr(current, name))}</td>"
        f"<td>{_pct(getattr(suggested, name))}</td></tr>"
        for label, name in rows
    )
    return f"<table><tr><th class=l>rate</th><th>current</th><th>suggested</th></tr>{body}</table>"


def _suggestions_html(run: EvaluationRun) -> str:
    body = "".join(
        f"<tr><td class=l>{_e(s.tag)}</td><td>{s.review_at:.4g}</td>"
        f"<td>{'never' if s.reject_at is None else f'{s.reject_at:.4g}'}</td><td>{_pct(s.precision)}</td>"
        f"<td>{_pct(s.review_load)}</td><td>{s.harmful}</td><td>{s.should_flag}</td></tr>"
        for s in run.suggestions
    )
    head = (
        "<tr><th class=l>tag</th><th>review_at</th><th>reject_at</th><th>precision</th><th>review load</th>"
        "<th>harmful</th><th>should flag</th></tr>"
    )
    if not run.suggested_missed:
        verdict = "<p class=met>The suggested policy meets every target on this set.</p>"
    else:
        items = "".join(f"<li>{_e(missed)}</li>" for missed in run.suggested_missed)
        verdict = f"<p class=missed>Even the suggested policy misses:</p><ul class=missed>{items}</ul>"
    return f"<table>{head}{body}</table>{verdict}"


def _images_html(run: EvaluationRun) -> str:
    body = "".join(
        f"<tr><td class=l>{_e(str(row['image']))}</td><td>{_e(str(row['expected']))}</td>"
        f"<td>{_e(str(row['decided']))}</td><td>{_e(str(row['suggested']))}</td><td class=l>"
        + _e(str(row["error_code"]) if row["error_code"] else _tags_text(row["tags"]))
        + "</td></tr>"
        for row in run.image_rows()
    )
    head = (
        "<tr><th class=l>image</th><th>label</th><th>decided</th><th>suggested</th><th class=l>top tags</th>"
    )
    return f"<table>{head}</tr>{body}</table>"


def _tags_text(tags: object) -> str:
    pairs = tags if isinstance(tags, list) else []
    return ", ".join(f"{name} {confidence:.2f}" for name, confidence in pairs)


def _plots(run: EvaluationRun) -> str:
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional extra, loaded on demand

        mpl.use("Agg")
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            "the report's plots need the `evaluate` extra: pip install 'moderation-worker[evaluate]'"
        ) from exc
    figures = (
        ("Precision and recall per tag", _precision_recall(Figure(figsize=(5.2, 4)), run.score.sweeps)),
        ("Review load against miss rate per tag", _load_vs_miss(Figure(figsize=(5.2, 4)), run.score.sweeps)),
        ("Confusion matrix", _confusion(Figure(figsize=(5.2, 4)), run.score.matrix)),
    )
    return "".join(
        f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{_png(figure)}">'
        f"<figcaption>{_e(title)}</figcaption></figure>"
        for title, figure in figures
    )


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _precision_recall(figure: Figure, sweeps: Sequence[TagSweep]) -> Figure:
    axes = figure.subplots()
    for sweep in sweeps:
        points = [
            (p.recall, p.precision) for p in sweep.points if p.recall is not None and p.precision is not None
        ]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", markersize=3, label=sweep.tag)
    axes.set(
        xlabel="recall (harmful images flagged)", ylabel="precision", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02)
    )
    _legend(axes)
    return figure


def _load_vs_miss(figure: Figure, sweeps: Sequence[TagSweep]) -> Figure:
    axes = figure.subplots()
    for sweep in sweeps:
        points = [
            (p.flagged_share, p.miss_rate) for p in sweep.points if None not in (p.flagged_share, p.miss_rate)
        ]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", markersize=3, label=sweep.tag)
    axes.set(
        xlabel="share of images flagged (review load)",
        ylabel="miss rate",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
    )
    _legend(axes)
    return figure


def _legend(axes: Axes) -> None:
    handles, _ = axes.get_legend_handles_labels()
    if handles:
        axes.legend(fontsize="small")
    axes.grid(alpha=0.3)


def _confusion(figure: Figure, matrix: ConfusionMatrix) -> Figure:
    axes = figure.subplots()
    rows = matrix.rows()
    axes.imshow(rows, cmap="Blues")
    labels = [str(decision) for decision in DECISIONS]
    axes.set_xticks(range(3), labels)
    axes.set_yticks(range(3), labels)
    axes.set(xlabel="decided", ylabel="label")
    peak = max((count for row in rows for count in row), default=0)
    for y, row in enumerate(rows):
        for x, count in enumerate(row):
            axes.text(
                x, y, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black"
            )
    return figure
