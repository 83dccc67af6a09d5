"""The prepare stage: build a dataset once per content, then place it in the run directory.

The cache key is a hash of the data config minus loader-only keys, so the same data config is
reused, never regenerated, by later runs, sweep points and DDP ranks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from forge import atomic
from forge.atomic import atomic_dir, write_json
from forge.config.errors import ConfigError
from forge.config.instantiate import instantiate, resolve_target
from forge.data.configs import LOADER_KEYS
from forge.errors import ForgeError

log = logging.getLogger(__name__)
FORMAT_VERSION = 2


def fingerprint(data_cfg: DictConfig, inputs: Optional[dict] = None) -> str:
    """`inputs`: what else the data depends on (a tokenizer, input file digests)."""
    content = {k: v for k, v in OmegaConf.to_container(data_cfg, resolve=True).items() if k not in LOADER_KEYS}
    blob = json.dumps({"format": FORMAT_VERSION, "data": content, "inputs": inputs or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root(cache_dir: Optional[str]) -> Path:
    return Path(cache_dir or os.environ.get("FORGE_CACHE") or Path.home() / ".cache" / "forge") / "data"


def build_task(data_cfg: DictConfig, tokenizer: Any = None) -> Any:
    """The task of a data node: built from its content keys (the loader's are left out), with
    `tokenizer` passed only to a task that declares `needs_tokenizer`."""
    content = OmegaConf.create({k: v for k, v in data_cfg.items() if k not in LOADER_KEYS})
    if not getattr(resolve_target(content._target_), "needs_tokenizer", False):
        return instantiate(content)
    if tokenizer is None:
        raise ConfigError(
            f"data._target_={content._target_}: this text data is tokenized with the model's tokenizer, and "
            "model has none; choose a Hugging Face causal LM (model=hf_causal_lm) or a token task for data."
        )
    return instantiate(content, tokenizer=tokenizer)


def prepare(data_cfg: DictConfig, cache_dir: Optional[str], out: Path, tokenizer: Any = None) -> Path:
    """Make `out` hold the dataset for `data_cfg` (from the cache when it is there). Text data
    (a task with `needs_tokenizer`) is tokenized with `tokenizer`, which is part of its key."""
    task = build_task(data_cfg, tokenizer)
    key = fingerprint(data_cfg, task.content_key() if hasattr(task, "content_key") else None)
    if _fingerprint_of(out) == key:
        log.info("data: %s already in %s", key, out)
        return out
    entry = cache_root(cache_dir) / key
    if _fingerprint_of(entry) == key:
        log.info("data: reusing cached %s", entry)
    else:
        log.info("data: generating %s into %s", key, entry)
        _build(task, data_cfg, key, entry, out)
    with atomic_dir(out) as tmp:
        for f in entry.iterdir():
            _link_or_copy(f, tmp / f.name)
    quarantined = load_meta(out).get("quarantined")
    if quarantined:
        log.warning("data: %d malformed records set aside, each with its file and line, in %s", quarantined, out / "quarantine.jsonl")
    return out


def _build(task: Any, data_cfg: DictConfig, key: str, entry: Path, out: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    if hasattr(task, "write"):  # streaming tasks write their own split files
        with atomic_dir(entry) as tmp:
            try:
                meta = task.write(tmp)
            except ForgeError as e:
                kept = _keep(tmp, out, getattr(task, "kept_on_failure", ()))
                message = str(e) if not kept or str(e).endswith(".") else f"{e}."
                raise ForgeError(message + "".join(f" Kept for reading: {k}." for k in kept)) from None
            write_json(tmp / "meta.json", {"fingerprint": key, "task": data_cfg._target_, **meta,
                                           "config": OmegaConf.to_container(data_cfg, resolve=True)})
        return
    splits = task.build()
    with atomic_dir(entry) as tmp:
        for split, arrays in splits.items():
            columns = {"inputs": arrays.inputs, "labels": arrays.labels, **arrays.extras}
            save_file({k: np.ascontiguousarray(v) for k, v in columns.items()}, str(tmp / f"{split}.safetensors"))
        write_json(
            tmp / "meta.json",
            {
                "fingerprint": key,
                "task": data_cfg._target_,
                "vocab": list(task.vocab),
                "seq_len": int(next(iter(splits.values())).inputs.shape[1]),
                "sizes": {s: int(a.inputs.shape[0]) for s, a in splits.items()},
                "extras": sorted(next(iter(splits.values())).extras),
                **getattr(task, "meta", {}),
                "config": OmegaConf.to_container(data_cfg, resolve=True),
            },
        )


def _keep(tmp: Path, out: Path, names: tuple[str, ...]) -> list[Path]:
    """Copy what a failed build wrote that the user needs to see (and is not empty) into the run's
    data folder."""
    kept = []
    for name in names:
        if (tmp / name).exists() and (tmp / name).stat().st_size:
            out.mkdir(parents=True, exist_ok=True)
            with open(tmp / name, "rb") as src, atomic.atomic_open(out / name) as dst:
                shutil.copyfileobj(src, dst)
            kept.append(out / name)
    return kept


def _fingerprint_of(folder: Path) -> Optional[str]:
    try:
        return json.loads((folder / "meta.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def load_meta(data_dir: Path) -> dict:
    return json.loads((data_dir / "meta.json").read_text())
