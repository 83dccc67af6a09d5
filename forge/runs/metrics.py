"""`forge runs metrics RUN [NAME...]`: a run's curves, read back from the files its logger wrote.

Lightning's CSVLogger (logger=csv) writes RUN/csv/metrics.csv: a `step` and an `epoch` column,
then one column per metric, each row holding only what was logged at that call. DVCLive
(logger=dvclive) writes one RUN/dvclive/plots/metrics/NAME.tsv per metric (NAME may contain
`/`), with a `step` column and one named after NAME's last part. Both are read when both are
there, and every series says which files it came from.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from forge import atomic
from forge.config.errors import suggest
from forge.errors import ForgeError
from forge.runs import chart

Curve = list[tuple[int, float]]

CSV_FILE = Path("csv") / "metrics.csv"
DVCLIVE_DIR = Path("dvclive") / "plots" / "metrics"
# Lightning's bookkeeping, not a curve: the CSV's index columns, and the epoch DVCLive logs as a
# metric of its own.
_NOT_METRICS = frozenset({"step", "epoch"})
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 30  # the most bars a sparkline gets when --every is not given
USAGE = "forge runs metrics RUN [NAME ...] [--every N] [--json] [--plot FILE.png]"


def series(run_dir: Path) -> dict[str, Curve]:
    """Every logged metric of the run: name -> (step, value) points in step order."""
    return _logged(Path(run_dir))[0]


def origins(run_dir: Path) -> dict[str, list[str]]:
    """The files (relative to the run directory) each metric of `series` was read from."""
    return _logged(Path(run_dir))[1]


def summary(curve: Curve) -> dict[str, Any]:
    """first, last, min and max (each with its step; the earliest on a tie), mean and count.
    min, max and mean skip non-finite values (a diverged loss), which stay in first and last."""
    finite = [(s, v) for s, v in curve if math.isfinite(v)]
    low = min(finite, key=lambda p: p[1], default=(None, None))
    high = max(finite, key=lambda p: p[1], default=(None, None))
    return {
        "count": len(curve),
        "first_step": curve[0][0], "first": curve[0][1],
        "last_step": curve[-1][0], "last": curve[-1][1],
        "min_step": low[0], "min": low[1],
        "max_step": high[0], "max": high[1],
        "mean": statistics.fmean(v for _, v in finite) if finite else None,
    }


def sample(curve: Curve, every: int) -> Curve:
    """Every `every`-th point from the first, and always the last (where the run is now)."""
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    points = curve[::every]
    if curve and (len(curve) - 1) % every:
        points.append(curve[-1])
    return points


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, eight heights over the values' own range; a flat curve is a row of
    middle bars, a non-finite value a space."""
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)

    def bar(v: float) -> str:
        if not math.isfinite(v):
            return " "
        if hi == lo:
            return SPARK[3]
        return SPARK[min(int((v - lo) / (hi - lo) * len(SPARK)), len(SPARK) - 1)]

    return "".join(bar(v) for v in values)


