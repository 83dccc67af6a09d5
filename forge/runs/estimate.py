"""The pre-flight estimate `forge runs start` prints: steps, training tokens, duration and cost.

Duration comes from this machine's record: the median training pace (`train.json`
steps_per_second) of earlier finished runs of the same recipe with the same model, batch,
precision and devices, found under the project's runs; without one it is unknown, and said so (no probe
run is made). Training tokens are steps x batch size x sequence length for text data (the rows
are packed to `data.seq_len`), and the positions the model reads for token tasks once their data
is prepared (`meta.json`'s sequence length); they count padding, so they are an upper bound.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf

from forge.runs.listing import describe, find_runs


def estimate(cfg: DictConfig, roots: list[Path], recipe: Optional[str], price_per_hour: Optional[float] = None) -> dict[str, Any]:
    steps = int(cfg.trainer.max_steps)
    per_step = int(cfg.data.batch_size) * int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)
    seq_len = cfg.data.get("seq_len")
    out: dict[str, Any] = {"steps": steps, "examples_per_step": per_step,
                           "tokens": steps * per_step * int(seq_len) if seq_len else None}
    shape = _shape(OmegaConf.to_container(cfg, resolve=True))
    paces = [p for p in (_pace(run, recipe, shape) for run in find_runs(roots)) if p]
    if paces:
        pace = statistics.median(paces)
        out.update(seconds=round(steps / pace), pace_steps_per_second=round(pace, 3),
                   duration_from=f"median pace of {len(paces)} earlier run(s) of {recipe or 'this config'} on {_target(cfg)} here")
    else:
        out.update(seconds=None, duration_from=f"unknown: no finished run of {recipe or 'this config'} with this model and batch on {_target(cfg)} here yet")
    if price_per_hour is not None and out["seconds"] is not None:
        out["cost"] = round(out["seconds"] / 3600 * price_per_hour, 4)
    return out


def text(e: dict[str, Any]) -> str:
    tokens = f", at most {e['tokens']:,} training tokens" if e["tokens"] else ""
    duration = f"about {_hms(e['seconds'])} ({e['duration_from']})" if e["seconds"] is not None else e["duration_from"]
    cost = f", cost {e['cost']:.2f}" if "cost" in e else ""
    return f"estimate: {e['steps']:,} steps of {e['examples_per_step']} examples{tokens}; duration {duration}{cost}"


def _target(cfg: DictConfig) -> str:
    return f"{cfg.trainer.accelerator} x{cfg.trainer.devices}"


def _pace(run: Path, recipe: Optional[str], shape: list[Any]) -> Optional[float]:
    """The training pace of a finished earlier run of the same recipe and shape; its config is
    read last, and as plain YAML, since a project may hold many runs."""
    info = describe(run)
    if info["status"] != "finished" or info["recipe"] != recipe:
        return None
    try:
        pace = json.loads((run / "train.json").read_text()).get("steps_per_second")
        if not pace:
            return None
        earlier = yaml.load((run / "config.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return float(pace) if isinstance(earlier, dict) and _shape(earlier) == shape else None


def _shape(cfg: dict[str, Any]) -> list[Any]:
    """What sets the pace of a step: the model, the batch, the precision and the devices."""
    keys = ("model", "peft", "data.batch_size", "data.seq_len", "trainer.accelerator", "trainer.devices", "trainer.precision",
            "trainer.accumulate_grad_batches")
    out = []
    for key in keys:
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.append(node)
    return out


def _hms(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"
