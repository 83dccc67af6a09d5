"""The stages of a run: prepare -> train -> compress -> evaluate -> export.

`forge +recipe=X` runs them all in one process and `stage=NAME` (or `forge --params ...` from
dvc.yaml) runs one; both go through `forge.runner.run`. Each stage reads the config and the artifacts of the
stages before it from the run directory, and writes its own there.
"""

from __future__ import annotations

import logging
from typing import Callable

from omegaconf import DictConfig

from forge.run_dir import RunPaths

log = logging.getLogger("forge")
ORDER = ("prepare", "train", "compress", "evaluate", "export")


def prepare(cfg: DictConfig, paths: RunPaths) -> None:
    from forge.data.prepare import prepare as prepare_data

    tokenizer = None
    if is_hf(cfg):  # text data is tokenized with the model's own tokenizer
        from forge.models.hf import HFCausalLM

        tokenizer = HFCausalLM.from_config(cfg.model, cfg.cache_dir).tokenizer()
    prepare_data(cfg.data, cfg.cache_dir, paths.data, tokenizer)
    if cfg.cv.folds:
        from forge.data.folds import split_fold

        split_fold(paths.data, cfg.cv.folds, cfg.cv.fold, cfg.cv.stratify, cfg.cv.seed)


def train(cfg: DictConfig, paths: RunPaths) -> None:
    from forge.train.fit import fit

    fit(cfg, paths)


def compress(cfg: DictConfig, paths: RunPaths) -> None:
    """A compressor is a class built from its config and called with (cfg, paths)."""
    if cfg.compressor.get("_target_") is None:
        log.info("compress: compressor=none, nothing to do")
        return
    from forge.config.instantiate import instantiate

    instantiate(cfg.compressor)(cfg, paths)


def evaluate(cfg: DictConfig, paths: RunPaths) -> None:
    if is_hf(cfg):
        from forge.eval.lm import evaluate as run_eval
    else:
        from forge.eval.exact_match import evaluate as run_eval

    run_eval(cfg, paths)


def export(cfg: DictConfig, paths: RunPaths) -> None:
    if cfg.export.format == "none":
        return
    if is_hf(cfg):
        from forge.export.hf import export as export_lm

        export_lm(cfg, paths)
        return
    from forge.export.safetensors import export as export_safetensors

    if cfg.compressor.get("_target_") is not None:
        from forge.compress.stage import compressed_model

        export_safetensors(cfg, paths, compressed_model(cfg, paths), packed=paths.compressed)
        return
    from forge.eval.exact_match import load_trained

    model, _ = load_trained(paths)
    export_safetensors(cfg, paths, model)


STAGES: dict[str, Callable[[DictConfig, RunPaths], None]] = {
    "prepare": prepare,
    "train": train,
    "compress": compress,
    "evaluate": evaluate,
    "export": export,
}


def is_hf(cfg: DictConfig) -> bool:
    """A Hugging Face causal LM: its own data, evaluation and export paths."""
    return cfg.model.get("_target_") == "forge.models.hf.HFCausalLM"
