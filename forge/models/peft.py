"""Adapters (the `peft` group): LoRA, DoRA and QLoRA through the PEFT library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from forge.errors import ForgeError


@dataclass
class LoRA:
    """LoRA (`dora: true`: weight-decomposed DoRA) on `target_modules` of a causal LM.

    `target_modules: all-linear` is every linear layer except the output head. `quantize_base`
    loads the frozen base in 4-bit NF4 (QLoRA), which needs bitsandbytes and a CUDA GPU.
    """

    r: int
    alpha: float
    dropout: float
    target_modules: Union[str, list[str]]
    dora: bool = False
    quantize_base: bool = False
    init_from: Optional[str] = None  # a saved adapter folder to continue training

    def apply(self, model: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        if self.init_from is not None:
            return self._continue(model)
        config = LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            use_dora=self.dora,
            task_type="CAUSAL_LM",
        )
        try:
            return get_peft_model(model, config)
        except ValueError as e:  # e.g. a target module name the model does not have
            raise ForgeError(f"peft.target_modules={self.target_modules}: {e}") from None

    def _continue(self, model: Any) -> Any:
        """The adapter saved in `init_from`, trainable, on `model`: refused unless it is the one
        these settings describe (PEFT would silently use the saved r and alpha)."""
        from peft import PeftConfig, PeftModel

        folder = Path(self.init_from)
        if not (folder / "adapter_config.json").is_file():
            raise ForgeError(f"peft.init_from={self.init_from}: no PEFT adapter there (no adapter_config.json); give a run's "
                             "model/adapter folder")
        saved = PeftConfig.from_pretrained(str(folder))
        for key, mine, theirs in (("r", self.r, saved.r), ("alpha", self.alpha, saved.lora_alpha), ("dora", self.dora, saved.use_dora)):
            if mine != theirs:
                raise ForgeError(f"peft.{key}={mine}: the adapter in peft.init_from has {key}={theirs}; set peft.{key}={theirs}")
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True)

    def quantization_config(self) -> Any:
        """The bitsandbytes config for QLoRA, or None; says what is missing when it cannot run."""
        if not self.quantize_base:
            return None
        import importlib.util

        import torch

        if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
            raise ForgeError(
                "peft.quantize_base=true (QLoRA) needs the bitsandbytes package and a CUDA GPU "
                f"(bitsandbytes installed: {importlib.util.find_spec('bitsandbytes') is not None}, CUDA: {torch.cuda.is_available()}). "
                "Use peft=lora on this machine, or pip install bitsandbytes and run with trainer=gpu."
            )
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
