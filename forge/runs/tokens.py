"""The tokens a run will train on, counted on its prepared data the way the train loader reads it.

The loader (forge.data.loader.ResumableBatchSampler) draws a fresh permutation of the train rows
each epoch, gives rank r every world-th row of it, and cuts that into full batches (the rest of
the epoch is dropped); Lightning steps the optimizer every `accumulate_grad_batches` batches and
once more at an epoch's end. The model counts the non-padding tokens of each batch it reads
(forge.train.causal_lm: `segments > 0`): whole epochs over every row give exactly that number,
and the rows a shuffle picks are counted at the rows' mean.

Prepared data is found in the data cache under the fingerprint `stage=prepare` gives it. For
text data that fingerprint holds the loaded tokenizer, which takes transformers' seconds-long
import; the entry is found instead by what decides it: the same data config, the same input
files (meta.json `inputs`, SHA-256 each) and the same tokenizer files (`tokenizer_files`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from forge.config.instantiate import instantiate, resolve_target
from forge.data import tokenizer_files
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
    from forge.models.hf import HFCausalLM

    described = {name: e for name, e in candidates.items() if _meta(e).get("tokenizer_files")}
    if described:
        inputs = instantiate(OmegaConf.create(content), tokenizer=None).inputs()  # reading the input files needs no tokenizer
        tokenizer = tokenizer_files.digest(HFCausalLM.from_config(cfg.model, cfg.cache_dir).folder())
        found = next((e for e in described.values() if _meta(e).get("inputs") == inputs and _meta(e).get("tokenizer_files") == tokenizer), None)
        if found is not None or len(described) == len(candidates):
            return found
    task = build_task(cfg.data, HFCausalLM.from_config(cfg.model, cfg.cache_dir).tokenizer())  # entries prepared before forge recorded their files
    return candidates.get(fingerprint(cfg.data, task.content_key()))


def text_rows(data_dir: Path) -> Optional[Any]:
    """Non-padding tokens of each train row (numpy), for packed text data; None for token tasks."""
    from safetensors import safe_open

    with safe_open(str(data_dir / "train.safetensors"), framework="numpy") as f:
        if "segments" not in f.keys():
            return None
        return (f.get_tensor("segments") > 0).sum(axis=1)


def trained_tokens(per_row: Any, batch_size: int, steps: int, accumulate: int, world: int) -> Optional[tuple[int, bool]]:
    """Non-padding tokens read over `steps` optimizer steps by all `world` processes, and whether
    the number is exact; None when the split holds less than one batch per process (the run would
    refuse to start). Whole epochs that read every row are exact, whatever the order. Where the
    loader's shuffle decides which rows are read (an epoch's dropped remainder, the last partial
    epoch), the rows read count at the rows' mean: replaying the shuffle exactly needs
    torch.randperm, whose import alone takes longer than `forge runs start` may."""
    n = len(per_row)
    batches = (n // world) // batch_size  # per epoch and process
    if batches == 0:
        return None
    steps_per_epoch = math.ceil(batches / accumulate)
    whole = steps // steps_per_epoch
    partial = (steps - whole * steps_per_epoch) * accumulate
    total = int(per_row.sum())
    read = whole * batches * batch_size * world  # rows of the whole epochs
    if n == batches * batch_size * world:
        tokens, exact = whole * total, True
    else:
        tokens, exact = read * total / n, whole == 0
    if partial:
        tokens, exact = tokens + partial * batch_size * world * total / n, False
    return round(tokens), exact


def _meta(entry: Path) -> dict[str, Any]:
    try:
        return json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _content(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in LOADER_KEYS}
