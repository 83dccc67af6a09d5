"""Models: each is an nn.Module built from its `model` config plus the dataset's vocabulary."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def build_model(model_cfg: DictConfig, vocab_size: int, max_len: int) -> Any:
    from forge.config.instantiate import instantiate

    return instantiate(model_cfg, vocab_size=vocab_size, max_len=max_len)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