def main(argv: list[str]) -> None:
    args = _parser().parse_intermixed_args(argv)
    if args.run is None:
        raise ForgeError(f"the following arguments are required: RUN. Usage: {USAGE}")
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise ForgeError(f"no run directory at '{run_dir}': RUN is the folder a run wrote (its hydra.run.dir, e.g. outputs/DATE/TIME).")
    if args.every is not None and args.every < 1:
        raise ForgeError(f"--every must be a whole number of at least 1, not {args.every}.")
    curves, sources = _logged(run_dir)
    if not curves:
        raise ForgeError(
            f"run '{run_dir}' has no logged metrics: looked for {run_dir / CSV_FILE} and {run_dir / DVCLIVE_DIR}/*.tsv. "
            "Train with logger=csv or logger=dvclive to log curves."
        )
    for name in args.names:
        if name not in curves:
            raise ForgeError(f"run '{run_dir}' logged no metric '{name}'.{suggest(name, curves)} Known: {', '.join(curves)}.")
    chosen = {name: curves[name] for name in (args.names or curves)}
    shown = {name: sample(c, args.every) if args.every else c for name, c in chosen.items()}
    if args.plot:
        _write_plot(Path(args.plot), shown)
    if args.json:
        print(json.dumps({name: {"points": [[s, _finite(v)] for s, v in shown[name]],
                                 "summary": {k: _finite(v) for k, v in summary(c).items()},
                                 "from": sources[name]} for name, c in chosen.items()}))
        return
    _table(run_dir, chosen, shown, sources, args.every)
    if args.plot:
        print(f"wrote {args.plot}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2
        raise ForgeError(f"{message}. Usage: {USAGE}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="forge runs metrics", usage=USAGE, description="A run's logged curves: summary statistics and a sparkline per metric.")
    # RUN is optional to argparse only because parse_intermixed_args (which lets flags come
    # between names) would otherwise report a missing RUN as "RUN, NAME"; main requires it.
    p.add_argument("run", metavar="RUN", nargs="?", help="the run directory")
    p.add_argument("names", metavar="NAME", nargs="*", help="metrics to show (all by default), e.g. train/loss")
    p.add_argument("--every", type=int, metavar="N", help="keep every Nth point of each curve, and the last; the summary is of every point")
    p.add_argument("--json", action="store_true", help="print {name: {points, summary, from}} as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the curves to a PNG, one panel per metric")
    return p


def _logged(run_dir: Path) -> tuple[dict[str, Curve], dict[str, list[str]]]:
    """The curves of every source, merged: a step logged more than once (a resumed run logs the
    steps after its checkpoint again) keeps the value logged last, the one on the path to the
    final weights."""
    by_step: dict[str, dict[int, float]] = {}
    sources: dict[str, list[str]] = {}
    for path, curves in _read_csv(run_dir / CSV_FILE) + _read_dvclive(run_dir / DVCLIVE_DIR):
        for name, curve in curves.items():
            by_step.setdefault(name, {}).update(curve)
            sources.setdefault(name, []).append(path.relative_to(run_dir).as_posix())
    names = sorted(by_step)
    return {n: sorted(by_step[n].items()) for n in names}, {n: sources[n] for n in names}


def _read_csv(path: Path) -> list[tuple[Path, dict[str, Curve]]]:
    if not path.is_file():
        return []
    curves: dict[str, Curve] = {}
    for row in _rows(path, ","):
        step = _number(row.get("step"))
        if step is None:
            continue
        for name, cell in row.items():
            value = _number(cell)
            if name is not None and name not in _NOT_METRICS and value is not None:
                curves.setdefault(name, []).append((int(step), value))
    return [(path, curves)]


def _read_dvclive(folder: Path) -> list[tuple[Path, dict[str, Curve]]]:
    found = []
    for path in sorted(folder.rglob("*.tsv")) if folder.is_dir() else []:
        name = path.relative_to(folder).with_suffix("").as_posix()
        if name in _NOT_METRICS:
            continue
        points = [(int(s), v) for row in _rows(path, "\t")
                  if (s := _number(row.get("step"))) is not None and (v := _number(row.get(path.stem))) is not None]
        if points:
            found.append((path, {name: points}))
    return found


def _rows(path: Path, delimiter: str) -> list[dict[str, Optional[str]]]:
    text = path.read_text(encoding="utf-8")
    # The logger may be writing as this reads (DVCLive appends, CSVLogger rewrites): a last line
    # without its line end is not whole yet, and is left for the next read.
    text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def _number(cell: Optional[str]) -> Optional[float]:
    try:
        return float(cell) if cell else None
    except ValueError:
        return None


def _finite(v: Any) -> Any:
    """JSON has no NaN or Infinity: a non-finite value is null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"


def _table(run_dir: Path, chosen: dict[str, Curve], shown: dict[str, Curve], sources: dict[str, list[str]], every: Optional[int]) -> None:
    """One row per metric. Printed to a terminal, rich fits the table to its width; piped, the
    table keeps its natural width, so no number is cut short."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=10_000)
    loggers = {tuple(Path(f).parts[0] for f in sources[name]) for name in chosen}  # ("csv",), ("dvclive",) or both
    one_source = len(loggers) == 1 and len(next(iter(loggers))) == 1
    table = Table(title=f"{run_dir}: {len(chosen)} metric{'s' * (len(chosen) != 1)}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("metric", "points", "first", "last", "min @step", "max @step", "mean"):
        table.add_column(column, justify="left" if column == "metric" else "right", no_wrap=True)
    table.add_column("curve", no_wrap=True)
    if not one_source:
        table.add_column("from", no_wrap=True)
    for name, curve in chosen.items():
        s = summary(curve)
        spark = shown[name] if every else sample(curve, math.ceil(len(curve) / SPARK_WIDTH))
        row = [name, str(s["count"]), _fmt(s["first"]), _fmt(s["last"]), f"{_fmt(s['min'])} @{s['min_step']}",
               f"{_fmt(s['max'])} @{s['max_step']}", _fmt(s["mean"]), sparkline([v for _, v in spark])]
        table.add_row(*row, *([] if one_source else [", ".join(sources[name])]))
    if one_source:
        table.caption = "from " + (CSV_FILE.as_posix() if loggers == {("csv",)} else f"{DVCLIVE_DIR.as_posix()}/NAME.tsv")
        table.caption_justify = "left"
    console.print(table)


def _write_plot(path: Path, curves: dict[str, Curve]) -> None:
    try:
        with atomic.atomic_open(path, "wb") as f:
            f.write(chart.render(curves))
    except OSError as e:
        raise ForgeError(f"cannot write the plot to '{path}': {e.strerror}. Pass --plot the path of a PNG file to write.") from None
