"""The nightly report: a Markdown summary (for a CI job summary) and an HTML
trend page, both from a ``Judgement``.

::

    <history>/report/summary.md         the summary
    <history>/report/index.html         the summary, the trend figure, every table
    <history>/report/trend.png, .svg    time and steps to target per cell over the nights
    <history>/report/tables/<name>.csv  findings, cells, bands, noise, nights, env
"""

from __future__ import annotations

import html
import io
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.display import num
from analysis.labels import fmt_lr
from analysis.nightly.compare import band_text
from analysis.nightly.trend_plots import trend_figure
from analysis.report.page import CSS
from harness import __version__
from harness.lazy import lazy
from harness.store.location import child
from harness.store.records import STATUSES

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from analysis.nightly.judge import Judgement, Night
    from analysis.nightly.noise import Rules
    from harness.store.history import History
else:
    plt = lazy("matplotlib.pyplot")

REPORT = "report"
HEADLINE = {
    "regression": "REGRESSION",
    "clean": "clean",
    "no baseline": "no baseline (nothing judged)",
}


def _short(revision: str) -> str:
    return revision[:12] + ("+dirty" if revision.endswith("+dirty") else "") if revision else "-"


def findings_display(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings formatted for reading: kind, where, baseline, tonight, change."""

    def change(f: Any) -> str:
        if f.kind == "band":
            return num(f.change, "+.2g") + ("" if pd.isna(f.change) else " decades")
        return num(f.change, "+.0%")

    return pd.DataFrame(
        {
            "kind": f.kind,
            "series": f.series,
            "lr": "" if pd.isna(f.lr) else fmt_lr(f.lr),
            "baseline": f.before,
            "tonight": f.after,
            "change": change(f),
            "threshold": num(f.threshold, "+.0%"),
        }
        for f in findings.itertuples(index=False)
    ).reindex(columns=["kind", "series", "lr", "baseline", "tonight", "change", "threshold"])


def noise_text(judgement: Judgement, rules: Rules) -> str:
    """The thresholds in one line, with how many samples each rests on."""
    parts = []
    for row in judgement.noise.itertuples(index=False):
        basis = f"{row.samples} samples" if row.samples else "floor only"
        scope = "per cell" if row.scope == "cell" else "median over all cells"
        parts.append(f"{row.metric} {scope} {row.up:+.0%} / {row.down:+.0%} ({basis})")
    floors = (
        f"floors {rules.floor_time:.0%} time, {rules.floor_steps:.0%} steps; "
        f"a cell's time must also move by more than {rules.floor_seconds:g} s"
    )
    return f"Noise thresholds (k = {rules.k:g}, {floors}): " + "; ".join(parts) + "."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def bands_display(bands: pd.DataFrame) -> pd.DataFrame:
    """Each series' band in the baseline and tonight, formatted for reading."""
    text = band_text
    return pd.DataFrame(
        {
            "series": bands["series"],
            "baseline": [
                text(lo, hi)
                for lo, hi in zip(bands["lr_low_base"], bands["lr_high_base"], strict=True)
            ],
            "tonight": [
                text(lo, hi) for lo, hi in zip(bands["lr_low"], bands["lr_high"], strict=True)
            ],
            "width change (decades)": [num(v, "+.2g") for v in bands["change_decades"]],
            "verdict": bands["verdict"],
        }
    )


def _counts(night: Night) -> str:
    return ", ".join(f"{s} {n}" for s, n in night.counts().items() if n)


def _sections(judgement: Judgement) -> list[tuple[str, pd.DataFrame]]:
    """The findings by verdict, as (title, findings), leaving out empty ones."""
    by_verdict = (
        ("Regressions", "regression"),
        ("Improvements", "improvement"),
        ("Other status changes (not regressions)", "change"),
    )
    found = judgement.findings
    return [
        (title, found[found["verdict"] == verdict])
        for title, verdict in by_verdict
        if (found["verdict"] == verdict).any()
    ]


def markdown(judgement: Judgement, rules: Rules, report_path: str | None = None) -> str:
    """The Markdown summary of a judgement."""
    night = judgement.night
    n_reg, n_imp = len(judgement.regressions), len(judgement.improvements)
    verdict = judgement.verdict
    headline = HEADLINE[verdict]
    if verdict == "regression":
        headline += f": {_count(n_reg, 'regression')}"
    lines = [
        f"## lrbench nightly: {night.grid}, {night.date}: {headline}",
        "",
        f"- Night `{night.run_id}`: {night.trials} trials ({_counts(night)})"
        + ("" if night.complete else "; **incomplete**: some trials ended in error"),
        f"- Code under test: `{_short(night.revision)}`; device: {night.device}",
        f"- Compared with: {judgement.note}",
    ]
    if judgement.baseline:
        lines.append(f"- {noise_text(judgement, rules)}")
        lines.append(f"- Improvements: {n_imp}")
    for title, frame in _sections(judgement):
        lines += ["", f"### {title}", "", findings_display(frame).to_markdown(index=False)]
    if len(judgement.env):
        lines += [
            "",
            "### Environment: what differs across these nights",
            "",
            _env_display(judgement.env).to_markdown(index=False),
        ]
    if report_path:
        lines += ["", f"Trend report: `{report_path}`"]
    return "\n".join(lines) + "\n"


def _env_display(env: pd.DataFrame) -> pd.DataFrame:
    shown = env.copy()
    for column in shown.columns[1:]:
        shown[column] = shown[column].map(lambda v: v if len(v) <= 40 else v[:37] + "...")
    return shown


def tables(judgement: Judgement) -> dict[str, pd.DataFrame]:
    """The judgement's tidy tables, by file name."""
    nights = judgement.nights.copy()
    nights["env"] = nights["env"].map(lambda e: json.dumps(e, sort_keys=True))
    return {
        "findings": judgement.findings,
        "cells": judgement.cells,
        "bands": judgement.bands,
        "noise": judgement.noise,
        "nights": nights,
        "env": judgement.env,
        "trend": judgement.trend,
    }


_CSS = (
    CSS
    + """
.regression { color: #b00; } .clean { color: #070; } .nobaseline { color: #555; }
"""
)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, na_rep="", escape=True)


