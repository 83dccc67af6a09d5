"""The stages of a run: prepare -> train -> compress -> evaluate -> export.

`forge +recipe=X` runs them all in one process and `stage=NAME` (or `forge --params ...` from
dvc.yaml) runs one; both go through `forge.runner.run`. Each stage reads the config and the
artifacts of the stages before it from the run directory, and writes its own there. A stage asks
the run's model family (forge.families) for everything that depends on the kind of model.

Each stage declares what it reads (config keys, artifacts, code) and writes; dvc.yaml is
generated from these declarations (`forge dvc-yaml`), so DVC reruns a stage exactly when
something it reads changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from omegaconf import DictConfig

from forge import atomic
from forge.run_dir import RunPaths

if TYPE_CHECKING:
    from torch import nn

    from forge.families import Family

log = logging.getLogger("forge")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DictConfig, RunPaths], None]
    params: tuple[str, ...]  # config keys it reads
    needs: tuple[str, ...]  # artifacts (paths in the run directory) of earlier stages
    code: tuple[str, ...]  # the forge code it runs, beyond the stage and family modules
    outs: tuple[str, ...] = ()  # artifacts it writes
    metrics: tuple[str, ...] = ()  # small JSON files it writes (not cached by DVC)
    plots: tuple[str, ...] = ()
    ready: Optional[Callable[[DictConfig], None]] = None  # checked before a run starts any stage: fail early

    def __call__(self, cfg: DictConfig, paths: RunPaths) -> None:
        self.run(cfg, paths)


STAGES: dict[str, Stage] = {}


def stage(**declared: tuple[str, ...]) -> Callable[[Callable[[DictConfig, RunPaths], None]], Callable[[DictConfig, RunPaths], None]]:
    def register(fn: Callable[[DictConfig, RunPaths], None]) -> Callable[[DictConfig, RunPaths], None]:
        STAGES[fn.__name__] = Stage(fn.__name__, fn, **declared)
        return fn

    return register


@stage(params=("data", "model", "cv"), needs=(), code=("forge/data", "forge/models/hf.py"), outs=("data",))
def prepare(cfg: DictConfig, paths: RunPaths) -> None:
    """Text data is tokenized with the model's own tokenizer (the family says which, if any)."""
    from forge.data.prepare import prepare as prepare_data
    from forge.families import family_of

    prepare_data(cfg.data, cfg.cache_dir, paths.data, family_of(cfg).tokenizer(cfg))
    if cfg.cv.folds:
        from forge.data.folds import split_fold

        cv = cfg.cv
        split_fold(paths.data, cv.folds, cv.fold, cv.stratify, cv.seed, scheme=cv.scheme, gap=cv.gap, max_train=cv.max_train,
                   time_column=cv.time_column, group_column=cv.group_column)


@stage(
    params=("model", "optim", "trainer", "curriculum", "peft", "compressor", "logger", "callbacks", "seed", "init_from",
            "data.batch_size", "data.sampler", "data.replay", "eval.batch_size"),
    needs=("data",),
    code=("forge/families", "forge/train", "forge/models", "forge/curriculum", "forge/compress", "forge/data/loader.py",
          "forge/data/samplers.py"),
    outs=("checkpoints",),
    metrics=("train.json",),
    plots=("dvclive/plots/metrics",),
)
def train(cfg: DictConfig, paths: RunPaths) -> None:
    """The family builds the module (with the compressor's training hook, for quantization-aware
    training); fitting it is the same for every family."""
    from forge.families import family_of
    from forge.train.fit import fit

    family = family_of(cfg)
    fit(cfg, paths, lambda meta: family.module(cfg, meta))


@stage(params=("compressor", "model", "data.batch_size"), needs=("data", "checkpoints"),
       code=("forge/families", "forge/compress", "forge/train", "forge/models"), outs=("compressed",))
