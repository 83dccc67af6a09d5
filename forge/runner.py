"""One run: its stages in order in one run directory, or (with cv.folds) one run per fold.

The CLI, DVC (`--params`), sweep points and cross-validation folds all run through `run`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from omegaconf import DictConfig, OmegaConf

from forge import redact
from forge.errors import ForgeError
from forge.run_dir import RunPaths, masked_config, record_run
from forge.run_state import RunState, track
from forge.stages import ORDER, STAGES

log = logging.getLogger("forge")


@dataclass
class RunResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    # What a sweeper optimizes: the metrics named by `objective` (one number, or a list for a
    # multi-objective search); by default test exact match (pass@1 for code) when evaluated.
    objective: Optional[Union[float, list[float]]] = None


def run(cfg: DictConfig, run_dir: Path, record: bool = True) -> RunResult:
    """Run cfg.stage (or all stages) in `run_dir`, keeping its `run.json` (forge.run_state).
    `record=False` skips the config/command/git record, for DVC, whose params.yaml and dvc.lock
    already are that record."""
    paths = RunPaths(Path(run_dir))
    rank_zero = _is_rank_zero()
    # The run's API keys and passwords never reach its files or logs (forge.redact).
    with redact.active(redact.Redactor.of_run(cfg)):
        if cfg.resume:
            _check_same_run(cfg, paths)
        # One stage (a DVC pipeline runs each as its own process) adds to what earlier ones recorded.
        with track(paths.root, keep=cfg.stage != "all", active=rank_zero) as state:
            if rank_zero and record:
                record_run(cfg, paths)
            objective = cfg.get("objective") if cfg.stage in ("all", "evaluate") else None
            if cfg.cv.folds and cfg.cv.fold is None:
                result = _run_folds(cfg, paths, state, objective)
            else:
                result = _run_stages(cfg, paths, state, objective)
            state.update(objective=result.objective)
            return result


def _run_stages(cfg: DictConfig, paths: RunPaths, state: RunState, objective: Optional[Sequence[str]]) -> RunResult:
    names = ORDER if cfg.stage == "all" else (cfg.stage,)
    for name in names:
        if STAGES[name].ready is not None:
            STAGES[name].ready(cfg)
    for name in names:
        log.info("== %s", name)
        state.stage_started(name)
        STAGES[name](cfg, paths)
        if name == "train" and not _is_rank_zero():
            return RunResult()  # other ranks only train; rank 0 evaluates and exports
        state.stage_done(name, ORDER)
    result = _result(paths, objective)
    if _is_rank_zero() and cfg.stage in ("all", "evaluate"):
        from forge.summary import print_run_summary

        artifacts = {p.name: str(p) for p in (paths.last_ckpt, paths.best_ckpt, paths.model) if p.exists()}
        print_run_summary(str(paths.root), result.metrics, artifacts)
    return result


def _run_folds(cfg: DictConfig, paths: RunPaths, state: RunState, objective: Optional[Sequence[str]]) -> RunResult:
    """Cross-validation: each fold is a run of its own; the folds are this run's stages."""
    from forge.cv import run_folds

    summary = run_folds(cfg, paths.root, run, done=state.stage_done)
    means = {name: s["mean"] for name, s in summary["metrics"].items()}
    return RunResult(means, _objective(means, objective, f"the fold means of {paths.root / 'cv.json'}"))


def _result(paths: RunPaths, names: Optional[Sequence[str]] = None) -> RunResult:
    metrics = paths.read_metrics()
    where = f"{paths.train_metrics.name} or {paths.metrics.name} of {paths.root}"
    return RunResult(metrics, _objective(metrics, names, where))


def _objective(metrics: dict[str, Any], names: Optional[Sequence[str]], where: str) -> Optional[Union[float, list[float]]]:
    """The metrics `names` (one number, or a list); without names, test exact match or pass@1."""
    if not names:
        return next((v for k, v in metrics.items() if k.endswith(("/exact_match", "humaneval/pass@1")) and not k.startswith("base/")), None)
    missing = [n for n in names if not isinstance(metrics.get(n), (int, float))]
    if missing:
        known = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
        raise ForgeError(f"objective: no metric {', '.join(missing)} in {where}; metrics there: {known}")
    values = [float(metrics[n]) for n in names]
    return values[0] if len(values) == 1 else values


def _check_same_run(cfg: DictConfig, paths: RunPaths) -> None:
    """Resuming with a different config would silently mix two runs: refuse, naming the keys."""
    if not paths.config.exists():
        raise ForgeError(f"resume={cfg.resume}: {paths.config} not found; is this a forge run directory?")
    before = _flat(OmegaConf.to_container(OmegaConf.load(paths.config), resolve=True))
    now = _flat(masked_config(cfg))  # config.yaml holds the config with its secrets masked
    same_run_keys = (before.keys() | now.keys()) - {"resume", "stage"}
    changed = sorted(k for k in same_run_keys if before.get(k) != now.get(k))
    if changed:
        raise ForgeError(
            f"resume={cfg.resume}: the config differs from the run's saved config.yaml in "
            + ", ".join(f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in changed[:5])
            + ". Resume with the same overrides as the original command."
        )


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(tree, "")
    return out


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0
