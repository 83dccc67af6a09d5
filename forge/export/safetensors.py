"""The export stage: model.safetensors + config.json, verified by loading it back."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from forge import atomic
from forge.data.prepare import load_meta
from forge.errors import ForgeError
from forge.models import build_model
from forge.run_dir import RunPaths

log = logging.getLogger(__name__)


def export(cfg: DictConfig, paths: RunPaths, model: torch.nn.Module, packed: Optional[Path] = None) -> Path:
    """`packed`: the run's compressed file, exported as it is (with the compressor's config, which
    says how to rebuild the layers it needs) instead of the float weights."""
    from safetensors.torch import save_file

    meta = load_meta(paths.data)
    config = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "vocab": meta["vocab"],
        "max_len": meta["seq_len"],
        "task": meta["task"],
    }
    with atomic.atomic_dir(paths.model) as tmp:
        if packed is not None:
            config["compressor"] = OmegaConf.to_container(cfg.compressor, resolve=True)
            shutil.copyfile(packed, tmp / "model.safetensors")
        else:
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        atomic.write_json(tmp / "config.json", config)
        _verify(model, tmp, len(meta["vocab"]), meta["seq_len"])
    log.info("export: %s", paths.model)
    return paths.model


def load_exported(folder: Path) -> torch.nn.Module:
    """Rebuild an exported model from its folder alone."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    model = build_model(OmegaConf.create(config["model"]), len(config["vocab"]), config["max_len"])
    if "compressor" not in config:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()
    from forge.compress.load import load_packed
    from forge.config.instantiate import instantiate

    return load_packed(instantiate(OmegaConf.create(config["compressor"])), model, folder / "model.safetensors")


def _verify(model: torch.nn.Module, folder: Path, vocab_size: int, seq_len: int) -> None:
    probe = torch.randint(0, vocab_size, (4, seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(probe)
        got = load_exported(folder)(probe)
    if not torch.equal(expected, got):
        raise ForgeError(f"export check failed: the model reloaded from {folder} gives different logits")
