"""Schema of the `export` options, light enough for `forge validate`. They have no `_target_`:
the export stage reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


from forge.config.registry import register
from forge.config.rules import each, one_of

FORMATS = ("safetensors", "hf", "none")
OUTPUTS = ("adapter", "merged", "gguf")  # causal LMs: the LoRA adapter, the merged model, a GGUF of it
GGUF_TYPES = ("f32", "f16", "q8_0")


@register("export")
@dataclass
class ExportConfig:
    format: str = one_of(FORMATS)
    outputs: list[str] = each(one_of(OUTPUTS), default=[])
    gguf_type: str = one_of(GGUF_TYPES, default="f16")
    gguf_pre: str = "gpt-2"
    ollama: dict[str, Any] = field(default_factory=dict)
