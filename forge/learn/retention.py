"""Does an incremental update forget? The candidate and the deployed version, each loaded from
its run's checkpoint, scored on the same prepared rows of earlier rounds' examples (one example a
row), and their per-example losses compared by forge compare's paired permutation test.

The gate's held-out tasks say whether the update helps on recent work; this says whether it
lost what the deployed version knew. Both models are scored here, in one process, on rows
prepared once with the candidate's tokenizer: the candidate continued the deployed adapter, so
both share the base model and its tokenizer.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from forge.compare import Comparison, compare_losses
from forge.data.loader import SplitDataset
from forge.data.prepare import prepare
from forge.eval.lm import eval_device, heldout_loss
from forge.families import family_of
from forge.run_dir import RunPaths


def compare_on_earlier(examples: list[dict[str, Any]], deployed_run: Path, candidate_run: Path, reward_weights: dict[str, float],
                       alpha: float) -> Comparison:
    """A = the deployed version, B = the candidate; a negative difference means B's loss is lower."""
    cfg = OmegaConf.load(candidate_run / "config.yaml")
    family = family_of(cfg)
    with tempfile.TemporaryDirectory(prefix="forge-earlier-") as tmp:
        work = Path(tmp)
        source = work / "earlier.jsonl"
        source.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
        data = OmegaConf.merge(cfg.data, {"sources": [{"format": "agent_runs", "path": str(source), "reward_weights": reward_weights}],
                                          "packing": False, "val_fraction": 0.0, "test_fraction": 0.0})
        prepare(data, cfg.cache_dir, work / "data", family.tokenizer(cfg))
        rows = SplitDataset(work / "data", "train")
        deployed, candidate = (_losses(run, rows, cfg.eval.batch_size) for run in (deployed_run, candidate_run))
    return compare_losses(deployed, candidate, alpha=alpha)


def _losses(run: Path, rows: SplitDataset, batch_size: int) -> list[float]:
    cfg = OmegaConf.load(run / "config.yaml")
    trained = family_of(cfg).load(cfg, RunPaths(run))
    lm = trained.module.to(eval_device(cfg.trainer.accelerator)).lm
    return [r["loss"] for r in heldout_loss(lm, rows, batch_size)[1] if r["tokens"]]
