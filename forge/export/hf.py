"""The export stage for causal LMs: PEFT adapter, merged model, GGUF + Ollama Modelfile.

Every export folder carries the tokenizer with the chat template used in training, and each one
is checked by loading it back with its consumer's library (PEFT, transformers, transformers' GGUF
reader) and comparing logits with the in-memory model on a probe batch.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from forge import atomic
from forge.errors import ForgeError
from forge.run_dir import RunPaths

log = logging.getLogger(__name__)
# Largest |logit difference| accepted per export: float32 round trips are exact up to summation
# order; merging LoRA reorders a matmul; float16 GGUF weights round each weight to 11 bits.
TOLERANCE = {"adapter": 1e-4, "merged": 1e-3, "gguf": {"f32": 1e-3, "f16": 0.5, "q8_0": 2.0}}


def probe(vocab_size: int) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    return model.eval()(input_ids=ids).logits.float()


def check(name: str, expected: torch.Tensor, got: torch.Tensor, tolerance: float) -> float:
    diff = float((expected - got).abs().max())
    if not diff <= tolerance:
        raise ForgeError(f"export check failed for {name}: max |logit difference| {diff:.3g} > {tolerance}")
    log.info("export: %s reloads with max |logit difference| %.2g", name, diff)
    return diff


def export_adapter(peft_model: Any, tokenizer: Any, folder: Path, base: Any) -> float:
    """`base`: a fresh copy of the base model for PeftModel.from_pretrained to load into."""
    from peft import PeftModel

    with atomic.atomic_dir(folder) as tmp:
        peft_model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    reloaded = PeftModel.from_pretrained(base, str(folder))
    ids = probe(peft_model.config.vocab_size)
    return check("adapter", logits(peft_model, ids), logits(reloaded, ids), TOLERANCE["adapter"])


def export_merged(model: Any, tokenizer: Any, folder: Path) -> tuple[Any, float]:
    """The plain transformers model (adapters merged in), saved and checked; returns it too."""
    from transformers import AutoModelForCausalLM

    ids = probe(model.config.vocab_size)
    expected = logits(model, ids)
    merged = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    with atomic.atomic_dir(folder) as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return merged, check("merged", expected, logits(reloaded, ids), TOLERANCE["merged"])


def export_gguf(merged: Any, tokenizer: Any, folder: Path, gguf_type: str, pre: str, parameters: dict) -> float:
    from transformers import AutoModelForCausalLM

    from forge.export.gguf import write_gguf
    from forge.export.ollama import modelfile

    with atomic.atomic_dir(folder) as tmp:
        write_gguf(merged, tokenizer, tmp / "model.gguf", gguf_type, pre)
        atomic.write_text(tmp / "Modelfile", modelfile("model.gguf", tokenizer, parameters))
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file="model.gguf", dtype=torch.float32)
    ids = probe(merged.config.vocab_size)
    return check(f"gguf ({gguf_type})", logits(merged, ids), logits(reloaded, ids), TOLERANCE["gguf"][gguf_type])


def export_compressed(cfg: DictConfig, paths: RunPaths, tokenizer: Any, compressed: Any) -> float:
    """The packed file, the model and compressor configs that rebuild it, and the tokenizer;
    `compressed`: the model rebuilt from the packed file, which the export must reproduce."""
    folder = paths.model / "compressed"
    with atomic.atomic_dir(folder) as tmp:
        shutil.copyfile(paths.compressed, tmp / "model.safetensors")
        atomic.write_json(tmp / "forge_compressed.json", {"model": OmegaConf.to_container(cfg.model, resolve=True),
                                                      "compressor": OmegaConf.to_container(cfg.compressor, resolve=True)})
        tokenizer.save_pretrained(str(tmp))
        ids = probe(len(tokenizer))
        return check("compressed", logits(compressed, ids), logits(load_compressed_lm(tmp, cfg.cache_dir), ids), 0.0)


def load_compressed_lm(folder: Path, cache_dir: Any = None) -> Any:
    """A causal LM from an exported compressed folder: the base architecture from its model
    config, the layers its compressor needs, the weights dequantized from the packed file."""
    from forge.compress.load import load_packed
    from forge.config.instantiate import instantiate
    from forge.models.hf import HFCausalLM

    config = json.loads((folder / "forge_compressed.json").read_text())
    base = HFCausalLM.from_config(OmegaConf.create(config["model"]), cache_dir).model()
    return load_packed(instantiate(OmegaConf.create(config["compressor"])), base, folder / "model.safetensors")


def export(cfg: DictConfig, paths: RunPaths, module: Any, ckpt: Path, compressed: Any = None) -> dict[str, Any]:
    """`module`: the fine-tuned CausalLMModule; `compressed`: the model rebuilt from the run's
    packed file, exported instead of the float model when the run has one."""
    from forge.models.hf import HFCausalLM, gguf_pre_tokenizer

    spec = HFCausalLM.from_config(cfg.model, cfg.cache_dir)
    tokenizer = spec.tokenizer()
    template = module.hparams.get("chat_template")
    if template:
        tokenizer.chat_template = template  # the template the model was trained with
    report: dict[str, Any] = {"checkpoint": ckpt.name}
    if compressed is not None:  # the packed model is what this run made
        report["compressed_max_logit_diff"] = export_compressed(cfg, paths, tokenizer, compressed)
        atomic.write_json(paths.model / "export.json", report)
        log.info("export: %s (compressed; adapter, merged and GGUF exports are of float models)", paths.model)
        return report
    model = module.model
    if "adapter" in cfg.export.outputs:
        if not hasattr(model, "peft_config"):
            raise ForgeError("export.outputs has 'adapter' but peft=none trained no adapter; drop it or use peft=lora")
        report["adapter_max_logit_diff"] = export_adapter(model, tokenizer, paths.model / "adapter", spec.model())
    merged = None
    if "merged" in cfg.export.outputs or "gguf" in cfg.export.outputs:
        merged, report["merged_max_logit_diff"] = export_merged(model, tokenizer, paths.model / "merged")
    if "gguf" in cfg.export.outputs:
        parameters = OmegaConf.to_container(cfg.export.ollama, resolve=True)
        pre = gguf_pre_tokenizer(spec) or cfg.export.gguf_pre
        report["gguf_max_logit_diff"] = export_gguf(merged, tokenizer, paths.model / "gguf", cfg.export.gguf_type, pre, parameters)
    atomic.write_json(paths.model / "export.json", report)
    log.info("export: %s", paths.model)
    return report