def _nights_display(nights: pd.DataFrame) -> pd.DataFrame:
    shown = nights[["run_id", "date", "revision", "complete", "device", "trials", *STATUSES]].copy()
    shown["revision"] = shown["revision"].map(_short)
    return shown.iloc[::-1]


def page(judgement: Judgement, rules: Rules) -> str:
    """The HTML trend report."""
    night = judgement.night
    verdict = judgement.verdict
    css = verdict.replace(" ", "")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>lrbench nightly: {html.escape(night.grid)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>lrbench nightly: {html.escape(night.grid)}, {html.escape(night.date)}</h1>",
        f"<p class='{css}'><strong>{html.escape(HEADLINE[verdict])}</strong>: "
        f"{_count(len(judgement.regressions), 'regression')}, "
        f"{_count(len(judgement.improvements), 'improvement')}.</p>",
        f"<p>Night <code>{html.escape(night.run_id)}</code>, code under test "
        f"<code>{html.escape(_short(night.revision))}</code>, device "
        f"{html.escape(str(night.device))}. Compared with: {html.escape(judgement.note)}.</p>",
    ]
    if judgement.baseline:
        parts.append(f"<p>{html.escape(noise_text(judgement, rules))}</p>")
    for title, frame in _sections(judgement):
        parts += [f"<h2>{title}</h2>", _table(findings_display(frame))]
    parts += [
        "<h2>Trend</h2>",
        "<p>Median time and steps to target of each cell (series and learning rate) on "
        "each night of this grid and device. Nights that missed the target are marked at "
        "the top (square: budget ran out; cross: diverged); tonight's regressions are "
        "ringed in red.</p>",
        '<p><a href="trend.svg"><img src="trend.png" alt="trend"></a></p>',
    ]
    if len(judgement.env):
        parts += [
            "<h2>Environment</h2>",
            "<p>What differs across tonight and the nights before it (versions, device, "
            "driver, data fingerprints, code revision).</p>",
            _table(judgement.env),
        ]
    parts += [
        "<h2>Success bands</h2>",
        "<p>Per optimizer: the lowest to the highest learning rate that reached the "
        "target, in the baseline and tonight.</p>",
        _table(bands_display(judgement.bands)),
        "<h2>Nights</h2>",
        _table(_nights_display(judgement.nights)),
        "<h2>Tables</h2><p>"
        + " · ".join(f'<a href="tables/{n}.csv">{n}.csv</a>' for n in tables(judgement))
        + "</p>",
        f"<p><small>lrbench {__version__}</small></p></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(history: History, judgement: Judgement, rules: Rules) -> str:
    """Write ``<history>/report/``; returns the path of its ``index.html``."""
    index = child(history.root, REPORT, "index.html")
    fig = trend_figure(judgement)
    for ext in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=110)
        history.write_bytes(f"{REPORT}/trend.{ext}", buffer.getvalue())
    plt.close(fig)
    for name, frame in tables(judgement).items():
        history.write_bytes(f"{REPORT}/tables/{name}.csv", frame.to_csv(index=False).encode())
    history.write_bytes(f"{REPORT}/summary.md", markdown(judgement, rules, index).encode())
    history.write_bytes(f"{REPORT}/index.html", page(judgement, rules).encode())
    return index