def compress(cfg: DictConfig, paths: RunPaths) -> None:
    """Compress the trained float model (adapters merged) with `compressor`, calibrating on the
    train split (never the evaluated one), and write the packed file and its size report."""
    if cfg.compressor.get("_target_") is None:
        atomic.write_json(paths.compress_report, {"method": "none"})  # DVC's declared output
        log.info("compress: compressor=none, nothing to do")
        return
    from forge.compress import format as cformat
    from forge.config.instantiate import instantiate
    from forge.data.loader import SplitDataset
    from forge.errors import ForgeError
    from forge.families import family_of

    family, compressor = family_of(cfg), instantiate(cfg.compressor)
    model = compressor.prepare(family.load(cfg, paths, merged=True).model)
    batches = SplitDataset(paths.data, "train").batches(cfg.data.batch_size)
    try:
        packed, floats, tied = compressor.run(model, batches, family.forward)
    except ValueError as e:  # a layer's shape does not fit the method's settings (group, vector length)
        raise ForgeError(f"compress: {e}") from None
    cformat.save(paths.compressed, packed, floats, tied)
    report = {"method": type(compressor).__name__.lower(), **cformat.size_report(paths.compressed), **compressor.notes}
    atomic.write_json(paths.compress_report, report)
    log.info("compress: %d matrices at %.3f bits/weight (side information included), file %.3f bits/parameter, float: %s",
             len(packed), report["compressed_bits_per_weight"], report["file_bits_per_parameter"], ", ".join(report["float_tensors"]))


def _sandbox_ready(cfg: DictConfig) -> None:
    """Model-generated code runs only behind a real boundary, unless allowed: found out before
    training, not after."""
    if cfg.eval.get("humaneval"):
        from forge.eval.isolation import require

        require(cfg.eval.sandbox.allow_unisolated)


@stage(params=("eval", "compressor", "model", "trainer.accelerator", "seed"), needs=("data", "checkpoints", "compressed"),
       code=("forge/families", "forge/eval", "forge/compress", "forge/models"), metrics=("metrics.json",), ready=_sandbox_ready)
def evaluate(cfg: DictConfig, paths: RunPaths) -> None:
    """The suite `eval.metric` names; for a compressed run, the packed model's scores beside the
    float model's, how far its predictions moved, and its size."""
    import torch

    from forge.compress.compare import compare
    from forge.families import family_of

    family = family_of(cfg)
    trained = family.load(cfg, paths)
    metrics = family.evaluate(cfg, paths, trained)
    comp = compressed_model(cfg, paths, family)
    if comp is not None:
        comp = comp.to(next(trained.model.parameters()).device)
        split = f"{cfg.eval.split}/"
        float_scores = {k[len(split):]: v for k, v in metrics.items() if k.startswith(split)}
        with torch.no_grad():
            pairs = ((family.scored_logits(trained.model, b), family.scored_logits(comp, b))
                     for b in family.eval_batches(cfg, paths, trained.model))
            metrics.update(compare(cfg.eval.split, float_scores, family.score(cfg, paths, comp), pairs, paths.compress_report))
    atomic.write_json(paths.metrics, metrics)
    log.info("evaluate: %s", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


@stage(params=("export", "compressor", "model"), needs=("data", "checkpoints", "compressed"),
       code=("forge/families", "forge/export", "forge/compress", "forge/models"), outs=("model",))
def export(cfg: DictConfig, paths: RunPaths) -> None:
    """The format `export.format` names, verified by loading it back; a compressed run exports its
    packed model."""
    if cfg.export.format == "none":
        atomic.write_json(paths.model / "export.json", {"format": "none"})  # DVC's declared output
        return
    from forge.families import family_of

    family = family_of(cfg)
    family.export(cfg, paths, family.load(cfg, paths), compressed_model(cfg, paths, family))


def compressed_model(cfg: DictConfig, paths: RunPaths, family: "Family") -> Optional["nn.Module"]:
    """The run's model rebuilt from its packed file (dequantized), or None without a compressor."""
    if cfg.compressor.get("_target_") is None:
        return None
    from forge.compress.load import load_packed
    from forge.config.instantiate import instantiate
    from forge.errors import ForgeError

    if not paths.compressed.exists():
        raise ForgeError(f"no compressed model at {paths.compressed}: run stage=compress first (with compressor=NAME)")
    return load_packed(instantiate(cfg.compressor), family.load(cfg, paths, merged=True).model, paths.compressed)


ORDER = tuple(STAGES)
