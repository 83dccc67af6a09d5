"""What every compressor is: an algorithm on an nn.Module. It takes a float model and (if it needs
them) calibration batches with the model's forward, and returns the packed weights; run
directories, configs and model families are the compress stage's business, not its."""

from __future__ import annotations

import fnmatch
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from forge.compress.packed import Packed
from forge.errors import ForgeError

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

    def training_wrapper(self, model: nn.Module) -> nn.Module:
        """The model as it trains when this method is trained in (quantization-aware training);
        the train stage applies it to every model it builds. Post-training methods: unchanged."""
        return model

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
