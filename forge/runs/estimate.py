"""The pre-flight estimate `forge runs start` prints: steps, training tokens, duration, peak memory
and cost, each saying where it comes from.

Duration and peak memory come from this machine's record: earlier finished runs of the same
recipe with the same model, batch, precision, devices and stages, found under the project's
runs (no probe run is made; without such a run they are unknown, and said so). Training takes
max_steps over the median training pace (`train.json` steps_per_second, the loop itself); the
run adds the median time those runs spent outside it (start, data, evaluation, export: their
wall time, from `forge runs start` to their exit when they were started so, less their loop).
Peak memory is the highest peak those runs recorded (`train.json` peak_rss_mb, peak_cuda_mb).

Training tokens, once the data is prepared: for text data, the non-padding tokens the run will
read, counted on the prepared rows (tokenized with the model's tokenizer) the way the loader
draws them (forge.runs.tokens); for token tasks, the positions the model reads (steps x batch x
the prepared sequence length). Before preparing, text data gives a bound from the data config
(steps x batch x data.seq_len, padding counted).
"""

from __future__ import annotations

import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf

from forge.run_dir import read_json
from forge.runs.launch import EXIT_FILE, LAUNCH_FILE
from forge.runs.listing import describe, find_runs

SHAPE_KEYS = ("model", "peft", "data.batch_size", "data.seq_len", "trainer.accelerator", "trainer.devices", "trainer.precision",
              "trainer.accumulate_grad_batches", "stage")


def estimate(cfg: DictConfig, roots: list[Path], recipe: Optional[str], price_per_hour: Optional[float] = None) -> dict[str, Any]:
    max_steps = int(cfg.trainer.max_steps)
    per_step = int(cfg.data.batch_size) * int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)
    shape = _shape(OmegaConf.to_container(cfg, resolve=True))
    records = [r for r in (_record(run, recipe, shape) for run in find_runs(roots)) if r]
    out: dict[str, Any] = {"steps": max_steps, "max_steps": max_steps, "examples_per_step": per_step}
    of = f"{recipe or 'this config'} on {_target(cfg)} here"
    if records:
        pace = statistics.median(r["pace"] for r in records)
        train_seconds = max_steps / pace
        budget = cfg.trainer.get("max_minutes")
        if budget and train_seconds > budget * 60:  # trainer.max_minutes ends it first
            train_seconds, out["steps"] = budget * 60, int(pace * budget * 60)
        outside = [r["outside"] for r in records if r["outside"] is not None]
        out.update(pace_steps_per_second=round(pace, 3), train_seconds=round(train_seconds),
                   outside_seconds=round(statistics.median(outside)) if outside else None,
                   duration_from=f"median pace of {len(records)} earlier run(s) of {of}")
        out["seconds"] = out["train_seconds"] + (out["outside_seconds"] or 0)
    else:
        out.update(seconds=None, duration_from=f"unknown: no finished run of {recipe or 'this config'} with this model and batch on "
                                               f"{_target(cfg)} here yet")
    peaks = {k: max(r[k] for r in records if r.get(k)) for k in ("peak_rss_mb", "peak_cuda_mb") if any(r.get(k) for r in records)}
    out.update(peaks, peak_memory_from=f"the highest of {sum(1 for r in records if r.get('peak_rss_mb'))} earlier run(s) of {of}"
               if peaks else "unknown: no earlier run of this shape recorded its peak memory here")
    out.update(_tokens(cfg, out["steps"]))
    if price_per_hour is not None and out["seconds"] is not None:
        out["cost"] = round(out["seconds"] / 3600 * price_per_hour, 4)
    return out


def text(e: dict[str, Any]) -> str:
    steps = f"{e['steps']:,} steps" + (f" (trainer.max_minutes ends it before {e['max_steps']:,})" if e["steps"] != e["max_steps"] else "")
    tokens = _tokens_text(e["tokens"], e["tokens_from"])
    if e["seconds"] is None:
        duration = e["duration_from"]
    else:
        outside = f" + {_hms(e['outside_seconds'])} outside training" if e.get("outside_seconds") is not None else ""
        duration = f"about {_hms(e['seconds'])} (training {_hms(e['train_seconds'])}{outside}; {e['duration_from']})"
    if "peak_rss_mb" in e:
        cuda = f", {e['peak_cuda_mb']:,.0f} MiB on the GPU" if "peak_cuda_mb" in e else ""
        memory = f"peak memory {e['peak_rss_mb']:,.0f} MiB resident{cuda} ({e['peak_memory_from']})"
    else:
        memory = f"peak memory {e['peak_memory_from']}"
    cost = f"; cost {e['cost']:.2f}" if "cost" in e else ""
    return f"estimate: {steps} of {e['examples_per_step']} examples; {tokens}; duration {duration}; {memory}{cost}"


