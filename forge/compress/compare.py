"""The evaluate stage's figures for a compressed run: the compressed model's own scores next to
the float model's, how far its predictions moved (KL, top-1 agreement), and its size."""

from __future__ import annotations

import json
from typing import Any, Iterator

import torch
from omegaconf import DictConfig

from forge.compress.quality import agreement, scored_logits
from forge.compress.stage import compressed_model
from forge.data.loader import SplitDataset
from forge.run_dir import RunPaths


def size_metrics(paths: RunPaths) -> dict[str, Any]:
    report = json.loads(paths.compress_report.read_text())
    return {
        "compressed/method": report["method"],
        "compressed/bits_per_weight": report["compressed_bits_per_weight"],
        "compressed/file_bits_per_parameter": report["file_bits_per_parameter"],
        "compressed/file_bytes": report["file_bytes"],
    }


def batches(data: SplitDataset, batch_size: int, device: torch.device = torch.device("cpu")) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        yield {k: v.to(device) for k, v in data[list(range(start, min(len(data), start + batch_size)))].items()}


@torch.no_grad()
def compare_token_model(cfg: DictConfig, paths: RunPaths, model: torch.nn.Module, data: SplitDataset,
                        float_scores: dict[str, float], sources: Any) -> dict[str, Any]:
    from forge.eval.exact_match import score

    comp = compressed_model(cfg, paths)
    causal = bool(getattr(model, "causal", True))
    scores = score(comp, data, cfg.eval.batch_size, sources)
    out: dict[str, Any] = {f"compressed/{cfg.eval.split}/{k}": v for k, v in scores.items()}
    ref_fn, comp_fn = scored_logits(model, causal), scored_logits(comp, causal)
    out.update({f"compressed/{k}": v for k, v in agreement((ref_fn(b), comp_fn(b)) for b in batches(data, cfg.eval.batch_size)).items()})
    if float_scores.get("exact_match"):
        out["compressed/exact_match_retention"] = scores["exact_match"] / float_scores["exact_match"]
    return {**out, **size_metrics(paths)}


@torch.no_grad()
def compare_lm(cfg: DictConfig, paths: RunPaths, lm: torch.nn.Module, data: SplitDataset) -> dict[str, Any]:
    from forge.eval.lm import heldout_loss
    from forge.train.causal_lm import scored_logits as lm_logits

    comp = compressed_model(cfg, paths).to(lm.device)
    out: dict[str, Any] = {f"compressed/{cfg.eval.split}/{k}": v for k, v in heldout_loss(comp, data, cfg.eval.batch_size).items()}
    pairs = ((lm_logits(lm, b)[0], lm_logits(comp, b)[0]) for b in batches(data, cfg.eval.batch_size, lm.device))
    out.update({f"compressed/{k}": v for k, v in agreement(pairs).items()})
    return {**out, **size_metrics(paths)}
