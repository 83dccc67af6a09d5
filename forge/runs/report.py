"""`forge runs report`: one self-contained HTML page of runs, their curves and their metrics.

The page needs no network: its charts are PNGs drawn by forge.runs.chart and embedded as data:
URIs, and its style is inline (DVC's own `dvc plots show` page loads vega from a CDN and is blank
offline). It shows a table of the runs, each logged curve with every run overlaid on one scale,
the final metrics side by side, and, for models registered from these runs, their versions and
stage history.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from forge.errors import ForgeError
from forge.runs import chart
from forge.runs.listing import describe
from forge.runs.metrics import series

STYLE = ("body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 24px}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
         "img{display:block;margin:4px 0 16px}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px}")


def build(runs: list[Path], models: Optional[list[dict[str, Any]]] = None) -> str:
    infos = [describe(r) for r in runs]
    curves = [_curves(r) for r in runs]
    names = [Path(i["run"]).name for i in infos]
    parts = [f"<h1>forge runs report</h1><p>{len(runs)} run(s), made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>",
             "<h2>Runs</h2>", _table(["run", "status", "recipe", "started", "stages done"],
                                     [[_swatch(i) + html.escape(n), r["status"], r["recipe"] or "", r["started"] or "",
                                       ", ".join(r["stages_done"])] for i, (n, r) in enumerate(zip(names, infos))], raw_first=True)]
    metric_names = sorted({m for c in curves for m in c})
    if metric_names:
        parts.append("<h2>Curves</h2>")
        for metric in metric_names:
            png = chart.overlay(metric, [c.get(metric, []) for c in curves])
            parts.append(f'<img alt="{html.escape(metric)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    final = sorted({k for r in infos for k in r["metrics"]})
    if final:
        parts.append("<h2>Metrics</h2>")
        parts.append(_table(["metric", *names], [[k, *(_fmt(r["metrics"].get(k)) for r in infos)] for k in final]))
    for model in models or []:
        parts.append(f"<h2>Model {html.escape(model['name'])}</h2>")
        parts.append(_table(["version", "run", "stages"], [[v["version"], v.get("run", ""), ", ".join(v.get("stages", []))]
                                                           for v in model.get("versions", [])]))
        if model.get("history"):
            parts.append(_table(["when", "stage", "version", "tag"], [[h["time"], h["stage"], h["version"] or "(unassigned)", h["tag"]]
                                                                      for h in model["history"]]))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>forge runs report</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def _curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    try:
        return series(run)
    except ForgeError:  # a run without logged curves still has its row and metrics
        return {}


def _swatch(i: int) -> str:
    return f'<span class="swatch" style="background:{chart.color(i)}"></span>'


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list[Any]], raw_first: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if (raw_first and j == 0) else html.escape(str(c))}</td>" for j, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