def _tokens_text(tokens: Optional[int], source: Optional[str]) -> str:
    if source == "counted":
        return f"{tokens:,} training tokens (counted on the prepared data with the model's tokenizer)"
    if source == "expected":
        return (f"about {tokens:,} training tokens (counted on the prepared data with the model's tokenizer; "
                "the rows the loader's shuffle picks at the rows' mean)")
    if source == "positions":
        return f"{tokens:,} training positions (steps x batch x the prepared data's sequence length)"
    if source == "bound":
        return (f"at most {tokens:,} training tokens (a bound from the data config: steps x batch x data.seq_len, padding counted; "
                "counted once the data is prepared)")
    return "training tokens unknown until the data is prepared (stage=prepare)"


def _tokens(cfg: DictConfig, steps: int) -> dict[str, Any]:
    from forge.runs.tokens import prepared, text_rows, trained_tokens

    seq_len = cfg.data.get("seq_len")
    per_step = int(cfg.data.batch_size) * int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)
    devices = cfg.trainer.devices
    world = int(cfg.trainer.num_nodes) * devices if isinstance(devices, int) else None
    data = None if cfg.cv.get("folds") or cfg.curriculum.get("_target_") else prepared(cfg)  # folds and curricula pick other rows
    if data is not None and world:
        per_row = text_rows(data)
        if per_row is None:
            meta = read_json(data / "meta.json") or {}
            return {"tokens": steps * per_step * world * int(meta["seq_len"]), "tokens_from": "positions", "data": str(data)}
        counted = trained_tokens(per_row, int(cfg.data.batch_size), steps, int(cfg.trainer.accumulate_grad_batches or 1), world)
        if counted is not None:
            return {"tokens": counted[0], "tokens_from": "counted" if counted[1] else "expected", "data": str(data)}
    if seq_len:
        return {"tokens": steps * per_step * (world or 1) * int(seq_len), "tokens_from": "bound"}
    return {"tokens": None, "tokens_from": None}


def _target(cfg: DictConfig) -> str:
    return f"{cfg.trainer.accelerator} x{cfg.trainer.devices}"


def _record(run: Path, recipe: Optional[str], shape: list[Any]) -> Optional[dict[str, Any]]:
    """Pace, time outside the training loop and peak memory of a finished earlier run of the same
    recipe and shape; its config is read last, and as plain YAML, since a project may hold many runs."""
    info = describe(run)
    if info["status"] != "finished" or info["recipe"] != recipe:
        return None
    train = read_json(run / "train.json") or {}
    pace, steps = train.get("steps_per_second"), train.get("steps")
    if not pace:
        return None
    try:
        earlier = yaml.load((run / "config.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(earlier, dict) or _shape(earlier) != shape:
        return None
    wall = _wall_seconds(run, info)
    outside = max(0.0, wall - steps / pace) if wall is not None and steps else None
    return {"pace": float(pace), "outside": outside, "peak_rss_mb": train.get("peak_rss_mb"), "peak_cuda_mb": train.get("peak_cuda_mb")}


def _wall_seconds(run: Path, info: dict[str, Any]) -> Optional[float]:
    """From `forge runs start` to the exit its supervisor recorded, or else the run's own record."""
    launch, ended = read_json(run / LAUNCH_FILE) or {}, read_json(run / EXIT_FILE) or {}
    begin, end = (launch.get("started"), ended.get("ended")) if launch.get("started") and ended.get("ended") else (info["started"], info["ended"])
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(begin)).total_seconds()
    except (TypeError, ValueError):
        return None


def _shape(cfg: dict[str, Any]) -> list[Any]:
    """What sets the pace of a step and the time around training: the model, the batch, the
    precision, the devices and the stages run."""
    out = []
    for key in SHAPE_KEYS:
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.append(node)
    return out


def _hms(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"
