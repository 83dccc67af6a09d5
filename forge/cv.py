"""Cross-validation of a recipe: `cv.folds=K` trains K models, fold k in `RUN/fold_k` on its own
split (forge.data.folds: k-fold, or walk-forward with `cv.scheme=walk_forward`), and reports each
metric's mean, standard deviation and 95% confidence interval over the folds in `RUN/cv.json`,
with the scheme and each fold's split sizes.

Each fold is an ordinary run directory, so folds resume independently: the same command with
`resume=RUN` skips the folds whose run.json says finished and continues an unfinished one from
its last checkpoint. One fold alone is `cv.fold=k` (e.g. one cluster job per fold:
`forge -m cv.folds=5 cv.fold=0,1,2,3,4`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from forge import atomic
from forge.run_dir import RunPaths
from forge.run_state import read_state

log = logging.getLogger(__name__)


def run_folds(
    cfg: DictConfig, run_dir: Path, run_fold: Callable[[DictConfig, Path], Any], done: Callable[[str], None]
) -> dict[str, Any]:
    """Run (or, with resume, finish) every fold with `run_fold(fold_cfg, fold_dir)` (the runner,
    whose result has `.metrics`), call `done(fold_name)` as each is finished, and return the
    cross-validation summary. A fold is finished when its run.json says so."""
    folds = cfg.cv.folds
    per_fold: list[dict[str, Any]] = []
    for k in range(folds):
        fold_dir = run_dir / f"fold_{k}"
        state = read_state(fold_dir)
        if cfg.resume and state is not None and state["status"] == "finished":
            log.info("cv: fold %d of %d already finished in %s", k, folds, fold_dir)
            per_fold.append(RunPaths(fold_dir).read_metrics())
        else:
            fold_cfg = OmegaConf.merge(cfg, {"cv": {"fold": k}, "stage": "all"})
            fold_cfg.resume = str(fold_dir) if cfg.resume and (fold_dir / "checkpoints" / "last.ckpt").exists() else None
            log.info("cv: fold %d of %d in %s%s", k, folds, fold_dir, " (resumed)" if fold_cfg.resume else "")
            per_fold.append(run_fold(fold_cfg, fold_dir).metrics)
        done(fold_dir.name)
    fold_dirs = [run_dir / f"fold_{k}" for k in range(folds)]
    summary = {"scheme": cfg.cv.scheme, "folds": folds, "fold_dirs": [str(d) for d in fold_dirs],
               "sizes": [_sizes(d) for d in fold_dirs], "metrics": aggregate(per_fold)}
    if cfg.cv.scheme == "walk_forward":
        summary.update(gap=cfg.cv.gap, max_train=cfg.cv.max_train)
    atomic.write_json(run_dir / "cv.json", summary)
    print_cv(summary)
    return summary


def _sizes(fold_dir: Path) -> Optional[dict[str, int]]:
    """The fold's train / val / test rows, from its prepared data's meta.json (None when gone)."""
    try:
        return json.loads((RunPaths(fold_dir).data / "meta.json").read_text())["sizes"]
    except (OSError, ValueError, KeyError):
        return None


def aggregate(per_fold: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sample standard deviation and Student-t 95% interval of every numeric metric all
    folds report."""
    from scipy.stats import t

    names = [k for k, v in per_fold[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for name in names:
        values = [float(m[name]) for m in per_fold if isinstance(m.get(name), (int, float))]
        if len(values) != len(per_fold):
            continue
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else float("nan")
        out[name] = {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "values": values}
    return out


def print_cv(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    if summary["scheme"] == "walk_forward":
        window = f", sliding window of {summary['max_train']}" if summary["max_train"] else ""
        title = f"walk-forward validation: {summary['folds']} folds, gap {summary['gap']}{window}"
    else:
        title = f"cross-validation: {summary['folds']} folds"
    sizes = summary["sizes"]
    caption = "train / val rows per fold: " + "  ".join(f"{s['train']}/{s['val']}" for s in sizes) if all(sizes) else None
    table = Table(title=f"{title} (95% interval: Student t)", caption=caption)
    for column in ("metric", "mean", "std", "95% interval", "per fold"):
        table.add_column(column)
    for name, s in summary["metrics"].items():
        lo, hi = s["ci95"]
        table.add_row(name, f"{s['mean']:.4g}", f"{s['std']:.3g}", f"[{lo:.4g}, {hi:.4g}]", " ".join(f"{v:.4g}" for v in s["values"]))
    Console().print(table)
