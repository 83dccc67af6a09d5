"""Schemas of the `model` and `peft` options, light enough for `forge validate` (no torch).

The allowed values of a model's string options are defined here once; the modules import them.
`vocab_size` and `max_len` are not config keys: forge passes them from the prepared data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

from omegaconf import MISSING, DictConfig

from forge.config.registry import register
from forge.config.rules import at_least, fraction, one_of, open_fraction, positive

# model.init: small: N(0, 0.02) weights and zero biases (GPT-2); torch_default: what PyTorch's layers start
# with (embeddings N(0, 1), Kaiming-uniform linears), as in the grokking and GrokFast papers' code.
# Large initial weights are what delays generalization on algorithmic tasks (Liu et al. 2022,
# "Omnigrok"): with `small`, x*y mod 97 generalizes in a few hundred steps and there is no
# grokking to speed up.
INITS = ("small", "torch_default")
MIXERS = ("attention", "mlp")
VARIANTS = ("hrm", "trm")
HF_DTYPES = ("float32", "bfloat16", "float16")


def heads_divide(node: DictConfig) -> Iterator[tuple[str, str]]:
    """Attention splits d_model evenly across the heads."""
    if node.d_model % node.n_heads:
        yield "n_heads", f"must divide d_model={node.d_model}"


def attention_heads_divide(node: DictConfig) -> Iterator[tuple[str, str]]:
    """The reasoning models have heads only with the attention mixer."""
    if node.mixer == "attention":
        yield from heads_divide(node)


@register("model", "forge.models.transformer.Transformer")
@dataclass
class TransformerConfig:
    d_model: int = at_least(1)
    n_layers: int = at_least(1)
    n_heads: int = at_least(1)
    d_ff: int = at_least(1)
    dropout: float = fraction()
    causal: bool = MISSING
    init: str = one_of(INITS, default="small")

    relations = staticmethod(heads_divide)


@register("model", "forge.models.hrrm.HRRM")
@dataclass
class HRRMConfig:
    variant: str = one_of(VARIANTS)
    d_model: int = at_least(1)
    n_heads: int = at_least(1)
    d_ff: int = at_least(1)
    n_layers: int = at_least(1)
    mixer: str = one_of(MIXERS)
    h_cycles: int = at_least(1)
    l_cycles: int = at_least(1)
    segments: int = at_least(1)
    halt_explore: float = fraction()
    halt_at_inference: bool = MISSING
    memory_slots: int = at_least(0)
    ema_decay: float = fraction()

    relations = staticmethod(attention_heads_divide)


@register("model", "forge.models.cogment.Cogment")
@dataclass
class CogmentConfig:
    d_model: int = at_least(1)
    n_heads: int = at_least(1)
    d_ff: int = at_least(1)
    mixer: str = one_of(MIXERS)
    encoder_layers: int = at_least(0)
    core_layers: int = at_least(1)
    max_steps: int = at_least(1)
    halt_epsilon: float = open_fraction()
    ponder_cost: float = at_least(0)
    deep_supervision: float = at_least(0)
    memory_slots: int = at_least(0)

    relations = staticmethod(attention_heads_divide)


@register("model", "forge.models.hf.HFCausalLM")
@dataclass
class HFCausalLMConfig:
    source: str = MISSING
    trust_remote_code: bool = MISSING
    dtype: str = one_of(HF_DTYPES)
    attn_implementation: str = MISSING
    gradient_checkpointing: bool = MISSING


@register("peft", "forge.models.peft.LoRA")
@dataclass
class LoRAConfig:
    r: int = at_least(1)
    alpha: float = positive()
    dropout: float = fraction()
    target_modules: Any = MISSING
    dora: bool = MISSING
    quantize_base: bool = MISSING
    init_from: Optional[str] = None
