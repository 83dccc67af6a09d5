"""The tokens a run will train on, counted on its prepared data the way the train loader reads it.

The loader (forge.data.loader.ResumableBatchSampler) draws a fresh permutation of the train rows
each epoch from `seed * 1_000_003 + epoch`, gives rank r every world-th row of it, and cuts that
into full batches (the rest of the epoch is dropped); Lightning steps the optimizer every
`accumulate_grad_batches` batches and once more at an epoch's end. The model counts the
non-padding tokens of each batch it reads (forge.train.causal_lm: `segments > 0`), so replaying
the same permutations over the rows' non-padding counts gives exactly that number.

Prepared data is found in the data cache under the fingerprint `stage=prepare` gives it. For
text data the fingerprint holds the model's tokenizer and the input files' digests, so the
tokenizer is loaded only when a cache entry of the same data config exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from forge.config.instantiate import resolve_target
from forge.data.configs import LOADER_KEYS
from forge.data.prepare import build_task, cache_root, fingerprint


def prepared(cfg: DictConfig) -> Optional[Path]:
    """The data cache entry `stage=prepare` would place in the run for this config; None before
    the data is prepared."""
    root = cache_root(cfg.cache_dir)
    if not getattr(resolve_target(cfg.data._target_), "needs_tokenizer", False):
        entry = root / fingerprint(cfg.data)
        return entry if _meta(entry).get("fingerprint") == entry.name else None
    content = _content(OmegaConf.to_container(cfg.data, resolve=True))
    candidates = {e.name: e for e in root.iterdir() if _content(_meta(e).get("config") or {}) == content} if root.is_dir() else {}
    if not candidates:
        return None
    from forge.families import family_of

    task = build_task(cfg.data, family_of(cfg).tokenizer(cfg))
    return candidates.get(fingerprint(cfg.data, task.content_key()))


def text_rows(data_dir: Path) -> Optional[Any]:
    """Non-padding tokens of each train row (numpy), for packed text data; None for token tasks."""
    from safetensors import safe_open

    with safe_open(str(data_dir / "train.safetensors"), framework="numpy") as f:
        if "segments" not in f.keys():
            return None
        return (f.get_tensor("segments") > 0).sum(axis=1)


def trained_tokens(per_row: Any, batch_size: int, steps: int, accumulate: int, world: int, seed: int) -> Optional[int]:
    """Non-padding tokens read over `steps` optimizer steps by all `world` processes; None when
    the split holds less than one batch per process (the run would refuse to start)."""
    n = len(per_row)
    batches = (n // world) // batch_size  # per epoch and process
    if batches == 0:
        return None
    steps_per_epoch = math.ceil(batches / accumulate)
    whole = steps // steps_per_epoch
    partial = (steps - whole * steps_per_epoch) * accumulate
    if n % (world * batch_size) == 0:  # every row is read once per epoch, whatever the order
        total, epochs = whole * int(per_row.sum()), range(whole, whole + (partial > 0))
    else:
        total, epochs = 0, range(whole + (partial > 0))
    import torch

    for epoch in epochs:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).numpy()
        take = batches if epoch < whole else partial
        total += sum(int(per_row[order[rank::world][: take * batch_size]].sum()) for rank in range(world))
    return total


def _meta(entry: Path) -> dict[str, Any]:
    try:
        return json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _content(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in LOADER_KEYS}
