"""The compress stage: take the trained float model (LoRA adapters merged for an LLM), compress
every selected linear layer with the configured method, write the packed file and its size
report, and rebuild a runnable model from that file for the evaluate and export stages."""

from __future__ import annotations

import fnmatch
import itertools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from forge import atomic
from forge.compress import format as cformat
from forge.compress.packed import Packed
from forge.errors import ForgeError
from forge.run_dir import RunPaths

log = logging.getLogger(__name__)
# How a model runs on one calibration batch: its logits.
Forward = Callable[[nn.Module, dict], torch.Tensor]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Compressor(ABC):
    """What every method shares: which linear layers to leave alone (fnmatch patterns on module
    names; the output head by default, as BitNet and VPTQ do) and the dtype of what stays float."""

    skip: list[str] = field(default_factory=lambda: ["head", "lm_head"])
    float_dtype: str = "float16"
    calibration_batches: int = 16
    # Adam steps of KL fine-tuning of the codebooks, scales and norms after quantization (tune.py).
    tune_steps: int = 0
    tune_lr: float = 1e-4
    # What a run chose or measured beyond sizes (tuning KL per step, a bit width picked for a
    # size budget); it goes into compress.json.
    notes: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    # Methods that need activations (VPTQ's Hessians) get calibration batches from the train split.
    needs_calibration = False

    @abstractmethod
    def quantize(self, weight: torch.Tensor, name: str) -> Packed:
        """One 2-D float weight (named for error messages) in its packed form."""

    def prepare(self, model: nn.Module) -> nn.Module:
        """The trained model as this method compresses it (a method may swap layers first)."""
        return model

    def loaded(self, model: nn.Module) -> nn.Module:
        """The model after the compressed weights were loaded into it."""
        return model

    def calibrate(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], forward: Forward) -> None:
        """Collect what `quantize` needs from the model's activations (only if needs_calibration)."""

    def run(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], forward: Forward) -> tuple[dict[str, Packed], dict[str, torch.Tensor], dict[str, str]]:
        """Compress a prepared float model: calibrate on the first `calibration_batches` batches
        if the method needs it, quantize, then tune the float side information on the same batches."""
        batches = list(itertools.islice(batches, self.calibration_batches)) if self.needs_calibration or self.tune_steps else []
        if self.needs_calibration:
            self.calibrate(model, batches, forward)
        packed, floats, tied = self.compress(model)
        if self.tune_steps:
            from forge.compress.tune import tune

            packed, floats, self.notes["tune_kl"] = tune(model, packed, floats, batches, forward, self.tune_steps, self.tune_lr)
        return packed, floats, tied

    def __call__(self, cfg: DictConfig, paths: RunPaths) -> dict[str, Any]:
        packed, floats, tied = self.run(self.prepare(trained_model(cfg, paths)), *calibration(cfg, paths))
        cformat.save(paths.compressed, packed, floats, tied)
        report = {"method": type(self).__name__.lower(), **cformat.size_report(paths.compressed), **self.notes}
        atomic.write_json(paths.compress_report, report)
        log.info("compress: %d matrices at %.3f bits/weight (side information included), file %.3f bits/parameter, float: %s",
                 len(packed), report["compressed_bits_per_weight"], report["file_bits_per_parameter"], ", ".join(report["float_tensors"]))
        return report

    def targets(self, model: nn.Module) -> set[str]:
        """State-dict names of the weights this compressor replaces."""
        return {f"{name}.weight" for name, m in model.named_modules()
                if isinstance(m, nn.Linear) and not any(fnmatch.fnmatchcase(name, p) for p in self.skip)}

    def compress(self, model: nn.Module) -> tuple[dict[str, Packed], dict[str, torch.Tensor], dict[str, str]]:
        """(compressed matrices, float tensors, tied names) of a model's state dict."""
        targets = self.targets(model)
        packed: dict[str, Packed] = {}
        floats: dict[str, torch.Tensor] = {}
        tied: dict[str, str] = {}
        owner: dict[int, str] = {}
        for name, t in model.state_dict().items():
            if t.numel() and t.data_ptr() in owner:
                tied[name] = owner[t.data_ptr()]
                continue
            owner[t.data_ptr()] = name
            if name in targets:
                packed[name] = self.quantize(t.detach().float(), name)
            else:
                floats[name] = t.detach().to(DTYPES[self.float_dtype]) if t.is_floating_point() else t.detach()
        if not packed:
            raise ForgeError(f"compressor: no linear layer left to compress after skip={self.skip}")
        return packed, floats, tied


def calibration(cfg: DictConfig, paths: RunPaths) -> tuple[Iterator[dict[str, torch.Tensor]], Forward]:
    """(batches of the train split, the model's logits on one): the data the model was trained
    on, never the test split that the evaluate stage scores."""
    from forge.data.loader import SplitDataset
    from forge.stages import is_hf

    data = SplitDataset(paths.data, "train")
    batches = (data[list(range(s, min(len(data), s + cfg.data.batch_size)))] for s in range(0, len(data), cfg.data.batch_size))
    if is_hf(cfg):
        from forge.train.causal_lm import scored_logits

        return batches, lambda model, batch: scored_logits(model, batch)[0]
    return batches, lambda model, batch: model(batch["inputs"])


def trained_model(cfg: DictConfig, paths: RunPaths) -> nn.Module:
    """The float model a run trained; for an LLM with adapters, a merged copy."""
    from forge.stages import is_hf

    if is_hf(cfg):
        from forge.eval.lm import load_finetuned

        module, _ = load_finetuned(paths, cfg.cache_dir)
        model = module.model
        return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    from forge.eval.exact_match import load_trained

    return load_trained(paths)[0]


def compressed_model(cfg: DictConfig, paths: RunPaths) -> nn.Module:
    """The run's model rebuilt from its compressed file (dequantized at load)."""
    if not paths.compressed.exists():
        raise ForgeError(f"no compressed model at {paths.compressed}: run stage=compress first (with compressor=NAME)")
    from forge.config.instantiate import instantiate

    return load_packed(instantiate(cfg.compressor), trained_model(cfg, paths), paths.compressed)


def load_packed(compressor: Compressor, model: nn.Module, path: Path) -> nn.Module:
    """`model` (any weights, the right architecture) with the layers `compressor` needs and the
    weights of the packed file at `path`, dequantized."""
    model = compressor.prepare(model)
    model.load_state_dict({k: v.float() for k, v in cformat.state_dict(path).items()})
    return compressor.loaded(model).eval()
