"""What `forge runs status` adds to a run's state: step out of total, the last value of each
curve, pace, ETA, tokens per second and peak memory, each saying where it comes from.

Tokens per second come from the run's own measure when it has one: the causal-LM training step
logs `train/tokens_per_second` (non-padding tokens it processed over the loop's wall time) while
it trains, and train.json keeps `train_tokens_per_second` at the end. Otherwise they are the pace
times the tokens of a step: the positions of a token task's batch, or a text batch's average of
non-padding tokens over the prepared train rows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from forge.errors import ForgeError
from forge.run_dir import read_json

LOGGED = "train/tokens_per_second"


def progress(run: Path, info: dict[str, Any]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    try:
        from forge.runs.metrics import series
        curves = series(run)
    except ForgeError:
        curves = {}
    last = {name: points[-1][1] for name, points in curves.items() if points}
    step = max((points[-1][0] for points in curves.values() if points), default=None)
    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False) if (run / "config.yaml").exists() else {}
    trainer = cfg.get("trainer") or {}
    info.update(step=step, total_steps=trainer.get("max_steps"), last=last)
    train = read_json(run / "train.json") or {}
    if info["status"] == "running" and step and info["total_steps"] and info["started"]:
        elapsed = (datetime.now(timezone.utc) - datetime.fromisoformat(info["started"])).total_seconds()
        info["steps_per_second"] = round(step / elapsed, 3)
        info["eta_seconds"] = round((info["total_steps"] - step) * elapsed / step)
    elif train.get("steps_per_second"):
        info["steps_per_second"] = train["steps_per_second"]
    info.update(_tokens_per_second(run, info, train, last, cfg))
    info.update({k: train[k] for k in ("peak_rss_mb", "peak_cuda_mb") if train.get(k) is not None})
    return info


def _tokens_per_second(run: Path, info: dict[str, Any], train: dict[str, Any], last: dict[str, float],
                       cfg: dict[str, Any]) -> dict[str, Any]:
    if info["status"] != "running" and train.get("train_tokens_per_second"):
        return {"tokens_per_second": train["train_tokens_per_second"],
                "tokens_per_second_from": "train.json: tokens trained over the training time"}
    if LOGGED in last:
        return {"tokens_per_second": round(last[LOGGED], 1), "tokens_per_second_from": f"the run's log ({LOGGED})"}
    per_step = _tokens_per_step(run, cfg)
    if per_step is None or not info.get("steps_per_second"):
        return {}
    return {"tokens_per_second": round(info["steps_per_second"] * per_step[0], 1),
            "tokens_per_second_from": f"pace x {per_step[1]}"}


def _tokens_per_step(run: Path, cfg: dict[str, Any]) -> Optional[tuple[float, str]]:
    meta = read_json(run / "data" / "meta.json") or {}
    data, trainer = cfg.get("data") or {}, cfg.get("trainer") or {}
    try:
        batch = int(data["batch_size"]) * int(trainer.get("accumulate_grad_batches") or 1)
        batch *= int(trainer.get("devices") or 1) * int(trainer.get("num_nodes") or 1)
    except (KeyError, TypeError, ValueError):
        return None
    train = (meta.get("splits") or {}).get("train") or {}
    if train.get("tokens") and train.get("rows"):
        return batch * train["tokens"] / train["rows"], "the average non-padding tokens of a step's rows"
    if meta.get("seq_len") and "vocab" in meta:  # a token task: every position is read
        return float(batch * meta["seq_len"]), "the positions of a step's batch"
    return None
