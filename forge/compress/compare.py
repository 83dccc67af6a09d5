"""The evaluate stage's figures for a compressed run: the compressed model's own scores next to
the float model's, how far its predictions moved (KL, top-1 agreement), and its size. Plain
values in, plain values out: the caller scores both models and pairs their logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch

from forge.compress.quality import agreement


def size_metrics(report: Path) -> dict[str, Any]:
    """The size figures of the compress stage's report (compress.json)."""
    data = json.loads(report.read_text())
    return {
        "compressed/method": data["method"],
        "compressed/bits_per_weight": data["compressed_bits_per_weight"],
        "compressed/file_bits_per_parameter": data["file_bits_per_parameter"],
        "compressed/file_bytes": data["file_bytes"],
    }


def compare(split: str, float_scores: dict[str, Any], compressed_scores: dict[str, Any],
            logit_pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], report: Path) -> dict[str, Any]:
    """`logit_pairs`: (float, compressed) logits at the same scored positions, batch by batch."""
    out: dict[str, Any] = {f"compressed/{split}/{k}": v for k, v in compressed_scores.items()}
    out.update({f"compressed/{k}": v for k, v in agreement(logit_pairs).items()})
    if float_scores.get("exact_match"):
        out["compressed/exact_match_retention"] = compressed_scores["exact_match"] / float_scores["exact_match"]
    return {**out, **size_metrics(report)}
